//! Cold sequential read throughput of a file, buffered and with O_DIRECT: the floor any loader
//! is held to (`edgerun bench-io`). Buffered runs first evict the file's pages with
//! posix_fadvise(DONTNEED), so neither mode is served from the page cache.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

use crate::packed::io::{open_direct, read_aligned_into};
use crate::{Result, StoreError};
use edgerun_tensor::{AlignedBuf, FillBuffer};

#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
    /// False when O_DIRECT was refused and the run fell back to buffered reads.
    pub direct: bool,
}

impl Throughput {
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e9
    }
}

/// Drops the file's pages from the page cache.
pub fn evict(file: &File, path: &Path) -> Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(StoreError::io(path, std::io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

/// Reads the whole file sequentially in `block` bytes (a multiple of 4096).
pub fn measure(path: &Path, direct: bool, block: usize) -> Result<Throughput> {
    // A device reports no length, and an empty file has nothing to time: either would print
    // a rate of zero as if it were measured.
    let (buffered, len) = crate::input::open_regular(path)?;
    if len == 0 {
        return Err(StoreError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    evict(&buffered, path)?;
    let direct_file = if direct { open_direct(path)? } else { None };
    let file = direct_file.as_ref().unwrap_or(&buffered);
    let mut buf = AlignedBuf::zeroed(block)?;
    // O_DIRECT reads whole blocks; the file's tail is read up to the next 4096 boundary.
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < len {
        let want = block.min((len - offset).next_multiple_of(4096) as usize);
        let got = read_aligned_into(file, path, offset, &mut buf.as_mut_slice()[..want])?;
        if got == 0 {
            break;
        }
        offset += got as u64;
    }
    Ok(Throughput {
        bytes: offset.min(len),
        seconds: started.elapsed().as_secs_f64(),
        direct: direct_file.is_some(),
    })
}
