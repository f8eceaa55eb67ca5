//! Element-wise arithmetic between tensors of one shape (residual connections).

use rayon::prelude::*;

use super::wide::widest;
use crate::kernels::Activation;
use crate::{Result, Tensor, TensorError};

/// `a + b` for tensors of identical shape.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape(a, b)?;
    let mut out = a.contiguous().into_values();
    let b = b.contiguous();
    widest(
        #[inline(always)]
        || out.iter_mut().zip(b.values()).for_each(|(x, y)| *x += y),
    );
    Tensor::from_vec(a.shape(), out)
}

/// `activation(a + b)`, consuming `a` (its storage becomes the result when nobody else holds
/// it): a residual connection and its activation in one pass, the same values as [`add`] then
/// the activation.
pub fn add_then(a: Tensor, b: &Tensor, activation: Activation) -> Result<Tensor> {
    same_shape(&a, b)?;
    const CHUNK: usize = 1 << 14;
    let shape = a.shape().to_vec();
    let mut out = a.into_values();
    let b = b.contiguous();
    out.par_chunks_mut(CHUNK)
        .zip(b.values().par_chunks(CHUNK))
        .for_each(|(x, y)| {
            // Two passes over a chunk that stays in cache, each a loop that vectorizes.
            widest(
                #[inline(always)]
                || x.iter_mut().zip(y).for_each(|(x, y)| *x += y),
            );
            activation.apply_slice(x);
        });
    Tensor::from_vec(&shape, out)
}

fn same_shape(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(TensorError::Shape {
            op: "add",
            expected: format!("{:?}", a.shape()),
            got: b.shape().to_vec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_equals_add_and_the_activation() {
        let n = 40_000; // more than one parallel chunk
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 2001) as f32 / 700.0 - 1.4)
            .collect();
        let (a, b) = (
            Tensor::from_vec(&[2, n / 2], a).unwrap(),
            Tensor::from_vec(&[2, n / 2], b).unwrap(),
        );
        for activation in [Activation::Relu, Activation::Identity, Activation::GeluErf] {
            let mut want = add(&a, &b).unwrap().into_values();
            activation.apply_in_place(&mut want);
            let got = add_then(a.clone(), &b, activation).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got.values()), bits(&want), "{activation:?}");
        }
        let other = Tensor::from_vec(&[n], vec![0.0; n]).unwrap();
        assert!(add_then(a, &other, Activation::Relu).is_err());
    }
}
