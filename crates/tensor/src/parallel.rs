//! The one thread count every kernel honours (`--threads N`).
//!
//! rayon's global pool runs the data-parallel loops and splits large matrix products; nothing else
//! spawns threads, so the count is never oversubscribed.

use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the thread count for kernels and builds rayon's global pool with it. The first call
/// wins for the pool (rayon allows one global pool per process); later calls only change gemm's
/// share.
pub fn set_threads(threads: usize) {
    let threads = threads.max(1);
    THREADS.store(threads, Ordering::Relaxed);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// The thread count in force: the one set, else rayon's default (the number of cores).
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

/// Threads one matrix product may use: 1 for small products (splitting costs more than it
/// gains) and inside a rayon job (the caller already spreads work over the pool).
pub(crate) fn gemm_threads(work_flops: usize) -> usize {
    const MIN_PARALLEL_FLOPS: usize = 1 << 20;
    if work_flops < MIN_PARALLEL_FLOPS || rayon::current_thread_index().is_some() {
        1
    } else {
        threads()
    }
}
