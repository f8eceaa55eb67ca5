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
}

impl ByteBuffer for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}
