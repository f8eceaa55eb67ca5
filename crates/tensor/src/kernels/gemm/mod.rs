//! edgerun's own single-precision GEMM: `C = A @ B (+ C)`, then a bias and an activation,
//! over `B` packed in panels of 16 columns.
//!
//! Why a GEMM of our own: a transformer layer at batch 1 multiplies 100-200 rows by weights
//! of 0.5-10 MB, and a general GEMM packs the weight again on every call, which at so few
//! rows costs as much as a third of the product. Here a weight is packed once, when it is
//! bound ([`pack_into`]), and each call streams its panels straight into the micro-kernels.
//! A `B` that is not packed (a weight handed over as a plain `[in, out]` matrix) is packed per
//! call, one `KC x 256` block at a time into a per-thread buffer. Attention (activations by
//! activations) and convolutions (weights by im2col columns) still run on the `gemm` crate
//! (`matmul_strided`), which measured faster on convolution shapes (bench/src/bin/conv.rs).
//!
//! Packed layout ([`packed_len`]): group `g` holds columns `64g..64g+64` of every row of `B`,
//! row after row, so element `(k, j)` sits at `(j / 64) * rows * 64 + k * 64 + j % 64`; the
//! columns past the last are zero. A kernel reads one step of up to four 16-column panels of
//! a group as one stream of whole cache lines.
//!
//! Order of summation: for each element, one fused multiply-add chain per block of `KC`
//! steps of `k`, each block's sum added to `C` in order. Nothing else (the CPU's kernel, the
//! thread count, whether `B` was packed beforehand) changes it, so every path gives the same
//! bits as [`reference`], the naive twin the tests hold them to.

mod micro;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::matmul::MatRef;
use super::{wide, Activation};
use crate::parallel::gemm_threads;
use crate::quant::QuantMatrix;

/// Columns of one panel: what a kernel keeps in one vector register (AVX-512) or two.
pub const PANEL: usize = 16;
/// Columns of a group of packed `B`: the panels one AVX-512 tile reads.
pub const GROUP: usize = 64;
const PANELS_PER_GROUP: usize = GROUP / PANEL;
/// f32 values per cache line.
const LINE: usize = 16;
/// Steps of `k` summed in registers before the partial sum is added to `C`. Part of the
/// arithmetic's definition: changing it changes bits.
pub const KC: usize = 128;
/// Panels of `B` computed at a time (a multiple of a group): an unpacked `B` is packed
/// this many at a time (per thread, `KC x 256` values, 128 KiB), and the `rows x 256` block
/// of `C` they write stays in cache while every step of `k` is added to it.
const BLOCK_PANELS: usize = 16;

static FLOPS: AtomicU64 = AtomicU64::new(0);

/// Floating-point operations of every matrix product in this process so far (a multiply-add
/// counts 2; convolutions and attention run on these products too). An instrument read as a
/// difference around a stage, as the profiler does.
pub fn matmul_flops() -> u64 {
    FLOPS.load(Ordering::Relaxed)
}

/// Adds an `m x k x n` product to [`matmul_flops`].
pub(crate) fn count_flops(m: usize, k: usize, n: usize) {
    FLOPS.fetch_add(2 * (m * k * n) as u64, Ordering::Relaxed);
}

/// Length of `B` (`k x n`) packed, zero padding included.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(GROUP) * k * GROUP
}

/// Packs `b` into `out` (`packed_len(b.rows, b.cols)` values) in the panel layout.
pub fn pack_into(b: MatRef, out: &mut [f32]) {
    assert_eq!(out.len(), packed_len(b.rows, b.cols), "packed length");
    pack_block(b, 0, b.rows, 0, b.cols.div_ceil(PANEL), out);
}

/// [`pack_into`] one group of 64 columns at a time, calling `packed(g)` after group `g`.
pub fn pack_groups_into(b: MatRef, out: &mut [f32], mut packed: impl FnMut(usize)) {
    assert_eq!(out.len(), packed_len(b.rows, b.cols), "packed length");
    let panels = b.cols.div_ceil(PANEL);
    for (g, dst) in out.chunks_exact_mut((b.rows * GROUP).max(1)).enumerate() {
        let p0 = g * PANELS_PER_GROUP;
        pack_block(b, 0, b.rows, p0, (p0 + PANELS_PER_GROUP).min(panels), dst);
        packed(g);
    }
}

/// The `k x n` matrix a packed buffer holds, row-major (for code that reads weights as
/// plain matrices, such as the accelerator compilers).
pub fn unpack(packed: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert_eq!(packed.len(), packed_len(k, n), "packed length");
    let mut out = vec![0.0; k * n];
    if k == 0 {
        return out;
    }
    for (g, group) in packed.chunks_exact(k * GROUP).enumerate() {
        let cols = GROUP.min(n - g * GROUP);
        for (row, lanes) in group.chunks_exact(GROUP).enumerate() {
            out[row * n + g * GROUP..][..cols].copy_from_slice(&lanes[..cols]);
        }
    }
    out
}

/// Packs rows `k0..k0 + kc` of panels `p0..p1` (`p0` starting a group) of `b` into `out`,
/// `kc * 64` values a group ([`block_len`]).
fn pack_block(b: MatRef, k0: usize, kc: usize, p0: usize, p1: usize, out: &mut [f32]) {
    debug_assert!(p0.is_multiple_of(PANELS_PER_GROUP));
    if kc == 0 {
        return;
    }
    let groups = p0 / PANELS_PER_GROUP..p1.div_ceil(PANELS_PER_GROUP);
    for (group, dst) in groups.zip(out.chunks_exact_mut(kc * GROUP)) {
        let j0 = group * GROUP;
        let cols = GROUP.min(b.cols - j0);
        for (row, lanes) in dst.chunks_exact_mut(GROUP).enumerate() {
            let src = (k0 + row) * b.row_stride + j0 * b.col_stride;
            if b.col_stride == 1 {
                lanes[..cols].copy_from_slice(&b.data[src..src + cols]);
            } else {
                for (j, lane) in lanes[..cols].iter_mut().enumerate() {
                    *lane = b.data[src + j * b.col_stride];
                }
            }
            lanes[cols..].fill(0.0);
        }
    }
}

/// The right operand: a plain strided matrix, one packed by [`pack_into`], or a quantised
/// matrix (whose product [`crate::quant::qgemm`] computes).
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Plain(MatRef<'a>),
    Packed {
        data: &'a [f32],
        rows: usize,
        cols: usize,
    },
    Quant(&'a QuantMatrix),
}

impl Rhs<'_> {
    fn rows(&self) -> usize {
        match self {
            Rhs::Plain(b) => b.rows,
            Rhs::Packed { rows, .. } => *rows,
            Rhs::Quant(m) => m.rows(),
        }
    }

    fn cols(&self) -> usize {
        match self {
            Rhs::Plain(b) => b.cols,
            Rhs::Packed { cols, .. } => *cols,
            Rhs::Quant(m) => m.cols(),
        }
    }
}

/// What happens to each finished element of `C`: `act(c * scale[j] + bias[j] + residual[i, j])`,
/// each operation rounded on its own (a batch norm after a convolution is a scale and a bias
/// per output channel; a residual connection adds the block's input before the activation).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
    pub residual: Option<Residual<'a>>,
    pub activation: Activation,
}

/// A matrix added to `C` element by element, row `i` at `data[i * row_stride..]`.
#[derive(Clone, Copy)]
pub struct Residual<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
}

impl<'a> Epilogue<'a> {
    pub const NONE: Epilogue<'static> = Epilogue {
        scale: None,
        bias: None,
        residual: None,
        activation: Activation::Identity,
    };

    /// A bias per column (if any) and an activation.
    pub fn columns(bias: Option<&'a [f32]>, activation: Activation) -> Self {
        Epilogue {
            bias,
            activation,
            ..Epilogue::NONE
        }
    }

    /// A scale and a bias per column, then an activation.
    pub fn affine(scale: &'a [f32], bias: &'a [f32], activation: Activation) -> Self {
        Epilogue {
            scale: Some(scale),
            bias: Some(bias),
            activation,
            ..Epilogue::NONE
        }
    }

    /// The same epilogue for the product of rows `first..` only (the residual's rows move).
    pub fn from_row(self, first: usize) -> Self {
        Epilogue {
            residual: self.residual.map(|r| Residual {
                data: &r.data[(first * r.row_stride).min(r.data.len())..],
                ..r
            }),
            ..self
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        self.scale.is_none()
            && self.bias.is_none()
            && self.residual.is_none()
            && self.activation == Activation::Identity
    }

    /// Panics unless its vectors and residual fit an `m x n` product (`m, n > 0`).
    pub(crate) fn check(&self, m: usize, n: usize) {
        if let Some(bias) = self.bias {
            assert_eq!(bias.len(), n, "bias length");
        }
        if let Some(scale) = self.scale {
            assert_eq!(scale.len(), n, "scale length");
        }
        if let Some(r) = self.residual {
            assert!(r.row_stride >= n, "residual rows overlap");
            assert!(
                (m - 1) * r.row_stride + n <= r.data.len(),
                "residual out of bounds"
            );
        }
    }

    /// Finishes the element `(i, j)` (the scalar form of [`Epilogue::row`]).
    pub(crate) fn element(&self, c: f32, i: usize, j: usize) -> f32 {
        let mut v = self.scale.map_or(c, |s| c * s[j]);
        if let Some(b) = self.bias {
            v += b[j];
        }
        if let Some(r) = self.residual {
            v += r.data[i * r.row_stride + j];
        }
        self.activation.apply(v)
    }

    /// Finishes `row`, the columns `cols` of row `i` of `C`.
    pub(crate) fn row(&self, row: &mut [f32], i: usize, cols: std::ops::Range<usize>) {
        wide::widest(
            #[inline(always)]
            || {
                if let Some(scale) = self.scale {
                    for (v, s) in row.iter_mut().zip(&scale[cols.clone()]) {
                        *v *= s;
                    }
                }
                if let Some(bias) = self.bias {
                    for (v, b) in row.iter_mut().zip(&bias[cols.clone()]) {
                        *v += b;
                    }
                }
                if let Some(r) = self.residual {
                    let added = &r.data[i * r.row_stride + cols.start..][..cols.len()];
                    for (v, x) in row.iter_mut().zip(added) {
                        *v += x;
                    }
                }
            },
        );
        self.activation.apply_slice(row);
    }
}

/// The output: `rows x cols` at `data`, with free row and column strides.
pub struct Out<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `out = epilogue(a @ b)`, or `epilogue(out + a @ b)` when `accumulate` (not with a
/// quantised `b`).
///
/// Panics when the views disagree or run past their slices: callers derive them from checked
/// tensor shapes, so a mismatch here is a bug.
pub fn gemm(out: Out, a: MatRef, b: Rhs, accumulate: bool, epilogue: Epilogue) {
    if let Rhs::Quant(m) = b {
        assert!(!accumulate, "a quantised product overwrites its output");
        crate::quant::qgemm(out, a, m, epilogue);
        return;
    }
    count_flops(a.rows, a.cols, b.cols());
    gemm_with(
        micro::best(),
        out,
        a,
        b,
        accumulate,
        epilogue,
        gemm_threads_for(&a, &b),
    )
}

fn gemm_threads_for(a: &MatRef, b: &Rhs) -> usize {
    gemm_threads(a.rows * a.cols * b.cols())
}

/// The kernel a [`gemm`] call runs on this CPU (for benchmarks' labels).
pub fn kernel_name() -> &'static str {
    micro::best().name
}

/// Panics unless the views of a product agree and lie inside their slices (a quantised `b`
/// checked its own bytes when it was made).
pub(crate) fn check(out: &Out, a: &MatRef, b: &Rhs, epilogue: &Epilogue) {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    assert_eq!(k, b.rows(), "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        let last = (m - 1) * a.row_stride + (k - 1) * a.col_stride;
        assert!(last < a.data.len(), "lhs view out of bounds");
    }
    match b {
        Rhs::Plain(b) if k > 0 => {
            let last = (k - 1) * b.row_stride + (n - 1) * b.col_stride;
            assert!(last < b.data.len(), "rhs view out of bounds");
        }
        Rhs::Plain(_) => {}
        Rhs::Packed { data, .. } => assert_eq!(data.len(), packed_len(k, n), "packed length"),
        Rhs::Quant(_) => {}
    }
    let last = (m - 1) * out.row_stride + (n - 1) * out.col_stride;
    assert!(last < out.data.len(), "dst view out of bounds");
    epilogue.check(m, n);
}

fn gemm_with(
    kernel: micro::Kernel,
    out: Out,
    a: MatRef,
    b: Rhs,
    accumulate: bool,
    epilogue: Epilogue,
    threads: usize,
) {
    check(&out, &a, &b, &epilogue);
    let (m, n) = (a.rows, b.cols());
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(PANEL);
    let dst = SendPtr(out.data.as_mut_ptr());
    let job = Job {
        kernel,
        a,
        b,
        dst: &dst,
        out_rs: out.row_stride,
        out_cs: out.col_stride,
        accumulate,
        epilogue,
    };
    // Split the columns where each thread gets a wide share of them (a linear layer: each
    // streams only its panels of the weight), else the rows (a convolution's product: a
    // narrow weight and thousands of pixel rows), unless that leaves the busiest thread
    // clearly more to do than the other split would. Measured on both kinds of shape
    // (bench/src/bin/gemm.rs, 2 threads).
    if threads <= 1 {
        job.run(0..m, 0..panels);
        return;
    }
    let column_chunk = panels.div_ceil(threads).next_multiple_of(PANELS_PER_GROUP);
    let row_chunk = m.div_ceil(threads).next_multiple_of(kernel.max_rows);
    let busiest_by_columns = column_chunk.min(panels) as f64 / panels as f64;
    let busiest_by_rows = row_chunk.min(m) as f64 / m as f64;
    let wide_shares = column_chunk * PANEL >= WIDE_SHARE || m < FEW_ROWS;
    let by_columns = if wide_shares {
        busiest_by_columns <= busiest_by_rows * UNEVEN
    } else {
        busiest_by_rows > busiest_by_columns * UNEVEN
    };
    if by_columns {
        let starts: Vec<usize> = (0..panels).step_by(column_chunk).collect();
        starts
            .into_par_iter()
            .for_each(|p0| job.run(0..m, p0..(p0 + column_chunk).min(panels)));
    } else {
        let starts: Vec<usize> = (0..m).step_by(row_chunk).collect();
        starts
            .into_par_iter()
            .for_each(|i0| job.run(i0..(i0 + row_chunk).min(m), 0..panels));
    }
}

/// One of several products of the same left operand (the query, key and value projections
/// of one input).
pub struct Product<'a> {
    pub out: Out<'a>,
    pub b: Rhs<'a>,
    pub epilogue: Epilogue<'a>,
}

/// `out = epilogue(a @ b)` for every product, as one parallel job: the threads share out the
/// columns of all the products together, so three narrow products keep both cores as busy as
/// one wide one (each alone splits into pieces too small to pay for the threads' start).
/// Each product's bits are those of [`gemm`].
///
/// Panics when the views disagree or run past their slices, like [`gemm`].
pub fn gemm_many(a: MatRef, products: Vec<Product>) {
    let (quantised, mut products): (Vec<Product>, Vec<Product>) = products
        .into_iter()
        .partition(|p| matches!(p.b, Rhs::Quant(_)));
    let quantised = quantised
        .into_iter()
        .map(|p| match p.b {
            Rhs::Quant(m) => (p.out, m, p.epilogue),
            _ => unreachable!("partitioned"),
        })
        .collect();
    crate::quant::qgemm::qgemm_many(a, quantised);
    if products.is_empty() {
        return;
    }
    let kernel = micro::best();
    let mut work = 0;
    for p in &products {
        check(&p.out, &a, &p.b, &p.epilogue);
        count_flops(a.rows, a.cols, p.b.cols());
        work += a.rows * a.cols * p.b.cols();
    }
    if a.rows == 0 {
        return;
    }
    let dsts: Vec<SendPtr> = products
        .iter_mut()
        .map(|p| SendPtr(p.out.data.as_mut_ptr()))
        .collect();
    let jobs: Vec<Job> = products
        .iter()
        .zip(&dsts)
        .map(|(p, dst)| Job {
            kernel,
            a,
            b: p.b,
            dst,
            out_rs: p.out.row_stride,
            out_cs: p.out.col_stride,
            accumulate: false,
            epilogue: p.epilogue,
        })
        .collect();
    let panels: Vec<usize> = jobs.iter().map(|j| j.b.cols().div_ceil(PANEL)).collect();
    let shares = share_panels(&panels, gemm_threads(work));
    let run = |share: &Vec<(usize, std::ops::Range<usize>)>| {
        for (product, range) in share {
            jobs[*product].run(0..a.rows, range.clone());
        }
    };
    if shares.len() <= 1 {
        shares.iter().for_each(run);
    } else {
        shares.par_iter().for_each(run);
    }
}

/// Splits the panels of several products, laid end to end, into `threads` runs of about
/// equal length: each run a list of (product, panels). Every piece starts on a group, as
/// [`Job::run`] requires.
fn share_panels(panels: &[usize], threads: usize) -> Vec<Vec<(usize, std::ops::Range<usize>)>> {
    let total: usize = panels.iter().sum();
    let share = total
        .div_ceil(threads.max(1))
        .next_multiple_of(PANELS_PER_GROUP)
        .max(PANELS_PER_GROUP);
    let mut shares = vec![Vec::new()];
    let mut room = share;
    for (product, &count) in panels.iter().enumerate() {
        let mut start = 0;
        while start < count {
            let mut take = room.min(count - start);
            if start + take < count {
                // A piece that stops inside a product stops on a group, so the next starts
                // on one.
                take -= take % PANELS_PER_GROUP;
            }
            if take == 0 {
                shares.push(Vec::new());
                room = share;
                continue;
            }
            shares
                .last_mut()
                .expect("one share at least")
                .push((product, start..start + take));
            start += take;
            room -= take;
            if room == 0 && (start < count || product + 1 < panels.len()) {
                shares.push(Vec::new());
                room = share;
            }
        }
    }
    shares
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint tiles of one output buffer to rayon jobs.
unsafe impl Send for SendPtr {}
// SAFETY: see above.
unsafe impl Sync for SendPtr {}

thread_local! {
    /// Per-thread buffer for blocks of an unpacked `B`, allocated once per thread.
    static PACKED_BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread buffer for a block of `A`'s rows, each tile's rows interleaved step by step
    /// so a tile reads one contiguous stream.
    static PACKED_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Packs rows `rows` of `a`, steps `k0..k0 + kc`, tile by tile (`tile_rows` rows each, the
/// last one padded) into `out` (`rows` rounded up to tiles, times `kc`): step `s` of tile `t`
/// holds its rows' values at `t * kc * tile_rows + s * tile_rows`, so a tile reads one
/// contiguous stream.
fn pack_rows(
    a: &MatRef,
    rows: std::ops::Range<usize>,
    k0: usize,
    kc: usize,
    tile_rows: usize,
    out: &mut [f32],
) {
    for (t, dst) in out.chunks_exact_mut(kc * tile_rows).enumerate() {
        let first = rows.start + t * tile_rows;
        let count = tile_rows.min(rows.end - first);
        if a.col_stride == 1 && count == tile_rows && tile_rows <= MAX_TILE_ROWS {
            let mut src: [&[f32]; MAX_TILE_ROWS] = [&[]; MAX_TILE_ROWS];
            for (r, s) in src.iter_mut().enumerate().take(count) {
                *s = &a.data[(first + r) * a.row_stride + k0..][..kc];
            }
            for (s, step) in dst.chunks_exact_mut(tile_rows).enumerate() {
                for (lane, row) in step.iter_mut().zip(&src) {
                    *lane = row[s];
                }
            }
            continue;
        }
        for r in 0..count {
            let src = &a.data[(first + r) * a.row_stride + k0 * a.col_stride..];
            for (s, lane) in dst[r..].iter_mut().step_by(tile_rows).take(kc).enumerate() {
                *lane = src[s * a.col_stride];
            }
        }
    }
}

/// Rows of `A` a job computes at a time. A convolution's product has thousands (one per
/// output pixel); in blocks, the `rows x 256` block of `C` and the rows' block of steps stay in
/// the L2 cache while every step of `k` is added, where the whole height would stream them
/// from memory once per step block. A multiple of every kernel's tile height.
const ROW_BLOCK: usize = 240;

/// Columns per thread from which a product is split by columns (see `gemm_with`).
const WIDE_SHARE: usize = 4 * GROUP;
/// Rows below which a product is split by columns whatever its width (a decoded token, a
/// 7x7 map): splitting so few rows leaves each thread a tile or two.
const FEW_ROWS: usize = 64;
/// How much more the busiest thread may get in the preferred split before the other is taken.
const UNEVEN: f64 = 1.125;

/// The most rows a kernel's tile has.
const MAX_TILE_ROWS: usize = 8;

/// At most this many values of `A` are packed at once for a job (4 MiB), so every block of
/// columns reads them packed; past it, each block of steps is packed again per block of
/// columns.
const MAX_PACKED_ROWS: usize = 1 << 20;

/// Values of a block of panels `p0..p1` packed `kc` steps deep.
fn block_len(p0: usize, p1: usize, kc: usize) -> usize {
    (p1.div_ceil(PANELS_PER_GROUP) - p0 / PANELS_PER_GROUP) * kc * GROUP
}

/// Where a block's rows of `A` are: the first tile's first step at `at`, and the strides
/// to the next row, step and tile.
#[derive(Clone, Copy)]
struct Lhs {
    at: *const f32,
    row_stride: usize,
    step_stride: usize,
    tile_stride: usize,
}

/// One thread's share of a product: the tiles of `rows x panels`.
struct Job<'a> {
    kernel: micro::Kernel,
    a: MatRef<'a>,
    b: Rhs<'a>,
    dst: &'a SendPtr,
    out_rs: usize,
    out_cs: usize,
    accumulate: bool,
    epilogue: Epilogue<'a>,
}

// SAFETY: `dst` is only written through disjoint tiles (see `gemm_with`); everything else is
// shared read-only.
unsafe impl Sync for Job<'_> {}

impl Job<'_> {
    /// Runs `rows x panels`, at most [`ROW_BLOCK`] rows at a time.
    fn run(&self, rows: std::ops::Range<usize>, panels: std::ops::Range<usize>) {
        for i0 in rows.clone().step_by(ROW_BLOCK) {
            self.run_rows(i0..(i0 + ROW_BLOCK).min(rows.end), panels.clone());
        }
    }

    fn run_rows(&self, rows: std::ops::Range<usize>, panels: std::ops::Range<usize>) {
        let k = self.a.cols;
        if k == 0 {
            self.run_empty(rows, panels);
            return;
        }
        let tall = self.kernel.max_rows;
        let padded = rows.len().div_ceil(tall) * tall;
        // Rows with dense steps are read in place (as fast as packed, measured, without the
        // copy); others are packed, all at once where that fits.
        let direct = self.a.col_stride == 1;
        let whole = !direct && padded * k <= MAX_PACKED_ROWS;
        PACKED_ROWS.with_borrow_mut(|packed_a| {
            let len = match (direct, whole) {
                (true, _) => 0,
                (false, true) => padded * k,
                (false, false) => padded * KC.min(k),
            };
            if packed_a.len() < len {
                packed_a.resize(len, 0.0);
            }
            if whole {
                for k0 in (0..k).step_by(KC) {
                    let kc = KC.min(k - k0);
                    let dst = &mut packed_a[k0 * padded..][..kc * padded];
                    pack_rows(&self.a, rows.clone(), k0, kc, tall, dst);
                }
            }
            // The rows' steps `k0..k0 + kc`, in place or packed.
            let mut rows_at = |k0: usize, kc: usize| -> Lhs {
                if direct {
                    let start = rows.start * self.a.row_stride + k0;
                    return Lhs {
                        at: self.a.data[start..].as_ptr(),
                        row_stride: self.a.row_stride,
                        step_stride: 1,
                        tile_stride: tall * self.a.row_stride,
                    };
                }
                let at = if whole {
                    packed_a[k0 * padded..].as_ptr()
                } else {
                    let dst = &mut packed_a[..kc * padded];
                    pack_rows(&self.a, rows.clone(), k0, kc, tall, dst);
                    dst.as_ptr()
                };
                Lhs {
                    at,
                    row_stride: 1,
                    step_stride: tall,
                    tile_stride: kc * tall,
                }
            };
            match self.b {
                // Blocks of columns outermost, so the block of `C` they write stays in cache
                // while every step of `k` is added to it.
                Rhs::Packed { data, .. } => {
                    for p0 in panels.clone().step_by(BLOCK_PANELS) {
                        let p1 = (p0 + BLOCK_PANELS).min(panels.end);
                        for k0 in (0..k).step_by(KC) {
                            let kc = KC.min(k - k0);
                            let group = p0 / PANELS_PER_GROUP;
                            // SAFETY: `check` sized `data` for every panel and row.
                            let b = unsafe { data.as_ptr().add(group * k * GROUP + k0 * GROUP) };
                            let a = rows_at(k0, kc);
                            self.block(rows.clone(), p0..p1, k0, kc, a, b, k * GROUP);
                        }
                    }
                }
                Rhs::Plain(b) => PACKED_BLOCK.with_borrow_mut(|buffer| {
                    for p0 in panels.clone().step_by(BLOCK_PANELS) {
                        let p1 = (p0 + BLOCK_PANELS).min(panels.end);
                        for k0 in (0..k).step_by(KC) {
                            let kc = KC.min(k - k0);
                            let len = block_len(p0, p1, kc);
                            if buffer.len() < len {
                                buffer.resize(len, 0.0);
                            }
                            pack_block(b, k0, kc, p0, p1, &mut buffer[..len]);
                            let a = rows_at(k0, kc);
                            let b = buffer.as_ptr();
                            self.block(rows.clone(), p0..p1, k0, kc, a, b, kc * GROUP);
                        }
                    }
                }),
                Rhs::Quant(_) => unreachable!("quantised products go to quant::qgemm"),
            }
        });
    }

    /// Steps `k0..k0 + kc` for the tiles of `rows x panels`; `a` locates their rows, `b`
    /// points at the first group's first step, groups `b_group` apart.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        k0: usize,
        kc: usize,
        a: Lhs,
        b: *const f32,
        b_group: usize,
    ) {
        let n = self.b.cols();
        let last_block = k0 + kc == self.a.cols;
        let add = self.accumulate || k0 > 0;
        let kernel = self.kernel;
        let tall = kernel.max_rows;
        // The kernel applies the epilogue as it stores the last block where it can.
        let fused = last_block
            && kernel.fuses
            && self.out_cs == 1
            && !self.epilogue.is_none()
            && matches!(
                self.epilogue.activation,
                Activation::Identity | Activation::Relu
            );
        for p in panels.clone().step_by(kernel.panels) {
            let j0 = p * PANEL;
            let count = kernel.panels.min(panels.end - p);
            let width = (count * PANEL).min(n - j0);
            // The next group's steps come from memory while this group's tiles compute from
            // cache: a share of its lines is prefetched before each tile. A single tile (a
            // decoded token) has no compute to hide the fetch behind; the hardware prefetcher
            // streams its groups faster alone (GPT-2 decode, measured).
            let tiles = rows.len().div_ceil(tall);
            let next = p + kernel.panels;
            let next_group =
                (tiles > 1 && next < panels.end && next.is_multiple_of(PANELS_PER_GROUP))
                    .then(|| (next - panels.start) / PANELS_PER_GROUP * b_group);
            let lines = kc * GROUP / LINE;
            let per_tile = lines.div_ceil(tiles);
            for (t, i0) in rows.clone().step_by(tall).enumerate() {
                if let Some(offset) = next_group {
                    for line in t * per_tile..((t + 1) * per_tile).min(lines) {
                        // The address only feeds a prefetch hint; it is never read.
                        micro::prefetch(b.wrapping_add(offset + line * LINE));
                    }
                }
                let mr = tall.min(rows.end - i0);
                let tile = micro::Tile {
                    kc,
                    a: a.at.wrapping_add(t * a.tile_stride),
                    a_rs: a.row_stride,
                    a_cs: a.step_stride,
                    // SAFETY: `check` bounds every step and panel of `b`.
                    b: unsafe {
                        let r = p - panels.start;
                        b.add(r / PANELS_PER_GROUP * b_group + r % PANELS_PER_GROUP * PANEL)
                    },
                    b_panel: PANEL,
                    c: std::ptr::null_mut(),
                    c_rs: 0,
                    width,
                    add,
                    finish: fused.then(|| self.fused_finish(i0, j0)),
                };
                self.tile(&tile, mr, count, i0, j0);
                if last_block && !fused && !self.epilogue.is_none() {
                    self.finish(i0..i0 + mr, j0..j0 + width);
                }
            }
        }
    }

    /// Runs one tile into `out`, directly where its rows are dense, else through a buffer.
    fn tile(&self, tile: &micro::Tile, mr: usize, count: usize, i0: usize, j0: usize) {
        let kernel = self.kernel;
        if self.out_cs == 1 {
            // SAFETY: the tile lies inside `out` (checked) and inside this job's share.
            let c = unsafe { self.dst.0.add(i0 * self.out_rs + j0) };
            let tile = micro::Tile {
                c,
                c_rs: self.out_rs,
                ..*tile
            };
            // SAFETY: the kernel was chosen for this CPU; the tile's `width` columns are in
            // bounds.
            unsafe { kernel.run(mr, count, &tile) };
        } else {
            self.edge_tile(tile, mr, count, i0, j0);
        }
    }

    /// A tile written with a column stride: computed in a local buffer and copied.
    fn edge_tile(&self, tile: &micro::Tile, mr: usize, count: usize, i0: usize, j0: usize) {
        let width = tile.width;
        const WIDEST: usize = 4 * PANEL;
        const TALLEST: usize = 6;
        debug_assert!(self.kernel.panels * PANEL <= WIDEST && self.kernel.max_rows <= TALLEST);
        let mut local = [[0.0f32; WIDEST]; TALLEST];
        let at = |i: usize, j: usize| (i0 + i) * self.out_rs + (j0 + j) * self.out_cs;
        if tile.add {
            for (i, row) in local.iter_mut().enumerate().take(mr) {
                for (j, v) in row.iter_mut().enumerate().take(width) {
                    // SAFETY: inside `out` and this job's share.
                    *v = unsafe { *self.dst.0.add(at(i, j)) };
                }
            }
        }
        let tile = micro::Tile {
            c: local.as_mut_ptr().cast(),
            c_rs: WIDEST,
            ..*tile
        };
        // SAFETY: the kernel was chosen for this CPU; `local` holds the whole tile, and the
        // packed panels past `width` are zero padding that is computed and dropped.
        unsafe { self.kernel.run(mr, count, &tile) };
        for (i, row) in local.iter().enumerate().take(mr) {
            for (j, v) in row.iter().enumerate().take(width) {
                // SAFETY: as above.
                unsafe { *self.dst.0.add(at(i, j)) = *v };
            }
        }
    }

    /// The epilogue of the tile at `(i0, j0)` for a kernel that fuses it.
    fn fused_finish(&self, i0: usize, j0: usize) -> micro::Finish {
        let e = &self.epilogue;
        let at = |v: Option<&[f32]>| v.map_or(std::ptr::null(), |v| v[j0..].as_ptr());
        micro::Finish {
            scale: at(e.scale),
            bias: at(e.bias),
            residual: e.residual.map_or(std::ptr::null(), |r| {
                r.data[i0 * r.row_stride + j0..].as_ptr()
            }),
            residual_rs: e.residual.map_or(0, |r| r.row_stride),
            relu: e.activation == Activation::Relu,
        }
    }

    /// Applies the epilogue to the finished elements `rows x cols`.
    fn finish(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let epilogue = &self.epilogue;
        if self.out_cs != 1 {
            for i in rows {
                for j in cols.clone() {
                    // SAFETY: inside `out` and this job's share.
                    let v = unsafe { &mut *self.dst.0.add(i * self.out_rs + j * self.out_cs) };
                    *v = epilogue.element(*v, i, j);
                }
            }
            return;
        }
        for i in rows {
            // SAFETY: the row's columns lie inside `out` and this job's share.
            let row = unsafe {
                std::slice::from_raw_parts_mut(
                    self.dst.0.add(i * self.out_rs + cols.start),
                    cols.len(),
                )
            };
            epilogue.row(row, i, cols.clone());
        }
    }

    /// `k == 0`: the product is zero.
    fn run_empty(&self, rows: std::ops::Range<usize>, panels: std::ops::Range<usize>) {
        let cols = panels.start * PANEL..(panels.end * PANEL).min(self.b.cols());
        for i in rows.clone() {
            for j in cols.clone() {
                if !self.accumulate {
                    // SAFETY: inside `out` and this job's share.
                    unsafe { *self.dst.0.add(i * self.out_rs + j * self.out_cs) = 0.0 };
                }
            }
        }
        self.finish(rows, cols);
    }
}

/// The naive twin: the same order of summation as every kernel, one element at a time.
pub fn reference(out: Out, a: MatRef, b: MatRef, accumulate: bool, epilogue: Epilogue) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            let o = i * out.row_stride + j * out.col_stride;
            let mut c = if accumulate { out.data[o] } else { 0.0 };
            for k0 in (0..k).step_by(KC) {
                let mut sum = 0.0f32;
                for kk in k0..(k0 + KC).min(k) {
                    let x = a.data[i * a.row_stride + kk * a.col_stride];
                    sum = x.mul_add(b.data[kk * b.row_stride + j * b.col_stride], sum);
                }
                c = if accumulate || k0 > 0 { c + sum } else { sum };
            }
            out.data[o] = epilogue.element(c, i, j);
        }
    }
}

#[cfg(test)]
mod tests;
