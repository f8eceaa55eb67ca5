//! What can go wrong serving or calling a model, each with the HTTP status it answers with.

use edgerun_models::ModelError;
use edgerun_runtime::RuntimeError;

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The request cannot be read or does not fit the model (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such model, or no such route (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than the server accepts (413).
    #[error("the body exceeds the server's limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The queue is full, or the server is shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// The request waited or ran longer than the server allows (504).
    #[error("the request took longer than the server's limit of {seconds:.1} s")]
    Timeout { seconds: f64 },
    /// Running the model failed (400 where the inputs caused it, 500 otherwise).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The computation panicked; the server answers 500 and goes on serving.
    #[error("the model failed unexpectedly: {0}")]
    Panicked(String),
    /// The server could not be reached or its answer could not be read (client side).
    #[error("{url}: {why}")]
    Transport { url: String, why: String },
    /// The server answered with an error (client side).
    #[error("{url} answered {status}: {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServeError {
    pub fn bad(why: impl Into<String>) -> Self {
        Self::BadRequest(why.into())
    }

    /// The status the server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound(_) => 404,
            Self::TooLarge { .. } => 413,
            Self::Unavailable(_) => 503,
            Self::Timeout { .. } => 504,
            Self::Runtime(e) if caused_by_input(e) => 400,
            Self::Runtime(_) | Self::Panicked(_) => 500,
            Self::Transport { .. } => 502,
            Self::Server { status, .. } => *status,
            Self::Listen { .. } => 500,
        }
    }
}

impl From<ModelError> for ServeError {
    fn from(e: ModelError) -> Self {
        Self::Runtime(e.into())
    }
}

/// Whether a runtime error is the request's fault: inputs that do not fit the model (a shape,
/// a width, an id out of range), not a failure of the server.
fn caused_by_input(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::Model(
            ModelError::Input { .. } | ModelError::Kernel { .. } | ModelError::Tensor(_)
        ) | RuntimeError::SplitOutside { .. }
            | RuntimeError::StageRange { .. }
            | RuntimeError::NotHeld { .. }
    )
}
