//! A model opened to run under a budget: [`Session::open`] takes a path and
//! [`SessionOptions`], checks the options against the model, owns the source and the executor
//! they ask for, and runs passes, generation, embeddings, profiles and plans. The CLI is flags
//! → `SessionOptions` → `Session`; any other program (a server, Python bindings) does the same.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use edgerun_models::{Boundary, IdTensor, Inputs, Model, RunOptions, State};
use edgerun_store::{IoMode, ModelSource, ReadOptions};
use edgerun_tensor::kernels::AttentionAlgorithm;
use edgerun_tensor::Tensor;

use crate::delay::{fit_profiles, DelayModels};
use crate::embed::TextHead;
use crate::planner::Plan;
use crate::profile::Profile;
use crate::swap::BlockPlan;
use crate::{
    ExecStats, Executor, FullExecutor, GenerateOptions, Governor, Outputs, PipeLoadExecutor,
    Result, RuntimeError, StreamExecutor, SwapExecutor, Trace,
};

/// How weights reach memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Strategy {
    /// Load every unit, then run (the baseline).
    #[default]
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

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Mmap => "mmap",
            Strategy::Stream => "stream",
            Strategy::Pipeload => "pipeload",
            Strategy::Swap => "swap",
        }
    }
}

/// How a packed store's units are read (mmap is a strategy of its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Io {
    /// pread through the page cache into aligned buffers.
    #[default]
    Pread,
    /// O_DIRECT reads around the page cache (falls back to pread where refused).
    Direct,
}

/// What a session runs with. `Default` is the load-all baseline with no budget.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub strategy: Strategy,
    /// Cap on the bytes the runtime holds (packed stores only; not with mmap).
    pub budget: Option<u64>,
    pub io: Io,
    /// PipeLoad's loading agents (default: the planner's choice with a profile, else 2).
    pub loaders: Option<usize>,
    /// Units PipeLoad reads ahead of the one computing, at most (default: the planner's
    /// choice with a profile, else as many as the budget holds).
    pub depth: Option<usize>,
    /// A profile of this model: PipeLoad plans its shape on it and swap partitions with
    /// delay models fitted on it (without one, swap sizes blocks to minimise reads).
    pub profile: Option<Profile>,
    /// Kernel worker threads, for the whole process (default: as already set).
    pub threads: Option<usize>,
    /// The attention every layer runs.
    pub attention: AttentionAlgorithm,
    /// Check each unit's CRC-32C after reading it.
    pub verify: bool,
    /// PipeLoad keeps units resident across passes where the budget allows (decoding reads
    /// every unit once per token).
    pub keep_resident: bool,
    /// Record PipeLoad's agents and the governed bytes (see [`Session::trace`]).
    pub trace: bool,
    /// The stages this session runs: a split's head `0..K` or tail `K..n` (default all).
    /// With `full` and `mmap` only these stages' weights are loaded.
    pub part: Option<Range<usize>>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::Full,
            budget: None,
            io: Io::Pread,
            loaders: None,
            depth: None,
            profile: None,
            threads: None,
            attention: AttentionAlgorithm::default(),
            verify: true,
            keep_resident: false,
            trace: false,
            part: None,
        }
    }
}

/// PipeLoad's loader count and depth, and what the planner predicted for them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineShape {
    pub loaders: usize,
    pub depth: Option<usize>,
    /// `(latency s, peak bytes)` when the planner chose.
    pub predicted: Option<(f64, u64)>,
}

pub struct Session {
    source: Arc<ModelSource>,
    options: SessionOptions,
    executor: Box<dyn Executor>,
    shape: Option<PipelineShape>,
    trace: Arc<Trace>,
    text_head: OnceLock<TextHead>,
}

impl Session {
    /// Opens a packed store or a Hugging Face folder at `path` with `options`.
    pub fn open(path: &Path, options: SessionOptions) -> Result<Self> {
        Self::from_source(Arc::new(ModelSource::open(path)?), options)
    }

    /// A session over a source already opened.
    pub fn from_source(source: Arc<ModelSource>, options: SessionOptions) -> Result<Self> {
        check_options(&source, &options)?;
        if let Some(threads) = options.threads {
            edgerun_tensor::parallel::set_threads(threads);
        }
        let governor = Governor::new(options.budget.unwrap_or(u64::MAX));
        let read = read_options(&options);
        let trace = Arc::new(Trace::new());
        let mut shape = None;
        let executor: Box<dyn Executor> = match options.strategy {
            Strategy::Full | Strategy::Mmap => Box::new(FullExecutor::load_part(
                &source,
                read,
                governor,
                options.part.clone(),
            )?),
            Strategy::Stream => Box::new(StreamExecutor::new(Arc::clone(&source), read, governor)?),
            Strategy::Swap => Box::new(SwapExecutor::new(
                Arc::clone(&source),
                read,
                governor,
                swap_plan(&source, options.profile.as_ref())?,
            )?),
            Strategy::Pipeload => {
                let chosen = pipeline_shape(&options)?;
                shape = Some(chosen);
                let mut pipeload =
                    PipeLoadExecutor::new(Arc::clone(&source), read, governor, chosen.loaders)?;
                if let Some(depth) = chosen.depth {
                    pipeload = pipeload.with_depth(depth);
                }
                if options.trace {
                    pipeload = pipeload.with_trace(Arc::clone(&trace));
                }
                if options.keep_resident {
                    pipeload = pipeload.with_residency();
                }
                Box::new(pipeload)
            }
        };
        Ok(Self {
            source,
            options,
            executor,
            shape,
            trace,
            text_head: OnceLock::new(),
        })
    }

    /// One forward pass; with `hidden_states`, also `hidden_states.N` as transformers'
    /// `output_hidden_states=True`.
    pub fn run(&self, inputs: Inputs, hidden_states: bool) -> Result<Outputs> {
        self.check_whole("run")?;
        self.executor
            .forward(inputs, self.run_options(hidden_states))
    }

    /// Refuses `what` on a session that holds part of its model.
    fn check_whole(&self, what: &'static str) -> Result<()> {
        if self.part() != self.executor.all_stages() {
            let part = self.part();
            return Err(RuntimeError::PartOnly {
                what,
                start: part.start,
                end: part.end,
            });
        }
        Ok(())
    }

    /// The stages this session runs ([`SessionOptions::part`], else all).
    pub fn part(&self) -> Range<usize> {
        self.options
            .part
            .clone()
            .unwrap_or_else(|| self.executor.all_stages())
    }

    /// A pass's state on `inputs`, before any stage has run (a split's head starts here).
    pub fn start(&self, inputs: Inputs, hidden_states: bool) -> Result<State> {
        Ok(self
            .model()
            .start(inputs, self.run_options(hidden_states))?)
    }

    /// The state a split's tail starts from: `boundary` as the head left it.
    pub fn resume(&self, boundary: Boundary, hidden_states: bool) -> Result<State> {
        let part = self.part();
        if !(part.start..part.end.max(part.start + 1)).contains(&boundary.stage) {
            return Err(RuntimeError::SplitOutside {
                sent: boundary.stage,
                start: part.start,
                end: part.end,
            });
        }
        Ok(boundary.resume(self.model(), self.run_options(hidden_states))?)
    }

    /// Runs this session's stages over `state` (a head leaves the boundary in it; a tail or
    /// a whole model leaves the outputs).
    pub fn run_part(&self, state: &mut State) -> Result<()> {
        self.executor.run_stages(state, self.part())
    }

    /// Runs the stages `stages` over `state`: any range with `stream`, `swap` and
    /// `pipeload`, a range of the stages held with `full` and `mmap`.
    pub fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()> {
        self.executor.run_stages(state, stages)
    }

    fn run_options(&self, hidden_states: bool) -> RunOptions {
        RunOptions {
            hidden_states,
            attention: self.options.attention,
            ..RunOptions::default()
        }
    }

    /// Greedy decoding: `[batch, prompt + generated]` token ids.
    pub fn generate(
        &self,
        inputs: Inputs,
        max_new_tokens: usize,
        stop_at_eos: bool,
    ) -> Result<IdTensor> {
        self.check_whole("generate")?;
        crate::generate(
            self.executor.as_ref(),
            inputs,
            &GenerateOptions {
                max_new_tokens,
                stop_at_eos,
                attention: self.options.attention,
            },
        )
    }

    /// `[texts, dim]` sentence embeddings (a sentence-transformers folder).
    pub fn embed(&self, texts: &[String]) -> Result<Tensor> {
        self.check_whole("embed")?;
        let head = match self.text_head.get() {
            Some(head) => head,
            None => {
                let head = TextHead::load(&self.source)?;
                self.text_head.get_or_init(|| head)
            }
        };
        let options = RunOptions {
            attention: self.options.attention,
            ..RunOptions::default()
        };
        head.embed(self.executor.as_ref(), texts, options)
    }

    /// Hermes' layer profile on `inputs` over `runs` streamed passes (packed stores).
    pub fn profile(&self, inputs: Inputs, runs: usize) -> Result<Profile> {
        crate::profile::profile(&self.source, inputs, runs)
    }

    /// PipeLoad's plan for `budget` from the session's profile, 1 to `max_loaders` agents.
    pub fn plan(&self, budget: u64, max_loaders: usize) -> Result<Plan> {
        let profile = self
            .options
            .profile
            .as_ref()
            .ok_or(RuntimeError::NoProfile)?;
        profile.plan(budget, max_loaders)
    }

    pub fn model(&self) -> &dyn Model {
        self.executor.model()
    }

    pub fn source(&self) -> &Arc<ModelSource> {
        &self.source
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// Time and memory over every pass so far.
    pub fn stats(&self) -> ExecStats {
        self.executor.stats()
    }

    pub fn governor(&self) -> &Arc<Governor> {
        self.executor.governor()
    }

    /// PipeLoad's loaders and depth (`None` for other strategies).
    pub fn pipeline(&self) -> Option<PipelineShape> {
        self.shape
    }

    /// What PipeLoad's agents did, when the options asked for it.
    pub fn trace(&self) -> &Arc<Trace> {
        &self.trace
    }

    /// How the units were read, as the executor saw it.
    pub fn io(&self) -> IoMode {
        read_options(&self.options).io
    }
}

/// Refuses options that contradict each other or the model, before anything is loaded.
fn check_options(source: &ModelSource, options: &SessionOptions) -> Result<()> {
    let refuse = |why: &'static str| Err(RuntimeError::Options { why });
    if options.budget.is_some() {
        if matches!(source, ModelSource::Hf(_)) {
            return refuse("a budget needs a packed store (edgerun pack MODEL OUT): an HF folder is mapped, and mapped pages cannot be capped from inside");
        }
        if options.strategy == Strategy::Mmap {
            return refuse("a budget cannot cap --strategy mmap (the page cache is the kernel's); use --strategy stream or a cgroup memory limit");
        }
    }
    if options.trace && options.strategy != Strategy::Pipeload {
        return refuse("a trace records the pipeline of --strategy pipeload");
    }
    if let Some(part) = &options.part {
        let stages = source.model()?.stages().len();
        if part.start > part.end || part.end > stages {
            return Err(RuntimeError::StageRange {
                start: part.start,
                end: part.end,
                stages,
            });
        }
    }
    if options.loaders == Some(0) {
        return Err(RuntimeError::NoLoaders);
    }
    if options.threads == Some(0) {
        return refuse("threads must be at least 1");
    }
    if let Some(profile) = &options.profile {
        profile.validate()?;
        profile.check_model(source.model()?.as_ref())?;
    }
    Ok(())
}

fn read_options(options: &SessionOptions) -> ReadOptions {
    let io = match (options.strategy, options.io) {
        (Strategy::Mmap, _) => IoMode::Mmap,
        (_, Io::Pread) => IoMode::Pread,
        (_, Io::Direct) => IoMode::Direct,
    };
    ReadOptions {
        io,
        verify: options.verify,
    }
}

/// The partitioner's inputs: delay models and FLOPs from the profile, or a read-only model
/// (1 GB/s and 2 ms per read, no compute) that sizes blocks to minimise reads.
fn swap_plan(source: &ModelSource, profile: Option<&Profile>) -> Result<BlockPlan> {
    let (models, flops) = match profile {
        Some(profile) => (
            fit_profiles(std::slice::from_ref(profile))?,
            profile.units.iter().map(|u| u.flops).collect(),
        ),
        None => (
            DelayModels::read_only(),
            vec![0; source.model()?.stages().len()],
        ),
    };
    Ok(BlockPlan::Partition {
        models,
        flops,
        allow_prefetch: true,
    })
}

/// Loaders and depth as given, the rest the planner's choice on the profile, else 2 loaders
/// reading as far ahead as the budget holds.
fn pipeline_shape(options: &SessionOptions) -> Result<PipelineShape> {
    let given = PipelineShape {
        loaders: options.loaders.unwrap_or(2),
        depth: options.depth,
        predicted: None,
    };
    let Some(profile) = &options.profile else {
        return Ok(given);
    };
    if options.loaders.is_some() && options.depth.is_some() {
        return Ok(given);
    }
    let plan = profile.plan(options.budget.unwrap_or(u64::MAX), 8)?;
    // A loader count given takes the planner's best depth for it.
    let loaders = options.loaders.unwrap_or(plan.loaders);
    let Some(candidate) = plan.candidates.iter().find(|c| c.loaders == loaders) else {
        return Ok(PipelineShape { loaders, ..given });
    };
    Ok(PipelineShape {
        loaders,
        depth: options.depth.or(candidate.depth),
        predicted: Some((
            candidate.predicted_latency_s,
            candidate.predicted_peak_bytes,
        )),
    })
}
