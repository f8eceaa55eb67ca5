//! The ARAP machine: a global buffer, descriptors, the global controller issuing one 44-bit
//! instruction per cycle into four PE groups' queues, and the PE groups running them.
//!
//! Time advances cycle by cycle; cycles in which nothing can change (every PEG busy or
//! blocked, nothing to issue) are skipped in one step and still counted. An operation reads
//! its operands when it starts and writes its result when it ends; every activation word
//! carries the cycle it became valid and the instruction that wrote it, so reading a word
//! that is still being produced (or overwriting one still being read) is caught as a hazard.

mod memory;
mod peg;
mod validate;

use edgerun_tensor::fixed::FixedPoint;
use serde::Serialize;

use super::isa::{Instruction, Peg};
use crate::{AccelError, Result};
use memory::ActivationMemory;
use peg::{Controller, PegGroup, Shared};
pub use validate::validate;

/// Instructions a PEG can hold ahead of the one it runs.
pub const QUEUE_DEPTH: usize = 4;
/// Cycles to reconfigure a PEG for a different operation.
pub const RECONFIGURE_CYCLES: u64 = 2;

/// Which memory a descriptor points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Space {
    /// Weights and constants, written by the host before the run, read-only.
    Weights,
    /// Activations: read and written by the PEGs.
    Activations,
}

/// A matrix in the global buffer: `rows x cols`, row `r` starting at `base + r * stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub space: Space,
    pub base: usize,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Descriptor {
    pub(crate) fn words(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows)
            .flat_map(move |r| (0..self.cols).map(move |c| self.base + r * self.stride + c))
    }
}

/// A loaded program: descriptors, the two memory images, the instruction stream.
#[derive(Clone, Debug)]
pub struct Program {
    pub descriptors: Vec<Descriptor>,
    pub weights: Vec<i16>,
    /// Error bound of every weight (quantisation of the host's values).
    pub weight_error: f64,
    pub activations: Vec<i16>,
    /// Activation words the host wrote before the run, with each word's error bound.
    pub inputs: Vec<(Descriptor, Vec<f64>)>,
    pub instructions: Vec<Instruction>,
}

/// What one instruction did, for the trace and its checker.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub index: usize,
    pub peg: u8,
    pub op: &'static str,
    pub issued: u64,
    pub start: u64,
    pub end: u64,
    pub reconfigure_cycles: u64,
    /// Instructions whose results this one read (deduplicated).
    pub reads_from: Vec<usize>,
    /// For a `wait`: the `signal` it consumed.
    pub consumed_signal: Option<usize>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PegStats {
    pub name: String,
    pub busy_cycles: u64,
    pub reconfigure_cycles: u64,
    pub handshake_stall_cycles: u64,
    pub instructions: u64,
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub cycles: u64,
    pub pegs: Vec<PegStats>,
    /// Cycles the controller could not issue because the target PEG's queue was full.
    pub issue_stall_cycles: u64,
    pub records: Vec<Record>,
    pub activations: Vec<i16>,
    /// Sub-Gaussian scale of each activation word's error (real units); times
    /// [`super::bound::LAMBDA`] it is the bound (see [`super::bound`]).
    pub activation_error: Vec<f64>,
    /// The shift-and-add softmax against the exact softmax of the same scores, over every
    /// probability the run computed: largest and mean absolute difference.
    pub softmax_max_abs_error: f64,
    pub softmax_mean_abs_error: f64,
}

/// Runs `program` to completion: each cycle, finished operations write back, the controller
/// issues the next instruction, and each idle group starts the instruction at the head of its
/// queue. A cycle in which nothing can change is skipped to the next completion.
pub fn run(program: &Program, fp: &FixedPoint) -> Result<RunResult> {
    validate(program)?;
    let mut shared = Shared::new(program, fp, ActivationMemory::new(program));
    let mut pegs: Vec<PegGroup> = Peg::ALL.iter().map(|p| PegGroup::new(p.name())).collect();
    let mut controller = Controller::default();
    let mut cycle = 0u64;
    loop {
        let mut changed = false;
        // Completions first: a result written at the end of cycle t is readable at t.
        for peg in pegs.iter_mut() {
            changed |= peg.complete(cycle, &mut shared.memory);
        }
        changed |= controller.issue(program, &mut pegs, cycle, &mut shared);
        for (p, peg) in pegs.iter_mut().enumerate() {
            changed |= peg.advance(p, cycle, &mut shared)?;
        }
        if controller.done(program) && pegs.iter().all(PegGroup::idle) {
            break;
        }
        if changed {
            cycle += 1;
            continue;
        }
        // Nothing can happen before the next completion: jump there.
        let next = pegs
            .iter()
            .filter_map(PegGroup::running_until)
            .min()
            .ok_or(AccelError::Deadlock { cycle })?;
        let skipped = next.saturating_sub(cycle + 1);
        for peg in pegs.iter_mut() {
            peg.skip(skipped);
        }
        controller.skip(program, skipped);
        cycle = next;
    }
    let total = cycle.max(1);
    let (activations, activation_error) = shared.memory.into_parts();
    let softmax = shared.softmax;
    Ok(RunResult {
        cycles: cycle,
        pegs: pegs.into_iter().map(|p| p.stats(total)).collect(),
        issue_stall_cycles: controller.issue_stalls,
        records: shared.records.into_iter().flatten().collect(),
        activations,
        activation_error,
        softmax_max_abs_error: softmax.max,
        softmax_mean_abs_error: softmax.sum / softmax.count.max(1) as f64,
    })
}
