//! Micro-kernels: one `rows x (16 * PANELS)` tile of `C` from a run of `kc` steps of `A`
//! (any strides, one element broadcast per row and step) and of packed `B` (16 contiguous
//! values per panel and step).
//!
//! Every kernel sums each element in the same order: a fused multiply-add chain from zero over
//! the `kc` steps, then added to `C` when asked. So the AVX-512, AVX2 and portable kernels give
//! the same bits, and the portable one is the twin the others are tested against.

use super::{GROUP, PANEL};

/// Where one tile reads and writes. `a` points at row 0, step 0 of the tile's rows;
/// `b` at step 0 of its first panel, the next panel `b_panel` further and the next step
/// [`GROUP`] further; `c` at its top-left element, rows `c_rs` apart and columns dense, of
/// which the first `width` are written (the columns of the last panel past it are computed
/// from `B`'s zero padding and dropped).
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    pub kc: usize,
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b: *const f32,
    pub b_panel: usize,
    pub c: *mut f32,
    pub c_rs: usize,
    pub width: usize,
    /// Add the products to what `c` holds instead of overwriting it.
    pub add: bool,
    /// The epilogue, for a kernel that [`Kernel::fuses`] it, on the last block of steps
    /// (only the AVX-512 kernel does).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub finish: Option<Finish>,
}

/// The epilogue a fusing kernel applies before it stores: `max(c * scale + bias + residual, 0)`
/// with each part optional (null) and the `max` only for ReLU, the operations and their order
/// those of `Epilogue::element`. Pointers are at the tile's first column (and row).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Finish {
    pub scale: *const f32,
    pub bias: *const f32,
    pub residual: *const f32,
    pub residual_rs: usize,
    pub relu: bool,
}

/// A kernel for up to `max_rows` rows and up to `panels` panels; it is called with
/// `1..=max_rows` rows and `1..=panels` panels (fewer at the edges of `C`).
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    pub name: &'static str,
    pub max_rows: usize,
    pub panels: usize,
    /// Applies a tile's [`Finish`] itself; other kernels leave it to `Job::finish`.
    pub fuses: bool,
    run: unsafe fn(usize, usize, &Tile),
}

impl Kernel {
    /// Runs the tile over `panels` panels.
    ///
    /// # Safety
    /// `tile` must address `rows` rows of `kc` steps of `A`, `panels` panels of `kc` steps
    /// of `B` and a `rows x tile.width` block of `C`, all valid; `rows <= max_rows`;
    /// `tile.width` must end in the last panel; `tile.finish`, if any, must address
    /// `tile.width` values of each of its vectors and `rows` rows of its residual; and the
    /// CPU must have the features the kernel was chosen for.
    pub unsafe fn run(&self, rows: usize, panels: usize, tile: &Tile) {
        debug_assert!(rows >= 1 && rows <= self.max_rows);
        debug_assert!(panels >= 1 && panels <= self.panels);
        debug_assert!(tile.width > (panels - 1) * PANEL && tile.width <= panels * PANEL);
        // SAFETY: forwarded from the caller.
        unsafe { (self.run)(rows, panels, tile) }
    }
}

/// The fastest kernel this CPU runs, detected once.
pub(crate) fn best() -> Kernel {
    use std::sync::OnceLock;
    static BEST: OnceLock<Kernel> = OnceLock::new();
    *BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return x86::AVX512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return x86::AVX2;
            }
        }
        PORTABLE
    })
}

/// Every kernel this CPU can run, portable first (for the tests).
#[cfg(test)]
pub(crate) fn available() -> Vec<Kernel> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut kernels = vec![PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            kernels.push(x86::AVX2);
        }
        if std::is_x86_feature_detected!("avx512f") {
            kernels.push(x86::AVX512);
        }
    }
    kernels
}

/// Asks for the cache line at `at` to be brought into L2 (a hint; nothing on other CPUs).
#[inline(always)]
pub(crate) fn prefetch(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Expands to a `match` from a runtime row count to a const-generic kernel instance.
macro_rules! by_rows {
    ($rows:expr, $kernel:ident, $panels:tt, $tile:expr, [$($r:literal),*]) => {
        match $rows {
            $($r => $kernel::<$r, $panels>($tile),)*
            _ => unreachable!("a kernel is never called with more rows than it declares"),
        }
    };
}

/// Plain Rust with `mul_add`, which LLVM turns into NEON `fmla` on aarch64 (6 rows x 16
/// columns = 24 of its 32 vector registers).
pub(crate) const PORTABLE: Kernel = Kernel {
    name: "portable",
    max_rows: 6,
    panels: 1,
    fuses: false,
    run: portable_rows,
};

unsafe fn portable_rows(rows: usize, _panels: usize, tile: &Tile) {
    // SAFETY: forwarded from `Kernel::run`.
    unsafe { by_rows!(rows, portable, 1, tile, [1, 2, 3, 4, 5, 6]) }
}

#[inline(always)]
unsafe fn portable<const R: usize, const P: usize>(t: &Tile) {
    let mut acc = [[[0.0f32; PANEL]; P]; R];
    for step in 0..t.kc {
        // SAFETY: the tile's contract (see `Kernel::run`) covers every offset read here.
        unsafe {
            let b = t.b.add(step * GROUP);
            for (i, row) in acc.iter_mut().enumerate() {
                let a = *t.a.add(i * t.a_rs + step * t.a_cs);
                for (p, lanes) in row.iter_mut().enumerate() {
                    let panel = b.add(p * t.b_panel);
                    for (j, lane) in lanes.iter_mut().enumerate() {
                        *lane = a.mul_add(*panel.add(j), *lane);
                    }
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (p, lanes) in row.iter().enumerate() {
            // SAFETY: as above, for the tile of C.
            let dst = unsafe { t.c.add(i * t.c_rs + p * PANEL) };
            let valid = t.width.saturating_sub(p * PANEL).min(PANEL);
            for (j, lane) in lanes.iter().enumerate().take(valid) {
                // SAFETY: as above.
                unsafe {
                    let out = dst.add(j);
                    *out = if t.add { *out + *lane } else { *lane };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Finish, Kernel, Tile, GROUP, PANEL};

    /// 6 rows x 4 panels: 24 of the 32 zmm registers accumulate, four hold B, one the
    /// broadcast of A (10 loads for 24 multiply-adds a step).
    pub(crate) const AVX512: Kernel = Kernel {
        name: "avx512",
        max_rows: 6,
        panels: 4,
        fuses: true,
        run: avx512_tile,
    };

    /// 6 rows x 1 panel (two ymm per row): 12 of the 16 ymm registers accumulate.
    pub(crate) const AVX2: Kernel = Kernel {
        name: "avx2",
        max_rows: 6,
        panels: 1,
        fuses: false,
        run: avx2_rows,
    };

    unsafe fn avx512_tile(rows: usize, panels: usize, tile: &Tile) {
        // SAFETY: forwarded from `Kernel::run`, which requires AVX-512F for this kernel.
        unsafe {
            match panels {
                4 => by_rows!(rows, avx512, 4, tile, [1, 2, 3, 4, 5, 6]),
                3 => by_rows!(rows, avx512, 3, tile, [1, 2, 3, 4, 5, 6]),
                2 => by_rows!(rows, avx512, 2, tile, [1, 2, 3, 4, 5, 6]),
                _ => by_rows!(rows, avx512, 1, tile, [1, 2, 3, 4, 5, 6]),
            }
        }
    }

    unsafe fn avx2_rows(rows: usize, _panels: usize, tile: &Tile) {
        // SAFETY: forwarded from `Kernel::run`, which requires AVX2 and FMA for this kernel.
        unsafe { by_rows!(rows, avx2, 1, tile, [1, 2, 3, 4, 5, 6]) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const R: usize, const P: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            // SAFETY: the tile's contract covers every address read.
            unsafe {
                let mut bv = [_mm512_setzero_ps(); P];
                for (p, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(b.add(p * t.b_panel));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * t.a_rs));
                    for (p, lane) in row.iter_mut().enumerate() {
                        *lane = _mm512_fmadd_ps(av, bv[p], *lane);
                    }
                }
                a = a.add(t.a_cs);
                b = b.add(GROUP);
            }
        }
        // Lanes of the last panel inside `width`; the others never touch memory.
        let tail = t.width - (P - 1) * PANEL;
        let last: __mmask16 = if tail >= PANEL { !0 } else { (1 << tail) - 1 };
        for (i, row) in acc.iter().enumerate() {
            for (p, lane) in row.iter().enumerate() {
                let mask = if p + 1 == P { last } else { !0 };
                // SAFETY: as above, for the tile of C; masked lanes are not accessed.
                unsafe {
                    let dst = t.c.add(i * t.c_rs + p * PANEL);
                    let v = if t.add {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), *lane)
                    } else {
                        *lane
                    };
                    _mm512_mask_storeu_ps(dst, mask, v);
                }
            }
        }
        if let Some(f) = &t.finish {
            // SAFETY: forwarded from the tile's contract.
            unsafe { finish_avx512(t, f, R, P, last) };
        }
    }

    /// The epilogue over a tile `avx512` has just stored, from L1. Kept out of the kernel
    /// (never inlined): applied while the accumulators are live, it made the compiler spill
    /// them in the loop over steps (ResNet-50 twice as slow, measured).
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    unsafe fn finish_avx512(t: &Tile, f: &Finish, rows: usize, panels: usize, last: __mmask16) {
        for i in 0..rows {
            for p in 0..panels {
                let mask = if p + 1 == panels { last } else { !0 };
                let column = p * PANEL;
                // SAFETY: the tile's contract covers its rows and `width` columns of C and of
                // every vector of `f`; masked lanes are not accessed.
                unsafe {
                    let dst = t.c.add(i * t.c_rs + column);
                    let mut v = _mm512_maskz_loadu_ps(mask, dst);
                    if !f.scale.is_null() {
                        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, f.scale.add(column)));
                    }
                    if !f.bias.is_null() {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, f.bias.add(column)));
                    }
                    if !f.residual.is_null() {
                        let r = f.residual.add(i * f.residual_rs + column);
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, r));
                    }
                    if f.relu {
                        // NaN and -0 give +0, as `f32::max(x, 0.0)` does.
                        v = _mm512_max_ps(v, _mm512_setzero_ps());
                    }
                    _mm512_mask_storeu_ps(dst, mask, v);
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const R: usize, const P: usize>(t: &Tile) {
        // Each panel is two halves of 8 lanes.
        let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
        let (mut a, mut b) = (t.a, t.b);
        for _ in 0..t.kc {
            // SAFETY: the tile's contract covers every address read.
            unsafe {
                let mut bv = [[_mm256_setzero_ps(); 2]; P];
                for (p, v) in bv.iter_mut().enumerate() {
                    let panel = b.add(p * t.b_panel);
                    *v = [_mm256_loadu_ps(panel), _mm256_loadu_ps(panel.add(8))];
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(i * t.a_rs));
                    for (p, halves) in row.iter_mut().enumerate() {
                        halves[0] = _mm256_fmadd_ps(av, bv[p][0], halves[0]);
                        halves[1] = _mm256_fmadd_ps(av, bv[p][1], halves[1]);
                    }
                }
                a = a.add(t.a_cs);
                b = b.add(GROUP);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (p, halves) in row.iter().enumerate() {
                for (h, lane) in halves.iter().enumerate() {
                    let first = p * PANEL + 8 * h;
                    let valid = t.width.saturating_sub(first).min(8);
                    if valid == 0 {
                        continue;
                    }
                    // SAFETY: as above, for the tile of C; masked lanes are not accessed.
                    unsafe {
                        let dst = t.c.add(i * t.c_rs + first);
                        if valid == 8 {
                            let v = if t.add {
                                _mm256_add_ps(_mm256_loadu_ps(dst), *lane)
                            } else {
                                *lane
                            };
                            _mm256_storeu_ps(dst, v);
                        } else {
                            // Lane j is written when its mask's sign bit is set: j < valid.
                            let mask = _mm256_cmpgt_epi32(
                                _mm256_set1_epi32(valid as i32),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                            );
                            let v = if t.add {
                                _mm256_add_ps(_mm256_maskload_ps(dst, mask), *lane)
                            } else {
                                *lane
                            };
                            _mm256_maskstore_ps(dst, mask, v);
                        }
                    }
                }
            }
        }
    }
}
