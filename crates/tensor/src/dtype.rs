//! Storage dtypes and their widening to the f32 that every kernel computes in.

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
        if !bytes.len().is_multiple_of(self.size_bytes()) {
            return Err(TensorError::RaggedBytes {
                len: bytes.len(),
                dtype: self.name(),
            });
        }
        Ok(match self {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        })
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

    #[test]
    fn ragged_bytes_are_an_error() {
        assert!(DType::F32.widen(&[0, 0, 0]).is_err());
        assert!(DType::F16.widen(&[0]).is_err());
    }
}
