//! The quantised product `out = epilogue(a @ B)`, `B` a [`QuantMatrix`], and its naive twin.
//!
//! The arithmetic, which every kernel follows: `a`'s rows are quantised ([`quantize_rows`]);
//! for int8, `c = (isum as f32 * sa[i]) * sw[j]` with `isum` the exact dot product of the
//! codes; for q4, `c` starts at zero and for each block in order
//! `c = fma(isum_b as f32, sa[i, b] * d[b, j], c)`. Then the epilogue, as the f32 GEMM's.

use rayon::prelude::*;

use super::encode::{int8_at, q4_code, q4_scale_at};
use super::micro::{self, QKernel, QTile};
use super::rows::{quantize_rows, QuantRows};
use super::{QuantFormat, QuantMatrix, GROUP, Q4_BLOCK, QUAD};
use crate::kernels::gemm::{self, count_flops, Epilogue, Out, Rhs};
use crate::kernels::matmul::MatRef;
use crate::parallel::gemm_threads;

/// Rows below which the product is split by columns whatever its width (as the f32 GEMM).
const FEW_ROWS: usize = 64;
/// Columns per thread from which a product is split by columns.
const WIDE_SHARE: usize = 4 * GROUP;

/// `out = epilogue(a @ b)`: `a` is `m x k` f32 (any strides), `b` a `k x n` quantised matrix,
/// `out` `m x n` with dense columns.
///
/// Panics when the views disagree or run past their slices: callers derive them from checked
/// shapes, so a mismatch is a bug.
pub fn qgemm(out: Out, a: MatRef, b: &QuantMatrix, epilogue: Epilogue) {
    check(&out, &a, b, &epilogue);
    let kernel = micro::best(b.format());
    let band = band_rows(b, kernel.max_rows);
    if a.rows <= band {
        let rows = quantize_rows(a, b.format());
        qgemm_with(kernel, out, a, &rows, b, epilogue, None);
        return;
    }
    for i0 in (0..a.rows).step_by(band) {
        let count = band.min(a.rows - i0);
        let lhs = MatRef {
            data: &a.data[i0 * a.row_stride..],
            rows: count,
            ..a
        };
        let dst = Out {
            data: &mut out.data[i0 * out.row_stride..],
            row_stride: out.row_stride,
            col_stride: 1,
        };
        let rows = quantize_rows(lhs, b.format());
        qgemm_with(kernel, dst, lhs, &rows, b, epilogue.from_row(i0), None);
    }
}

/// Bytes of quantised rows a product holds at once: a tall left operand (a convolution's
/// pixels) is quantised and multiplied in bands of rows, so this transient stays within the
/// runtime's reserve for GEMM packing whatever the height.
pub const BAND_BYTES: usize = 1 << 20;

/// Rows per band for a product with `b` (a multiple of the kernel's tile height).
fn band_rows(b: &QuantMatrix, tile: usize) -> usize {
    let stride = b.format().padded_inner(b.rows()).max(1);
    (BAND_BYTES / stride).max(1).next_multiple_of(tile)
}

/// `out = epilogue(a @ b)` for several products of one input (the query, key and value
/// projections): the input is quantised once per format for all of them, unless it is too
/// tall for one band, when each product runs as [`qgemm`] does. Each product's bits are those
/// of [`qgemm`].
pub(crate) fn qgemm_many(a: MatRef, products: Vec<(Out, &QuantMatrix, Epilogue)>) {
    let mut quantised: Vec<QuantRows> = Vec::new();
    for (out, b, epilogue) in products {
        let kernel = micro::best(b.format());
        if a.rows > band_rows(b, kernel.max_rows) {
            qgemm(out, a, b, epilogue);
            continue;
        }
        check(&out, &a, b, &epilogue);
        let at = match quantised.iter().position(|r| r.format == b.format()) {
            Some(at) => at,
            None => {
                quantised.push(quantize_rows(a, b.format()));
                quantised.len() - 1
            }
        };
        qgemm_with(kernel, out, a, &quantised[at], b, epilogue, None);
    }
}

/// The name of the kernel [`qgemm`] runs for `format` on this CPU (for benchmarks' labels).
pub fn kernel_name(format: QuantFormat) -> &'static str {
    micro::best(format).name
}

/// The f32 GEMM's checks, and dense rows that do not overlap.
fn check(out: &Out, a: &MatRef, b: &QuantMatrix, epilogue: &Epilogue) {
    assert_eq!(out.col_stride, 1, "a quantised product writes dense rows");
    let empty = a.rows == 0 || b.cols() == 0;
    assert!(empty || out.row_stride >= b.cols(), "dst rows overlap");
    gemm::check(out, a, &Rhs::Quant(b), epilogue);
}

/// The product over rows quantised from `a` (which gives only the shape), checked by the
/// caller.
pub(super) fn qgemm_with(
    kernel: QKernel,
    out: Out,
    a: MatRef,
    rows: &QuantRows,
    b: &QuantMatrix,
    epilogue: Epilogue,
    threads: Option<usize>,
) {
    debug_assert_eq!(kernel.format, b.format());
    let (m, k, n) = (a.rows, a.cols, b.cols());
    count_flops(m, k, n);
    if m == 0 || n == 0 {
        return;
    }
    let job = Job {
        kernel,
        rows,
        b,
        dst: SendPtr(out.data.as_mut_ptr()),
        out_rs: out.row_stride,
        epilogue,
    };
    let groups = n.div_ceil(GROUP);
    let threads = threads.unwrap_or_else(|| gemm_threads(m * k * n)).max(1);
    if threads == 1 {
        job.run(0..m, 0..groups);
        return;
    }
    let group_chunk = groups.div_ceil(threads);
    if group_chunk * GROUP >= WIDE_SHARE || m < FEW_ROWS {
        let starts: Vec<usize> = (0..groups).step_by(group_chunk).collect();
        starts
            .into_par_iter()
            .for_each(|g0| job.run(0..m, g0..(g0 + group_chunk).min(groups)));
    } else {
        let row_chunk = m.div_ceil(threads).next_multiple_of(kernel.max_rows);
        let starts: Vec<usize> = (0..m).step_by(row_chunk).collect();
        starts
            .into_par_iter()
            .for_each(|i0| job.run(i0..(i0 + row_chunk).min(m), 0..groups));
    }
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint tiles of one output buffer to rayon jobs.
unsafe impl Send for SendPtr {}
// SAFETY: see above.
unsafe impl Sync for SendPtr {}

struct Job<'a> {
    kernel: QKernel,
    rows: &'a QuantRows,
    b: &'a QuantMatrix,
    dst: SendPtr,
    out_rs: usize,
    epilogue: Epilogue<'a>,
}

impl Job<'_> {
    /// Runs the tiles of `rows x groups`, each group's codes staying in cache across the
    /// tiles of rows.
    fn run(&self, rows: std::ops::Range<usize>, groups: std::ops::Range<usize>) {
        let (k, n) = (self.b.rows(), self.b.cols());
        let format = self.b.format();
        let steps = format.padded_inner(k);
        let group_codes = format.codes_len(k, GROUP);
        let group_scales = format.scales_len(k, GROUP);
        let codes = self.b.codes();
        let scales = &self.b.bytes()[codes.len()..];
        let tall = self.kernel.max_rows;
        for g in groups {
            let j0 = g * GROUP;
            let width = GROUP.min(n - j0);
            for i0 in rows.clone().step_by(tall) {
                let mr = tall.min(rows.end - i0);
                let tile = QTile {
                    a: self.rows.row(i0).as_ptr(),
                    a_rs: self.rows.stride,
                    a_scales: self.rows.scales[i0 * self.rows.groups..].as_ptr(),
                    a_sums: self.rows.sums[i0 * self.rows.groups..].as_ptr(),
                    a_groups: self.rows.groups,
                    b: codes[g * group_codes..][..group_codes].as_ptr(),
                    b_scales: scales[g * group_scales..][..group_scales].as_ptr(),
                    steps,
                    // SAFETY: `check` bounds every row and column of `out`; jobs own
                    // disjoint tiles.
                    c: unsafe { self.dst.0.add(i0 * self.out_rs + j0) },
                    c_rs: self.out_rs,
                    width,
                };
                // SAFETY: the tile addresses `mr` quantised rows, one whole group of `b` and
                // its block of `out`; the kernel was chosen for this CPU.
                unsafe { self.kernel.run(mr, &tile) };
                if !self.epilogue.is_none() {
                    for i in i0..i0 + mr {
                        // SAFETY: as above; this job alone writes these elements.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(
                                self.dst.0.add(i * self.out_rs + j0),
                                width,
                            )
                        };
                        self.epilogue.row(row, i, j0..j0 + width);
                    }
                }
            }
        }
    }
}

/// The naive twin: the module's arithmetic one element at a time, reading codes by index.
pub fn reference(out: Out, a: MatRef, b: &QuantMatrix, epilogue: Epilogue) {
    check(&out, &a, b, &epilogue);
    let (m, k, n) = (a.rows, a.cols, b.cols());
    let rows = quantize_rows(a, b.format());
    let format = b.format();
    let codes = b.codes();
    let padded = format.padded_inner(k);
    for i in 0..m {
        let qa = rows.row(i);
        for j in 0..n {
            let c = match format {
                QuantFormat::Int8 => {
                    let quads = padded / QUAD;
                    let isum: i32 = (0..k)
                        .map(|s| i32::from(qa[s]) * i32::from(codes[int8_at(s, j, quads)] as i8))
                        .sum();
                    (isum as f32 * rows.scales[i]) * b.column_scales()[j]
                }
                QuantFormat::Q4 => {
                    let blocks = padded / Q4_BLOCK;
                    let mut c = 0.0f32;
                    for block in 0..blocks {
                        let isum: i32 = (block * Q4_BLOCK..((block + 1) * Q4_BLOCK).min(k))
                            .map(|s| i32::from(qa[s]) * i32::from(q4_code(codes, s, j, blocks)))
                            .sum();
                        let d = b.block_scales()[q4_scale_at(block, j, blocks)].to_f32();
                        c = (isum as f32).mul_add(rows.scales[i * blocks + block] * d, c);
                    }
                    c
                }
            };
            out.data[i * out.row_stride + j] = epilogue.element(c, i, j);
        }
    }
}
