//! Quantising the left operand (activations) row by row as a quantised product needs it:
//! signed bytes in `[-127, 127]` with an f32 scale per row (int8) or per row and block of 32
//! steps (q4), and the sum of each row's (or block's) codes, which the kernels need to undo
//! the offset that makes one operand of a byte dot product unsigned.
//!
//! There is one quantiser, shared by every kernel, so they all multiply the same integers.

use super::{QuantFormat, Q4_BLOCK};
use crate::kernels::matmul::MatRef;
use crate::kernels::wide;

/// Activations quantised for a product with a matrix of `format`.
pub struct QuantRows {
    pub format: QuantFormat,
    pub rows: usize,
    /// Codes per row: `k` rounded up as the matrix's codes are, zero past `k`.
    pub stride: usize,
    pub codes: Vec<i8>,
    /// Scales per row: 1 (int8) or one per block (q4).
    pub groups: usize,
    /// `rows x groups` scales. A row holding a NaN or an infinity gets a NaN scale, so its
    /// outputs are NaN as an f32 product's would be, never silently finite.
    pub scales: Vec<f32>,
    /// `rows x groups` sums of the codes.
    pub sums: Vec<i32>,
}

impl QuantRows {
    pub fn row(&self, i: usize) -> &[i8] {
        &self.codes[i * self.stride..][..self.stride]
    }
}

/// Quantises the rows of `a` (`m x k`, any strides) for a product with a `format` matrix.
pub fn quantize_rows(a: MatRef, format: QuantFormat) -> QuantRows {
    let (m, k) = (a.rows, a.cols);
    let stride = format.padded_inner(k);
    let (group, groups) = match format {
        QuantFormat::Int8 => (stride.max(1), 1),
        QuantFormat::Q4 => (Q4_BLOCK, stride / Q4_BLOCK),
    };
    let mut out = QuantRows {
        format,
        rows: m,
        stride,
        codes: vec![0; m * stride],
        groups,
        scales: vec![0.0; m * groups],
        sums: vec![0; m * groups],
    };
    let mut dense = vec![0.0f32; stride];
    for i in 0..m {
        for (s, v) in dense[..k].iter_mut().enumerate() {
            *v = a.data[i * a.row_stride + s * a.col_stride];
        }
        let codes = &mut out.codes[i * stride..][..stride];
        for (g, (values, codes)) in dense.chunks(group).zip(codes.chunks_mut(group)).enumerate() {
            let (scale, sum) = quantize_run(values, codes);
            out.scales[i * groups + g] = scale;
            out.sums[i * groups + g] = sum;
        }
    }
    out
}

/// Quantises `values` into `codes` with one scale: `amax / 127`, codes `round(v * 127 /
/// amax)` (ties to even). Returns the scale and the sum of the codes.
fn quantize_run(values: &[f32], codes: &mut [i8]) -> (f32, i32) {
    wide::widest(
        #[inline(always)]
        || {
            let mut amax = 0.0f32;
            let mut finite = true;
            for v in values {
                amax = amax.max(v.abs());
                finite &= v.is_finite();
            }
            if !finite {
                codes.fill(0);
                return (f32::NAN, 0);
            }
            if amax == 0.0 {
                codes.fill(0);
                return (0.0, 0);
            }
            let inv = 127.0 / amax;
            let mut sum = 0i32;
            for (c, v) in codes.iter_mut().zip(values) {
                let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i32;
                *c = q as i8;
                sum += q;
            }
            (amax / 127.0, sum)
        },
    )
}
