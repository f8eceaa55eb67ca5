//! Executors: they bind a model's stages and run them in order over one state.
//!
//! [`FullExecutor`] binds every stage up front (the load-all baseline); [`StreamExecutor`]
//! loads, runs and frees one unit at a time under the [`Governor`]'s cap; [`PipeLoadExecutor`]
//! overlaps loading (N agents) with in-order compute under the same cap. On top of any executor,
//! [`generate`] decodes greedily with the KV cache and [`embed`] pools sentence embeddings.

mod admit;
pub mod attention_eval;
pub mod delay;
pub mod embed;
pub mod error;
pub mod example;
pub mod executor;
pub mod generate;
pub mod governor;
mod inline_feed;
pub mod memory;
pub mod mix;
pub mod partition;
pub mod pass;
pub mod pipeload;
pub mod planner;
pub mod profile;
pub mod quant_eval;
mod read_ahead;
pub mod session;
pub mod size;
pub mod swap;
pub mod trace;

pub use attention_eval::{evaluate_attention, EvalInput, VariantReport};
pub use embed::{Embedder, TextHead};
pub use error::{Result, RuntimeError};
pub use example::example_inputs;
pub use executor::{
    human_bytes, human_bytes_up, ExecStats, Executor, FullExecutor, Outputs, StreamExecutor,
};
pub use generate::{generate, GenerateOptions};
pub use governor::{Governor, Lease};
pub use memory::MemorySample;
pub use pass::{run_pass, run_range, Bound, Delivery, Feed, Resident, Runner};
pub use pipeload::PipeLoadExecutor;
pub use quant_eval::{evaluate_quantisation, QuantReport, TensorComparison};
pub use session::{Io, PipelineShape, Session, SessionOptions, Strategy};
pub use swap::SwapExecutor;
pub use trace::{Span, SpanKind, Trace, Track};
