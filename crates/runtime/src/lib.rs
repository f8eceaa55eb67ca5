//! Executors: they bind a model's stages and run them in order over one state.
//!
//! [`FullExecutor`] binds every stage up front (the load-all baseline). On top of any executor,
//! [`generate`] decodes greedily with the KV cache and [`embed`] pools sentence embeddings.

pub mod embed;
pub mod error;
pub mod executor;
pub mod generate;

pub use embed::Embedder;
pub use error::{Result, RuntimeError};
pub use executor::{FullExecutor, Outputs};
pub use generate::{generate, GenerateOptions};
