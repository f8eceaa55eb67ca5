//! Element-wise loops compiled for the widest vector unit the CPU has.
//!
//! The crate is built for the baseline of its target (SSE2 on x86-64), so a loop the compiler
//! vectorizes works four lanes at a time even on a CPU with AVX-512. [`widest`] runs a closure
//! inside a function compiled with AVX-512 or AVX2 enabled, chosen at run time; the closure
//! (marked `#[inline(always)]` by the caller) is inlined there and its loops vectorize to the
//! wider registers. Every instruction set computes the same IEEE operations on each lane and
//! nothing is contracted into fused multiply-adds, so the bits do not depend on the path.

/// The vector unit [`widest`] compiles for on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The widest unit this CPU runs, detected once.
pub(crate) fn width() -> Width {
    use std::sync::OnceLock;
    static WIDTH: OnceLock<Width> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512bw")
            {
                return Width::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Width::Avx2;
            }
        }
        Width::Baseline
    })
}

/// Runs `body` compiled for the widest vector unit this CPU has (see the module doc). Pass a
/// closure marked `#[inline(always)]`, or its loops stay compiled for the baseline.
#[inline(always)]
pub(crate) fn widest<R>(body: impl FnOnce() -> R) -> R {
    on(width(), body)
}

/// Runs `body` compiled for `width` (the tests compare every width this CPU has).
#[inline(always)]
pub(crate) fn on<R>(width: Width, body: impl FnOnce() -> R) -> R {
    match width {
        Width::Baseline => body(),
        // SAFETY: `width()` chose this unit because the CPU has its features; the tests call
        // `on` only with widths `available()` lists.
        #[cfg(target_arch = "x86_64")]
        Width::Avx2 => unsafe { x86::avx2(body) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Width::Avx512 => unsafe { x86::avx512(body) },
    }
}

/// Every width this CPU runs, baseline first (for the tests).
#[cfg(test)]
pub(crate) fn available() -> Vec<Width> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut widths = vec![Width::Baseline];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            widths.push(Width::Avx2);
        }
        if width() == Width::Avx512 {
            widths.push(Width::Avx512);
        }
    }
    widths
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
        body()
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    pub(super) unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
        body()
    }
}
