//! A read-only memory-mapped file that tensors may borrow from.

use std::path::Path;

use edgerun_tensor::ByteBuffer;
use memmap2::Mmap;

use crate::{Result, StoreError};

pub struct MappedFile {
    map: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self> {
        let (file, _) = crate::input::open_regular(path)?;
        // SAFETY: the map is read-only; edgerun never writes model files while they are mapped,
        // and a file truncated underneath us by another process is outside what we defend.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::io(path, e))?;
        Ok(Self { map })
    }

    /// Drops this process's pages of `start..end` (the whole pages inside it) once their bytes
    /// have been copied, so a tensor bound as a copy is not held twice; the file's pages stay
    /// in the page cache, and a later read faults them back in with the same bytes.
    pub fn release(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let base = self.map.as_ptr() as usize;
        let first = (base + start).next_multiple_of(PAGE) - base;
        let last = (base + end.min(self.map.len())) / PAGE * PAGE - base;
        if last <= first {
            return;
        }
        #[cfg(unix)]
        // SAFETY: the range lies inside the map, and no tensor borrows it: safetensors tensors
        // do not overlap (checked at open), and this one was copied. The map is read-only and
        // the file is never written through it, so a later fault reads back the same bytes.
        unsafe {
            // Only a hint: if the kernel refuses, the pages simply stay resident.
            let _ = self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                first,
                last - first,
            );
        }
    }
}

impl ByteBuffer for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}
