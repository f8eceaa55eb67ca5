//! Output stationary: PE (i, j) owns output (i0 + i, j0 + j) of its fold. Row i of A enters
//! the left edge skewed by i cycles and moves right; column j of B enters the top edge skewed
//! by j cycles and moves down; each PE multiplies what meets in it and accumulates in place.
//! The last pair meets in PE (R-1, C-1) at cycle K+R+C-3 of the fold.

use edgerun_tensor::fixed::FixedPoint;

use super::{pe_cycle, DataflowEngine, GemmStats, Operands, Slot};
use crate::ArrayShape;

pub(crate) struct OutputStationary;

impl DataflowEngine for OutputStationary {
    fn run(
        &self,
        shape: ArrayShape,
        fp: &FixedPoint,
        ops: &Operands,
        out: &mut [i64],
    ) -> GemmStats {
        let mut stats = GemmStats::default();
        let d = ops.dims;
        for i0 in (0..d.m).step_by(shape.rows) {
            for j0 in (0..d.n).step_by(shape.cols) {
                fold(shape, fp, ops, (i0, j0), out, &mut stats);
            }
        }
        stats
    }
}

fn fold(
    shape: ArrayShape,
    fp: &FixedPoint,
    ops: &Operands,
    (i0, j0): (usize, usize),
    out: &mut [i64],
    stats: &mut GemmStats,
) {
    let (rows, cols) = (shape.rows, shape.cols);
    let (m, k, n) = (ops.dims.m, ops.dims.k, ops.dims.n);
    let pes = rows * cols;
    let (mut a_val, mut a_slot) = (vec![0i16; pes], vec![Slot::Empty; pes]);
    let (mut b_val, mut b_slot) = (vec![0i16; pes], vec![Slot::Empty; pes]);
    let mut acc = vec![0i64; pes];
    let mut cycle = 0usize;
    loop {
        // Registers move one PE per cycle: A to the right, B down.
        for row in 0..rows {
            let span = row * cols..(row + 1) * cols;
            a_val[span.clone()].copy_within(0..cols - 1, 1);
            a_slot[span].copy_within(0..cols - 1, 1);
        }
        b_val.copy_within(0..(rows - 1) * cols, cols);
        b_slot.copy_within(0..(rows - 1) * cols, cols);
        // Skewed edge feeds: A[i0+i][t-i] on the left, B[t-j][j0+j] on top.
        let mut feeding = false;
        for i in 0..rows {
            let p = i * cols;
            a_slot[p] = match cycle.checked_sub(i).filter(|&kk| kk < k) {
                Some(kk) => {
                    feeding = true;
                    if i0 + i < m {
                        a_val[p] = ops.a[(i0 + i) * k + kk];
                        stats.sram.ifmap_reads += 1;
                        Slot::Real
                    } else {
                        Slot::Bubble
                    }
                }
                None => Slot::Empty,
            };
        }
        for j in 0..cols {
            b_slot[j] = match cycle.checked_sub(j).filter(|&kk| kk < k) {
                Some(kk) => {
                    feeding = true;
                    if j0 + j < n {
                        b_val[j] = ops.b[kk * n + j0 + j];
                        stats.sram.filter_reads += 1;
                        Slot::Real
                    } else {
                        Slot::Bubble
                    }
                }
                None => Slot::Empty,
            };
        }
        let activity = pe_cycle([&a_slot, &b_slot], |p| {
            let fire = a_slot[p] == Slot::Real && b_slot[p] == Slot::Real;
            if fire {
                acc[p] = fp.mac(acc[p], a_val[p], b_val[p]);
            }
            fire
        });
        if !activity.present && !feeding {
            break;
        }
        activity.account(stats, pes);
        cycle += 1;
    }
    for i in 0..rows.min(m - i0) {
        for j in 0..cols.min(n - j0) {
            out[(i0 + i) * n + j0 + j] = acc[i * cols + j];
            stats.sram.ofmap_writes += 1;
        }
    }
    stats.busy_cycles += cycle as u64;
    stats.folds += 1;
}
