//! A validated table of the tensors in one safetensors file: names, dtypes, shapes and absolute
//! byte ranges. Validation (header length, JSON, offsets that tile the data exactly) is the
//! `safetensors` crate's; this module records the result and names the file in errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgerun_tensor::DType;
use safetensors::{Dtype, SafeTensors};

use crate::{Result, StoreError};

#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorEntry {
    /// The storage dtype, if edgerun computes with it.
    pub fn float_dtype(&self) -> Option<DType> {
        match self.dtype {
            Dtype::F32 => Some(DType::F32),
            Dtype::F16 => Some(DType::F16),
            Dtype::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct SafetensorsIndex {
    pub path: PathBuf,
    pub tensors: HashMap<String, TensorEntry>,
}

impl SafetensorsIndex {
    /// Validates `bytes` (the whole file) and indexes its tensors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let invalid = |why: String| StoreError::Safetensors {
            path: path.to_path_buf(),
            why,
        };
        if bytes.len() < 8 {
            return Err(invalid(format!(
                "{} bytes is shorter than the 8-byte header length",
                bytes.len()
            )));
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if header_len > (bytes.len() as u64).saturating_sub(8) {
            return Err(invalid(format!(
                "header length {header_len} exceeds the file size {}",
                bytes.len()
            )));
        }
        let data_start = 8 + header_len as usize;
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
        let tensors = parsed
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
                debug_assert!(start >= data_start);
                let entry = TensorEntry {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    start,
                    end: start + view.data().len(),
                };
                (name, entry)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }
}
