//! Byte buffers a tensor can borrow from: the trait, and a page-aligned owned buffer.
//!
//! Later executors read a unit of weights straight into an [`AlignedBuf`] (O_DIRECT needs
//! 4096-byte alignment) and point tensors into it; the store's mapped files implement
//! [`ByteBuffer`] too. Either way the tensor keeps the buffer alive through an `Arc`.
//!
//! Large buffers are anonymous mappings, which the kernel hands out zeroed. The heap path
//! (`alloc_zeroed` with page alignment) memsets every byte on the allocating thread first: an
//! O_DIRECT read of 256 MiB into a fresh buffer took 0.44 s that way here, 0.30 s into a
//! mapping. Huge pages (MADV_HUGEPAGE) made that read 0.19 s alone but slowed a whole mix
//! when every read took a fresh buffer (7.8-8.9 s against 6.2-6.6 s with 4 KiB pages), so a
//! plain [`AlignedBuf::zeroed`] does not ask for them. [`AlignedBuf::zeroed_huge`] does: the
//! runtime recycles its read buffers, so a buffer is faulted in once and then pinned for many
//! O_DIRECT reads, each in 2 MiB steps instead of 4 KiB ones.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::{Result, TensorError};

/// Bytes owned by someone else that tensors may borrow for as long as they hold an `Arc`.
pub trait ByteBuffer: Send + Sync {
    fn bytes(&self) -> &[u8];
}

/// A page-aligned buffer a reader fills in place (O_DIRECT reads straight into it), then
/// hands to tensors as a [`ByteBuffer`]. [`AlignedBuf`] is one; a runtime may hand out
/// recycled ones instead, which are already faulted in.
pub trait FillBuffer: ByteBuffer {
    fn as_mut_slice(&mut self) -> &mut [u8];

    /// The buffer as f32 values, for widening weights into it in place. `None` if its length
    /// is not a whole number of f32s (its start is page-aligned, so alignment always holds).
    fn as_mut_f32(&mut self) -> Option<&mut [f32]> {
        let bytes = self.as_mut_slice();
        let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
        if !aligned || !bytes.len().is_multiple_of(4) {
            return None;
        }
        // SAFETY: the pointer is aligned for f32 (checked) and valid for len bytes, borrowed
        // mutably from self for the returned lifetime; every bit pattern is an f32.
        Some(unsafe {
            std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<f32>(), bytes.len() / 4)
        })
    }
}

/// The alignment of every [`AlignedBuf`]: a page, which also satisfies O_DIRECT.
pub const PAGE_BYTES: usize = 4096;

/// Buffers from this size up are mapped instead of allocated on the heap.
const MAP_FROM_BYTES: usize = 2 << 20;

/// A zero-initialised buffer whose start is aligned to [`PAGE_BYTES`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    storage: Storage,
}

enum Storage {
    Heap(Layout),
    /// Owns the mapping `ptr` points into; unmapped on drop.
    Mapped {
        _map: memmap2::MmapMut,
    },
}

// SAFETY: AlignedBuf uniquely owns its allocation; &AlignedBuf only hands out shared slices.
unsafe impl Send for AlignedBuf {}
// SAFETY: see above; there is no interior mutability.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes (at least one page is reserved so the pointer is real).
    pub fn zeroed(len: usize) -> Result<Self> {
        Self::allocate(len, false)
    }

    /// As [`AlignedBuf::zeroed`], asking the kernel to back a mapped buffer with huge pages.
    /// Faulting one in may compact memory, which is slow once but leaves a buffer the kernel
    /// pins for each O_DIRECT read in 2 MiB steps instead of 4 KiB ones: worth it for buffers
    /// that are recycled across many reads.
    pub fn zeroed_huge(len: usize) -> Result<Self> {
        Self::allocate(len, true)
    }

    fn allocate(len: usize, huge: bool) -> Result<Self> {
        let size = len.max(1).next_multiple_of(PAGE_BYTES);
        let failed = || TensorError::Alloc {
            bytes: len,
            align: PAGE_BYTES,
        };
        if size >= MAP_FROM_BYTES {
            let mut map = memmap2::MmapMut::map_anon(size).map_err(|_| failed())?;
            if huge {
                // Advisory: where the kernel has no huge pages to give, 4 KiB pages serve.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            let ptr = NonNull::new(map.as_mut_ptr()).ok_or_else(failed)?;
            return Ok(Self {
                ptr,
                len,
                storage: Storage::Mapped { _map: map },
            });
        }
        let layout = Layout::from_size_align(size, PAGE_BYTES).map_err(|_| failed())?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(failed)?;
        Ok(Self {
            ptr,
            len,
            storage: Storage::Heap(layout),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl FillBuffer for AlignedBuf {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() >= len bytes and uniquely borrowed here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl ByteBuffer for AlignedBuf {
    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Storage::Heap(layout) = self.storage {
            // SAFETY: ptr was allocated with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut buf = AlignedBuf::zeroed(10_000).unwrap();
        assert_eq!(buf.bytes().as_ptr() as usize % PAGE_BYTES, 0);
        assert!(buf.bytes().iter().all(|&b| b == 0));
        buf.as_mut_slice()[9_999] = 7;
        assert_eq!(buf.bytes()[9_999], 7);
        assert_eq!(buf.len(), 10_000);
    }

    #[test]
    fn large_buffers_are_mapped_aligned_and_zeroed() {
        let len = MAP_FROM_BYTES + 123;
        let mut buf = AlignedBuf::zeroed(len).unwrap();
        assert!(matches!(buf.storage, Storage::Mapped { .. }));
        assert_eq!(buf.bytes().as_ptr() as usize % PAGE_BYTES, 0);
        assert!(buf.bytes().iter().all(|&b| b == 0));
        buf.as_mut_slice()[len - 1] = 9;
        assert_eq!(buf.bytes()[len - 1], 9);
        assert_eq!(buf.len(), len);
    }
}
