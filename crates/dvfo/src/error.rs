//! What can go wrong reading a board, a trace, a calibration or a policy, or running one.

use std::path::PathBuf;

pub type Result<T, E = DvfoError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DvfoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A board file that does not parse or describes an impossible board.
    #[error("board {path}: {why}")]
    Board { path: PathBuf, why: String },
    /// A bandwidth trace that cannot be read or holds impossible rates.
    #[error("trace {spec}: {why}")]
    Trace { spec: String, why: String },
    /// A calibration file that does not parse or does not fit the model.
    #[error("calibration {path}: {why}")]
    Calibration { path: PathBuf, why: String },
    /// A policy file that is not one, or was trained for another board, model or action set.
    #[error("policy {path}: {why}")]
    Policy { path: PathBuf, why: String },
    /// Options that contradict each other or the model.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Runtime(#[from] edgerun_runtime::RuntimeError),
    #[error(transparent)]
    Serve(#[from] edgerun_serve::ServeError),
    #[error(transparent)]
    Model(#[from] edgerun_models::ModelError),
    /// The network library failed (a bug or an exhausted machine, not bad input).
    #[error("the DQN failed: {0}")]
    Network(String),
}

impl DvfoError {
    pub fn invalid(why: impl Into<String>) -> Self {
        Self::Invalid(why.into())
    }
}
