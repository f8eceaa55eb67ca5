//! `edgerun pack`: an HF folder to a packed store. Each stage becomes one unit: its tensors
//! bound exactly as the HF path binds them (so outputs stay bit-identical), converted to the
//! target dtype, laid out 64-byte aligned, the unit padded to 4096 bytes and checksummed.
//!
//! A store is only ever the whole of one pack: a lock file serialises packs into one folder,
//! the old manifest is removed before the new data file is renamed into place, and the new
//! manifest (with its own checksum) is renamed in last. An interrupted pack leaves a folder
//! without a manifest, which no reader takes for a store.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use edgerun_models::Layout;
use edgerun_tensor::DType;

use super::manifest::{
    Manifest, TensorEntry, UnitEntry, FORMAT, TENSOR_ALIGN, UNIT_ALIGN, VERSION,
};
use crate::output::{sync_dir, write_file, OutputFile};
use crate::{HfFolder, Result, StoreError};

pub const DATA_FILE: &str = "weights.bin";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Held (flock) by the pack writing a folder.
pub const LOCK_FILE: &str = ".edgerun-pack.lock";
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
    refuse_source_folder(folder.dir(), out_dir)?;
    let _lock = lock(out_dir)?;
    let data_path = out_dir.join(DATA_FILE);
    let mut out = OutputFile::create(&data_path)?;
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
                dtype: target,
                shape: tensor.shape().to_vec(),
                transposed: spec.layout == Layout::Linear,
                offset: start,
                length: bytes.len() as u64 - start,
            });
        }
        bytes.resize(bytes.len().max(1).next_multiple_of(UNIT_ALIGN as usize), 0);
        out.write_all(&bytes)
            .map_err(|e| StoreError::io(&data_path, e))?;
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
    let manifest_path = out_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => sync_dir(out_dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&manifest_path, e)),
    }
    out.commit()?;

    for side in SIDE_FILES {
        if let Some(content) = folder.read_optional(side)? {
            let dest = out_dir.join(side);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
            }
            write_file(&dest, &content)?;
        }
    }
    let mut manifest = Manifest {
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
        checksum: 0,
    };
    manifest.checksum = manifest.compute_checksum();
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    write_file(&manifest_path, text.as_bytes())?;
    Ok(PackSummary {
        units: manifest.units.len(),
        data_bytes: offset,
    })
}

/// Refuses to pack a folder into itself: the store's files would replace or sit among the
/// checkpoint's own.
fn refuse_source_folder(source: &Path, out_dir: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| StoreError::io(p, e));
    if canonical(source)? == canonical(out_dir)? {
        return Err(StoreError::OutputClash {
            path: out_dir.to_path_buf(),
            flag: "OUT".into(),
            other: "the model folder being packed".into(),
        });
    }
    Ok(())
}

/// Held while a pack writes `dir`; released when dropped (the file itself stays, since
/// removing a lock file races with the next pack opening it).
struct PackLock {
    _file: File,
}

fn lock(dir: &Path) -> Result<PackLock> {
    let path: PathBuf = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(StoreError::Locked {
                path: dir.to_path_buf(),
                lock: path,
            });
        }
        return Err(StoreError::io(&path, err));
    }
    Ok(PackLock { _file: file })
}
