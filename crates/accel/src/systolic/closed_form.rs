//! SCALE-Sim 3.0.0's closed forms for an R x C array with unlimited bandwidth: total cycles
//! (the index of the last cycle, folds back to back) and SRAM element counts. The simulator
//! must reproduce these from first principles; the tests hold it to them.

use super::{GemmStats, SramCounts};
use crate::{ArrayShape, Dataflow, GemmDims};

fn ceil(a: usize, b: usize) -> u64 {
    a.div_ceil(b) as u64
}

/// os: ceil(M/R) ceil(N/C) (K+R+C-2) - 1; ws: ceil(K/R) ceil(N/C) (M+2R+C-2) - 1;
/// is: ceil(K/R) ceil(M/C) (N+2R+C-2) - 1.
pub fn closed_form_cycles(shape: ArrayShape, dataflow: Dataflow, d: GemmDims) -> u64 {
    let (r, c) = (shape.rows, shape.cols);
    let total = match dataflow {
        Dataflow::OutputStationary => ceil(d.m, r) * ceil(d.n, c) * (d.k + r + c - 2) as u64,
        Dataflow::WeightStationary => ceil(d.k, r) * ceil(d.n, c) * (d.m + 2 * r + c - 2) as u64,
        Dataflow::InputStationary => ceil(d.k, r) * ceil(d.m, c) * (d.n + 2 * r + c - 2) as u64,
    };
    total.saturating_sub(1)
}

/// os: ifmap M K ceil(N/C), filter K N ceil(M/R), ofmap writes M N; ws: ifmap M K ceil(N/C),
/// filter K N, ofmap writes M N ceil(K/R); is: ifmap M K, filter K N ceil(M/C), ofmap writes
/// M N ceil(K/R). Partial-sum reads are the writes of every fold but the last.
pub fn closed_form_sram(shape: ArrayShape, dataflow: Dataflow, d: GemmDims) -> SramCounts {
    let (r, c) = (shape.rows, shape.cols);
    let (mk, kn, mn) = ((d.m * d.k) as u64, (d.k * d.n) as u64, (d.m * d.n) as u64);
    match dataflow {
        Dataflow::OutputStationary => SramCounts {
            ifmap_reads: mk * ceil(d.n, c),
            filter_reads: kn * ceil(d.m, r),
            ofmap_reads: 0,
            ofmap_writes: mn,
        },
        Dataflow::WeightStationary => SramCounts {
            ifmap_reads: mk * ceil(d.n, c),
            filter_reads: kn,
            ofmap_reads: mn * ceil(d.k, r).saturating_sub(1),
            ofmap_writes: mn * ceil(d.k, r),
        },
        Dataflow::InputStationary => SramCounts {
            ifmap_reads: mk,
            filter_reads: kn * ceil(d.m, c),
            ofmap_reads: mn * ceil(d.k, r).saturating_sub(1),
            ofmap_writes: mn * ceil(d.k, r),
        },
    }
}

/// Every count [`super::simulate`] reports, from formulas: what a GEMM too large to simulate
/// cycle by cycle costs. The tests hold it equal to the simulation.
///
/// Register writes: a real operand is written once per PE it passes (C along a row, R down a
/// column); a preloaded one once; a partial sum once per row.
pub fn closed_form_stats(shape: ArrayShape, dataflow: Dataflow, d: GemmDims) -> GemmStats {
    let (r, c) = (shape.rows, shape.cols);
    let sram = closed_form_sram(shape, dataflow, d);
    let folds = match dataflow {
        Dataflow::OutputStationary => ceil(d.m, r) * ceil(d.n, c),
        Dataflow::WeightStationary => ceil(d.k, r) * ceil(d.n, c),
        Dataflow::InputStationary => ceil(d.k, r) * ceil(d.m, c),
    };
    let busy_cycles = if d.m * d.n * d.k == 0 {
        0
    } else {
        closed_form_cycles(shape, dataflow, d) + 1
    };
    let (r64, c64) = (r as u64, c as u64);
    let register_writes = match dataflow {
        Dataflow::OutputStationary => sram.ifmap_reads * c64 + sram.filter_reads * r64,
        Dataflow::WeightStationary => {
            sram.filter_reads + sram.ifmap_reads * c64 + sram.ofmap_writes * r64
        }
        Dataflow::InputStationary => {
            sram.ifmap_reads + sram.filter_reads * c64 + sram.ofmap_writes * r64
        }
    };
    let macs = d.macs();
    GemmStats {
        busy_cycles,
        folds,
        mac_pe_cycles: macs,
        idle_pe_cycles: busy_cycles * (r64 * c64) - macs,
        register_writes,
        sram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples on 17x32.
    #[test]
    fn published_examples() {
        let shape = ArrayShape { rows: 17, cols: 32 };
        let big = GemmDims {
            m: 197,
            n: 768,
            k: 768,
        };
        let small = GemmDims {
            m: 17,
            n: 32,
            k: 32,
        };
        let expect = [
            (Dataflow::OutputStationary, 234719, 78),
            (Dataflow::WeightStationary, 288143, 161),
            (Dataflow::InputStationary, 267903, 191),
        ];
        for (dataflow, big_cycles, small_cycles) in expect {
            assert_eq!(
                closed_form_cycles(shape, dataflow, big),
                big_cycles,
                "{dataflow}"
            );
            assert_eq!(
                closed_form_cycles(shape, dataflow, small),
                small_cycles,
                "{dataflow}"
            );
        }
    }
}
