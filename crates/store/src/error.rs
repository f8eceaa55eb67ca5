//! The store's error type. Every variant names the file or tensor it is about.

use std::path::PathBuf;

use edgerun_models::ModelError;
use thiserror::Error;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid safetensors file: {why}", path.display())]
    Safetensors { path: PathBuf, why: String },
    #[error("{}: {why}", path.display())]
    Json { path: PathBuf, why: String },
    #[error("{}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)", path.display())]
    NoWeights { path: PathBuf },
    #[error("tensor {name}: the config implies shape {expected:?} but {} holds {found:?}", path.display())]
    ShapeMismatch {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor {name} in {}: dtype {dtype} is not supported (f32, f16, bf16 are)", path.display())]
    UnsupportedDtype {
        name: String,
        path: PathBuf,
        dtype: String,
    },
    #[error("{}: tensor {name}: {why}", path.display())]
    BadTensor {
        path: PathBuf,
        name: String,
        why: String,
    },
    #[error("{flag} {} names the same file as {other}", path.display())]
    OutputClash {
        path: PathBuf,
        flag: String,
        other: String,
    },
    #[error("{}: {why}", path.display())]
    NotRegular { path: PathBuf, why: String },
    #[error("{}: the file is empty", path.display())]
    EmptyFile { path: PathBuf },
    #[error("{}: {size} bytes is more than the {limit} bytes a {what} may have", path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{}: another edgerun pack is writing this store (lock {})", path.display(), lock.display())]
    Locked { path: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] edgerun_tensor::TensorError),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
