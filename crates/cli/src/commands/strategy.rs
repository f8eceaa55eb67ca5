//! Flags shared by `run` and `generate`: how weights arrive (strategy, I/O, budget) and the
//! report of what that cost. Parsed here into validated types before any file is opened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use edgerun_runtime::delay::DelayModels;
use edgerun_runtime::swap::BlockPlan;
use edgerun_runtime::{
    human_bytes, Executor, FullExecutor, Governor, PipeLoadExecutor, StreamExecutor, SwapExecutor,
    Trace,
};
use edgerun_store::{IoMode, ModelSource, ReadOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Load every unit, then run (the baseline).
    Full,
    /// Map the weights and let the page cache work (llama.cpp's and candle's way).
    Mmap,
    /// One unit at a time: load, run, free; no overlap.
    Stream,
    /// Hermes PipeLoad: parallel loading agents ahead of in-order compute, freed after use.
    Pipeload,
    /// SwapNet: the partitioner's blocks, each swapped in with one read into the buffer its
    /// tensors borrow, run, and dropped; the next block read while one runs where it fits.
    Swap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Io {
    /// pread through the page cache into aligned buffers.
    Pread,
    /// O_DIRECT reads around the page cache (falls back to pread where refused).
    Direct,
}

#[derive(Args, Clone, Debug)]
pub struct StrategyArgs {
    /// How weights reach memory.
    #[arg(long, value_enum, default_value = "full")]
    pub strategy: Strategy,
    /// How a packed store's units are read (full and stream strategies).
    #[arg(long, value_enum, default_value = "pread")]
    pub io: Io,
    /// Cap on the bytes the runtime holds, e.g. 300MiB, 1.5GB, 123456 (packed stores only).
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Loading agents for --strategy pipeload (default: the planner's choice with --profile,
    /// else 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub loaders: Option<u64>,
    /// Units pipeload reads ahead of the one computing, at most (default: the planner's choice
    /// with --profile, else as many as the budget holds). Fewer hold less memory.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub depth: Option<u64>,
    /// A profile from `edgerun profile`: pipeload then runs the planner's loader count and
    /// depth; swap partitions with delay models fitted on it (without one, swap sizes blocks
    /// to minimise reads).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Skip the per-unit CRC-32C check (for benchmarks).
    #[arg(long)]
    pub no_verify: bool,
    /// Write a JSON report of time and memory here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace of the pipeline here (--strategy pipeload).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Draw the pipeline and the memory curve as an SVG here (--strategy pipeload).
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    #[arg(skip)]
    pub recorder: Arc<Trace>,
    /// Loaders and depth once decided (the planner runs at most once).
    #[arg(skip)]
    chosen_shape: std::sync::OnceLock<(usize, Option<usize>)>,
}

pub use edgerun_runtime::size::parse_size;

impl StrategyArgs {
    /// The files these flags write, by flag.
    pub fn output_paths(&self) -> Vec<(&'static str, Option<&std::path::Path>)> {
        vec![
            ("--report", self.report.as_deref()),
            ("--trace", self.trace.as_deref()),
            ("--timeline", self.timeline.as_deref()),
        ]
    }

    fn read_options(&self) -> ReadOptions {
        let io = match (self.strategy, self.io) {
            (Strategy::Mmap, _) => IoMode::Mmap,
            (_, Io::Pread) => IoMode::Pread,
            (_, Io::Direct) => IoMode::Direct,
        };
        ReadOptions {
            io,
            verify: !self.no_verify,
        }
    }

    /// The executor these flags ask for, over `source`.
    /// `decoding`: the executor will run once per generated token (pipeload then keeps what
    /// the budget allows resident across tokens).
    pub fn executor<'s>(
        &self,
        source: &'s ModelSource,
        decoding: bool,
    ) -> Result<Box<dyn Executor + 's>> {
        let governor = Governor::new(self.budget.unwrap_or(u64::MAX));
        if self.budget.is_some() {
            if matches!(source, ModelSource::Hf(_)) {
                bail!("--budget needs a packed store (edgerun pack MODEL OUT): an HF folder is mapped, and mapped pages cannot be capped from inside");
            }
            if self.strategy == Strategy::Mmap {
                bail!("--budget cannot cap --strategy mmap (the page cache is the kernel's); use --strategy stream or a cgroup memory limit");
            }
        }
        if (self.trace.is_some() || self.timeline.is_some()) && self.strategy != Strategy::Pipeload
        {
            bail!("--trace and --timeline record the pipeline of --strategy pipeload");
        }
        let read = self.read_options();
        Ok(match self.strategy {
            Strategy::Full | Strategy::Mmap => {
                Box::new(FullExecutor::load_with(source, read, governor)?)
            }
            Strategy::Stream => Box::new(StreamExecutor::new(source, read, Arc::clone(&governor))?),
            Strategy::Swap => Box::new(SwapExecutor::new(
                source,
                read,
                Arc::clone(&governor),
                self.swap_plan(source)?,
            )?),
            Strategy::Pipeload => {
                let (loaders, depth) = self.pipeline_shape(source)?;
                let pipeload = PipeLoadExecutor::new(source, read, Arc::clone(&governor), loaders)?
                    .with_trace(Arc::clone(&self.recorder));
                let pipeload = match depth {
                    Some(depth) => pipeload.with_depth(depth),
                    None => pipeload,
                };
                Box::new(if decoding {
                    pipeload.with_residency()
                } else {
                    pipeload
                })
            }
        })
    }

    /// The partitioner's inputs: delay models and FLOPs from `--profile`, or a read-only model
    /// (1 GB/s and 2 ms per read, no compute) that sizes blocks to minimise reads.
    fn swap_plan(&self, source: &ModelSource) -> Result<BlockPlan> {
        let units = source.model()?.stages().len();
        let (models, flops) = match &self.profile {
            Some(path) => {
                let profile = super::profile::load_profile(path, Some(source.model()?.as_ref()))?;
                let models = edgerun_runtime::delay::fit_profiles(std::slice::from_ref(&profile))?;
                (models, profile.units.iter().map(|u| u.flops).collect())
            }
            None => (DelayModels::read_only(), vec![0; units]),
        };
        Ok(BlockPlan::Partition {
            models,
            flops,
            allow_prefetch: true,
        })
    }

    /// Loading agents and depth: `--loaders` and `--depth`, else the planner's choice on
    /// `--profile`, else 2 loaders reading as far ahead as the budget holds.
    fn pipeline_shape(&self, source: &ModelSource) -> Result<(usize, Option<usize>)> {
        if let Some(&shape) = self.chosen_shape.get() {
            return Ok(shape);
        }
        let shape = self.plan_shape(source)?;
        Ok(*self.chosen_shape.get_or_init(|| shape))
    }

    fn plan_shape(&self, source: &ModelSource) -> Result<(usize, Option<usize>)> {
        let given = (
            self.loaders.map(|n| n as usize),
            self.depth.map(|d| d as usize),
        );
        let (Some(path), (None, _) | (_, None)) = (&self.profile, given) else {
            return Ok((given.0.unwrap_or(2), given.1));
        };
        let profile = super::profile::load_profile(path, Some(source.model()?.as_ref()))?;
        let budget = self.budget.unwrap_or(u64::MAX);
        let plan = edgerun_runtime::planner::plan_with(
            &profile.unit_costs(),
            profile.reserve_bytes,
            budget,
            8,
            &profile.throughput,
            &profile.slowdowns(),
        )
        .ok_or_else(|| {
            anyhow::anyhow!("the profile's units do not fit a budget of {budget} bytes")
        })?;
        // A loader count given on the command line takes the planner's best depth for it.
        let loaders = given.0.unwrap_or(plan.loaders);
        let Some(candidate) = plan.candidates.iter().find(|c| c.loaders == loaders) else {
            return Ok((loaders, given.1));
        };
        let depth = given.1.or(candidate.depth);
        eprintln!(
            "plan: {loaders} loaders, depth {}, predicted {:.3} s, peak {}",
            depth.map_or("as the budget holds".into(), |d| d.to_string()),
            candidate.predicted_latency_s,
            human_bytes(candidate.predicted_peak_bytes)
        );
        Ok((loaders, depth))
    }

    /// Prints the one-line summary and writes `--report` if asked.
    pub fn finish(
        &self,
        executor: &dyn Executor,
        source: &ModelSource,
        wall: Duration,
    ) -> Result<()> {
        if let Some(notice) = source.take_notice() {
            eprintln!("note: {notice}");
        }
        let stats = executor.stats();
        let governor = executor.governor();
        let budget = self.budget;
        eprintln!(
            "{} {}: wall {:.3} s (load {:.3}, compute {:.3}, wait {:.3}); peak {} of budget {}; VmHWM {}, anon {}, file {}; read {}",
            executor.model().architecture(),
            format!("{:?}", self.strategy).to_lowercase(),
            wall.as_secs_f64(),
            stats.load_s,
            stats.compute_s,
            stats.wait_s,
            human_bytes(governor.peak()),
            budget.map_or("none".into(), human_bytes),
            human_bytes(stats.memory.vm_hwm_bytes),
            human_bytes(stats.memory.rss_anon_bytes),
            human_bytes(stats.memory.rss_file_bytes),
            human_bytes(stats.bytes_read),
        );
        let names: Vec<String> = executor
            .model()
            .stages()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        if let Some(path) = &self.trace {
            let json = self.recorder.to_chrome_json(&names);
            edgerun_store::write_file(path, serde_json::to_string(&json)?)
                .with_context(|| format!("cannot write trace {}", path.display()))?;
        }
        if let Some(path) = &self.timeline {
            let title = format!(
                "{} pipeload, {} loaders, budget {}",
                executor.model().architecture(),
                self.pipeline_shape(source)?.0,
                budget.map_or("none".into(), human_bytes)
            );
            edgerun_store::write_file(
                path,
                crate::timeline::render(&self.recorder, &names, &title),
            )
            .with_context(|| format!("cannot write timeline {}", path.display()))?;
        }
        if let Some(path) = &self.report {
            let report = serde_json::json!({
                "strategy": format!("{:?}", self.strategy).to_lowercase(),
                "loaders": (self.strategy == Strategy::Pipeload).then(|| self.pipeline_shape(source).ok().map(|s| s.0)).flatten(),
                "depth": (self.strategy == Strategy::Pipeload).then(|| self.pipeline_shape(source).ok().and_then(|s| s.1)).flatten(),
                "io": format!("{:?}", self.read_options().io).to_lowercase(),
                "budget_bytes": budget,
                "peak_bytes": governor.peak(),
                "vm_hwm_bytes": stats.memory.vm_hwm_bytes,
                "rss_anon_bytes": stats.memory.rss_anon_bytes,
                "rss_file_bytes": stats.memory.rss_file_bytes,
                "wall_s": wall.as_secs_f64(),
                "load_s": stats.load_s,
                "compute_s": stats.compute_s,
                "wait_s": stats.wait_s,
                "bytes_read": stats.bytes_read,
                "copied_bytes": stats.copied_bytes,
            });
            edgerun_store::write_file(path, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("cannot write report {}", path.display()))?;
        }
        Ok(())
    }
}
