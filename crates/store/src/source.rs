//! A model on disk, whichever format it is in: a Hugging Face folder or a packed store.

use std::path::Path;

use edgerun_models::{Model, StageSpec, UnitWeights};
use edgerun_tensor::FillBuffer;

use crate::packed::{IoMode, PackedStore, MANIFEST_FILE};
use crate::{HfFolder, Result};

/// How stages are read from a packed store (an HF folder is always mapped).
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub io: IoMode,
    /// Check each unit's CRC-32C after reading it.
    pub verify: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            io: IoMode::Pread,
            verify: true,
        }
    }
}

pub enum ModelSource {
    Hf(HfFolder),
    Packed(PackedStore),
}

impl ModelSource {
    /// A folder with manifest.json is a packed store; anything else is read as an HF folder.
    pub fn open(path: &Path) -> Result<Self> {
        if path.join(MANIFEST_FILE).exists() {
            Ok(Self::Packed(PackedStore::open(path)?))
        } else {
            Ok(Self::Hf(HfFolder::open(path)?))
        }
    }

    pub fn dir(&self) -> &Path {
        match self {
            Self::Hf(f) => f.dir(),
            Self::Packed(p) => p.dir(),
        }
    }

    /// The model's config.json text (a packed store keeps it in its manifest).
    pub fn config_json(&self) -> String {
        match self {
            Self::Hf(f) => f.config_json().to_string(),
            Self::Packed(p) => p.manifest().config.to_string(),
        }
    }

    pub fn model(&self) -> Result<Box<dyn Model>> {
        match self {
            Self::Hf(f) => f.model(),
            Self::Packed(p) => p.model(),
        }
    }

    /// Reads (if packed) and binds stage `index`.
    pub fn load_stage(
        &self,
        index: usize,
        stage: &StageSpec,
        read: ReadOptions,
    ) -> Result<UnitWeights> {
        match self {
            Self::Hf(f) => f.bind(stage),
            Self::Packed(p) => p.load_stage(index, stage, read.io, read.verify),
        }
    }

    /// The length of the buffer loading stage `index` with `read` fills, or `None` where
    /// nothing is read into a buffer (HF folders and mmap bind mapped pages).
    pub fn read_buffer_len(&self, index: usize, read: ReadOptions) -> Option<usize> {
        match self {
            Self::Packed(p) => p.read_buffer_len(index, read.io),
            Self::Hf(_) => None,
        }
    }

    /// The bytes of f32 copies binding stage `index` widens from f16/bf16 into one buffer, or
    /// `None` where there are none (or, in an HF folder, they are made tensor by tensor).
    pub fn widened_len(&self, index: usize) -> Option<usize> {
        match self {
            Self::Packed(p) => Some(p.widened_bytes(index) as usize).filter(|&n| n > 0),
            Self::Hf(_) => None,
        }
    }

    /// As [`ModelSource::load_stage`], reading into `buffer` (of
    /// [`ModelSource::read_buffer_len`]) and widening into `widened` (of
    /// [`ModelSource::widened_len`]) where given; an HF folder takes neither.
    pub fn load_stage_into<B: FillBuffer + 'static>(
        &self,
        index: usize,
        stage: &StageSpec,
        read: ReadOptions,
        buffer: Option<B>,
        widened: Option<B>,
    ) -> Result<UnitWeights> {
        match self {
            Self::Packed(p) => {
                p.load_stage_into(index, stage, read.io, read.verify, buffer, widened)
            }
            Self::Hf(f) => {
                debug_assert!(
                    buffer.is_none() && widened.is_none(),
                    "HF folders are mapped"
                );
                f.bind(stage)
            }
        }
    }

    /// Bytes loading stage `index` with `read` holds in process memory at its peak: the read
    /// buffer (the unit, or one piece of a unit widened in pieces; none for mmap, whose pages
    /// belong to the page cache) plus f32 copies of transposed or narrower tensors.
    pub fn resident_bytes(&self, index: usize, stage: &StageSpec, read: ReadOptions) -> u64 {
        match self {
            // Mapped: f32 tensors borrow file pages; matrix weights (packed for the GEMM)
            // and widened ones are copies.
            Self::Hf(_) => stage
                .tensors
                .iter()
                .map(|t| t.bound_shape().iter().product::<usize>() as u64 * 4)
                .sum(),
            Self::Packed(p) => p.load_bytes(index, read.io),
        }
    }

    /// Bytes of the file a stage's load reads (or touches, when mapped).
    pub fn read_bytes(&self, index: usize, stage: &StageSpec) -> u64 {
        match self {
            Self::Hf(f) => f.stage_bytes(stage).unwrap_or(0) as u64,
            Self::Packed(p) => p.manifest().units[index].length,
        }
    }

    /// Storage dtypes of a stage's tensors, in order.
    pub fn stage_dtypes(&self, index: usize, stage: &StageSpec) -> Result<Vec<String>> {
        match self {
            Self::Hf(f) => stage.tensors.iter().map(|t| f.dtype(t)).collect(),
            Self::Packed(p) => Ok(p.manifest().units[index]
                .tensors
                .iter()
                .map(|t| t.dtype.name().to_string())
                .collect()),
        }
    }

    /// Total bytes of the weight files.
    pub fn weight_bytes(&self) -> u64 {
        match self {
            Self::Hf(f) => f.weight_bytes() as u64,
            Self::Packed(p) => p.manifest().data_bytes,
        }
    }

    pub fn read_optional(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Hf(f) => f.read_optional(relative),
            Self::Packed(p) => p.read_optional(relative),
        }
    }

    /// The files of the model this source reads (weights, config, manifest, side files
    /// that exist), so that no output replaces one of them.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let dir = self.dir();
        let mut files: Vec<_> = match self {
            Self::Hf(f) => f.weight_paths(),
            Self::Packed(p) => vec![p.data_path().to_path_buf()],
        };
        files.extend(
            ["config.json", MANIFEST_FILE, "model.safetensors.index.json"]
                .iter()
                .chain(crate::packed::writer::SIDE_FILES)
                .map(|name| dir.join(name))
                .filter(|p| p.exists()),
        );
        files
    }

    /// A message about how reads were served (an O_DIRECT fallback), once.
    pub fn take_notice(&self) -> Option<String> {
        match self {
            Self::Hf(_) => None,
            Self::Packed(p) => p.take_notice(),
        }
    }
}
