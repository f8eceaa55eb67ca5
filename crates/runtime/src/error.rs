//! The runtime's error type: one variant per way a run can be refused or fail, with the
//! figures a caller needs to act on it (a minimum to raise the budget to, the unit that was
//! not delivered). Byte figures for people are rounded up, so a printed minimum pasted back
//! as a budget is accepted.

use std::ops::Range;
use std::path::PathBuf;

use edgerun_models::ModelError;
use edgerun_store::StoreError;
use edgerun_tensor::TensorError;
use thiserror::Error;

use crate::executor::human_bytes_up;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("budget: a budget of {budget} bytes is below this model's minimum of {minimum} bytes ({}: the largest unit plus activations)", human_bytes_up(*.minimum))]
    BelowMinimum { budget: u64, minimum: u64 },
    #[error("budget: loading every stage needs more than the budget of {budget} bytes (stage {stage} does not fit); use --strategy stream")]
    FullDoesNotFit { budget: u64, stage: String },
    #[error("budget: {what} needs {bytes} bytes, more than the whole budget of {budget} bytes")]
    BeyondCap {
        what: String,
        bytes: u64,
        budget: u64,
    },
    #[error("budget: {what}: {source}")]
    Allocation {
        what: String,
        #[source]
        source: TensorError,
    },
    #[error("budget: the cap of {} is below the models' minimums together, {} ({}, and {} of scratch for the stage running)",
        human_bytes_up(*.cap), human_bytes_up(*.minimum), list_minimums(.per_model), human_bytes_up(*.scratch))]
    MixBelowMinimum {
        cap: u64,
        minimum: u64,
        per_model: Vec<(String, u64)>,
        scratch: u64,
    },
    #[error("budget: {model}: no plan fits its quota of {}", human_bytes_up(*.quota))]
    NoPlanFits { model: String, quota: u64 },

    #[error("{what}: that needs a packed store (edgerun pack MODEL OUT)")]
    NeedsPackedStore { what: String },
    #[error("--strategy swap swaps blocks in with a read; use --io direct or --io pread")]
    SwapNeedsReads,
    #[error("the blocks {blocks:?} do not cover the model's {units} units in order")]
    BlocksDoNotTile {
        blocks: Vec<Range<usize>>,
        units: usize,
    },
    #[error("the profile has {profiled} units, the model {stages}: profile this store again")]
    ProfileMismatch { profiled: usize, stages: usize },
    #[error("pipeload needs at least one loader")]
    NoLoaders,
    #[error("{why}")]
    Options { why: &'static str },
    #[error("planning needs a profile of the model (edgerun profile)")]
    NoProfile,

    #[error("stage {unit} was asked for but its feed does not deliver it")]
    NotDelivered { unit: usize },
    #[error("stages {start}..{end} are not a range of this model's {stages} stages")]
    StageRange {
        start: usize,
        end: usize,
        stages: usize,
    },
    #[error("stages {start}..{end} are not all held: this session holds stages {held_start}..{held_end}")]
    NotHeld {
        start: usize,
        end: usize,
        held_start: usize,
        held_end: usize,
    },
    #[error(
        "a boundary before stage {sent}, outside the stages this session holds ({start}..{end})"
    )]
    SplitOutside {
        sent: usize,
        start: usize,
        end: usize,
    },
    #[error("{what} needs the whole model; this session holds stages {start}..{end}")]
    PartOnly {
        what: &'static str,
        start: usize,
        end: usize,
    },
    #[error("the reader thread stopped before {before}")]
    ReaderStopped { before: String },
    #[error("loaders stopped before unit {unit} arrived")]
    LoaderStopped { unit: usize },
    #[error("injected read error on unit {unit}: {why}")]
    InjectedFault { unit: String, why: String },
    #[error("{model}: step {step} was to be kept but was never read")]
    StepNeverRead { model: String, step: usize },

    #[error("{architecture} is not a causal language model; generate needs GPT-2 or GPT-J")]
    NotCausal { architecture: String },
    #[error("{} has no tokenizer.json; embed needs one", .dir.display())]
    NoTokenizer { dir: PathBuf },
    #[error("{architecture} gives no token embeddings to pool")]
    NoTokenEmbeddings { architecture: String },
    #[error("{architecture} has no attention layers to swap")]
    NoAttention { architecture: String },
    #[error("the model returned no logits or hidden state")]
    NoOutput,
    #[error("{} and {} hold different models (architecture or stages differ)", .first.display(), .second.display())]
    DifferentModels { first: PathBuf, second: PathBuf },

    #[error("two models are named {name:?}: names must be distinct")]
    DuplicateModel { name: String },
    #[error("{name}: importance {importance} must be a positive number")]
    BadImportance { name: String, importance: f64 },
    #[error("{name}: inferences must be at least 1")]
    NoInferences { name: String },
    #[error("a mix needs at least one model")]
    EmptyMix,
    #[error("scenario: {0}")]
    Scenario(String),

    #[error("fitting a delay model needs at least 3 samples, got {got}")]
    TooFewSamples { got: usize },
    #[error("the delay samples are collinear (size and depth move together); add models or blocks of other sizes")]
    CollinearSamples,
    #[error(
        "a profile has no FLOPs per unit (written by an older edgerun); profile the model again"
    )]
    ProfileWithoutFlops,
    #[error("profile: {why}")]
    InvalidProfile { why: String },

    #[error("{what} is {value}, more than the {limit} edgerun accepts")]
    TooLarge {
        what: &'static str,
        value: u128,
        limit: u128,
    },
}

fn list_minimums(per_model: &[(String, u64)]) -> String {
    per_model
        .iter()
        .map(|(name, bytes)| format!("{name} {}", human_bytes_up(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}
