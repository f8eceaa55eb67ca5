//! The arithmetic of 16-bit fixed point: a Q-format for data, an accumulator width, a rounding
//! rule, and the saturating operations every fixed-point kernel and simulator is built from.
//!
//! A raw value `r` in Q`m`.`n` means `r / 2^n`; `m` counts the sign bit, so Q8.8 spans
//! [-128, 128 - 2^-8]. Products of two data values are exact in 32 bits (scale 2^2n) and are
//! summed in an accumulator of 32 or 40 bits that saturates on every addition, so the order of
//! accumulation is part of the semantics: kernels and the systolic simulators both add in
//! ascending `k`. Narrowing an accumulator back to 16 bits shifts right with the rounding rule
//! and then saturates.

use std::fmt;

use crate::{Result, TensorError};

/// Data format: `int_bits` (including the sign) + `frac_bits` <= 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QFormat {
    int_bits: u32,
    frac_bits: u32,
}

impl QFormat {
    pub fn new(int_bits: u32, frac_bits: u32) -> Result<Self> {
        if int_bits == 0 || int_bits + frac_bits > 16 {
            return Err(TensorError::Unsupported(format!(
                "Q{int_bits}.{frac_bits}: a 16-bit format needs 1 to 16 integer bits (sign \
                 included) and integer + fraction bits <= 16"
            )));
        }
        Ok(Self {
            int_bits,
            frac_bits,
        })
    }

    /// Parses `Q8.8` (or `q8.8`, `8.8`).
    pub fn parse(text: &str) -> Result<Self> {
        let body = text.trim().trim_start_matches(['Q', 'q']);
        let parsed = body
            .split_once('.')
            .and_then(|(i, f)| Some((i.parse().ok()?, f.parse().ok()?)));
        match parsed {
            Some((int_bits, frac_bits)) => Self::new(int_bits, frac_bits),
            None => Err(TensorError::Unsupported(format!(
                "`{text}` is not a Q-format; write it as Q<integer bits>.<fraction bits>, e.g. Q8.8"
            ))),
        }
    }

    pub fn int_bits(self) -> u32 {
        self.int_bits
    }

    pub fn frac_bits(self) -> u32 {
        self.frac_bits
    }

    pub fn total_bits(self) -> u32 {
        self.int_bits + self.frac_bits
    }

    pub fn min_raw(self) -> i64 {
        -(1i64 << (self.total_bits() - 1))
    }

    pub fn max_raw(self) -> i64 {
        (1i64 << (self.total_bits() - 1)) - 1
    }

    /// The raw value of 1.0 (it may itself be out of range, as in Q1.15).
    pub fn one(self) -> i64 {
        1i64 << self.frac_bits
    }

    pub fn saturate(self, raw: i64) -> i16 {
        raw.clamp(self.min_raw(), self.max_raw()) as i16
    }

    pub fn to_f32(self, raw: i16) -> f32 {
        raw as f32 / self.one() as f32
    }
}

impl fmt::Display for QFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Q{}.{}", self.int_bits, self.frac_bits)
    }
}

/// Accumulator width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccumulatorBits {
    B32,
    B40,
}

impl AccumulatorBits {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "32" => Ok(Self::B32),
            "40" => Ok(Self::B40),
            other => Err(TensorError::Unsupported(format!(
                "accumulator width `{other}`: choose 32 or 40 bits"
            ))),
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Self::B32 => 32,
            Self::B40 => 40,
        }
    }
}

/// How a right shift or a division drops bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Add half an output LSB, then floor: one adder before the shifter.
    HalfUp,
    /// Floor (an arithmetic shift alone).
    Floor,
}

impl Rounding {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "half-up" | "nearest" => Ok(Self::HalfUp),
            "floor" | "truncate" => Ok(Self::Floor),
            other => Err(TensorError::Unsupported(format!(
                "rounding `{other}`: choose half-up or floor"
            ))),
        }
    }
}

/// One complete fixed-point arithmetic: data format, accumulator, rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPoint {
    pub format: QFormat,
    pub accumulator: AccumulatorBits,
    pub rounding: Rounding,
}

impl FixedPoint {
    /// Q8.8 data, 40-bit accumulators, round half up: the defaults of `--fixed-point`.
    pub fn q8_8() -> Self {
        Self {
            format: QFormat {
                int_bits: 8,
                frac_bits: 8,
            },
            accumulator: AccumulatorBits::B40,
            rounding: Rounding::HalfUp,
        }
    }

    pub fn frac_bits(&self) -> u32 {
        self.format.frac_bits
    }

    fn acc_limits(&self) -> (i64, i64) {
        let bits = self.accumulator.bits();
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    }

    /// Clamps to the accumulator's range.
    pub fn acc_saturate(&self, value: i64) -> i64 {
        let (lo, hi) = self.acc_limits();
        value.clamp(lo, hi)
    }

    /// `acc + value`, saturating at the accumulator width.
    #[inline]
    pub fn acc_add(&self, acc: i64, value: i64) -> i64 {
        let (lo, hi) = self.acc_limits();
        (acc + value).clamp(lo, hi)
    }

    /// One multiply-accumulate: the exact 32-bit product added with saturation.
    #[inline]
    pub fn mac(&self, acc: i64, a: i16, b: i16) -> i64 {
        self.acc_add(acc, a as i64 * b as i64)
    }

    /// `value / 2^shift` under the rounding rule.
    #[inline]
    pub fn shift_round(&self, value: i64, shift: u32) -> i64 {
        if shift == 0 {
            return value;
        }
        let shift = shift.min(62);
        match self.rounding {
            Rounding::HalfUp => (value + (1i64 << (shift - 1))) >> shift,
            Rounding::Floor => value >> shift,
        }
    }

    /// An accumulator shifted right by `shift` and saturated to the data format.
    #[inline]
    pub fn narrow(&self, acc: i64, shift: u32) -> i16 {
        self.format.saturate(self.shift_round(acc, shift))
    }

    /// `num / den` for `den > 0` under the rounding rule (the divider stage).
    pub fn div_round(&self, num: i64, den: i64) -> i64 {
        debug_assert!(den > 0);
        match self.rounding {
            Rounding::HalfUp => (2 * num as i128 + den as i128).div_euclid(2 * den as i128) as i64,
            Rounding::Floor => num.div_euclid(den),
        }
    }

    /// The nearest representable value (under the rounding rule), saturated.
    pub fn quantize(&self, x: f32) -> i16 {
        let scaled = x as f64 * self.format.one() as f64;
        let raw = match self.rounding {
            Rounding::HalfUp => (scaled + 0.5).floor(),
            Rounding::Floor => scaled.floor(),
        };
        if raw.is_nan() {
            return 0;
        }
        self.format
            .saturate(raw.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
    }

    pub fn quantize_all(&self, xs: &[f32]) -> Vec<i16> {
        xs.iter().map(|&x| self.quantize(x)).collect()
    }

    pub fn dequantize_all(&self, raws: &[i16]) -> Vec<f32> {
        raws.iter().map(|&r| self.format.to_f32(r)).collect()
    }
}

impl fmt::Display for FixedPoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let rounding = match self.rounding {
            Rounding::HalfUp => "round half up",
            Rounding::Floor => "round down",
        };
        write!(
            f,
            "{}, {}-bit accumulator, {rounding}",
            self.format,
            self.accumulator.bits()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_formats() {
        let q = QFormat::parse("Q8.8").unwrap();
        assert_eq!((q.int_bits(), q.frac_bits(), q.max_raw()), (8, 8, 32767));
        assert!(QFormat::parse("Q9.8").is_err());
        assert!(QFormat::parse("Q0.16").is_err());
        assert!(QFormat::parse("eight").is_err());
    }

    #[test]
    fn quantize_rounds_and_saturates() {
        let fp = FixedPoint::q8_8();
        assert_eq!(fp.quantize(1.0), 256);
        assert_eq!(fp.quantize(1.5 / 256.0), 2);
        assert_eq!(fp.quantize(-1.5 / 256.0), -1);
        assert_eq!(fp.quantize(1000.0), i16::MAX);
        assert_eq!(fp.quantize(-1000.0), i16::MIN);
        assert_eq!(fp.quantize(f32::NAN), 0);
    }

    #[test]
    fn accumulators_saturate_at_their_width() {
        let mut fp = FixedPoint::q8_8();
        fp.accumulator = AccumulatorBits::B32;
        assert_eq!(fp.acc_add(i32::MAX as i64, 1), i32::MAX as i64);
        fp.accumulator = AccumulatorBits::B40;
        assert_eq!(fp.acc_add(i32::MAX as i64, 1), i32::MAX as i64 + 1);
        assert_eq!(fp.acc_add(-(1 << 39), -1), -(1 << 39));
    }

    #[test]
    fn rounding_division_and_shift_agree() {
        let fp = FixedPoint::q8_8();
        for num in -40i64..40 {
            assert_eq!(fp.div_round(num, 8), fp.shift_round(num, 3), "{num}");
        }
        assert_eq!(fp.div_round(-3, 2), -1);
        assert_eq!(fp.div_round(3, 2), 2);
    }
}
