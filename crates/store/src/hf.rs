//! A Hugging Face model folder: config.json and safetensors weights, single or sharded.
//!
//! Files are mapped, not read: binding an f32 tensor points it into the map (assembly by
//! reference), so a model costs only the pages its stages touch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgerun_models::{build_model, Checkpoint, Layout, Model, StageSpec, TensorSpec, UnitWeights};
use edgerun_tensor::{kernels, ByteBuffer, DType, Tensor};
use serde::Deserialize;

use crate::safetensors_index::{SafetensorsIndex, TensorEntry};
use crate::{MappedFile, Result, StoreError};

struct Shard {
    map: Arc<MappedFile>,
    index: SafetensorsIndex,
}

pub struct HfFolder {
    dir: PathBuf,
    config_json: String,
    shards: Vec<Shard>,
    /// Tensor name to the shard that holds it.
    locations: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: WeightMap,
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(StoreError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder"),
            ));
        }
        let config_path = dir.join("config.json");
        let config_json = crate::read_metadata(&config_path, "config.json")?;
        let (files, weight_map) = weight_files(dir)?;
        let mut shards = Vec::with_capacity(files.len());
        for path in &files {
            let map = Arc::new(MappedFile::open(path)?);
            let index = SafetensorsIndex::parse(path, map.bytes())?;
            shards.push(Shard { map, index });
        }
        let locations = match weight_map {
            None => shards[0]
                .index
                .tensors
                .keys()
                .map(|name| (name.clone(), 0))
                .collect(),
            Some(map) => locate(&dir.join(INDEX_FILE), &files, &shards, map)?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config_json,
            shards,
            locations,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.locations.contains_key(name)
    }

    /// The family config.json names, with prefixes and heads chosen by this checkpoint.
    pub fn model(&self) -> Result<Box<dyn Model>> {
        let checkpoint = Checkpoint {
            has_tensor: &|name| self.has_tensor(name),
            tensors: Some(self.locations.len()),
        };
        let model = build_model(&self.config_json, checkpoint).map_err(|e| match e {
            edgerun_models::ModelError::Config(why) => StoreError::Json {
                path: self.dir.join("config.json"),
                why,
            },
            other => other.into(),
        })?;
        // Check every tensor now so a config that disagrees with the weights fails before work.
        for stage in model.stages() {
            for spec in &stage.tensors {
                self.entry(spec)?;
            }
        }
        Ok(model)
    }

    /// Bytes of the tensors a stage reads, as stored.
    pub fn stage_bytes(&self, stage: &StageSpec) -> Result<usize> {
        stage
            .tensors
            .iter()
            .map(|t| self.entry(t).map(|(_, e)| e.end - e.start))
            .sum()
    }

    /// The storage dtype of a tensor.
    pub fn dtype(&self, spec: &TensorSpec) -> Result<String> {
        Ok(format!("{:?}", self.entry(spec)?.1.dtype))
    }

    fn entry(&self, spec: &TensorSpec) -> Result<(&Shard, &TensorEntry)> {
        let shard = self
            .locations
            .get(&spec.name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| {
                edgerun_models::ModelError::MissingTensor(format!(
                    "{} (looked in {})",
                    spec.name,
                    self.dir.display()
                ))
            })?;
        let entry = &shard.index.tensors[&spec.name];
        if entry.shape != spec.shape {
            return Err(StoreError::ShapeMismatch {
                name: spec.name.clone(),
                path: shard.index.path.clone(),
                expected: spec.shape.clone(),
                found: entry.shape.clone(),
            });
        }
        if entry.float_dtype().is_none() {
            return Err(StoreError::UnsupportedDtype {
                name: spec.name.clone(),
                path: shard.index.path.clone(),
                dtype: format!("{:?}", entry.dtype),
            });
        }
        Ok((shard, entry))
    }

    /// Binds every tensor of `stage`.
    pub fn bind(&self, stage: &StageSpec) -> Result<UnitWeights> {
        let mut weights = UnitWeights::default();
        for spec in &stage.tensors {
            let (shard, entry) = self.entry(spec)?;
            let dtype = entry.float_dtype().expect("checked by entry");
            // A weight for the GEMM is copied anyway (transposed or widened), so it is packed
            // in the copy, straight from the map where the file holds f32.
            let tensor = match spec.layout {
                Layout::Plain | Layout::Table => {
                    owned_if_small(stored(shard, entry, spec, dtype)?)?
                }
                // The rows of a transposed weight are dropped from the map as they are packed,
                // so a large one (a tied embedding) is not held twice.
                Layout::Linear => {
                    let row_bytes = (entry.end - entry.start) / spec.shape[0].max(1);
                    kernels::pack_linear_reporting(
                        &stored(shard, entry, spec, dtype)?,
                        true,
                        |rows| {
                            shard
                                .map
                                .release(entry.start, entry.start + rows * row_bytes)
                        },
                    )?
                }
                Layout::Conv1d => kernels::pack_linear(&stored(shard, entry, spec, dtype)?, false)?,
                Layout::Conv2d => kernels::pack_conv(&stored(shard, entry, spec, dtype)?)?,
            };
            if !tensor.borrows_buffer() {
                shard.map.release(entry.start, entry.end);
            }
            weights.insert(spec.name.clone(), tensor);
        }
        Ok(weights)
    }

    /// Reads a small optional file of the folder (tokenizer.json, pooling configs).
    pub fn read_optional(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        crate::read_optional(&self.dir, relative)
    }

    /// The safetensors files this folder maps.
    pub fn weight_paths(&self) -> Vec<PathBuf> {
        self.shards.iter().map(|s| s.index.path.clone()).collect()
    }

    /// Total bytes of all weight files.
    pub fn weight_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.map.bytes().len()).sum()
    }
}

/// Tensors up to this size are copied out of the map when bound (norm vectors, biases).
const SMALL_TENSOR_BYTES: usize = 64 << 10;

/// `t` in memory of its own when it is small. A borrowed small tensor read during the pass
/// faults its page in, and the kernel maps the neighbouring pages of the file with it (fault
/// around), so the packed weights the map was released for come back as resident file pages:
/// 27 MiB of ResNet-50's 102 MB, around its batch-norm vectors.
fn owned_if_small(t: Tensor) -> Result<Tensor> {
    if !t.borrows_buffer() || t.len() * 4 > SMALL_TENSOR_BYTES {
        return Ok(t);
    }
    Ok(Tensor::from_vec(t.shape(), t.values().to_vec())?)
}

/// The tensor as the file stores it: borrowed from the map where it is f32 and aligned, else
/// widened (or, misaligned, copied) into memory of its own.
fn stored(shard: &Shard, entry: &TensorEntry, spec: &TensorSpec, dtype: DType) -> Result<Tensor> {
    if dtype == DType::F32 {
        let buffer: Arc<dyn ByteBuffer> = shard.map.clone();
        match Tensor::from_buffer(buffer, entry.start, &spec.shape) {
            Ok(t) => return Ok(t),
            // A misaligned f32 tensor cannot be borrowed; copying it is still correct.
            Err(edgerun_tensor::TensorError::Misaligned { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    widen(shard, entry, spec)
}

fn widen(shard: &Shard, entry: &TensorEntry, spec: &TensorSpec) -> Result<Tensor> {
    let dtype = entry.float_dtype().expect("checked by entry");
    let values = dtype.widen(&shard.map.bytes()[entry.start..entry.end])?;
    Ok(Tensor::from_vec(&spec.shape, values)?)
}

const INDEX_FILE: &str = "model.safetensors.index.json";

/// Tensor name to the shard file that holds it, as the index says.
type WeightMap = HashMap<String, String>;

/// Where each tensor is, by the index's weight map: every mapped tensor must be in the shard
/// the map names, and every tensor of a shard must be mapped there, so a tensor copied into
/// two shards, or a map that disagrees with the files, is refused instead of read from
/// whichever shard came first.
fn locate(
    index_path: &Path,
    files: &[PathBuf],
    shards: &[Shard],
    weight_map: WeightMap,
) -> Result<HashMap<String, usize>> {
    let bad = |why: String| StoreError::Json {
        path: index_path.to_path_buf(),
        why,
    };
    let shard_of = |file: &str| {
        files
            .iter()
            .position(|f| f.file_name().is_some_and(|n| n == file))
            .expect("every mapped file is a shard")
    };
    let mut locations = HashMap::with_capacity(weight_map.len());
    for (name, file) in weight_map {
        let i = shard_of(&file);
        if !shards[i].index.tensors.contains_key(&name) {
            return Err(bad(format!(
                "maps {name} to {file}, which does not hold it"
            )));
        }
        locations.insert(name, i);
    }
    for (i, shard) in shards.iter().enumerate() {
        if let Some(name) = shard
            .index
            .tensors
            .keys()
            .find(|name| locations.get(*name) != Some(&i))
        {
            return Err(bad(format!(
                "{} holds {name}, which the weight map places {}",
                files[i].display(),
                match locations.get(name) {
                    Some(&j) => format!("in {}", files[j].display()),
                    None => "nowhere".into(),
                }
            )));
        }
    }
    Ok(locations)
}

/// The safetensors files of a folder with the index's weight map (tensor to file name):
/// the shards an index names, or model.safetensors alone.
fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, Option<WeightMap>)> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.exists() {
        let text = crate::read_metadata(&index_path, "shard index")?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| StoreError::Json {
            path: index_path.clone(),
            why: e.to_string(),
        })?;
        let mut files: Vec<String> = index.weight_map.values().cloned().collect();
        files.sort();
        files.dedup();
        if let Some(bad) = files
            .iter()
            .find(|f| Path::new(f).components().count() != 1)
        {
            return Err(StoreError::Json {
                path: index_path,
                why: format!("shard {bad:?} is not a file name in this folder"),
            });
        }
        if files.is_empty() {
            return Err(StoreError::Json {
                path: index_path,
                why: "the weight map is empty".into(),
            });
        }
        let files = files.into_iter().map(|f| dir.join(f)).collect();
        return Ok((files, Some(index.weight_map)));
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok((vec![single], None));
    }
    Err(StoreError::NoWeights {
        path: dir.to_path_buf(),
    })
}
