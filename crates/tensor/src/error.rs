//! The tensor crate's error type.

use thiserror::Error;

pub type Result<T, E = TensorError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum TensorError {
    #[error("{op}: shape mismatch: expected {expected}, got {got:?}")]
    Shape {
        op: &'static str,
        expected: String,
        got: Vec<usize>,
    },
    #[error("tensor of shape {shape:?} needs {needed} bytes at offset {offset}, but the buffer holds {available}")]
    OutOfBounds {
        shape: Vec<usize>,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("tensor at byte offset {offset} is not aligned to {align} bytes")]
    Misaligned { offset: usize, align: usize },
    #[error("{len} bytes is not a whole number of {dtype} elements")]
    RaggedBytes { len: usize, dtype: &'static str },
    #[error("token id {id} is outside the embedding table of {rows} rows")]
    IndexOutOfRange { id: i64, rows: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot allocate {bytes} bytes aligned to {align}")]
    Alloc { bytes: usize, align: usize },
}
