//! The runtime's error type.

use edgerun_models::ModelError;
use edgerun_store::StoreError;
use thiserror::Error;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Unsupported(String),
    #[error("budget: {0}")]
    Budget(String),
    #[error("{what} is {value}, more than the {limit} edgerun accepts")]
    TooLarge {
        what: &'static str,
        value: u128,
        limit: u128,
    },
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("profile: {why}")]
    InvalidProfile { why: String },
}
