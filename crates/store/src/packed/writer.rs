//! `edgerun pack`: an HF folder to a packed store. Each stage becomes one unit: its tensors
//! bound exactly as the HF path binds them (so outputs stay bit-identical), converted to the
//! target dtype, laid out 64-byte aligned, the unit padded to 4096 bytes and checksummed.
//! The data file and manifest are written under temporary names and renamed at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use edgerun_models::Layout;
use edgerun_tensor::DType;

use super::manifest::{
    Manifest, TensorEntry, UnitEntry, FORMAT, TENSOR_ALIGN, UNIT_ALIGN, VERSION,
};
use crate::{HfFolder, Result, StoreError};

pub const DATA_FILE: &str = "weights.bin";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Files copied beside the store so `embed` and `--prompt` work on it.
pub const SIDE_FILES: &[&str] = &["tokenizer.json", "modules.json", "1_Pooling/config.json"];

#[derive(Clone, Debug)]
pub struct PackSummary {
    pub units: usize,
    pub data_bytes: u64,
}

/// Packs `folder` into `out_dir`. `dtype` converts every tensor; `None` keeps each tensor's
/// dtype. `progress(done_units, total_units)` is called after each unit.
pub fn pack(
    folder: &HfFolder,
    out_dir: &Path,
    dtype: Option<DType>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PackSummary> {
    let model = folder.model()?;
    std::fs::create_dir_all(out_dir).map_err(|e| StoreError::io(out_dir, e))?;
    let data_path = out_dir.join(DATA_FILE);
    let temp_path = out_dir.join(format!("{DATA_FILE}.tmp"));
    let file = File::create(&temp_path).map_err(|e| StoreError::io(&temp_path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let stages = model.stages();
    let mut units = Vec::with_capacity(stages.len());
    let mut offset = 0u64;
    let mut bytes = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let weights = folder.bind(stage)?;
        bytes.clear();
        let mut tensors = Vec::with_capacity(stage.tensors.len());
        for spec in &stage.tensors {
            let tensor = weights.get(&spec.name)?.contiguous();
            let target = match dtype {
                Some(d) => d,
                None => DType::parse(&folder.dtype(spec)?).unwrap_or(DType::F32),
            };
            bytes.resize(bytes.len().next_multiple_of(TENSOR_ALIGN as usize), 0);
            let start = bytes.len() as u64;
            target.narrow_into(tensor.values(), &mut bytes);
            tensors.push(TensorEntry {
                name: spec.name.clone(),
                dtype: target.name().into(),
                shape: tensor.shape().to_vec(),
                transposed: spec.layout == Layout::Linear,
                offset: start,
                length: bytes.len() as u64 - start,
            });
        }
        bytes.resize(bytes.len().max(1).next_multiple_of(UNIT_ALIGN as usize), 0);
        out.write_all(&bytes)
            .map_err(|e| StoreError::io(&temp_path, e))?;
        units.push(UnitEntry {
            id: stage.id.clone(),
            offset,
            length: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            parameters: stage.parameters() as u64,
            tensors,
        });
        offset += bytes.len() as u64;
        progress(i + 1, stages.len());
    }
    out.flush().map_err(|e| StoreError::io(&temp_path, e))?;
    drop(out);
    std::fs::rename(&temp_path, &data_path).map_err(|e| StoreError::io(&data_path, e))?;

    for side in SIDE_FILES {
        if let Some(content) = folder.read_optional(side)? {
            let dest = out_dir.join(side);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            std::fs::write(&dest, content).map_err(|e| StoreError::io(&dest, e))?;
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        config: serde_json::from_str(folder.config_json()).map_err(|e| StoreError::Json {
            path: folder.dir().join("config.json"),
            why: e.to_string(),
        })?,
        architecture: model.architecture().into(),
        data_file: DATA_FILE.into(),
        data_bytes: offset,
        units,
    };
    let manifest_path = out_dir.join(MANIFEST_FILE);
    let temp = out_dir.join(format!("{MANIFEST_FILE}.tmp"));
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&temp, text).map_err(|e| StoreError::io(&temp, e))?;
    std::fs::rename(&temp, &manifest_path).map_err(|e| StoreError::io(&manifest_path, e))?;
    Ok(PackSummary {
        units: manifest.units.len(),
        data_bytes: offset,
    })
}
