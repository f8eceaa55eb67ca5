//! Normalisations: layer norm over the last dimension, batch norm (eval) over NCHW channels.

use rayon::prelude::*;

use super::wide::widest;
use crate::kernels::Activation;
use crate::{Result, Tensor};

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let d = x.last_dim();
    weight.expect_shape("layer_norm weight", &[d])?;
    bias.expect_shape("layer_norm bias", &[d])?;
    let mut out = x.contiguous().into_values();
    let (w, b) = (weight.values(), bias.values());
    out.par_chunks_mut(d.max(1)).for_each(|row| {
        widest(
            #[inline(always)]
            || normalise_row(row, w, b, eps),
        )
    });
    Tensor::from_vec(x.shape(), out)
}

/// `layer_norm(a + b)`, consuming `a`: a post-norm residual (BERT) in one pass over each row,
/// the row added and normalised while it is in cache. The same bits as [`add`](super::add)
/// then [`layer_norm`].
pub fn add_layer_norm(
    a: Tensor,
    b: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (d, shape) = residual_norm_shapes(&a, b, weight, bias)?;
    let mut out = a.into_values();
    let b = b.contiguous();
    let (w, bi) = (weight.values(), bias.values());
    out.par_chunks_mut(d.max(1))
        .zip(b.values().par_chunks(d.max(1)))
        .for_each(|(row, other)| {
            widest(
                #[inline(always)]
                || {
                    row.iter_mut().zip(other).for_each(|(x, y)| *x += y);
                    normalise_row(row, w, bi, eps)
                },
            )
        });
    Tensor::from_vec(&shape, out)
}

/// `(a + b, layer_norm(a + b))`, consuming `a`: a pre-norm residual (GPT-2, ViT) that keeps
/// the residual stream and feeds the next sublayer its norm, in one pass over each row. The
/// same bits as [`add`](super::add) then [`layer_norm`].
pub fn add_and_layer_norm(
    a: Tensor,
    b: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let (d, shape) = residual_norm_shapes(&a, b, weight, bias)?;
    let mut sum = a.into_values();
    let mut normed = vec![0.0f32; sum.len()];
    let b = b.contiguous();
    let (w, bi) = (weight.values(), bias.values());
    sum.par_chunks_mut(d.max(1))
        .zip(b.values().par_chunks(d.max(1)))
        .zip(normed.par_chunks_mut(d.max(1)))
        .for_each(|((row, other), out)| {
            widest(
                #[inline(always)]
                || {
                    row.iter_mut().zip(other).for_each(|(x, y)| *x += y);
                    out.copy_from_slice(row);
                    normalise_row(out, w, bi, eps)
                },
            )
        });
    Ok((
        Tensor::from_vec(&shape, sum)?,
        Tensor::from_vec(&shape, normed)?,
    ))
}

/// The row width and shape of a residual layer norm, checked.
fn residual_norm_shapes(
    a: &Tensor,
    b: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<(usize, Vec<usize>)> {
    if a.shape() != b.shape() {
        return Err(crate::TensorError::Shape {
            op: "add_layer_norm",
            expected: format!("{:?}", a.shape()),
            got: b.shape().to_vec(),
        });
    }
    let d = a.last_dim();
    weight.expect_shape("layer_norm weight", &[d])?;
    bias.expect_shape("layer_norm bias", &[d])?;
    Ok((d, a.shape().to_vec()))
}

/// Partial sums of a reduction: the sums vectorize only when each lane keeps its own.
const LANES: usize = 8;

/// One row of [`layer_norm`]. Mean and variance are two passes in f64, which match PyTorch's
/// reduction closely on wide rows.
#[inline(always)]
fn normalise_row(row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = row.len() as f64;
    let mean = lane_sum(row, |v| v as f64) / d;
    let var = lane_sum(row, |v| {
        let centred = v as f64 - mean;
        centred * centred
    }) / d;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for ((v, &w), &b) in row.iter_mut().zip(w).zip(b) {
        *v = ((*v as f64 - mean) * inv) as f32 * w + b;
    }
}

/// `sum(term(v))` over `values` in f64, lane by lane then across lanes.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| term(v)).sum();
    for chunk in chunks {
        lanes
            .iter_mut()
            .zip(chunk)
            .for_each(|(lane, &v)| *lane += term(v));
    }
    lanes.iter().sum::<f64>() + rest
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

    /// The multiplier per channel.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// The offset per channel, added after the scale.
    pub fn shift(&self) -> &[f32] {
        &self.shift
    }

    pub fn activation(&self) -> Activation {
        self.activation
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
    fn residual_layer_norms_equal_add_then_layer_norm() {
        use crate::kernels::{add, same_bits};
        let (rows, d) = (37, 70);
        let value = |i: usize, k: usize| ((i * k) % 1999) as f32 / 500.0 - 2.0;
        let tensor = |shape: &[usize], k: usize| {
            let n: usize = shape.iter().product();
            Tensor::from_vec(shape, (0..n).map(|i| value(i, k)).collect()).unwrap()
        };
        let (a, b) = (tensor(&[rows, d], 7919), tensor(&[rows, d], 104_729));
        let (w, bias) = (tensor(&[d], 31), tensor(&[d], 37));
        let sum = add(&a, &b).unwrap();
        let want = layer_norm(&sum, &w, &bias, 1e-5).unwrap();
        let got = add_layer_norm(a.clone(), &b, &w, &bias, 1e-5).unwrap();
        assert!(same_bits(got.values(), want.values()));
        let (kept, normed) = add_and_layer_norm(a.clone(), &b, &w, &bias, 1e-5).unwrap();
        assert!(same_bits(kept.values(), sum.values()));
        assert!(same_bits(normed.values(), want.values()));
        let other = tensor(&[rows, d + 1], 3);
        assert!(add_layer_norm(a.clone(), &other, &w, &bias, 1e-5).is_err());
        assert!(add_and_layer_norm(a, &b, &other, &bias, 1e-5).is_err());
    }

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

    /// The naive twin of a row: sequential sums in f64.
    fn normalise_naive(row: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
        let d = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
        let inv = 1.0 / (var + eps as f64).sqrt();
        row.iter()
            .zip(w.iter().zip(b))
            .map(|(&v, (&w, &b))| ((v as f64 - mean) * inv) as f32 * w + b)
            .collect()
    }

    #[test]
    fn rows_match_the_naive_twin_on_every_vector_width() {
        for d in [1usize, 7, 8, 9, 768, 1027] {
            let row: Vec<f32> = (0..d)
                .map(|i| ((i * 7919) % 2003) as f32 / 100.0 - 9.0)
                .collect();
            let w: Vec<f32> = (0..d).map(|i| 0.5 + (i % 13) as f32 / 10.0).collect();
            let b: Vec<f32> = (0..d).map(|i| (i % 7) as f32 / 10.0 - 0.3).collect();
            let naive = normalise_naive(&row, &w, &b, 1e-12);
            let mut want = row.clone();
            normalise_row(&mut want, &w, &b, 1e-12);
            for (g, n) in want.iter().zip(&naive) {
                assert!(
                    (g - n).abs() <= 1e-5 * n.abs().max(1.0),
                    "d {d}: {g} vs {n}"
                );
            }
            for width in crate::kernels::wide::available() {
                let mut got = row.clone();
                crate::kernels::wide::on(
                    width,
                    #[inline(always)]
                    || normalise_row(&mut got, &w, &b, 1e-12),
                );
                let same = crate::kernels::same_bits(&got, &want);
                assert!(same, "d {d} on {width:?}");
            }
        }
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
