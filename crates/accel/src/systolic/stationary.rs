//! Weight and input stationary, one engine: an operand is preloaded into the PEs (R cycles,
//! shifting down from the top edge), the other streams in from the left edge (row i skewed by
//! i cycles) and moves right, and partial sums flow down the columns, leaving the bottom row
//! after R more PEs. Partial sums of earlier k-folds are read back at accumulator width, so
//! each output still adds its products in ascending k. The last partial sum leaves at cycle
//! S+2R+C-3 of the fold, S the streamed length (M for ws, N for is).

use edgerun_tensor::fixed::FixedPoint;

use super::{pe_cycle, DataflowEngine, GemmStats, Operands, Slot};
use crate::ArrayShape;

/// Which operand stays.
pub(crate) enum Stationary {
    /// ws: PE (i, j) holds B[k0+i][j0+j]; row i streams A[s][k0+i]; column j yields O[s][j0+j].
    Weights,
    /// is: PE (i, j) holds A[m0+j][k0+i]; row i streams B[k0+i][s]; column j yields O[m0+j][s].
    Inputs,
}

/// One fold seen from the array: what each PE holds, what each row streams, where each
/// column's results go.
struct FoldPlan<'a> {
    stream_len: usize,
    held: &'a dyn Fn(usize, usize) -> Option<i16>,
    streamed: &'a dyn Fn(usize, usize) -> Option<i16>,
    target: &'a dyn Fn(usize, usize) -> Option<usize>,
    first_k_fold: bool,
}

impl DataflowEngine for Stationary {
    fn run(
        &self,
        shape: ArrayShape,
        fp: &FixedPoint,
        ops: &Operands,
        out: &mut [i64],
    ) -> GemmStats {
        let mut stats = GemmStats::default();
        let (m, k, n) = (ops.dims.m, ops.dims.k, ops.dims.n);
        let (a, b) = (ops.a, ops.b);
        // Columns of the array cover N (ws) or M (is).
        let column_extent = match self {
            Stationary::Weights => n,
            Stationary::Inputs => m,
        };
        for c0 in (0..column_extent).step_by(shape.cols) {
            for k0 in (0..k).step_by(shape.rows) {
                let in_k = |i: usize| k0 + i < k;
                let in_c = |j: usize| c0 + j < column_extent;
                let mut fold_stats = GemmStats::default();
                match self {
                    Stationary::Weights => {
                        let plan = FoldPlan {
                            stream_len: m,
                            held: &|i, j| (in_k(i) && in_c(j)).then(|| b[(k0 + i) * n + c0 + j]),
                            streamed: &|i, s| in_k(i).then(|| a[s * k + k0 + i]),
                            target: &|j, s| in_c(j).then_some(s * n + c0 + j),
                            first_k_fold: k0 == 0,
                        };
                        fold(shape, fp, &plan, out, &mut fold_stats);
                        // Preloaded values are filter reads, streamed ones ifmap reads.
                        std::mem::swap(
                            &mut fold_stats.sram.ifmap_reads,
                            &mut fold_stats.sram.filter_reads,
                        );
                    }
                    Stationary::Inputs => {
                        let plan = FoldPlan {
                            stream_len: n,
                            held: &|i, j| (in_k(i) && in_c(j)).then(|| a[(c0 + j) * k + k0 + i]),
                            streamed: &|i, s| in_k(i).then(|| b[(k0 + i) * n + s]),
                            target: &|j, s| in_c(j).then_some((c0 + j) * n + s),
                            first_k_fold: k0 == 0,
                        };
                        fold(shape, fp, &plan, out, &mut fold_stats);
                    }
                }
                stats.add(&fold_stats);
            }
        }
        stats
    }
}

/// Runs one fold. Counts preloaded reads as `ifmap_reads` and streamed reads as
/// `filter_reads`; the caller swaps them for weight stationary.
fn fold(
    shape: ArrayShape,
    fp: &FixedPoint,
    plan: &FoldPlan,
    out: &mut [i64],
    stats: &mut GemmStats,
) {
    let (rows, cols) = (shape.rows, shape.cols);
    let pes = rows * cols;
    let (mut held_val, mut held_slot) = (vec![0i16; pes], vec![Slot::Empty; pes]);
    // Preload: the bottom row's values enter first and shift down R-1 times.
    for cycle in 0..rows {
        held_val.copy_within(0..(rows - 1) * cols, cols);
        held_slot.copy_within(0..(rows - 1) * cols, cols);
        let i = rows - 1 - cycle;
        for j in 0..cols {
            held_slot[j] = match (plan.held)(i, j) {
                Some(v) => {
                    held_val[j] = v;
                    stats.sram.ifmap_reads += 1;
                    stats.register_writes += 1;
                    Slot::Real
                }
                None => Slot::Bubble,
            };
        }
        stats.idle_pe_cycles += pes as u64;
    }
    let (mut x_val, mut x_slot) = (vec![0i16; pes], vec![Slot::Empty; pes]);
    let (mut psum, mut p_slot) = (vec![0i64; pes], vec![Slot::Empty; pes]);
    let mut cycle = rows;
    loop {
        psum.copy_within(0..(rows - 1) * cols, cols);
        p_slot.copy_within(0..(rows - 1) * cols, cols);
        for row in 0..rows {
            let span = row * cols..(row + 1) * cols;
            x_val[span.clone()].copy_within(0..cols - 1, 1);
            x_slot[span].copy_within(0..cols - 1, 1);
        }
        let mut feeding = false;
        // Partial sums enter the top of column j for stream index s = t - R - j.
        for j in 0..cols {
            p_slot[j] = match (cycle - rows)
                .checked_sub(j)
                .filter(|&s| s < plan.stream_len)
            {
                Some(s) => {
                    feeding = true;
                    match (plan.target)(j, s) {
                        Some(at) => {
                            psum[j] = if plan.first_k_fold {
                                0
                            } else {
                                stats.sram.ofmap_reads += 1;
                                out[at]
                            };
                            Slot::Real
                        }
                        None => Slot::Bubble,
                    }
                }
                None => Slot::Empty,
            };
        }
        // Row i streams its operand for index s = t - R - i.
        for i in 0..rows {
            let p = i * cols;
            x_slot[p] = match (cycle - rows)
                .checked_sub(i)
                .filter(|&s| s < plan.stream_len)
            {
                Some(s) => {
                    feeding = true;
                    match (plan.streamed)(i, s) {
                        Some(v) => {
                            x_val[p] = v;
                            stats.sram.filter_reads += 1;
                            Slot::Real
                        }
                        None => Slot::Bubble,
                    }
                }
                None => Slot::Empty,
            };
        }
        let activity = pe_cycle([&x_slot, &p_slot], |p| {
            let fire =
                x_slot[p] == Slot::Real && p_slot[p] == Slot::Real && held_slot[p] == Slot::Real;
            if fire {
                psum[p] = fp.mac(psum[p], x_val[p], held_val[p]);
            }
            fire
        });
        if !activity.present && !feeding {
            break;
        }
        // Results leave the bottom row: stream index s = t - 2R + 1 - j.
        let bottom = (rows - 1) * cols;
        for j in 0..cols {
            if p_slot[bottom + j] == Slot::Real {
                let s = cycle + 1 - 2 * rows - j;
                if let Some(at) = (plan.target)(j, s) {
                    out[at] = psum[bottom + j];
                    stats.sram.ofmap_writes += 1;
                }
            }
        }
        activity.account(stats, pes);
        cycle += 1;
    }
    stats.busy_cycles += cycle as u64;
    stats.folds += 1;
}
