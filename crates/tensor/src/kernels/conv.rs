//! 2-D convolution over NCHW as im2col followed by gemm, per image and group.
//!
//! The im2col buffer is filled a band of output rows at a time, at most [`COLUMN_BUDGET`]
//! elements (plus one output row), and each band is one gemm into its columns of the output.
//! Unbanded, VGG-19's second convolution at 224x224 needed a 116 MB buffer; every model
//! reserves this scratch, and a mix reserves the largest of any model's.

use rayon::prelude::*;

use crate::kernels::matmul::{matmul_strided, MatRef};
use crate::{Result, Tensor, TensorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
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
fn band_rows(k: usize, ow: usize) -> usize {
    (COLUMN_BUDGET / (k * ow).max(1)).max(1)
}

/// The im2col elements a convolution with `k` = input channels (per group) x kernel taps and
/// an `oh` x `ow` output holds at once; what models reserve as conv scratch.
pub fn im2col_elements(k: usize, oh: usize, ow: usize) -> usize {
    k * ow * band_rows(k, ow).min(oh)
}

fn out_extent(input: usize, kernel: usize, p: &Conv2dParams) -> Option<usize> {
    let span = p.dilation * (kernel - 1) + 1;
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
    let x = x.contiguous();
    let weight = weight.contiguous();
    let (xv, wv) = (x.values(), weight.values());
    let k = cg * kh * kw;
    let plane = oh * ow;
    let ocg = oc / p.groups;
    let direct = kh == 1 && kw == 1 && p.stride == 1 && p.padding == 0;
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
            for (oy, line) in (first..first + rows).zip(dst.chunks_exact_mut(ow)) {
                let iy = (oy * p.stride + ki * p.dilation) as isize - p.padding as isize;
                if iy < 0 || iy >= h as isize {
                    line.fill(0.0);
                    continue;
                }
                for (ox, v) in line.iter_mut().enumerate() {
                    let ix = (ox * p.stride + kj * p.dilation) as isize - p.padding as isize;
                    *v = if ix < 0 || ix >= w as isize {
                        0.0
                    } else {
                        src[iy as usize * w + ix as usize]
                    };
                }
            }
        });
    debug_assert_eq!(col.len(), c * kh * kw * rows * ow);
}
