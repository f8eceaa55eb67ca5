//! f32 tensors and the CPU kernels every edgerun model runs on.
//!
//! A [`Tensor`] computes in f32 but its bytes may live elsewhere: in a vector it owns, or inside
//! an externally owned [`ByteBuffer`] (an aligned unit buffer, a mapped file) that it borrows
//! without a copy. Storage dtypes f16/bf16 are widened to f32 by [`DType::widen_into`].

pub mod buffer;
pub mod dtype;
pub mod error;
pub mod fixed;
pub mod kernels;
pub mod parallel;
pub mod quant;
pub mod tensor;

pub use buffer::{AlignedBuf, ByteBuffer, FillBuffer};
pub use dtype::DType;
pub use error::{Result, TensorError};
pub use tensor::Tensor;
