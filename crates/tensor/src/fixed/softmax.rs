//! Divider-free softmax in integers (survey 2.2.1): subtract the row maximum, exponentials as
//! powers of two by shift-and-add, the normalising division as a subtraction of logarithms.
//!
//! Per visible entry `x` (data format, `f` fraction bits):
//! 1. `y = x - max <= 0`; `u = y + (y >> 1) - (y >> 4)` approximates `y * log2(e)` (1.4375).
//! 2. `2^u` with `u = I + F` (`I = u >> f`, `0 <= F < 2^f`) is Mitchell's `(1 + F) >> -I`,
//!    kept with [`PROB_BITS`] fraction bits.
//! 3. The row sum `S >= 1` gives `log2 S ~ e + (S - 2^e) / 2^e` (leading one plus mantissa).
//! 4. The output `2^(u - log2 S)` by step 2 again, now in the data format.
//!
//! No divider and no exponential unit: adders, shifters and a leading-one detector. The f32
//! twin in `kernels::shift_softmax` runs the same steps in floating point, which separates the
//! approximation error from the quantisation error.

use super::FixedPoint;

/// Fraction bits of the exponentials summed in step 3 (Q1.15: 1.0 = 2^15).
pub const PROB_BITS: u32 = 15;

/// `2^(value / 2^frac)` for `value <= 0` by Mitchell's approximation, with `out_bits` fraction
/// bits and the shift rounded under `fp`'s rule.
pub fn pow2_neg(fp: &FixedPoint, value: i64, frac: u32, out_bits: u32) -> i64 {
    debug_assert!(value <= 0);
    let int_part = value >> frac;
    let frac_part = value - (int_part << frac);
    let mantissa = if out_bits >= frac {
        (1i64 << out_bits) + (frac_part << (out_bits - frac))
    } else {
        (1i64 << out_bits) + (frac_part >> (frac - out_bits))
    };
    let shift = (-int_part).min(62) as u32;
    fp.shift_round(mantissa, shift)
}

/// `log2` of a positive integer with `frac_in` fraction bits, as leading one + mantissa, with
/// `frac` fraction bits.
pub fn log2_mitchell(sum: i64, frac_in: u32, frac: u32) -> i64 {
    debug_assert!(sum > 0);
    let e = 63 - sum.leading_zeros() as i64;
    let rest = sum - (1i64 << e);
    let mantissa = if e >= frac as i64 {
        rest >> (e - frac as i64)
    } else {
        rest << (frac as i64 - e)
    };
    ((e - frac_in as i64) << frac) + mantissa
}

/// The approximate `y * log2(e)` of step 1 by two shifts and two adds.
#[inline]
pub fn times_log2e(y: i64) -> i64 {
    y + (y >> 1) - (y >> 4)
}

/// Shift-softmax of one row of scores; entries with `visible[j] == false` come out 0. A row
/// with nothing visible is all zeros.
pub fn shift_softmax_row(fp: &FixedPoint, scores: &[i16], visible: &[bool], out: &mut [i16]) {
    let f = fp.frac_bits();
    let Some(max) = scores
        .iter()
        .zip(visible)
        .filter(|(_, &v)| v)
        .map(|(&s, _)| s as i64)
        .max()
    else {
        out.fill(0);
        return;
    };
    let exponents: Vec<i64> = scores
        .iter()
        .map(|&s| times_log2e(s as i64 - max))
        .collect();
    let sum: i64 = exponents
        .iter()
        .zip(visible)
        .filter(|(_, &v)| v)
        .map(|(&u, _)| pow2_neg(fp, u, f, PROB_BITS))
        .sum();
    let log_sum = log2_mitchell(sum.max(1), PROB_BITS, f);
    for ((o, &u), &v) in out.iter_mut().zip(&exponents).zip(visible) {
        *o = if v {
            fp.format.saturate(pow2_neg(fp, (u - log_sum).min(0), f, f))
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_are_exact() {
        let fp = FixedPoint::q8_8();
        assert_eq!(pow2_neg(&fp, 0, 8, 15), 1 << 15);
        assert_eq!(pow2_neg(&fp, -256, 8, 15), 1 << 14);
        assert_eq!(pow2_neg(&fp, -3 * 256, 8, 8), 32);
        assert_eq!(log2_mitchell(1 << 15, 15, 8), 0);
        assert_eq!(log2_mitchell(1 << 17, 15, 8), 2 << 8);
    }

    #[test]
    fn uniform_row_gives_equal_shares_summing_near_one() {
        let fp = FixedPoint::q8_8();
        let scores = [300i16; 4];
        let mut out = [0i16; 4];
        shift_softmax_row(&fp, &scores, &[true; 4], &mut out);
        // Four equal entries: S = 4.0, log2 S = 2 exactly, each output 2^-2.
        assert_eq!(out, [64; 4]);
    }

    #[test]
    fn masked_entries_are_zero_and_empty_rows_vanish() {
        let fp = FixedPoint::q8_8();
        let mut out = [7i16; 3];
        shift_softmax_row(&fp, &[100, 2000, 5], &[true, false, true], &mut out);
        assert_eq!(out[1], 0);
        assert!(out[0] > out[2]);
        shift_softmax_row(&fp, &[1, 2, 3], &[false; 3], &mut out);
        assert_eq!(out, [0; 3]);
    }
}
