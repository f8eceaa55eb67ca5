//! The divider-free shift-and-add softmax in f32: the same steps as `fixed::softmax` (powers
//! of two by Mitchell's approximation, `log2 e` as 1.4375, the division as a subtraction of
//! logarithms) without quantisation, so its error is the approximation's alone.

use super::softmax::for_each_visible_row;

/// `2^u` for `u <= 0` as `(1 + frac(u)) * 2^floor(u)`; the power of two is written straight
/// into the exponent field, as a shifter would apply it.
fn pow2_mitchell(u: f32) -> f32 {
    let int = u.floor();
    let exponent = (int.max(-126.0) as i32 + 127) as u32;
    (1.0 + (u - int)) * f32::from_bits(exponent << 23)
}

/// `log2 s` for normal `s >= 1` as exponent + mantissa fraction (the leading-one detector).
fn log2_mitchell(s: f32) -> f32 {
    let bits = s.to_bits();
    let exponent = (bits >> 23) as i32 - 127;
    exponent as f32 + (bits & 0x7f_ffff) as f32 / (1u32 << 23) as f32
}

/// Shift-softmax of each `row_len` run of `values` in place; -inf entries are masked (0), a
/// fully masked row is zeros.
pub fn shift_softmax_rows(values: &mut [f32], row_len: usize) {
    for_each_visible_row(values, row_len, |row, max| {
        let mut sum = 0.0;
        for v in row.iter_mut() {
            // A padding bias of f32::MIN overflows to -inf here, which masks it like -inf.
            *v = (*v - max) * 1.4375;
            if v.is_finite() {
                sum += pow2_mitchell(*v);
            }
        }
        let log_sum = log2_mitchell(sum);
        for v in row.iter_mut() {
            *v = if v.is_finite() {
                pow2_mitchell((*v - log_sum).min(0.0))
            } else {
                0.0
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_softmax_and_exact_on_uniform_rows() {
        let mut uniform = vec![0.3f32; 8];
        shift_softmax_rows(&mut uniform, 8);
        assert!(uniform.iter().all(|&p| p == 0.125));
        let mut row = vec![0.1f32, -1.0, 2.0, 0.5];
        let mut exact = row.clone();
        crate::kernels::softmax_rows(&mut exact, 4);
        shift_softmax_rows(&mut row, 4);
        for (a, b) in row.iter().zip(&exact) {
            assert!((a - b).abs() < 0.08, "{row:?} vs {exact:?}");
        }
        assert!(row[2] > row[3] && row[3] > row[0] && row[0] > row[1]);
    }
}
