//! The one thread count every kernel honours (`--threads N`).
//!
//! rayon's global pool runs the data-parallel loops; gemm is told the same count so the two never
//! oversubscribe the cores.

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

pub(crate) fn gemm_parallelism(work_flops: usize) -> gemm::Parallelism {
    // Below this size splitting costs more than it gains.
    const MIN_PARALLEL_FLOPS: usize = 1 << 18;
    let n = threads();
    if n <= 1 || work_flops < MIN_PARALLEL_FLOPS || rayon::current_thread_index().is_some() {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(n)
    }
}
