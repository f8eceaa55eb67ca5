//! Element-wise arithmetic between tensors of one shape (residual connections).

use crate::{Result, Tensor, TensorError};

/// `a + b` for tensors of identical shape.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(TensorError::Shape {
            op: "add",
            expected: format!("{:?}", a.shape()),
            got: b.shape().to_vec(),
        });
    }
    let mut out = a.contiguous().into_values();
    let b = b.contiguous();
    out.iter_mut().zip(b.values()).for_each(|(x, y)| *x += y);
    Tensor::from_vec(a.shape(), out)
}
