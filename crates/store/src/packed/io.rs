//! Reading a unit's bytes into memory edgerun owns: buffered pread or O_DIRECT into a
//! page-aligned buffer, or a view of one shared mapping.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::{Result, StoreError};

/// How unit bytes reach memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// pread(2) through the page cache into an aligned buffer.
    Pread,
    /// O_DIRECT reads that bypass the page cache (falls back to pread where refused).
    Direct,
    /// One shared read-only mapping; the kernel pages weights in on first touch.
    Mmap,
}

impl IoMode {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pread" | "buffered" => Some(Self::Pread),
            "direct" | "o_direct" => Some(Self::Direct),
            "mmap" => Some(Self::Mmap),
            _ => None,
        }
    }
}

/// Opens `path` for O_DIRECT reads, or returns `None` when the filesystem refuses the flag
/// (tmpfs on older kernels, some overlay filesystems).
pub fn open_direct(path: &Path) -> Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Fills `buf` with the bytes at `offset`. With O_DIRECT, `offset` and the length must be
/// multiples of 4096 and `buf` page-aligned (units and [`edgerun_tensor::FillBuffer`]s are).
pub fn read_exact(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    let len = buf.len();
    file.read_exact_at(buf, offset).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(
                e.kind(),
                format!(
                    "range [{offset}, {}) runs past the end of the file",
                    offset + len as u64
                ),
            )
        } else {
            e
        };
        StoreError::io(path, why)
    })
}

/// Reads up to `buf.len()` bytes at `offset` (a short read only at the end of the file).
pub fn read_aligned_into(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(path, e)),
        }
    }
    Ok(done)
}
