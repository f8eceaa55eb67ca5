//! Normalisations: layer norm over the last dimension, batch norm (eval) over NCHW channels.

use rayon::prelude::*;

use crate::kernels::Activation;
use crate::{Result, Tensor};

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let d = x.last_dim();
    weight.expect_shape("layer_norm weight", &[d])?;
    bias.expect_shape("layer_norm bias", &[d])?;
    let mut out = x.contiguous().into_values();
    let (w, b) = (weight.values(), bias.values());
    out.par_chunks_mut(d).for_each(|row| {
        // Two passes in f64 match PyTorch's reduction closely on wide rows.
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(w).zip(b) {
            *v = ((*v as f64 - mean) * inv) as f32 * w + b;
        }
    });
    Tensor::from_vec(x.shape(), out)
}

/// Eval-mode batch norm and an activation as one per-channel affine map: `activation(v *
/// scale[c] + shift[c])`. A convolution applies it to each band of its output while the band is
/// still in cache (`conv2d_then`); [`batch_norm`] applies it to a whole tensor.
#[derive(Clone, Debug)]
pub struct ChannelAffine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    activation: Activation,
}

impl ChannelAffine {
    /// Batch norm's running statistics and affine parameters for `channels` channels.
    pub fn batch_norm(
        channels: usize,
        (mean, var, weight, bias): (&Tensor, &Tensor, &Tensor, &Tensor),
        eps: f32,
        activation: Activation,
    ) -> Result<Self> {
        for (name, t) in [
            ("running_mean", mean),
            ("running_var", var),
            ("weight", weight),
            ("bias", bias),
        ] {
            t.expect_shape(name, &[channels])?;
        }
        let scale: Vec<f32> = var
            .values()
            .iter()
            .zip(weight.values())
            .map(|(&v, &w)| w / (v + eps).sqrt())
            .collect();
        let shift: Vec<f32> = mean
            .values()
            .iter()
            .zip(bias.values())
            .zip(&scale)
            .map(|((&m, &b), &s)| b - m * s)
            .collect();
        Ok(Self {
            scale,
            shift,
            activation,
        })
    }

    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    /// Maps `values`, all of channel `channel`, in place.
    pub fn apply(&self, channel: usize, values: &mut [f32]) {
        let (s, t) = (self.scale[channel], self.shift[channel]);
        self.activation.map_slice(values, |v| v * s + t);
    }
}

/// Eval-mode batch norm over the channels of an NCHW tensor, then `activation`.
pub fn batch_norm(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
    activation: Activation,
) -> Result<Tensor> {
    let channels = if x.rank() >= 2 { x.shape()[1] } else { 0 };
    let affine = ChannelAffine::batch_norm(channels, (mean, var, weight, bias), eps, activation)?;
    let plane: usize = x.shape()[2..].iter().product();
    let mut out = x.contiguous().into_values();
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, p)| affine.apply(i % channels, p));
    Tensor::from_vec(x.shape(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_normalises_rows() {
        let x = Tensor::from_vec(&[2, 4], vec![1., 2., 3., 4., 10., 10., 10., 10.]).unwrap();
        let w = Tensor::from_vec(&[4], vec![1.; 4]).unwrap();
        let b = Tensor::from_vec(&[4], vec![0.; 4]).unwrap();
        let y = layer_norm(&x, &w, &b, 1e-5).unwrap();
        let row = &y.values()[..4];
        assert!(row.iter().sum::<f32>().abs() < 1e-5);
        assert!((row[3] - 1.341_636).abs() < 1e-4);
        assert!(y.values()[4..].iter().all(|v| v.abs() < 1e-6));
    }

    #[test]
    fn batch_norm_applies_per_channel() {
        let x = Tensor::from_vec(&[1, 2, 1, 2], vec![1., 3., 5., 7.]).unwrap();
        let ones = Tensor::from_vec(&[2], vec![1., 1.]).unwrap();
        let mean = Tensor::from_vec(&[2], vec![1., 5.]).unwrap();
        let zero = Tensor::from_vec(&[2], vec![0., 0.]).unwrap();
        let y = batch_norm(&x, &mean, &ones, &ones, &zero, 0.0, Activation::Identity).unwrap();
        assert_eq!(y.values(), &[0., 2., 0., 2.]);
    }
}
