//! Micro-kernels of the quantised product: `rows x 64` (one group of columns) of `C` from
//! quantised activations and one group of a quantised matrix.
//!
//! Every kernel computes the exact integer dot products and then the f32 operations
//! [`super::qgemm::reference`] defines, in its order, so all give the same bits; the portable
//! kernels are the twins the others are tested against.

use half::f16;

use super::{QuantFormat, GROUP, Q4_BLOCK, QUAD};

/// One tile: `a` at the first row's codes (`a_rs` apart), its `a_groups` scales and code
/// sums per row, `b` at the group's codes and `b_scales` at its scales, `steps` codes per
/// row; `c` at the tile's top-left element, rows `c_rs` apart, the first `width` columns
/// written.
#[derive(Clone, Copy)]
pub(super) struct QTile {
    pub a: *const i8,
    pub a_rs: usize,
    pub a_scales: *const f32,
    pub a_sums: *const i32,
    pub a_groups: usize,
    pub b: *const u8,
    pub b_scales: *const u8,
    pub steps: usize,
    pub c: *mut f32,
    pub c_rs: usize,
    pub width: usize,
}

#[derive(Clone, Copy)]
pub(super) struct QKernel {
    pub name: &'static str,
    pub format: QuantFormat,
    pub max_rows: usize,
    run: unsafe fn(usize, &QTile),
}

impl QKernel {
    /// # Safety
    /// `tile` must address `rows` rows of `steps` codes with their scales and sums, one whole
    /// group of the matrix (codes and scales) and `rows x width` of `C`, all valid;
    /// `1 <= rows <= max_rows`, `1 <= width <= 64`; the CPU must have the kernel's features.
    pub unsafe fn run(&self, rows: usize, tile: &QTile) {
        debug_assert!(rows >= 1 && rows <= self.max_rows);
        debug_assert!(tile.width >= 1 && tile.width <= GROUP);
        // SAFETY: forwarded from the caller.
        unsafe { (self.run)(rows, tile) }
    }
}

/// The fastest kernel for `format` on this CPU, detected once per format.
pub(super) fn best(format: QuantFormat) -> QKernel {
    *available(format)
        .last()
        .expect("the portable kernel is always there")
}

/// Every kernel for `format` this CPU runs, portable first.
pub(super) fn available(format: QuantFormat) -> Vec<QKernel> {
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(unused_mut)
    )]
    let mut kernels = vec![match format {
        QuantFormat::Int8 => PORTABLE_INT8,
        QuantFormat::Q4 => PORTABLE_Q4,
    }];
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        kernels.push(match format {
            QuantFormat::Int8 => arm::SDOT_INT8,
            QuantFormat::Q4 => arm::SDOT_Q4,
        });
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            kernels.push(match format {
                QuantFormat::Int8 => x86::AVX2_INT8,
                QuantFormat::Q4 => x86::AVX2_Q4,
            });
            if std::is_x86_feature_detected!("avxvnni") {
                kernels.push(match format {
                    QuantFormat::Int8 => x86::AVXVNNI_INT8,
                    QuantFormat::Q4 => x86::AVXVNNI_Q4,
                });
            }
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
        {
            kernels.push(match format {
                QuantFormat::Int8 => x86::VNNI_INT8,
                QuantFormat::Q4 => x86::VNNI_Q4,
            });
            if format == QuantFormat::Int8 && super::amx::usable() {
                kernels.push(x86::AMX_INT8);
            }
        }
    }
    kernels
}

macro_rules! by_rows {
    ($rows:expr, $kernel:ident, $tile:expr, [$($r:literal),*]) => {
        match $rows {
            $($r => $kernel::<$r>($tile),)*
            _ => unreachable!("a kernel is never called with more rows than it declares"),
        }
    };
}

const PORTABLE_INT8: QKernel = QKernel {
    name: "portable",
    format: QuantFormat::Int8,
    max_rows: 4,
    run: portable_int8_rows,
};

const PORTABLE_Q4: QKernel = QKernel {
    name: "portable",
    format: QuantFormat::Q4,
    max_rows: 4,
    run: portable_q4_rows,
};

unsafe fn portable_int8_rows(rows: usize, t: &QTile) {
    // SAFETY: forwarded from `QKernel::run`.
    unsafe { by_rows!(rows, portable_int8, t, [1, 2, 3, 4]) }
}

unsafe fn portable_q4_rows(rows: usize, t: &QTile) {
    // SAFETY: forwarded from `QKernel::run`.
    unsafe { by_rows!(rows, portable_q4, t, [1, 2, 3, 4]) }
}

#[inline(always)]
unsafe fn portable_int8<const R: usize>(t: &QTile) {
    let mut acc = [[0i32; GROUP]; R];
    for q in 0..t.steps / QUAD {
        // SAFETY: the tile's contract covers every address read.
        unsafe {
            let w =
                std::slice::from_raw_parts(t.b.add(q * GROUP * QUAD).cast::<i8>(), GROUP * QUAD);
            for (i, row) in acc.iter_mut().enumerate() {
                let a = std::slice::from_raw_parts(t.a.add(i * t.a_rs + q * QUAD), QUAD);
                for (c, lane) in row.iter_mut().enumerate() {
                    for s in 0..QUAD {
                        *lane += i32::from(a[s]) * i32::from(w[c * QUAD + s]);
                    }
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: as above, for the scales and the tile of C.
        unsafe {
            let sa = *t.a_scales.add(i * t.a_groups);
            let sw = t.b_scales.cast::<f32>();
            for (c, isum) in row.iter().enumerate().take(t.width) {
                *t.c.add(i * t.c_rs + c) = (*isum as f32 * sa) * *sw.add(c);
            }
        }
    }
}

#[inline(always)]
unsafe fn portable_q4<const R: usize>(t: &QTile) {
    let mut out = [[0.0f32; GROUP]; R];
    let blocks = t.steps / Q4_BLOCK;
    for b in 0..blocks {
        let mut acc = [[0i32; GROUP]; R];
        for r in 0..Q4_BLOCK / QUAD {
            // SAFETY: the tile's contract covers every address read.
            unsafe {
                let quad = std::slice::from_raw_parts(t.b.add((b * 8 + r) * 128), 128);
                for (i, row) in acc.iter_mut().enumerate() {
                    let a = t.a.add(i * t.a_rs + b * Q4_BLOCK + r * QUAD);
                    for (c, lane) in row.iter_mut().enumerate() {
                        let (panel, x) = (c / 16, c % 16 * QUAD);
                        for s in 0..QUAD {
                            let byte = quad[panel / 2 * 64 + x + s];
                            let code = if panel % 2 == 1 { byte >> 4 } else { byte & 15 };
                            *lane += i32::from(code) * i32::from(*a.add(s));
                        }
                    }
                }
            }
        }
        for (i, (row, sums)) in out.iter_mut().zip(&acc).enumerate() {
            // SAFETY: as above, for the scales and sums.
            unsafe {
                let g = i * t.a_groups + b;
                let (sa, offset) = (*t.a_scales.add(g), 8 * *t.a_sums.add(g));
                let d = t.b_scales.cast::<f16>().add(b * GROUP);
                for (c, (v, isum)) in row.iter_mut().zip(sums).enumerate() {
                    let scale = sa * (*d.add(c)).to_f32();
                    *v = ((isum - offset) as f32).mul_add(scale, *v);
                }
            }
        }
    }
    for (i, row) in out.iter().enumerate() {
        for (c, v) in row.iter().enumerate().take(t.width) {
            // SAFETY: the tile of C.
            unsafe { *t.c.add(i * t.c_rs + c) = *v };
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;
    use std::arch::asm;

    use super::{QKernel, QTile, GROUP, QUAD};
    use crate::quant::{QuantFormat, Q4_BLOCK};

    /// `acc += dot(w's 4-byte groups, lane LANE of a)`; used inside `unsafe` (register-only
    /// arithmetic on a CPU with the dotprod feature).
    macro_rules! sdot_lane {
        ($acc:expr, $w:expr, $a:expr, $lane:literal) => {
            asm!(
                concat!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[", $lane, "]"),
                acc = inout(vreg) $acc,
                w = in(vreg) $w,
                a = in(vreg) $a,
                options(pure, nomem, nostack),
            )
        };
    }

    /// 4 rows x 16 columns at a time over the group's four panels, NEON `sdot`: each 16-byte
    /// vector of a panel's quad holds 4 columns x 4 steps, and one `sdot` by a lane of a row's
    /// codes adds the 4 dot products. Rust's dot-product intrinsics are not stable, so the one
    /// instruction is written with `asm!`.
    pub(super) const SDOT_INT8: QKernel = QKernel {
        name: "neon-sdot",
        format: QuantFormat::Int8,
        max_rows: 4,
        run: sdot_int8_rows,
    };

    /// q4 as `SDOT_INT8`, 4 rows x 16 columns: a panel's nibbles (low or high half of its
    /// pair's bytes) are unsigned codes `q + 8` that `sdot` takes as signed bytes 0..15, and
    /// `8 * sum(a)` per block is taken off, as the VNNI kernel does.
    pub(super) const SDOT_Q4: QKernel = QKernel {
        name: "neon-sdot",
        format: QuantFormat::Q4,
        max_rows: 4,
        run: sdot_q4_rows,
    };

    unsafe fn sdot_q4_rows(rows: usize, t: &QTile) {
        // SAFETY: forwarded from `QKernel::run`, which requires the dotprod feature here.
        unsafe { by_rows!(rows, sdot_q4, t, [1, 2, 3, 4]) }
    }

    #[target_feature(enable = "neon,dotprod")]
    unsafe fn sdot_q4<const R: usize>(t: &QTile) {
        let low = vdupq_n_u8(15);
        for p in 0..4 {
            if p * 16 >= t.width {
                break;
            }
            let mut out = [[vdupq_n_f32(0.0); 4]; R];
            for b in 0..t.steps / Q4_BLOCK {
                let mut acc = [[vdupq_n_s32(0); 4]; R];
                // SAFETY: block `b` of the tile's rows (32 codes each) and of the group are
                // the tile's.
                unsafe {
                    for half in 0..2 {
                        let mut a = [vdupq_n_s8(0); R];
                        for (i, v) in a.iter_mut().enumerate() {
                            *v = vld1q_s8(t.a.add(i * t.a_rs + b * Q4_BLOCK + half * 16));
                        }
                        for lane in 0..4 {
                            let r = half * 4 + lane;
                            let bytes = t.b.add((b * 8 + r) * 128 + p / 2 * 64);
                            let w: [int8x16_t; 4] = std::array::from_fn(|v| {
                                let raw = vld1q_u8(bytes.add(16 * v));
                                let nibbles = if p % 2 == 1 {
                                    vshrq_n_u8::<4>(raw)
                                } else {
                                    vandq_u8(raw, low)
                                };
                                vreinterpretq_s8_u8(nibbles)
                            });
                            for (row, a) in acc.iter_mut().zip(&a) {
                                for (lanes, w) in row.iter_mut().zip(&w) {
                                    match lane {
                                        0 => sdot_lane!(*lanes, *w, *a, "0"),
                                        1 => sdot_lane!(*lanes, *w, *a, "1"),
                                        2 => sdot_lane!(*lanes, *w, *a, "2"),
                                        _ => sdot_lane!(*lanes, *w, *a, "3"),
                                    }
                                }
                            }
                        }
                    }
                    let d = t.b_scales.cast::<half::f16>().add(b * GROUP + p * 16);
                    let d: [f32; 16] = std::array::from_fn(|c| (*d.add(c)).to_f32());
                    for (i, (row, sums)) in out.iter_mut().zip(&acc).enumerate() {
                        let g = i * t.a_groups + b;
                        let offset = vdupq_n_s32(8 * *t.a_sums.add(g));
                        let sa = *t.a_scales.add(g);
                        for (v, (isum, d)) in row.iter_mut().zip(sums.iter().zip(d.chunks_exact(4)))
                        {
                            let scale: [f32; 4] = std::array::from_fn(|c| sa * d[c]);
                            let x = vcvtq_f32_s32(vsubq_s32(*isum, offset));
                            *v = vfmaq_f32(*v, x, vld1q_f32(scale.as_ptr()));
                        }
                    }
                }
            }
            for (i, row) in out.iter().enumerate() {
                for (g, v) in row.iter().enumerate() {
                    let mut values = [0.0f32; 4];
                    // SAFETY: `values` holds 4 floats; the columns written are inside `width`.
                    unsafe {
                        vst1q_f32(values.as_mut_ptr(), *v);
                        for (c, value) in values.iter().enumerate() {
                            let column = p * 16 + g * 4 + c;
                            if column < t.width {
                                *t.c.add(i * t.c_rs + column) = *value;
                            }
                        }
                    }
                }
            }
        }
    }

    unsafe fn sdot_int8_rows(rows: usize, t: &QTile) {
        // SAFETY: forwarded from `QKernel::run`, which requires the dotprod feature here.
        unsafe { by_rows!(rows, sdot_int8, t, [1, 2, 3, 4]) }
    }

    #[target_feature(enable = "neon,dotprod")]
    unsafe fn sdot_int8<const R: usize>(t: &QTile) {
        let quads = t.steps / QUAD;
        for p in 0..4 {
            if p * 16 >= t.width {
                break;
            }
            let mut acc = [[vdupq_n_s32(0); 4]; R];
            // Four quads of a row at a time (16 codes), one `sdot` per quad and column group.
            let mut q = 0;
            while q < quads {
                let take = 4.min(quads - q);
                // SAFETY: quads `q..q + take` of panel `p` and of each row are the tile's; a
                // row's codes past its last quad are not read (the partial vector is built
                // from a zeroed copy).
                unsafe {
                    let mut a = [vdupq_n_s8(0); R];
                    for (i, v) in a.iter_mut().enumerate() {
                        let row = t.a.add(i * t.a_rs + q * QUAD);
                        *v = if take == 4 {
                            vld1q_s8(row)
                        } else {
                            let mut codes = [0i8; 16];
                            std::ptr::copy_nonoverlapping(row, codes.as_mut_ptr(), take * QUAD);
                            vld1q_s8(codes.as_ptr())
                        };
                    }
                    for lane in 0..take {
                        let quad = t.b.add((q + lane) * GROUP * QUAD + p * 64).cast::<i8>();
                        let w = [
                            vld1q_s8(quad),
                            vld1q_s8(quad.add(16)),
                            vld1q_s8(quad.add(32)),
                            vld1q_s8(quad.add(48)),
                        ];
                        for (row, a) in acc.iter_mut().zip(&a) {
                            for (lanes, w) in row.iter_mut().zip(&w) {
                                match lane {
                                    0 => sdot_lane!(*lanes, *w, *a, "0"),
                                    1 => sdot_lane!(*lanes, *w, *a, "1"),
                                    2 => sdot_lane!(*lanes, *w, *a, "2"),
                                    _ => sdot_lane!(*lanes, *w, *a, "3"),
                                }
                            }
                        }
                    }
                }
                q += take;
            }
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: row `i`'s scale, the group's scales and `width` columns of C are the
                // tile's.
                unsafe {
                    let sa = *t.a_scales.add(i * t.a_groups);
                    let sw = t.b_scales.cast::<f32>();
                    for (g, lanes) in row.iter().enumerate() {
                        let mut sums = [0i32; 4];
                        vst1q_s32(sums.as_mut_ptr(), *lanes);
                        for (c, isum) in sums.iter().enumerate() {
                            let column = p * 16 + g * 4 + c;
                            if column < t.width {
                                *t.c.add(i * t.c_rs + column) =
                                    (*isum as f32 * sa) * *sw.add(column);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{QKernel, QTile, GROUP, QUAD};
    use crate::quant::{QuantFormat, Q4_BLOCK};

    /// 6 rows x 64 columns: 24 zmm accumulate, four hold a quad of the group (flipped to
    /// unsigned), one the broadcast of a row's four codes: 24 `vpdpbusd` per quad.
    pub(super) const VNNI_INT8: QKernel = QKernel {
        name: "avx512-vnni",
        format: QuantFormat::Int8,
        max_rows: 6,
        run: vnni_int8_rows,
    };

    /// 3 rows x 64 columns: 12 zmm accumulate a block in integers, 12 its f32 sum.
    pub(super) const VNNI_Q4: QKernel = QKernel {
        name: "avx512-vnni",
        format: QuantFormat::Q4,
        max_rows: 3,
        run: vnni_q4_rows,
    };

    /// 4 rows x 16 columns at a time (two ymm each), over the group's four panels.
    pub(super) const AVX2_INT8: QKernel = QKernel {
        name: "avx2",
        format: QuantFormat::Int8,
        max_rows: 4,
        run: avx2_int8_rows,
    };

    /// 2 rows x 16 columns at a time, a block's integer and f32 sums in registers.
    pub(super) const AVX2_Q4: QKernel = QKernel {
        name: "avx2",
        format: QuantFormat::Q4,
        max_rows: 2,
        run: avx2_q4_rows,
    };

    /// `AVX2_INT8` with AVX-VNNI's 256-bit `vpdpbusd` (weights flipped to unsigned, as the
    /// AVX-512 VNNI kernel does), for CPUs that have it without AVX-512.
    pub(super) const AVXVNNI_INT8: QKernel = QKernel {
        name: "avx-vnni",
        format: QuantFormat::Int8,
        max_rows: 4,
        run: avxvnni_int8_rows,
    };

    /// `AVX2_Q4` with AVX-VNNI's `vpdpbusd`.
    pub(super) const AVXVNNI_Q4: QKernel = QKernel {
        name: "avx-vnni",
        format: QuantFormat::Q4,
        max_rows: 2,
        run: avxvnni_q4_rows,
    };

    unsafe fn avxvnni_int8_rows(rows: usize, t: &QTile) {
        // SAFETY: forwarded from `QKernel::run`, which requires AVX-VNNI here.
        unsafe { by_rows!(rows, avxvnni_int8, t, [1, 2, 3, 4]) }
    }

    unsafe fn avxvnni_q4_rows(rows: usize, t: &QTile) {
        // SAFETY: as above.
        unsafe { by_rows!(rows, avxvnni_q4, t, [1, 2]) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_int8<const R: usize>(t: &QTile) {
        // SAFETY: forwarded; this function has the features the body needs without DOT.
        unsafe { ymm_int8::<R, false>(t) }
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn avxvnni_int8<const R: usize>(t: &QTile) {
        // SAFETY: forwarded; this function has AVX-VNNI for DOT.
        unsafe { ymm_int8::<R, true>(t) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_q4<const R: usize>(t: &QTile) {
        // SAFETY: as for `avx2_int8`.
        unsafe { ymm_q4::<R, false>(t) }
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn avxvnni_q4<const R: usize>(t: &QTile) {
        // SAFETY: as for `avxvnni_int8`.
        unsafe { ymm_q4::<R, true>(t) }
    }

    /// 32 rows x 64 columns on AMX tiles: signed-byte tile products (`tdpbssd`), 16 x 16
    /// outputs of 64 steps each, read straight from the codes (a tile of the weight is 16
    /// consecutive quads of one panel, 256 bytes apart). Other shapes (fewer rows, steps not a
    /// multiple of 64) go to the VNNI kernel.
    pub(super) const AMX_INT8: QKernel = QKernel {
        name: "amx",
        format: QuantFormat::Int8,
        max_rows: 32,
        run: amx_int8_rows,
    };

    unsafe fn amx_int8_rows(rows: usize, t: &QTile) {
        if rows == 32 && t.steps.is_multiple_of(64) && t.steps > 0 {
            // SAFETY: forwarded from `QKernel::run`; `amx::usable` checked the CPU and the
            // kernel's permission.
            unsafe { super::super::amx::int8_32x64(t, vnni_finish) };
            return;
        }
        for i0 in (0..rows).step_by(6) {
            let tile = QTile {
                // SAFETY: rows `i0..` of the tile are the caller's.
                a: unsafe { t.a.add(i0 * t.a_rs) },
                a_scales: t.a_scales.wrapping_add(i0 * t.a_groups),
                a_sums: t.a_sums.wrapping_add(i0 * t.a_groups),
                c: t.c.wrapping_add(i0 * t.c_rs),
                ..*t
            };
            // SAFETY: as above; an AMX CPU has AVX-512 VNNI (checked when it was listed).
            unsafe { vnni_int8_rows(6.min(rows - i0), &tile) };
        }
    }

    /// Writes row `i` of a tile from its exact sums `isum` (64 columns), as every int8
    /// kernel does: `(isum as f32 * sa) * sw`.
    #[target_feature(enable = "avx512f")]
    unsafe fn vnni_finish(t: &QTile, i: usize, isum: &[i32; 64]) {
        // SAFETY: row `i`'s scale and `width` columns of C are the tile's; masked lanes are
        // not accessed.
        unsafe {
            let sa = _mm512_set1_ps(*t.a_scales.add(i * t.a_groups));
            for p in 0..4 {
                let mask = panel_mask(t.width, p);
                if mask == 0 {
                    continue;
                }
                let sw = _mm512_loadu_ps(t.b_scales.cast::<f32>().add(p * 16));
                let v = _mm512_cvtepi32_ps(_mm512_loadu_si512(isum.as_ptr().add(p * 16).cast()));
                let v = _mm512_mul_ps(_mm512_mul_ps(v, sa), sw);
                _mm512_mask_storeu_ps(t.c.add(i * t.c_rs + p * 16), mask, v);
            }
        }
    }

    unsafe fn vnni_int8_rows(rows: usize, t: &QTile) {
        // SAFETY: forwarded from `QKernel::run`, which requires AVX-512 VNNI here.
        unsafe { by_rows!(rows, vnni_int8, t, [1, 2, 3, 4, 5, 6]) }
    }

    unsafe fn vnni_q4_rows(rows: usize, t: &QTile) {
        // SAFETY: as above.
        unsafe { by_rows!(rows, vnni_q4, t, [1, 2, 3]) }
    }

    unsafe fn avx2_int8_rows(rows: usize, t: &QTile) {
        // SAFETY: forwarded from `QKernel::run`, which requires AVX2 here.
        unsafe { by_rows!(rows, avx2_int8, t, [1, 2, 3, 4]) }
    }

    unsafe fn avx2_q4_rows(rows: usize, t: &QTile) {
        // SAFETY: as above.
        unsafe { by_rows!(rows, avx2_q4, t, [1, 2]) }
    }

    /// Lanes of panel `p` (16 columns) inside `width`.
    fn panel_mask(width: usize, p: usize) -> __mmask16 {
        let valid = width.saturating_sub(p * 16).min(16);
        ((1u32 << valid) - 1) as __mmask16
    }

    /// Four codes of a row, broadcast to every lane.
    #[inline(always)]
    unsafe fn quad_of(a: *const i8) -> i32 {
        // SAFETY: the caller passes four readable bytes.
        unsafe { a.cast::<i32>().read_unaligned() }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni_int8<const R: usize>(t: &QTile) {
        // `vpdpbusd` multiplies unsigned by signed bytes: the weights are flipped to
        // `q + 128` and `128 * sum(a)` is taken off the total afterwards.
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        let mut b = t.b;
        for q in 0..t.steps / QUAD {
            // SAFETY: the tile's contract covers every address read.
            unsafe {
                let w: [__m512i; 4] = std::array::from_fn(|p| {
                    _mm512_xor_si512(_mm512_loadu_si512(b.add(p * 64).cast()), flip)
                });
                for (i, row) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_epi32(quad_of(t.a.add(i * t.a_rs + q * QUAD)));
                    for (lane, w) in row.iter_mut().zip(&w) {
                        *lane = _mm512_dpbusd_epi32(*lane, *w, a);
                    }
                }
                b = b.add(GROUP * QUAD);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: the scales, sums and the tile of C are the tile's; masked lanes are not
            // accessed.
            unsafe {
                let offset = _mm512_set1_epi32(128 * *t.a_sums.add(i * t.a_groups));
                let sa = _mm512_set1_ps(*t.a_scales.add(i * t.a_groups));
                for (p, lane) in row.iter().enumerate() {
                    let mask = panel_mask(t.width, p);
                    if mask == 0 {
                        continue;
                    }
                    let sw = _mm512_loadu_ps(t.b_scales.cast::<f32>().add(p * 16));
                    let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(*lane, offset));
                    let v = _mm512_mul_ps(_mm512_mul_ps(v, sa), sw);
                    _mm512_mask_storeu_ps(t.c.add(i * t.c_rs + p * 16), mask, v);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni_q4<const R: usize>(t: &QTile) {
        let low = _mm512_set1_epi8(15);
        let mut out = [[_mm512_setzero_ps(); 4]; R];
        for b in 0..t.steps / Q4_BLOCK {
            let mut acc = [[_mm512_setzero_si512(); 4]; R];
            for r in 0..Q4_BLOCK / QUAD {
                // SAFETY: the tile's contract covers every address read.
                unsafe {
                    let quad = t.b.add((b * 8 + r) * 128);
                    let halves = [
                        _mm512_loadu_si512(quad.cast()),
                        _mm512_loadu_si512(quad.add(64).cast()),
                    ];
                    let w = [
                        _mm512_and_si512(halves[0], low),
                        _mm512_and_si512(_mm512_srli_epi16(halves[0], 4), low),
                        _mm512_and_si512(halves[1], low),
                        _mm512_and_si512(_mm512_srli_epi16(halves[1], 4), low),
                    ];
                    for (i, row) in acc.iter_mut().enumerate() {
                        let a = t.a.add(i * t.a_rs + b * Q4_BLOCK + r * QUAD);
                        let a = _mm512_set1_epi32(quad_of(a));
                        for (lane, w) in row.iter_mut().zip(&w) {
                            *lane = _mm512_dpbusd_epi32(*lane, *w, a);
                        }
                    }
                }
            }
            // SAFETY: the block's scales and the rows' scales and sums are the tile's.
            unsafe {
                let d = t.b_scales.cast::<u16>().add(b * GROUP);
                let d: [__m512; 4] = std::array::from_fn(|p| {
                    _mm512_cvtph_ps(_mm256_loadu_si256(d.add(p * 16).cast()))
                });
                for (i, (row, sums)) in out.iter_mut().zip(&acc).enumerate() {
                    let g = i * t.a_groups + b;
                    let offset = _mm512_set1_epi32(8 * *t.a_sums.add(g));
                    let sa = _mm512_set1_ps(*t.a_scales.add(g));
                    for ((v, isum), d) in row.iter_mut().zip(sums).zip(&d) {
                        let x = _mm512_cvtepi32_ps(_mm512_sub_epi32(*isum, offset));
                        *v = _mm512_fmadd_ps(x, _mm512_mul_ps(sa, *d), *v);
                    }
                }
            }
        }
        for (i, row) in out.iter().enumerate() {
            for (p, v) in row.iter().enumerate() {
                let mask = panel_mask(t.width, p);
                // SAFETY: the tile of C; masked lanes are not accessed.
                unsafe { _mm512_mask_storeu_ps(t.c.add(i * t.c_rs + p * 16), mask, *v) };
            }
        }
    }

    /// Stores 8 lanes of a row at `dst`, the first `valid` of them.
    #[inline(always)]
    unsafe fn store8(dst: *mut f32, v: __m256, valid: usize) {
        // SAFETY: the caller passes `valid` writable floats at `dst`.
        unsafe {
            if valid >= 8 {
                _mm256_storeu_ps(dst, v);
            } else if valid > 0 {
                let mask = _mm256_cmpgt_epi32(
                    _mm256_set1_epi32(valid as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                );
                _mm256_maskstore_ps(dst, mask, v);
            }
        }
    }

    /// The 256-bit int8 kernel, inlined into a function compiled for AVX2 (`DOT` false) or
    /// AVX-VNNI (`DOT` true). Without `vpdpbusd`, `vpmaddubsw` multiplies unsigned by signed
    /// bytes into pairs of i16: |w| by a with w's sign, which stays inside an i16 for every
    /// code (2 * 128 * 127). With it, the weights are flipped to `q + 128` and `128 * sum(a)`
    /// is taken off.
    #[inline(always)]
    unsafe fn ymm_int8<const R: usize, const DOT: bool>(t: &QTile) {
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(-128);
        for p in 0..4 {
            if p * 16 >= t.width {
                break;
            }
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            let mut b = t.b.add(p * 64);
            for q in 0..t.steps / QUAD {
                // SAFETY: the tile's contract covers every address read.
                unsafe {
                    let w = [
                        _mm256_loadu_si256(b.cast()),
                        _mm256_loadu_si256(b.add(32).cast()),
                    ];
                    let magnitude = if DOT {
                        [_mm256_xor_si256(w[0], flip), _mm256_xor_si256(w[1], flip)]
                    } else {
                        [_mm256_abs_epi8(w[0]), _mm256_abs_epi8(w[1])]
                    };
                    for (i, row) in acc.iter_mut().enumerate() {
                        let a = _mm256_set1_epi32(quad_of(t.a.add(i * t.a_rs + q * QUAD)));
                        for h in 0..2 {
                            row[h] = if DOT {
                                _mm256_dpbusd_avx_epi32(row[h], magnitude[h], a)
                            } else {
                                let pairs =
                                    _mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(a, w[h]));
                                _mm256_add_epi32(row[h], _mm256_madd_epi16(pairs, ones))
                            };
                        }
                    }
                    b = b.add(GROUP * QUAD);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: the scales and the tile of C are the tile's.
                unsafe {
                    let sa = _mm256_set1_ps(*t.a_scales.add(i * t.a_groups));
                    let offset = _mm256_set1_epi32(if DOT {
                        128 * *t.a_sums.add(i * t.a_groups)
                    } else {
                        0
                    });
                    for (h, lane) in row.iter().enumerate() {
                        let first = p * 16 + h * 8;
                        let sw = _mm256_loadu_ps(t.b_scales.cast::<f32>().add(first));
                        let isum = _mm256_sub_epi32(*lane, offset);
                        let v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), sa), sw);
                        store8(
                            t.c.add(i * t.c_rs + first),
                            v,
                            t.width.saturating_sub(first),
                        );
                    }
                }
            }
        }
    }

    /// The 256-bit q4 kernel, inlined as `ymm_int8` is. `vpmaddubsw` takes the nibbles as
    /// unsigned codes (pairs stay far inside an i16, 2 * 15 * 127); `vpdpbusd` takes them as
    /// they are; either way `8 * sum(a)` per block is taken off.
    #[inline(always)]
    unsafe fn ymm_q4<const R: usize, const DOT: bool>(t: &QTile) {
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(15);
        for p in 0..4 {
            if p * 16 >= t.width {
                break;
            }
            let mut out = [[_mm256_setzero_ps(); 2]; R];
            for b in 0..t.steps / Q4_BLOCK {
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                for r in 0..Q4_BLOCK / QUAD {
                    // SAFETY: the tile's contract covers every address read.
                    unsafe {
                        let half = t.b.add((b * 8 + r) * 128 + p / 2 * 64);
                        let raw = [
                            _mm256_loadu_si256(half.cast()),
                            _mm256_loadu_si256(half.add(32).cast()),
                        ];
                        let w = raw.map(|x| {
                            if p % 2 == 1 {
                                _mm256_and_si256(_mm256_srli_epi16(x, 4), low)
                            } else {
                                _mm256_and_si256(x, low)
                            }
                        });
                        for (i, row) in acc.iter_mut().enumerate() {
                            let a = t.a.add(i * t.a_rs + b * Q4_BLOCK + r * QUAD);
                            let a = _mm256_set1_epi32(quad_of(a));
                            for h in 0..2 {
                                row[h] = if DOT {
                                    _mm256_dpbusd_avx_epi32(row[h], w[h], a)
                                } else {
                                    let pairs = _mm256_maddubs_epi16(w[h], a);
                                    _mm256_add_epi32(row[h], _mm256_madd_epi16(pairs, ones))
                                };
                            }
                        }
                    }
                }
                // SAFETY: the block's scales and the rows' scales and sums are the tile's.
                unsafe {
                    let d = t.b_scales.cast::<u16>().add(b * GROUP + p * 16);
                    let d = [
                        _mm256_cvtph_ps(_mm_loadu_si128(d.cast())),
                        _mm256_cvtph_ps(_mm_loadu_si128(d.add(8).cast())),
                    ];
                    for (i, (row, sums)) in out.iter_mut().zip(&acc).enumerate() {
                        let g = i * t.a_groups + b;
                        let offset = _mm256_set1_epi32(8 * *t.a_sums.add(g));
                        let sa = _mm256_set1_ps(*t.a_scales.add(g));
                        for h in 0..2 {
                            let x = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums[h], offset));
                            row[h] = _mm256_fmadd_ps(x, _mm256_mul_ps(sa, d[h]), row[h]);
                        }
                    }
                }
            }
            for (i, row) in out.iter().enumerate() {
                for (h, v) in row.iter().enumerate() {
                    let first = p * 16 + h * 8;
                    // SAFETY: the tile of C.
                    unsafe {
                        store8(
                            t.c.add(i * t.c_rs + first),
                            *v,
                            t.width.saturating_sub(first),
                        )
                    };
                }
            }
        }
    }
}
