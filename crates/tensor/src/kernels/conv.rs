//! 2-D convolution over NCHW as im2col followed by gemm, per image and group.
//!
//! The im2col buffer is filled a band of output rows at a time, at most [`COLUMN_BUDGET`]
//! elements (plus one output row), and each band is one gemm into its columns of the output.
//! Unbanded, VGG-19's second convolution at 224x224 needed a 116 MB buffer; every model
//! reserves this scratch, and a mix reserves the largest of any model's.

use rayon::prelude::*;

use crate::kernels::matmul::{matmul_strided, MatRef};
use crate::kernels::norm::ChannelAffine;
use crate::{Result, Tensor, TensorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2dParams {
    /// Whether a `kh` x `kw` kernel with these parameters reads each input pixel as it is: a
    /// 1x1 kernel at stride 1 without padding, whose product needs no im2col.
    pub fn is_pointwise(&self, kh: usize, kw: usize) -> bool {
        kh == 1 && kw == 1 && self.stride == 1 && self.padding == 0
    }
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Elements of im2col buffer a convolution fills at once (16 MiB of f32).
pub const COLUMN_BUDGET: usize = 4 << 20;

/// Output rows per band for `k` = channels x kernel taps and `ow` output columns.
pub(crate) fn band_rows(k: usize, ow: usize) -> usize {
    (COLUMN_BUDGET / (k * ow).max(1)).max(1)
}

/// The im2col elements a convolution with `k` = input channels (per group) x kernel taps and
/// an `oh` x `ow` output holds at once; what models reserve as conv scratch.
pub fn im2col_elements(k: usize, oh: usize, ow: usize) -> usize {
    k * ow * band_rows(k, ow).min(oh)
}

pub(crate) fn out_extent(input: usize, kernel: usize, p: &Conv2dParams) -> Option<usize> {
    // A kernel of no taps has no output (and `kernel - 1` would wrap).
    let span = p.dilation * kernel.checked_sub(1)? + 1;
    (input + 2 * p.padding)
        .checked_sub(span)
        .map(|r| r / p.stride + 1)
}

/// `x [n, c, h, w]` convolved with `weight [oc, c / groups, kh, kw]`, plus `bias [oc]`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d_then(x, weight, bias, p, None)
}

/// [`conv2d`], then `after` (batch norm and an activation) on each band of output rows as soon
/// as the band is computed, while it is still in cache: the same values as a separate pass.
pub fn conv2d_then(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    after: Option<&ChannelAffine>,
) -> Result<Tensor> {
    let shape_error = |expected: String| TensorError::Shape {
        op: "conv2d",
        expected,
        got: x.shape().to_vec(),
    };
    if x.rank() != 4 || weight.rank() != 4 || p.groups == 0 || p.stride == 0 {
        return Err(shape_error(format!(
            "NCHW input for weight {:?}",
            weight.shape()
        )));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oc, cg, kh, kw) = (
        weight.shape()[0],
        weight.shape()[1],
        weight.shape()[2],
        weight.shape()[3],
    );
    if c != cg * p.groups || oc % p.groups != 0 {
        return Err(shape_error(format!(
            "{} input channels for weight {:?} in {} groups",
            cg * p.groups,
            weight.shape(),
            p.groups
        )));
    }
    let (Some(oh), Some(ow)) = (out_extent(h, kh, &p), out_extent(w, kw, &p)) else {
        return Err(shape_error(format!("an input at least {kh}x{kw}")));
    };
    if let Some(b) = bias {
        b.expect_shape("conv2d bias", &[oc])?;
    }
    if let Some(after) = after.filter(|a| a.channels() != oc) {
        return Err(shape_error(format!(
            "{} output channels for a batch norm of {}",
            oc,
            after.channels()
        )));
    }
    let x = x.contiguous();
    let weight = weight.contiguous();
    let (xv, wv) = (x.values(), weight.values());
    let k = cg * kh * kw;
    let plane = oh * ow;
    let ocg = oc / p.groups;
    let direct = p.is_pointwise(kh, kw);
    let mut out = vec![0.0f32; n * oc * plane];
    let band = if direct { oh } else { band_rows(k, ow).min(oh) };
    let mut col = if direct {
        Vec::new()
    } else {
        vec![0.0f32; k * band * ow]
    };
    for img in 0..n {
        for g in 0..p.groups {
            let input = &xv[(img * c + g * cg) * h * w..][..cg * h * w];
            let dst = &mut out[(img * oc + g * ocg) * plane..][..ocg * plane];
            if let Some(b) = bias {
                for (o, row) in dst.chunks_exact_mut(plane).enumerate() {
                    row.fill(b.values()[g * ocg + o]);
                }
            }
            let lhs = MatRef::row_major(&wv[g * ocg * k..][..ocg * k], ocg, k);
            for first in (0..oh).step_by(band) {
                let rows = band.min(oh - first);
                let columns = rows * ow;
                let rhs: &[f32] = if direct {
                    input
                } else {
                    let col = &mut col[..k * columns];
                    im2col(input, col, (cg, h, w), (kh, kw), (first, rows, oh, ow), &p);
                    col
                };
                matmul_strided(
                    &mut dst[first * ow..],
                    plane,
                    lhs,
                    MatRef::row_major(rhs, k, columns),
                    bias.is_some(),
                );
                if let Some(after) = after {
                    dst.par_chunks_exact_mut(plane)
                        .enumerate()
                        .for_each(|(o, row)| {
                            after.apply(g * ocg + o, &mut row[first * ow..][..columns])
                        });
                }
            }
        }
    }
    Tensor::from_vec(&[n, oc, oh, ow], out)
}

/// Fills `col` (`k` rows of `rows * ow`) for output rows `first..first + rows`.
fn im2col(
    input: &[f32],
    col: &mut [f32],
    (c, h, w): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (first, rows, oh, ow): (usize, usize, usize, usize),
    p: &Conv2dParams,
) {
    debug_assert!(first + rows <= oh);
    col.par_chunks_mut(rows * ow)
        .enumerate()
        .for_each(|(row, dst)| {
            let (ch, ki, kj) = (row / (kh * kw), (row / kw) % kh, row % kw);
            let src = &input[ch * h * w..][..h * w];
            // Output columns whose input column lies inside the image: one range per kernel
            // column, found once instead of tested per element.
            let offset = (kj * p.dilation) as isize - p.padding as isize;
            let (lo, hi) = inside(offset, p.stride, w, ow);
            for (oy, line) in (first..first + rows).zip(dst.chunks_exact_mut(ow)) {
                let iy = (oy * p.stride + ki * p.dilation) as isize - p.padding as isize;
                if iy < 0 || iy >= h as isize {
                    line.fill(0.0);
                    continue;
                }
                let image_row = &src[iy as usize * w..][..w];
                line[..lo].fill(0.0);
                line[hi..].fill(0.0);
                if lo == hi {
                    continue;
                }
                let start = (lo as isize * p.stride as isize + offset) as usize;
                if p.stride == 1 {
                    line[lo..hi].copy_from_slice(&image_row[start..start + (hi - lo)]);
                } else {
                    let taken = image_row[start..].iter().step_by(p.stride);
                    line[lo..hi]
                        .iter_mut()
                        .zip(taken)
                        .for_each(|(v, &x)| *v = x);
                }
            }
        });
    debug_assert_eq!(col.len(), c * kh * kw * rows * ow);
}

/// The output columns `lo..hi` (of `ow`) whose input column `ox * stride + offset` lies in
/// `0..w`.
fn inside(offset: isize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        offset.unsigned_abs().div_ceil(stride)
    }
    .min(ow);
    let room = w as isize - offset;
    let hi = if room <= 0 {
        0
    } else {
        (room as usize).div_ceil(stride)
    };
    (lo, hi.clamp(lo, ow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scalar twin: every element tested against the image bounds.
    fn im2col_naive(
        input: &[f32],
        (c, h, w): (usize, usize, usize),
        (kh, kw): (usize, usize),
        (first, rows, ow): (usize, usize, usize),
        p: &Conv2dParams,
    ) -> Vec<f32> {
        let mut col = Vec::with_capacity(c * kh * kw * rows * ow);
        for ch in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    for oy in first..first + rows {
                        for ox in 0..ow {
                            let iy =
                                (oy * p.stride + ki * p.dilation) as isize - p.padding as isize;
                            let ix =
                                (ox * p.stride + kj * p.dilation) as isize - p.padding as isize;
                            let outside = iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize;
                            col.push(if outside {
                                0.0
                            } else {
                                input[(ch * h + iy as usize) * w + ix as usize]
                            });
                        }
                    }
                }
            }
        }
        col
    }

    proptest! {
        /// Batch norm and activation applied band by band inside the convolution give the
        /// same bits as a separate pass over its output.
        #[test]
        fn conv_then_batch_norm_equals_the_two_passes(
            c in 1usize..4, oc in 1usize..5, h in 1usize..10, kernel in 1usize..4,
            stride in 1usize..3, padding in 0usize..2, relu in any::<bool>(), seed in any::<u16>(),
        ) {
            use crate::kernels::{batch_norm, Activation, ChannelAffine};
            let p = Conv2dParams { stride, padding, dilation: 1, groups: 1 };
            prop_assume!(out_extent(h, kernel, &p).is_some());
            let value = |i: usize| ((i * 7919 + seed as usize) % 201) as f32 / 100.0 - 1.0;
            let tensor = |shape: &[usize], at: usize| {
                let n: usize = shape.iter().product();
                Tensor::from_vec(shape, (0..n).map(|i| value(i + at)).collect()).unwrap()
            };
            let x = tensor(&[1, c, h, h], 0);
            let w = tensor(&[oc, c, kernel, kernel], 1000);
            let (mean, weight, bias) = (tensor(&[oc], 2000), tensor(&[oc], 3000), tensor(&[oc], 4000));
            let var = Tensor::from_vec(&[oc], (0..oc).map(|i| 0.5 + value(i).abs()).collect()).unwrap();
            let activation = if relu { Activation::Relu } else { Activation::Identity };
            let two_passes = batch_norm(&conv2d(&x, &w, None, p).unwrap(), &mean, &var, &weight, &bias, 1e-5, activation).unwrap();
            let after = ChannelAffine::batch_norm(oc, (&mean, &var, &weight, &bias), 1e-5, activation).unwrap();
            let fused = conv2d_then(&x, &w, None, p, Some(&after)).unwrap();
            let bits = |t: &Tensor| t.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&fused), bits(&two_passes));
        }

        #[test]
        fn im2col_equals_its_scalar_twin(
            c in 1usize..4, h in 1usize..12, w in 1usize..12, kh in 1usize..5, kw in 1usize..5,
            stride in 1usize..5, padding in 0usize..5, dilation in 1usize..4, split in 0usize..4,
        ) {
            let p = Conv2dParams { stride, padding, dilation, groups: 1 };
            let (Some(oh), Some(ow)) = (out_extent(h, kh, &p), out_extent(w, kw, &p)) else {
                return Ok(());
            };
            let input: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let first = split.min(oh - 1);
            let rows = oh - first;
            let mut col = vec![f32::NAN; c * kh * kw * rows * ow];
            im2col(&input, &mut col, (c, h, w), (kh, kw), (first, rows, oh, ow), &p);
            let want = im2col_naive(&input, (c, h, w), (kh, kw), (first, rows, ow), &p);
            prop_assert_eq!(col, want);
        }
    }
}
