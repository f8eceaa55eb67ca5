//! Flags shared by `run` and `generate`: how weights arrive (strategy, I/O, budget) and the
//! report of what that cost. They become a `SessionOptions`; the session checks them against
//! the model before anything is loaded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_runtime::{human_bytes, Io, Session, SessionOptions, Strategy};
use edgerun_store::ModelSource;
use edgerun_tensor::kernels::AttentionAlgorithm;

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

    /// The session these flags ask for over `source`. `decoding`: it will run once per
    /// generated token (pipeload then keeps what the budget allows resident across tokens).
    pub fn session(
        &self,
        source: Arc<ModelSource>,
        attention: AttentionAlgorithm,
        decoding: bool,
    ) -> Result<Session> {
        self.part_session(source, attention, decoding, None)
    }

    /// The same session holding only the stages `part` (one side of a split).
    pub fn part_session(
        &self,
        source: Arc<ModelSource>,
        attention: AttentionAlgorithm,
        decoding: bool,
        part: Option<std::ops::Range<usize>>,
    ) -> Result<Session> {
        let profile = match &self.profile {
            Some(path) => Some(super::profile::load_profile(
                path,
                Some(source.model()?.as_ref()),
            )?),
            None => None,
        };
        let options = SessionOptions {
            strategy: self.strategy,
            budget: self.budget,
            io: self.io,
            loaders: self.loaders.map(|n| n as usize),
            depth: self.depth.map(|d| d as usize),
            profile,
            threads: None,
            attention,
            verify: !self.no_verify,
            keep_resident: decoding,
            trace: self.trace.is_some() || self.timeline.is_some(),
            part,
        };
        let session = Session::from_source(source, options)?;
        if let Some(shape) = session.pipeline() {
            if let Some((latency_s, peak)) = shape.predicted {
                eprintln!(
                    "plan: {} loaders, depth {}, predicted {latency_s:.3} s, peak {}",
                    shape.loaders,
                    shape
                        .depth
                        .map_or("as the budget holds".into(), |d| d.to_string()),
                    human_bytes(peak)
                );
            }
        }
        Ok(session)
    }

    /// Prints the one-line summary and writes `--report`, `--trace` and `--timeline` if asked.
    pub fn finish(&self, session: &Session, wall: Duration) -> Result<()> {
        if let Some(notice) = session.source().take_notice() {
            eprintln!("note: {notice}");
        }
        let stats = session.stats();
        let governor = session.governor();
        let budget = self.budget;
        let strategy = self.strategy.name();
        let architecture = session.model().architecture();
        eprintln!(
            "{architecture} {strategy}: wall {:.3} s (load {:.3}, compute {:.3}, wait {:.3}); peak {} of budget {}; VmHWM {}, anon {}, file {}; read {}",
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
        let names: Vec<String> = session
            .model()
            .stages()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let recorder = session.trace();
        if let Some(path) = &self.trace {
            let json = recorder.to_chrome_json(&names);
            edgerun_store::write_file(path, serde_json::to_string(&json)?)
                .with_context(|| format!("cannot write trace {}", path.display()))?;
        }
        let shape = session.pipeline();
        if let Some(path) = &self.timeline {
            let title = format!(
                "{architecture} pipeload, {} loaders, budget {}",
                shape.map_or(0, |s| s.loaders),
                budget.map_or("none".into(), human_bytes)
            );
            edgerun_store::write_file(path, crate::timeline::render(recorder, &names, &title))
                .with_context(|| format!("cannot write timeline {}", path.display()))?;
        }
        if let Some(path) = &self.report {
            let report = serde_json::json!({
                "strategy": strategy,
                "loaders": shape.map(|s| s.loaders),
                "depth": shape.and_then(|s| s.depth),
                "io": format!("{:?}", session.io()).to_lowercase(),
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
