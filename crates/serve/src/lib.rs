//! edgerun on the network: the Open Inference Protocol v2 (the REST API of KServe and NVIDIA
//! Triton) served from edgerun sessions, a client for it, and split inference that runs a
//! model's first stages here and the rest on a server, the boundary compressed on the way.

pub mod boundary;
pub mod client;
pub mod compress;
pub mod error;
pub mod protocol;
pub mod server;
pub mod split;
pub mod wire;

pub use compress::{Compression, Rest};
pub use error::{Result, ServeError};
pub use wire::{DataType, WireTensor};
