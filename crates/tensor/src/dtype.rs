//! Storage dtypes and their widening to the f32 that every kernel computes in.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::{Result, TensorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// Parses the names used on the command line (`f32`, `f16`, `bf16`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" | "half" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// Decodes little-endian `bytes` of this dtype into f32 values.
    pub fn widen(self, bytes: &[u8]) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; bytes.len() / self.size_bytes()];
        self.widen_into(bytes, &mut out)?;
        Ok(out)
    }

    /// As [`DType::widen`], into `out`, which must hold exactly as many values as `bytes`
    /// encodes: a caller that recycles memory for widened weights fills it in place.
    pub fn widen_into(self, bytes: &[u8], out: &mut [f32]) -> Result<()> {
        if !bytes.len().is_multiple_of(self.size_bytes()) {
            return Err(TensorError::RaggedBytes {
                len: bytes.len(),
                dtype: self.name(),
            });
        }
        if out.len() != bytes.len() / self.size_bytes() {
            return Err(TensorError::Shape {
                op: "widen",
                expected: format!("{} values", bytes.len() / self.size_bytes()),
                got: vec![out.len()],
            });
        }
        match self {
            DType::F32 => bytes
                .chunks_exact(4)
                .zip(out.iter_mut())
                .for_each(|(c, o)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DType::F16 => widen_halves::<f16>(bytes, out, |c| f16::from_le_bytes(c).to_f32()),
            DType::BF16 => widen_halves::<bf16>(bytes, out, |c| bf16::from_le_bytes(c).to_f32()),
        }
        Ok(())
    }

    /// Encodes f32 values as little-endian bytes of this dtype (round to nearest even).
    pub fn narrow_into(self, values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.size_bytes());
        match self {
            DType::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            DType::BF16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
    }
}

/// 16-bit floats to f32. Where the bytes are 2-aligned on a little-endian machine they are
/// the values themselves, and `half`'s slice conversion runs 8 at a time (F16C where the CPU
/// has it); GPT-J's 12 GB of f16 weights went through this one element at a time, which made
/// loading CPU-bound.
fn widen_halves<H>(bytes: &[u8], out: &mut [f32], one: fn([u8; 2]) -> f32)
where
    [H]: HalfFloatSliceExt,
{
    let n = bytes.len() / 2;
    let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<H>()) == 0;
    if cfg!(target_endian = "little") && aligned && std::mem::size_of::<H>() == 2 {
        // SAFETY: H is f16 or bf16, both `repr(transparent)` over u16 (size checked above);
        // the pointer is aligned for H and valid for n * 2 bytes; any bit pattern is a value.
        let halves: &[H] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<H>(), n) };
        halves.convert_to_f32_slice(out);
        return;
    }
    bytes
        .chunks_exact(2)
        .zip(out.iter_mut())
        .for_each(|(c, o)| *o = one([c[0], c[1]]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_representable_values() {
        let values = [0.0f32, 1.0, -2.5, 0.125, 1024.0];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let mut bytes = Vec::new();
            dtype.narrow_into(&values, &mut bytes);
            assert_eq!(bytes.len(), values.len() * dtype.size_bytes());
            assert_eq!(dtype.widen(&bytes).unwrap(), values);
        }
    }

    proptest::proptest! {
        /// The slice conversion (aligned bytes) and the one-at-a-time path (misaligned) agree
        /// on every bit pattern, NaNs as NaNs.
        #[test]
        fn aligned_and_misaligned_halves_widen_alike(bits in proptest::collection::vec(proptest::num::u16::ANY, 0..300)) {
            let aligned: Vec<u16> = bits.iter().map(|b| b.to_le()).collect();
            // SAFETY: u16 has no padding; viewing its bytes is always valid.
            let bytes = unsafe { std::slice::from_raw_parts(aligned.as_ptr().cast::<u8>(), aligned.len() * 2) };
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(bytes);
            for dtype in [DType::F16, DType::BF16] {
                let fast = dtype.widen(bytes).unwrap();
                let slow = dtype.widen(&shifted[1..]).unwrap();
                proptest::prop_assert_eq!(fast.len(), slow.len());
                for (a, b) in fast.iter().zip(&slow) {
                    proptest::prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                }
            }
        }
    }

    #[test]
    fn ragged_bytes_are_an_error() {
        assert!(DType::F32.widen(&[0, 0, 0]).is_err());
        assert!(DType::F16.widen(&[0]).is_err());
    }
}
