//! Tensors in and out: input files for `run`/`generate`, output files, and a streaming
//! safetensors writer that never holds a whole file in memory (synthesized models reach
//! tens of GB). Every file goes through [`OutputFile`], so a failed run leaves no partial
//! file behind.

use std::io::Write;
use std::path::Path;

use edgerun_models::{IdTensor, Inputs};
use edgerun_tensor::{DType, Tensor};
use safetensors::Dtype;

use crate::output::OutputFile;
use crate::safetensors_index::SafetensorsIndex;
use crate::{Result, StoreError};

/// A tensor to write: f32 activations or int64 ids.
#[derive(Clone)]
pub enum OutputTensor {
    F32(Tensor),
    I64(IdTensor),
}

/// Reads the inputs transformers would take from a safetensors file: `input_ids`,
/// `attention_mask`, `token_type_ids` (int64 or int32) and `pixel_values` (float).
pub fn read_inputs(path: &Path) -> Result<Inputs> {
    let bytes = crate::read_bounded(path, "input tensor file", crate::input::INPUT_LIMIT)?;
    parse_inputs(path, &bytes)
}

/// `read_inputs` on bytes already read; `path` names them in errors.
pub fn parse_inputs(path: &Path, bytes: &[u8]) -> Result<Inputs> {
    let index = SafetensorsIndex::parse(path, bytes)?;
    let ids = |name: &str| -> Result<Option<IdTensor>> {
        let Some(e) = index.tensors.get(name) else {
            return Ok(None);
        };
        let data = &bytes[e.start..e.end];
        let values: Vec<i64> = match e.dtype {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            other => {
                return Err(StoreError::BadTensor {
                    path: path.into(),
                    name: name.into(),
                    why: format!("dtype {other:?}, expected I64 or I32"),
                })
            }
        };
        Ok(Some(IdTensor::new(e.shape.clone(), values)?))
    };
    let pixel_values = match index.tensors.get("pixel_values") {
        None => None,
        Some(e) => {
            let dtype = e.float_dtype().ok_or_else(|| StoreError::BadTensor {
                path: path.into(),
                name: "pixel_values".into(),
                why: format!("dtype {:?}, expected a float type", e.dtype),
            })?;
            Some(Tensor::from_vec(
                &e.shape,
                dtype.widen(&bytes[e.start..e.end])?,
            )?)
        }
    };
    let inputs = Inputs {
        input_ids: ids("input_ids")?,
        attention_mask: ids("attention_mask")?,
        token_type_ids: ids("token_type_ids")?,
        pixel_values,
        pixel_shape: None,
    };
    if inputs.input_ids.is_none() && inputs.pixel_values.is_none() {
        let mut names: Vec<_> = index.tensors.keys().cloned().collect();
        names.sort();
        return Err(StoreError::BadTensor {
            path: path.into(),
            name: "input_ids / pixel_values".into(),
            why: format!("neither is present (the file holds {names:?})"),
        });
    }
    Ok(inputs)
}

/// One tensor of a file being written: its name, dtype tag and shape.
#[derive(Clone, Debug)]
pub struct EntryHeader {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
}

impl EntryHeader {
    fn bytes(&self) -> usize {
        let size = match self.dtype {
            "F32" | "I32" => 4,
            "F16" | "BF16" => 2,
            "I64" => 8,
            other => unreachable!("writer dtype {other}"),
        };
        self.shape.iter().product::<usize>() * size
    }
}

pub(crate) fn dtype_tag(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
    }
}

/// Writes a safetensors file tensor by tensor, in the order of the header it was created with.
pub struct SafetensorsWriter {
    out: OutputFile,
    pending: std::vec::IntoIter<EntryHeader>,
}

impl SafetensorsWriter {
    pub fn create(
        path: &Path,
        entries: Vec<EntryHeader>,
        metadata: &[(&str, &str)],
    ) -> Result<Self> {
        let mut header = serde_json::Map::new();
        if !metadata.is_empty() {
            let meta = metadata
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        }
        let mut offset = 0usize;
        for e in &entries {
            let end = offset + e.bytes();
            header.insert(e.name.clone(), serde_json::json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}));
            offset = end;
        }
        let mut json = serde_json::Value::Object(header).to_string().into_bytes();
        // The data section starts 8-aligned, as the reference writer pads it.
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut out = OutputFile::create(path)?;
        let io = |e| StoreError::io(path, e);
        out.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&json).map_err(io)?;
        Ok(Self {
            out,
            pending: entries.into_iter(),
        })
    }

    /// Writes the next tensor's bytes; they must match its header entry in size.
    pub fn write_next(&mut self, bytes: &[u8]) -> Result<()> {
        let entry = self
            .pending
            .next()
            .expect("more tensors written than declared");
        assert_eq!(
            bytes.len(),
            entry.bytes(),
            "tensor {} size differs from its header",
            entry.name
        );
        let out = &mut self.out;
        out.write_all(bytes)
            .map_err(|e| StoreError::io(out.target().to_path_buf(), e))
    }

    /// Moves the complete file into place; dropping the writer instead discards it.
    pub fn finish(mut self) -> Result<()> {
        assert!(
            self.pending.next().is_none(),
            "fewer tensors written than declared"
        );
        self.out.commit()
    }
}

/// Writes named tensors (f32 as F32, ids as I64) to `path`.
pub fn write_tensors(path: &Path, tensors: &[(String, OutputTensor)]) -> Result<()> {
    let entries = tensors
        .iter()
        .map(|(name, t)| match t {
            OutputTensor::F32(t) => EntryHeader {
                name: name.clone(),
                dtype: "F32",
                shape: t.shape().to_vec(),
            },
            OutputTensor::I64(t) => EntryHeader {
                name: name.clone(),
                dtype: "I64",
                shape: t.shape.clone(),
            },
        })
        .collect();
    let mut writer = SafetensorsWriter::create(path, entries, &[("format", "pt")])?;
    for (_, t) in tensors {
        let bytes: Vec<u8> = match t {
            OutputTensor::F32(t) => t
                .contiguous()
                .values()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            OutputTensor::I64(t) => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        writer.write_next(&bytes)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back() {
        let dir = std::env::temp_dir().join(format!("edgerun-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        let ids = IdTensor::new(vec![1, 3], vec![5, 6, 7]).unwrap();
        let pixels = Tensor::from_vec(&[1, 1, 1, 2], vec![0.5, -1.0]).unwrap();
        write_tensors(
            &path,
            &[
                ("input_ids".into(), OutputTensor::I64(ids.clone())),
                ("pixel_values".into(), OutputTensor::F32(pixels)),
            ],
        )
        .unwrap();
        let inputs = read_inputs(&path).unwrap();
        assert_eq!(inputs.input_ids.unwrap(), ids);
        assert_eq!(inputs.pixel_values.unwrap().values(), &[0.5, -1.0]);
        assert!(!dir.join("x.safetensors.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
