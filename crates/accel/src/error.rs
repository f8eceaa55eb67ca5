//! The accelerator crate's error type.

use thiserror::Error;

pub type Result<T, E = AccelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum AccelError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("{what} is {value}, more than the {limit} the simulator accepts")]
    TooLarge {
        what: &'static str,
        value: u128,
        limit: u128,
    },
    #[error(transparent)]
    Tensor(#[from] edgerun_tensor::TensorError),
}
