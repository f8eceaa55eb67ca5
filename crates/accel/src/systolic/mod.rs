//! A cycle-level systolic array: R x C multiply-accumulate PEs, operands moving one PE per
//! cycle through pipeline registers, folds run back to back when a GEMM is larger than the
//! array.
//!
//! Split as SCALE-Sim splits it: the workload ([`GemmDims`] and operands), the dataflow that
//! turns it into per-cycle operand movement (one [`DataflowEngine`] per dataflow, the two
//! stationary ones sharing one engine), and the counts that the energy model prices
//! ([`GemmStats`]). Arithmetic is `edgerun_tensor::fixed`'s: each PE adds its products into a
//! saturating accumulator in ascending k, so the results equal `fixed::matmul_acc` bit for bit.

mod closed_form;
mod output_stationary;
mod stationary;

pub use closed_form::{closed_form_cycles, closed_form_sram, closed_form_stats};

use edgerun_tensor::fixed::FixedPoint;

use crate::{AccelError, ArrayShape, Dataflow, GemmDims, Result};

/// Operand reads and result traffic at the array's SRAM ports, in elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SramCounts {
    pub ifmap_reads: u64,
    pub filter_reads: u64,
    /// Partial sums read back for a later fold (weight and input stationary).
    pub ofmap_reads: u64,
    pub ofmap_writes: u64,
}

impl SramCounts {
    pub fn add(&mut self, other: &SramCounts) {
        self.ifmap_reads += other.ifmap_reads;
        self.filter_reads += other.filter_reads;
        self.ofmap_reads += other.ofmap_reads;
        self.ofmap_writes += other.ofmap_writes;
    }
}

/// What one or more GEMMs did on one array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GemmStats {
    /// Cycles the array was busy, summed over folds.
    pub busy_cycles: u64,
    pub folds: u64,
    /// PE-cycles with a multiply-accumulate (both operands real).
    pub mac_pe_cycles: u64,
    /// PE-cycles in a fold without one: clocked in an ungated design, gated otherwise.
    pub idle_pe_cycles: u64,
    /// Pipeline-register writes of real operands and partial sums.
    pub register_writes: u64,
    pub sram: SramCounts,
}

impl GemmStats {
    /// SCALE-Sim's "Total Cycles": the index of the last busy cycle.
    pub fn scale_sim_cycles(&self) -> u64 {
        self.busy_cycles.saturating_sub(1)
    }

    /// Busy PE-cycles over all PE-cycles.
    pub fn utilization(&self) -> f64 {
        let total = self.mac_pe_cycles + self.idle_pe_cycles;
        if total == 0 {
            0.0
        } else {
            self.mac_pe_cycles as f64 / total as f64
        }
    }

    pub fn pe_cycles(&self) -> u64 {
        self.mac_pe_cycles + self.idle_pe_cycles
    }

    pub fn add(&mut self, other: &GemmStats) {
        self.busy_cycles += other.busy_cycles;
        self.folds += other.folds;
        self.mac_pe_cycles += other.mac_pe_cycles;
        self.idle_pe_cycles += other.idle_pe_cycles;
        self.register_writes += other.register_writes;
        self.sram.add(&other.sram);
    }
}

/// One GEMM's operands, row-major: `a` is `m x k`, `b` is `k x n`.
#[derive(Clone, Copy, Debug)]
pub struct Operands<'a> {
    pub a: &'a [i16],
    pub b: &'a [i16],
    pub dims: GemmDims,
}

/// The accumulators (`m x n`, not yet narrowed) and the counts.
#[derive(Clone, Debug)]
pub struct GemmRun {
    pub output: Vec<i64>,
    pub stats: GemmStats,
}

/// How a dataflow moves one GEMM through the array, cycle by cycle.
pub(crate) trait DataflowEngine {
    fn run(&self, shape: ArrayShape, fp: &FixedPoint, ops: &Operands, out: &mut [i64])
        -> GemmStats;
}

/// Simulates `a @ b` on a `shape` array with `dataflow`.
pub fn simulate(
    shape: ArrayShape,
    dataflow: Dataflow,
    fp: &FixedPoint,
    ops: &Operands,
) -> Result<GemmRun> {
    ops.dims.check_simulation(shape, dataflow)?;
    let GemmDims { m, k, n } = ops.dims;
    if ops.a.len() != m * k || ops.b.len() != k * n {
        return Err(AccelError::Shape {
            what: "systolic GEMM operands",
            expected: format!("{m}x{k} and {k}x{n} elements"),
            got: format!("{} and {}", ops.a.len(), ops.b.len()),
        });
    }
    let mut output = vec![0i64; m * n];
    let stats = match dataflow {
        Dataflow::OutputStationary => {
            output_stationary::OutputStationary.run(shape, fp, ops, &mut output)
        }
        Dataflow::WeightStationary => {
            stationary::Stationary::Weights.run(shape, fp, ops, &mut output)
        }
        Dataflow::InputStationary => {
            stationary::Stationary::Inputs.run(shape, fp, ops, &mut output)
        }
    };
    Ok(GemmRun { output, stats })
}

/// A pipeline register: empty, a bubble that keeps the wavefront's timing (padding beyond
/// the matrix edge), or a real value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Slot {
    Empty,
    Bubble,
    Real,
}

/// What the PE array did in one cycle.
pub(crate) struct CycleActivity {
    /// Some moving register holds a value or a bubble: the wavefront is still in the array.
    pub present: bool,
    pub macs: u64,
    pub register_writes: u64,
}

impl CycleActivity {
    /// Counts the cycle into `stats` for an array of `pes` PEs.
    pub fn account(&self, stats: &mut GemmStats, pes: usize) {
        stats.mac_pe_cycles += self.macs;
        stats.idle_pe_cycles += pes as u64 - self.macs;
        stats.register_writes += self.register_writes;
    }
}

/// One cycle of every PE: the two moving registers of each PE decide presence and register
/// writes; `fire(p)` performs PE p's multiply-accumulate if its operands are real and says
/// whether it did.
pub(crate) fn pe_cycle(moving: [&[Slot]; 2], mut fire: impl FnMut(usize) -> bool) -> CycleActivity {
    let mut activity = CycleActivity {
        present: false,
        macs: 0,
        register_writes: 0,
    };
    for (p, (&first, &second)) in moving[0].iter().zip(moving[1]).enumerate() {
        activity.present |= first != Slot::Empty || second != Slot::Empty;
        activity.register_writes += (first == Slot::Real) as u64 + (second == Slot::Real) as u64;
        activity.macs += fire(p) as u64;
    }
    activity
}
