//! Quantising the left operand (activations) row by row as a quantised product needs it:
//! signed bytes in `[-127, 127]` with an f32 scale per row (int8) or per row and block of 32
//! steps (q4), and the sum of each row's (or block's) codes, which the kernels need to undo
//! the offset that makes one operand of a byte dot product unsigned.
//!
//! There is one quantiser, shared by every kernel, so they all multiply the same integers.

use rayon::prelude::*;

use super::{QuantFormat, Q4_BLOCK};
use crate::kernels::matmul::MatRef;

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

/// Values of input below which rows are quantised on one thread.
const PARALLEL_FROM: usize = 1 << 16;

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
    let row = |i: usize, codes: &mut [i8], scales: &mut [f32], sums: &mut [i32]| {
        let mut dense = Vec::new();
        let values = if a.col_stride == 1 {
            &a.data[i * a.row_stride..][..k]
        } else {
            dense.extend((0..k).map(|s| a.data[i * a.row_stride + s * a.col_stride]));
            &dense[..]
        };
        for (g, codes) in codes.chunks_mut(group).enumerate() {
            let start = (g * group).min(k);
            let run = &values[start..(start + group).min(k)];
            (scales[g], sums[g]) = quantize_run(run, codes);
        }
    };
    // Rows are shared out only in runs of at least PARALLEL_FROM values: a short input (a
    // decoded token) stays on the calling thread.
    let (stride, groups) = (stride.max(1), groups.max(1));
    out.codes
        .par_chunks_mut(stride)
        .zip(out.scales.par_chunks_mut(groups))
        .zip(out.sums.par_chunks_mut(groups))
        .enumerate()
        .with_min_len(PARALLEL_FROM.div_ceil(k.max(1)))
        .for_each(|(i, ((codes, scales), sums))| row(i, codes, scales, sums));
    out
}

/// Quantises `values` into the first `values.len()` of `codes` (the rest stay zero) with one
/// scale: `amax / 127`, codes `round(v * 127 / amax)` (ties to even). Returns the scale and the
/// sum of the codes. A run holding a NaN or an infinity gets a NaN scale and zero codes.
pub(super) fn quantize_run(values: &[f32], codes: &mut [i8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static WIDE: OnceLock<Option<RunQuantizer>> = OnceLock::new();
        if let Some(quantizer) = WIDE.get_or_init(x86::best) {
            // SAFETY: `best` chose a quantizer whose features this CPU has.
            return unsafe { quantizer(values, codes) };
        }
    }
    quantize_run_scalar(values, codes)
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) type RunQuantizer = unsafe fn(&[f32], &mut [i8]) -> (f32, i32);

/// Every vector quantizer this CPU runs (for the tests, which hold each to the scalar one).
#[cfg(test)]
pub(super) fn vector_quantizers() -> Vec<RunQuantizer> {
    #[cfg(target_arch = "x86_64")]
    return x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// The twin of the vector quantizers, and the path on other CPUs.
pub(super) fn quantize_run_scalar(values: &[f32], codes: &mut [i8]) -> (f32, i32) {
    let mut amax = 0.0f32;
    // Zero times every value: NaN if any is NaN or infinite.
    let mut poison = 0.0f32;
    for v in values {
        let a = v.abs();
        amax = if a > amax { a } else { amax };
        poison += v * 0.0;
    }
    if poison.is_nan() {
        return (f32::NAN, 0);
    }
    if amax == 0.0 {
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
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::RunQuantizer;

    pub(super) fn best() -> Option<RunQuantizer> {
        available().first().copied()
    }

    /// Every vector quantizer this CPU runs, fastest first.
    pub(super) fn available() -> Vec<RunQuantizer> {
        let mut found: Vec<RunQuantizer> = Vec::new();
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            found.push(avx512);
        }
        if std::is_x86_feature_detected!("avx2") {
            found.push(avx2);
        }
        found
    }

    /// The AVX2 form: 32 values a step, the four vectors of codes narrowed with two packs and
    /// put back in order with one permute; the tail as the scalar code does it.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(values: &[f32], codes: &mut [i8]) -> (f32, i32) {
        let n = values.len();
        let whole = n - n % 32;
        let sign = _mm256_set1_ps(-0.0);
        let zero = _mm256_setzero_ps();
        let mut amax = _mm256_setzero_ps();
        let mut poison = _mm256_setzero_ps();
        for i in (0..n - n % 8).step_by(8) {
            // SAFETY: `i + 8 <= n`.
            let v = unsafe { _mm256_loadu_ps(values.as_ptr().add(i)) };
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
            poison = _mm256_add_ps(poison, _mm256_mul_ps(v, zero));
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), amax) };
        let mut peak = lanes.iter().fold(0.0f32, |m, &a| if a > m { a } else { m });
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), poison) };
        let mut poisoned = lanes.iter().any(|p| p.is_nan());
        for v in &values[n - n % 8..] {
            let a = v.abs();
            peak = if a > peak { a } else { peak };
            poisoned |= (v * 0.0).is_nan();
        }
        if poisoned {
            return (f32::NAN, 0);
        }
        if peak == 0.0 {
            return (0.0, 0);
        }
        let scalar_inv = 127.0 / peak;
        let inv = _mm256_set1_ps(scalar_inv);
        let (low, high) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut sum = _mm256_setzero_si256();
        for i in (0..whole).step_by(32) {
            // SAFETY: `i + 32 <= n <= codes.len()`.
            unsafe {
                let q: [__m256i; 4] = std::array::from_fn(|j| {
                    let v = _mm256_loadu_ps(values.as_ptr().add(i + 8 * j));
                    let x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, inv), low), high);
                    _mm256_cvtps_epi32(x)
                });
                for v in &q {
                    sum = _mm256_add_epi32(sum, *v);
                }
                let words = _mm256_packs_epi16(
                    _mm256_packs_epi32(q[0], q[1]),
                    _mm256_packs_epi32(q[2], q[3]),
                );
                let bytes = _mm256_permutevar8x32_epi32(words, order);
                _mm256_storeu_si256(codes.as_mut_ptr().add(i).cast(), bytes);
            }
        }
        let mut sums = [0i32; 8];
        // SAFETY: `sums` holds 8 integers.
        unsafe { _mm256_storeu_si256(sums.as_mut_ptr().cast(), sum) };
        let mut total: i32 = sums.iter().sum();
        for (c, v) in codes[whole..n].iter_mut().zip(&values[whole..]) {
            let q = (v * scalar_inv).round_ties_even().clamp(-127.0, 127.0) as i32;
            *c = q as i8;
            total += q;
        }
        (peak / 127.0, total)
    }

    /// Rounds with the current MXCSR mode (to nearest, ties to even: Rust never changes it)
    /// after clamping, which equals clamping after rounding at the integer bounds.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn avx512(values: &[f32], codes: &mut [i8]) -> (f32, i32) {
        let n = values.len();
        let tail = |i: usize| -> __mmask16 { ((1u32 << (n - i).min(16)) - 1) as __mmask16 };
        let mut amax = _mm512_setzero_ps();
        let mut poison = _mm512_setzero_ps();
        let zero = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            // SAFETY: the mask keeps the load inside `values`.
            let v = unsafe { _mm512_maskz_loadu_ps(tail(i), values.as_ptr().add(i)) };
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
            poison = _mm512_add_ps(poison, _mm512_mul_ps(v, zero));
        }
        let poisoned = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(poison, poison) != 0;
        if poisoned {
            return (f32::NAN, 0);
        }
        let amax = _mm512_reduce_max_ps(amax);
        if amax == 0.0 {
            return (0.0, 0);
        }
        let inv = _mm512_set1_ps(127.0 / amax);
        let (low, high) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
        let mut sum = _mm512_setzero_si512();
        for i in (0..n).step_by(16) {
            let mask = tail(i);
            // SAFETY: the mask keeps the load inside `values` and the store inside `codes`,
            // which is at least as long.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, values.as_ptr().add(i));
                let x = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), low), high);
                let q = _mm512_cvtps_epi32(x);
                sum = _mm512_add_epi32(sum, q);
                _mm512_mask_cvtepi32_storeu_epi8(codes.as_mut_ptr().add(i).cast(), mask, q);
            }
        }
        (amax / 127.0, _mm512_reduce_add_epi32(sum))
    }
}
