//! 16-bit fixed point: the format and its saturating arithmetic, and the fixed-point kernels
//! (matmul, shift-and-add softmax, Taylor attention) whose semantics the accelerator
//! simulators in `edgerun-accel` reproduce bit for bit.

mod format;
mod matmul;
pub mod softmax;
pub mod taylor;

pub use format::{AccumulatorBits, FixedPoint, QFormat, Rounding};
pub use matmul::{matmul, matmul_acc, transpose};
pub use softmax::shift_softmax_row;
pub use taylor::{taylor_head, HeadOperands, TaylorEngine};
