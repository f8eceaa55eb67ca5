//! The models crate's error type: configs, inputs and weights that do not fit a family.

use edgerun_tensor::TensorError;
use thiserror::Error;

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("the model has no stage {index}")]
    NoStage { index: usize },
    #[error("config.json is malformed: {0}")]
    Config(String),
    #[error("unknown architecture: {0}")]
    UnknownArchitecture(String),
    #[error("config.json field {field}: {why}")]
    BadConfigValue { field: &'static str, why: String },
    #[error("{what} is not supported: {why}")]
    Unsupported { what: String, why: String },
    #[error("the checkpoint has no tensor {0} (is this the model config.json describes?)")]
    MissingTensor(String),
    #[error("tensor {name} is stored quantised ({format}), but this layer reads it as f32 (pack it with --keep matching it)")]
    QuantisedTensor { name: String, format: String },
    #[error("input {name}: {why}")]
    Input { name: &'static str, why: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("stage {stage}: {source}")]
    Kernel {
        stage: String,
        #[source]
        source: TensorError,
    },
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl ModelError {
    pub(crate) fn input(name: &'static str, why: impl Into<String>) -> Self {
        ModelError::Input {
            name,
            why: why.into(),
        }
    }

    pub(crate) fn config(field: &'static str, why: impl Into<String>) -> Self {
        ModelError::BadConfigValue {
            field,
            why: why.into(),
        }
    }
}
