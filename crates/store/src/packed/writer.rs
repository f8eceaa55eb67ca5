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

use edgerun_tensor::kernels::{self, MatRef};
use edgerun_tensor::quant::{self, QuantFormat};

use super::manifest::{
    Manifest, QuantEntry, StoredType, TensorEntry, UnitEntry, FORMAT, TENSOR_ALIGN, UNIT_ALIGN,
    VERSION,
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

/// What a pack converts tensors to.
#[derive(Clone, Debug, Default)]
pub struct PackOptions {
    /// The float dtype of every tensor not quantised; `None` keeps each tensor's own.
    pub dtype: Option<DType>,
    /// Quantise matrix weights (Linear, Conv1D, convolutions) to this format.
    pub quant: Option<QuantFormat>,
    /// Matrix weights whose names match one of these patterns (`*` matches any run of
    /// characters) stay in f16 instead of being quantised.
    pub keep: Vec<String>,
}

/// Packs `folder` into `out_dir`. `dtype` converts every tensor; `None` keeps each tensor's
/// dtype. `progress(done_units, total_units)` is called after each unit.
pub fn pack(
    folder: &HfFolder,
    out_dir: &Path,
    dtype: Option<DType>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PackSummary> {
    let options = PackOptions {
        dtype,
        ..PackOptions::default()
    };
    pack_with(folder, out_dir, &options, progress)
}

/// [`pack`] with quantisation: matrix weights to `options.quant` except those `keep` names.
pub fn pack_with(
    folder: &HfFolder,
    out_dir: &Path,
    options: &PackOptions,
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
            let kept = options.keep.iter().any(|p| glob_match(p, &spec.name));
            // A matrix too narrow for its codes' padding to 64 columns to pay (a two-row
            // token type table) keeps its float dtype.
            let matrix = spec.matrix().filter(|&(k, n)| {
                options
                    .quant
                    .is_some_and(|q| q.stored_len(k, n) < k * n * DType::F16.size_bytes())
            });
            let target = match (options.dtype, matrix) {
                (_, Some(_)) if kept => DType::F16,
                (Some(d), _) => d,
                (None, _) => DType::parse(&folder.dtype(spec)?).unwrap_or(DType::F32),
            };
            bytes.resize(bytes.len().next_multiple_of(TENSOR_ALIGN as usize), 0);
            let start = bytes.len() as u64;
            let (dtype, quant) = match (options.quant, matrix) {
                (Some(format), Some((k, n))) if !kept => {
                    // Matrix weights are bound packed for the GEMM, tables as stored
                    // `[rows, dim]`: both seen here as the `[k, n]` product operand.
                    let plain;
                    let b = if spec.layout == Layout::Table {
                        MatRef::row_major(tensor.values(), n, k).t()
                    } else {
                        plain = kernels::gemm::unpack(tensor.values(), k, n);
                        MatRef::row_major(&plain, k, n)
                    };
                    let q = quant::quantize(b, format).map_err(|e| StoreError::BadTensor {
                        path: folder.dir().to_path_buf(),
                        name: spec.name.clone(),
                        why: format!("{e} (keep it in f16 with --keep)"),
                    })?;
                    bytes.extend_from_slice(q.bytes());
                    (
                        StoredType::Quant(format),
                        Some(QuantEntry::new(format, k, n)),
                    )
                }
                _ => {
                    target.narrow_into(tensor.values(), &mut bytes);
                    (StoredType::Float(target), None)
                }
            };
            tensors.push(TensorEntry {
                name: spec.name.clone(),
                dtype,
                shape: tensor.shape().to_vec(),
                transposed: spec.layout == Layout::Linear,
                offset: start,
                length: bytes.len() as u64 - start,
                quant,
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

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (none
/// included) and everything else for itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("lm_head.weight", "lm_head.weight"));
        assert!(!glob_match("lm_head.weight", "lm_head.weights"));
        assert!(glob_match("*", ""));
        assert!(glob_match("conv1.*", "conv1.weight"));
        assert!(glob_match("*.attn.*", "h.0.attn.c_attn.weight"));
        assert!(!glob_match("*.attn.*", "h.0.mlp.c_fc.weight"));
        assert!(glob_match(
            "embeddings*",
            "embeddings.patch_embeddings.projection.weight"
        ));
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match(
            "*word*",
            "bert.embeddings.word_embeddings.weight"
        ));
    }
}
