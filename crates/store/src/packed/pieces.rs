//! Units whose tensors are all f16/bf16 are read in pieces and widened piece by piece, so
//! their raw bytes never sit in memory whole: while loading, such a unit holds its f32 copies
//! plus one piece instead of its copies plus the whole unit. For GPT-J 6B in fp16 that is
//! 768 + 32 MiB a layer instead of 768 + 384 MiB, which lets a 25% budget hold three layers
//! instead of two.

use std::sync::Arc;

use edgerun_models::UnitWeights;
use edgerun_tensor::{AlignedBuf, FillBuffer};

use super::io::{self, IoMode};
use super::PackedStore;
use crate::Result;

/// The most bytes of a unit read at once when it is widened in pieces (a multiple of 4096,
/// as O_DIRECT needs).
pub const PIECE_BYTES: usize = 32 << 20;

impl PackedStore {
    /// Whether loading unit `index` with `io` reads it in pieces: every tensor is f16 or bf16
    /// (widened into f32 copies, so the read buffer need only hold a piece) and the unit is
    /// read, not mapped.
    pub fn widens_in_pieces(&self, index: usize, io: IoMode) -> bool {
        let unit = &self.manifest.units[index];
        io != IoMode::Mmap
            && !unit.tensors.is_empty()
            && unit.tensors.iter().all(|t| t.dtype.widens())
    }

    /// The length of the buffer loading unit `index` with `io` reads into: a piece, the
    /// whole unit, or `None` when it is mapped.
    pub fn read_buffer_len(&self, index: usize, io: IoMode) -> Option<usize> {
        let length = self.manifest.units[index].length as usize;
        match io {
            IoMode::Mmap => None,
            _ if self.widens_in_pieces(index, io) => Some(length.min(PIECE_BYTES)),
            _ => Some(length),
        }
    }

    /// Bytes loading unit `index` with `io` holds at its peak: the read buffer (none when
    /// mapped) plus the f32 copies of narrower tensors.
    pub fn load_bytes(&self, index: usize, io: IoMode) -> u64 {
        self.read_buffer_len(index, io).unwrap_or(0) as u64 + self.widened_bytes(index)
    }

    /// Reads unit `index` piece by piece into `piece` (of [`PackedStore::read_buffer_len`]),
    /// checking the CRC across the pieces, and widens each tensor's part of every piece into
    /// `widened` (of [`PackedStore::widened_bytes`]), which the tensors then borrow.
    pub(super) fn load_in_pieces<P: FillBuffer, W: FillBuffer + 'static>(
        &self,
        index: usize,
        io: IoMode,
        verify: bool,
        mut piece: P,
        mut widened: W,
    ) -> Result<UnitWeights> {
        let unit = &self.manifest.units[index];
        let length = unit.length as usize;
        let piece_len = piece.bytes().len();
        assert!(
            piece_len > 0 && piece_len.is_multiple_of(4096),
            "pieces are whole pages"
        );
        let values = self.widening_values(index, &mut widened);
        // Every tensor is narrow here, so this lists them all.
        let starts = self.widened_starts(index);
        let file = self.reader(io);
        let mut crc = 0u32;
        let mut done = 0;
        while done < length {
            let n = piece_len.min(length - done);
            let bytes = &mut piece.as_mut_slice()[..n];
            io::read_exact(file, &self.data_path, unit.offset + done as u64, bytes)?;
            if verify {
                crc = crc32c::crc32c_append(crc, bytes);
            }
            for &(t, start) in &starts {
                let (from, to) = (t.offset as usize, (t.offset + t.length) as usize);
                let (lo, hi) = (from.max(done), to.min(done + n));
                if lo >= hi {
                    continue;
                }
                let dtype = t
                    .dtype
                    .float()
                    .expect("only float units are read in pieces");
                // Pieces and tensors start on even offsets, so no value straddles a piece.
                let size = dtype.size_bytes();
                let first = start + (lo - from) / size;
                dtype.widen_into(
                    &bytes[lo - done..hi - done],
                    &mut values[first..first + (hi - lo) / size],
                )?;
            }
            done += n;
        }
        if verify {
            self.check_crc(index, crc)?;
        }
        let mut weights = UnitWeights::default();
        self.bind_widened(index, Arc::new(widened), &mut weights)?;
        Ok(weights)
    }

    /// [`PackedStore::load_in_pieces`] with fresh buffers where none are given.
    pub(super) fn load_in_pieces_with<B: FillBuffer + 'static>(
        &self,
        index: usize,
        io: IoMode,
        verify: bool,
        piece: Option<B>,
        widened: Option<B>,
    ) -> Result<UnitWeights> {
        let piece_len = self.read_buffer_len(index, io).expect("read, not mapped");
        let widened_len = self.widened_bytes(index) as usize;
        match (piece, widened) {
            (Some(p), Some(w)) => self.load_in_pieces(index, io, verify, p, w),
            (Some(p), None) => {
                self.load_in_pieces(index, io, verify, p, AlignedBuf::zeroed(widened_len)?)
            }
            (None, Some(w)) => {
                self.load_in_pieces(index, io, verify, AlignedBuf::zeroed(piece_len)?, w)
            }
            (None, None) => self.load_in_pieces(
                index,
                io,
                verify,
                AlignedBuf::zeroed(piece_len)?,
                AlignedBuf::zeroed(widened_len)?,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HfFolder;
    use edgerun_tensor::DType;
    use std::path::PathBuf;

    /// bert-tiny from the shared fixtures packed as `dtype`, or `None` without the fixtures.
    fn narrow_store(dtype: DType) -> Option<(PathBuf, PackedStore)> {
        let fixture =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/bert-tiny");
        if !fixture.is_dir() {
            eprintln!("skipping: no fixture at {}", fixture.display());
            return None;
        }
        // One folder per call: tests run in parallel and several pack the same dtype.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = std::env::temp_dir().join(format!(
            "edgerun-pieces-{}-{}-{call}",
            dtype.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&out);
        super::super::pack(
            &HfFolder::open(&fixture).ok()?,
            &out,
            Some(dtype),
            &mut |_, _| {},
        )
        .ok()?;
        let store = PackedStore::open(&out).ok()?;
        Some((out, store))
    }

    fn values(weights: &UnitWeights) -> Vec<(String, Vec<u32>)> {
        let mut v: Vec<_> = weights
            .iter()
            .map(|(n, t)| (n.clone(), t.values().iter().map(|x| x.to_bits()).collect()))
            .collect();
        v.sort();
        v
    }

    /// One page at a time, tensors straddle pieces: the values equal widening the whole unit.
    #[test]
    fn pieces_of_one_page_widen_as_the_whole_unit_does() {
        for dtype in [DType::F16, DType::BF16] {
            let Some((dir, store)) = narrow_store(dtype) else {
                return;
            };
            for index in 0..store.manifest().units.len() {
                assert!(store.widens_in_pieces(index, IoMode::Pread));
                let whole = store
                    .bind_unit(index, &store.read_unit(index, IoMode::Pread, true).unwrap())
                    .unwrap();
                let widened = AlignedBuf::zeroed(store.widened_bytes(index) as usize).unwrap();
                let piece = AlignedBuf::zeroed(4096).unwrap();
                let pieces = store
                    .load_in_pieces(index, IoMode::Pread, true, piece, widened)
                    .unwrap();
                assert_eq!(values(&pieces), values(&whole), "unit {index}");
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_corrupt_piece_fails_the_checksum() {
        let Some((dir, store)) = narrow_store(DType::F16) else {
            return;
        };
        let last = store.manifest().units.len() - 1;
        let unit = store.manifest().units[last].clone();
        drop(store);
        let data = dir.join("weights.bin");
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[(unit.offset + unit.length / 2) as usize] ^= 0x40;
        std::fs::write(&data, bytes).unwrap();
        let store = PackedStore::open(&dir).unwrap();
        let widened = AlignedBuf::zeroed(store.widened_bytes(last) as usize).unwrap();
        let piece = AlignedBuf::zeroed(4096).unwrap();
        let err = store
            .load_in_pieces(last, IoMode::Pread, true, piece, widened)
            .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
