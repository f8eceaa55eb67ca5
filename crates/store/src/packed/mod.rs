//! The packed store: manifest.json plus one data file whose units (one per stage) start on
//! 4096-byte boundaries, Linear weights pre-transposed, a CRC-32C per unit.
//!
//! A loaded unit is one buffer; binding points its f32 tensors into it without a copy
//! (SwapNet's assembly by reference: the stage skeleton refers to the unit's bytes).

pub mod io;
pub mod manifest;
mod pieces;
pub mod writer;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use edgerun_models::{build_model, Checkpoint, Layout, Model, StageSpec, UnitWeights};
use edgerun_tensor::quant::QuantMatrix;
use edgerun_tensor::{AlignedBuf, ByteBuffer, FillBuffer, Tensor};

pub use io::IoMode;
pub use manifest::{Manifest, QuantEntry, StoredType, UnitEntry};
pub use pieces::PIECE_BYTES;
pub use writer::{glob_match, pack, pack_with, PackOptions, PackSummary, MANIFEST_FILE};

use crate::{MappedFile, Result, StoreError};

/// A unit's bytes in memory: `len` bytes at `base` of `buffer`.
#[derive(Clone)]
pub struct UnitBuffer {
    pub buffer: Arc<dyn ByteBuffer>,
    pub base: usize,
    pub len: usize,
}

impl UnitBuffer {
    pub fn bytes(&self) -> &[u8] {
        &self.buffer.bytes()[self.base..self.base + self.len]
    }
}

pub struct PackedStore {
    dir: PathBuf,
    data_path: PathBuf,
    manifest: Manifest,
    names: HashSet<String>,
    map: OnceLock<Arc<MappedFile>>,
    direct: OnceLock<Option<File>>,
    buffered: File,
    notice: Mutex<Option<String>>,
}

fn corrupt(path: &Path, why: String) -> StoreError {
    StoreError::Json {
        path: path.to_path_buf(),
        why,
    }
}

impl PackedStore {
    /// Opens and validates a store: format and version, units aligned and inside the data file,
    /// tensors inside their units. A truncated data file fails here, before any read.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = crate::read_metadata(&manifest_path, "manifest")?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| corrupt(&manifest_path, e.to_string()))?;
        if manifest.format == manifest::FORMAT && manifest.version < manifest::VERSION {
            return Err(corrupt(
                &manifest_path,
                format!(
                    "a store of format version {} (this edgerun reads version {}): pack the model again",
                    manifest.version,
                    manifest::VERSION
                ),
            ));
        }
        if manifest.format != manifest::FORMAT || manifest.version != manifest::VERSION {
            return Err(corrupt(
                &manifest_path,
                format!(
                    "format {} v{} is not {} v{}",
                    manifest.format,
                    manifest.version,
                    manifest::FORMAT,
                    manifest::VERSION
                ),
            ));
        }
        let computed = manifest.compute_checksum();
        if computed != manifest.checksum {
            return Err(corrupt(
                &manifest_path,
                format!(
                    "checksum mismatch (CRC-32C {computed:08x}, the manifest says {:08x}): it was edited or damaged; pack the model again",
                    manifest.checksum
                ),
            ));
        }
        if Path::new(&manifest.data_file).components().count() != 1 {
            return Err(corrupt(
                &manifest_path,
                format!(
                    "data file {:?} is not a file name in the store",
                    manifest.data_file
                ),
            ));
        }
        let data_path = dir.join(&manifest.data_file);
        let (buffered, size) = crate::input::open_regular(&data_path)?;
        if size < manifest.data_bytes {
            return Err(StoreError::io(
                &data_path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{size} bytes, but the manifest describes {} (truncated?)",
                        manifest.data_bytes
                    ),
                ),
            ));
        }
        let names = validate_layout(&manifest).map_err(|why| corrupt(&manifest_path, why))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            data_path,
            manifest,
            names,
            map: OnceLock::new(),
            direct: OnceLock::new(),
            buffered,
            notice: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data file the units are read from.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model, checked against the units: same stages in the same order, same tensors.
    pub fn model(&self) -> Result<Box<dyn Model>> {
        let tensors = self.manifest.units.iter().map(|u| u.tensors.len()).sum();
        let model = build_model(
            &self.manifest.config.to_string(),
            Checkpoint {
                has_tensor: &|n| self.names.contains(n),
                tensors: Some(tensors),
            },
        )?;
        let path = self.dir.join(MANIFEST_FILE);
        if model.stages().len() != self.manifest.units.len() {
            return Err(corrupt(
                &path,
                format!(
                    "{} units for a model of {} stages",
                    self.manifest.units.len(),
                    model.stages().len()
                ),
            ));
        }
        for (stage, unit) in model.stages().iter().zip(&self.manifest.units) {
            if stage.id != unit.id || stage.tensors.len() != unit.tensors.len() {
                return Err(corrupt(
                    &path,
                    format!("unit {} does not match stage {}", unit.id, stage.id),
                ));
            }
            for (spec, t) in stage.tensors.iter().zip(&unit.tensors) {
                if spec.name != t.name {
                    return Err(corrupt(
                        &path,
                        format!(
                            "unit {} holds tensor {:?} where stage {} reads {:?}",
                            unit.id, t.name, stage.id, spec.name
                        ),
                    ));
                }
                if t.transposed != (spec.layout == Layout::Linear) {
                    return Err(corrupt(
                        &path,
                        format!(
                            "tensor {}: transposed is {}, but it is {} weight",
                            t.name,
                            t.transposed,
                            if t.transposed {
                                "not a Linear"
                            } else {
                                "a Linear"
                            }
                        ),
                    ));
                }
                if t.quant
                    .as_ref()
                    .is_some_and(|q| spec.matrix() != Some((q.matrix[0], q.matrix[1])))
                {
                    return Err(corrupt(
                        &path,
                        format!(
                            "tensor {} is quantised as a {:?} matrix, but the stage reads {:?}",
                            t.name,
                            t.quant.as_ref().map(|q| q.matrix),
                            spec.shape
                        ),
                    ));
                }
                if spec.bound_shape() != t.shape {
                    return Err(StoreError::ShapeMismatch {
                        name: spec.name.clone(),
                        path: path.clone(),
                        expected: spec.bound_shape(),
                        found: t.shape.clone(),
                    });
                }
            }
        }
        Ok(model)
    }

    /// A message for the user about how reads were served (an O_DIRECT fallback), once.
    pub fn take_notice(&self) -> Option<String> {
        self.notice.lock().expect("notice lock").take()
    }

    fn mapping(&self) -> Result<Arc<MappedFile>> {
        if let Some(map) = self.map.get() {
            return Ok(map.clone());
        }
        let map = Arc::new(MappedFile::open(&self.data_path)?);
        Ok(self.map.get_or_init(|| map).clone())
    }

    /// Reads unit `index` with `io`, verifying its checksum unless `verify` is false.
    pub fn read_unit(&self, index: usize, io: IoMode, verify: bool) -> Result<UnitBuffer> {
        self.read_block(index..index + 1, io, verify)
    }

    /// Bytes of the file the consecutive units `units` span: the length of the buffer one
    /// read of them fills.
    pub fn block_len(&self, units: std::ops::Range<usize>) -> Result<usize> {
        let entries = &self.manifest.units[units.clone()];
        match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => Ok((last.offset + last.length - first.offset) as usize),
            _ => Err(StoreError::BadTensor {
                path: self.data_path.clone(),
                name: format!("units {units:?}"),
                why: "an empty block".into(),
            }),
        }
    }

    /// Reads the consecutive units `units` with one read into one buffer (SwapNet's block),
    /// verifying each unit's checksum unless `verify` is false. [`PackedStore::unit_of_block`]
    /// then views one unit inside it. The buffer is a fresh one (or the shared mapping).
    pub fn read_block(
        &self,
        units: std::ops::Range<usize>,
        io: IoMode,
        verify: bool,
    ) -> Result<UnitBuffer> {
        let len = self.block_len(units.clone())?;
        if io == IoMode::Mmap {
            let loaded = UnitBuffer {
                buffer: self.mapping()?,
                base: self.manifest.units[units.start].offset as usize,
                len,
            };
            self.verify_block(&loaded, units, verify)?;
            return Ok(loaded);
        }
        self.read_block_into(units, io, verify, AlignedBuf::zeroed(len)?)
    }

    /// As [`PackedStore::read_block`], into `buffer`, whose length must be
    /// [`PackedStore::block_len`]: a caller that recycles buffers skips the page faults and
    /// zeroing of a fresh one. `io` must read (pread or O_DIRECT), not map.
    pub fn read_block_into<B: FillBuffer + 'static>(
        &self,
        units: std::ops::Range<usize>,
        io: IoMode,
        verify: bool,
        mut buffer: B,
    ) -> Result<UnitBuffer> {
        let len = self.block_len(units.clone())?;
        assert_eq!(
            buffer.bytes().len(),
            len,
            "a read buffer sized for its block"
        );
        let offset = self.manifest.units[units.start].offset;
        io::read_exact(
            self.reader(io),
            &self.data_path,
            offset,
            buffer.as_mut_slice(),
        )?;
        let loaded = UnitBuffer {
            buffer: Arc::new(buffer),
            base: 0,
            len,
        };
        self.verify_block(&loaded, units, verify)?;
        Ok(loaded)
    }

    /// The file reads with `io` go through (O_DIRECT where the filesystem allows it).
    fn reader(&self, io: IoMode) -> &File {
        assert_ne!(io, IoMode::Mmap, "mapped units are not read into buffers");
        if io == IoMode::Pread {
            return &self.buffered;
        }
        let direct = self
            .direct
            .get_or_init(|| io::open_direct(&self.data_path).ok().flatten());
        direct.as_ref().unwrap_or_else(|| {
            let mut notice = self.notice.lock().expect("notice lock");
            notice.get_or_insert_with(|| {
                format!(
                    "{}: the filesystem refuses O_DIRECT; reading through the page cache instead",
                    self.data_path.display()
                )
            });
            &self.buffered
        })
    }

    /// Fails unless `crc` is unit `index`'s checksum in the manifest.
    fn check_crc(&self, index: usize, crc: u32) -> Result<()> {
        let unit = &self.manifest.units[index];
        if crc == unit.crc32c {
            return Ok(());
        }
        Err(StoreError::BadTensor {
            path: self.data_path.clone(),
            name: format!("unit {}", unit.id),
            why: format!("checksum mismatch (CRC-32C {crc:08x}, manifest says {:08x}): the data file is corrupt", unit.crc32c),
        })
    }

    fn verify_block(
        &self,
        loaded: &UnitBuffer,
        units: std::ops::Range<usize>,
        verify: bool,
    ) -> Result<()> {
        if verify {
            for index in units.clone() {
                let view = self.unit_of_block(loaded, units.start, index);
                self.check_crc(index, crc32c::crc32c(view.bytes()))?;
            }
        }
        Ok(())
    }

    /// Unit `index` inside `block`, a buffer [`PackedStore::read_block`] read from unit
    /// `first` on: a view, no copy.
    pub fn unit_of_block(&self, block: &UnitBuffer, first: usize, index: usize) -> UnitBuffer {
        let start = self.manifest.units[first].offset;
        let unit = &self.manifest.units[index];
        UnitBuffer {
            buffer: block.buffer.clone(),
            base: block.base + (unit.offset - start) as usize,
            len: unit.length as usize,
        }
    }

    /// Points the stage's tensors into the loaded unit: f32 tensors borrow it, f16/bf16 are
    /// widened into owned f32.
    pub fn bind_unit(&self, index: usize, unit: &UnitBuffer) -> Result<UnitWeights> {
        self.bind_unit_with::<AlignedBuf>(index, unit, None)
    }

    /// As [`PackedStore::bind_unit`], widening f16/bf16 tensors one after another into
    /// `widened` (of [`PackedStore::widened_bytes`]), which they then borrow: a caller that
    /// recycles that memory spares the page faults of fresh f32 copies.
    pub fn bind_unit_with<B: FillBuffer + 'static>(
        &self,
        index: usize,
        unit: &UnitBuffer,
        widened: Option<B>,
    ) -> Result<UnitWeights> {
        let entry = &self.manifest.units[index];
        let mut weights = UnitWeights::default();
        let narrow = |t: &&manifest::TensorEntry| t.dtype.widens();
        let source = |t: &manifest::TensorEntry| {
            let start = unit.base + t.offset as usize;
            (
                t.dtype.float().expect("a float tensor"),
                &unit.buffer.bytes()[start..start + t.length as usize],
            )
        };
        for t in entry.tensors.iter().filter(|t| !narrow(t)) {
            let at = unit.base + t.offset as usize;
            match (t.dtype, &t.quant) {
                (StoredType::Quant(format), Some(q)) => {
                    let [k, n] = q.matrix;
                    let matrix = QuantMatrix::from_buffer(format, k, n, unit.buffer.clone(), at)
                        .map_err(|e| StoreError::BadTensor {
                            path: self.data_path.clone(),
                            name: t.name.clone(),
                            why: format!("unit {}: {e}", entry.id),
                        })?;
                    weights.insert_quantised(t.name.clone(), matrix);
                }
                _ => {
                    let tensor = Tensor::from_buffer(unit.buffer.clone(), at, &t.shape)?;
                    weights.insert(t.name.clone(), tensor);
                }
            }
        }
        let Some(mut widened) = widened else {
            for t in entry.tensors.iter().filter(narrow) {
                let (dtype, bytes) = source(t);
                weights.insert(
                    t.name.clone(),
                    Tensor::from_vec(&t.shape, dtype.widen(bytes)?)?,
                );
            }
            return Ok(weights);
        };
        let values = self.widening_values(index, &mut widened);
        for (t, start) in self.widened_starts(index) {
            let (dtype, bytes) = source(t);
            let n = bytes.len() / dtype.size_bytes();
            dtype.widen_into(bytes, &mut values[start..start + n])?;
        }
        self.bind_widened(index, Arc::new(widened), &mut weights)?;
        Ok(weights)
    }

    /// Unit `index`'s f16/bf16 tensors with where each starts, in f32 values, in its widening
    /// buffer: one after another, in manifest order.
    fn widened_starts(&self, index: usize) -> Vec<(&manifest::TensorEntry, usize)> {
        let mut at = 0;
        self.manifest.units[index]
            .tensors
            .iter()
            .filter(|t| t.dtype.widens())
            .map(|t| {
                let start = at;
                at += t.shape.iter().product::<usize>();
                (t, start)
            })
            .collect()
    }

    /// `widened` as the f32 values of unit `index`'s widening buffer.
    fn widening_values<'b, B: FillBuffer>(
        &self,
        index: usize,
        widened: &'b mut B,
    ) -> &'b mut [f32] {
        widened
            .as_mut_f32()
            .filter(|v| v.len() as u64 * 4 == self.widened_bytes(index))
            .expect("a widening buffer sized by widened_bytes")
    }

    /// Points unit `index`'s f16/bf16 tensors at their f32 values in `widened`, laid out as
    /// [`PackedStore::widened_starts`] says.
    fn bind_widened(
        &self,
        index: usize,
        widened: Arc<dyn ByteBuffer>,
        weights: &mut UnitWeights,
    ) -> Result<()> {
        for (t, start) in self.widened_starts(index) {
            let tensor = Tensor::from_buffer(widened.clone(), start * 4, &t.shape)?;
            weights.insert(t.name.clone(), tensor);
        }
        Ok(())
    }

    /// Bytes of the f32 copies binding makes of unit `index`'s f16/bf16 tensors.
    pub fn widened_bytes(&self, index: usize) -> u64 {
        self.manifest.units[index]
            .tensors
            .iter()
            .filter(|t| t.dtype.widens())
            .map(|t| t.shape.iter().product::<usize>() as u64 * 4)
            .sum()
    }

    /// Bytes unit `index` holds once bound after a read of the whole unit (as in a block):
    /// its buffer plus f32 copies of narrower tensors. See [`PackedStore::load_bytes`] for a
    /// unit loaded alone.
    pub fn resident_bytes(&self, index: usize) -> u64 {
        self.manifest.units[index].length + self.widened_bytes(index)
    }

    /// Loads and binds a stage in one call.
    pub fn load_stage(
        &self,
        index: usize,
        stage: &StageSpec,
        io: IoMode,
        verify: bool,
    ) -> Result<UnitWeights> {
        self.load_stage_into::<AlignedBuf>(index, stage, io, verify, None, None)
    }

    /// As [`PackedStore::load_stage`], reading into `buffer` (of
    /// [`PackedStore::read_buffer_len`]) and widening into `widened` (of
    /// [`PackedStore::widened_bytes`]) where given. Units of f16/bf16 tensors only are read
    /// in pieces (see [`PackedStore::widens_in_pieces`]).
    pub fn load_stage_into<B: FillBuffer + 'static>(
        &self,
        index: usize,
        stage: &StageSpec,
        io: IoMode,
        verify: bool,
        buffer: Option<B>,
        widened: Option<B>,
    ) -> Result<UnitWeights> {
        debug_assert_eq!(stage.id, self.manifest.units[index].id);
        if self.widens_in_pieces(index, io) {
            return self.load_in_pieces_with(index, io, verify, buffer, widened);
        }
        let unit = match buffer {
            Some(buffer) => self.read_block_into(index..index + 1, io, verify, buffer)?,
            None => self.read_unit(index, io, verify)?,
        };
        self.bind_unit_with(index, &unit, widened)
    }

    /// Reads a side file copied at pack time (tokenizer.json, pooling configs).
    pub fn read_optional(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        crate::read_optional(&self.dir, relative)
    }
}

/// The bytes tensor `t` must have: its shape's elements times the dtype's size, or for a
/// quantised matrix the codes and scales its [`QuantEntry`] lays out (whose matrix
/// `PackedStore::model` checks against the stage). `None` if that overflows.
fn stored_bytes(t: &manifest::TensorEntry) -> std::result::Result<Option<u64>, String> {
    let quant = match (t.dtype, &t.quant) {
        (StoredType::Float(dtype), None) => {
            return Ok(t
                .shape
                .iter()
                .try_fold(dtype.size_bytes() as u64, |n, &d| n.checked_mul(d as u64)))
        }
        (StoredType::Quant(format), Some(q)) => (format, q),
        (dtype, _) => {
            return Err(format!(
                "tensor {}: {} with{} a quantisation entry",
                t.name,
                dtype.name(),
                if t.quant.is_some() { "" } else { "out" }
            ))
        }
    };
    let (format, q) = quant;
    let [k, n] = q.matrix;
    let fits =
        k <= edgerun_tensor::quant::MAX_INNER && n > 0 && *q == QuantEntry::new(format, k, n);
    if !fits {
        return Err(format!(
            "tensor {}: quantisation entry {q:?} does not describe a {format} matrix of shape {:?}",
            t.name, t.shape
        ));
    }
    Ok(Some(format.stored_len(k, n) as u64))
}

/// Checks the manifest's byte layout: units aligned, in file order, apart and inside the data
/// file; each tensor's bytes inside its unit, of its shape's size, apart from every other
/// tensor of its unit; names unique within a unit (a tied weight is in two units). Returns
/// every tensor name.
fn validate_layout(manifest: &Manifest) -> std::result::Result<HashSet<String>, String> {
    let mut names = HashSet::new();
    let mut previous_end = 0u64;
    for u in &manifest.units {
        let end = u.offset.checked_add(u.length);
        if u.offset % manifest::UNIT_ALIGN != 0
            || u.length % manifest::UNIT_ALIGN != 0
            || end.is_none_or(|e| e > manifest.data_bytes)
        {
            return Err(format!(
                "unit {} range [{}, +{}) is unaligned or exceeds the data size {}",
                u.id, u.offset, u.length, manifest.data_bytes
            ));
        }
        if u.offset < previous_end {
            return Err(format!(
                "unit {} starts at {}, inside the unit before it (which ends at {previous_end})",
                u.id, u.offset
            ));
        }
        previous_end = u.offset + u.length;
        let mut ranges = Vec::with_capacity(u.tensors.len());
        for t in &u.tensors {
            let bytes = stored_bytes(t)?;
            if t.offset.checked_add(t.length).is_none_or(|e| e > u.length)
                || bytes != Some(t.length)
            {
                return Err(format!(
                    "tensor {} range [{}, +{}) does not fit unit {} of {} bytes or its shape {:?}",
                    t.name, t.offset, t.length, u.id, u.length, t.shape
                ));
            }
            if t.offset % manifest::TENSOR_ALIGN != 0 {
                return Err(format!(
                    "tensor {} starts at {}, not on a {}-byte boundary",
                    t.name,
                    t.offset,
                    manifest::TENSOR_ALIGN
                ));
            }
            if u.tensors.iter().filter(|o| o.name == t.name).count() > 1 {
                return Err(format!("tensor {} appears twice in unit {}", t.name, u.id));
            }
            names.insert(t.name.clone());
            ranges.push((t.offset, t.offset + t.length, &t.name));
        }
        ranges.sort();
        for pair in ranges.windows(2) {
            let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
            if start < end {
                return Err(format!("tensors {a} and {b} of unit {} share bytes", u.id));
            }
        }
    }
    Ok(names)
}
