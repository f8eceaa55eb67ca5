//! The one pass loop. Every strategy is a [`Feed`]: something that hands over stage `i`'s bound
//! weights when the pass reaches it (resident, read inline, prefetched by a reader thread, or
//! delivered by PipeLoad's loading agents) and takes them back once the stage has run. Timing,
//! memory sampling, the inference track of the trace and per-unit records come from here only,
//! so every strategy measures the same way and runs the same stage code.

use std::ops::{Deref, Range};
use std::time::Instant;

use edgerun_models::{Model, State, UnitWeights};
use edgerun_tensor::kernels::matmul_flops;

use crate::governor::Lease;
use crate::memory::MemorySample;
use crate::trace::{SpanKind, Trace, Track};
use crate::{ExecStats, Result, RuntimeError};

/// A stage's weights as a feed hands them over: borrowed from weights it keeps, or its own.
pub enum Weights<'w> {
    Held(&'w UnitWeights),
    Owned(UnitWeights),
}

impl Deref for Weights<'_> {
    type Target = UnitWeights;

    fn deref(&self) -> &UnitWeights {
        match self {
            Weights::Held(w) => w,
            Weights::Owned(w) => w,
        }
    }
}

/// What delivering one unit cost the feed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivery {
    /// Reading and binding.
    pub load_s: f64,
    /// Waiting for the budget (or a read-ahead turn) before reading.
    pub wait_s: f64,
    pub bytes_read: u64,
    /// Weight bytes copied between reading and computing (widened f16/bf16 tensors).
    pub copied_bytes: u64,
}

/// One stage's weights for the pass, with the lease on any bytes they hold beyond the
/// buffers their tensors borrow.
pub struct Bound<'w> {
    pub weights: Weights<'w>,
    pub lease: Option<Lease>,
    pub cost: Delivery,
}

impl<'w> Bound<'w> {
    /// Weights a feed keeps for the whole pass (nothing to read, nothing to free).
    pub fn held(weights: &'w UnitWeights) -> Self {
        Self {
            weights: Weights::Held(weights),
            lease: None,
            cost: Delivery::default(),
        }
    }

    /// Weights read for this use, freed when dropped.
    pub fn owned(weights: UnitWeights, lease: Option<Lease>, cost: Delivery) -> Self {
        Self {
            weights: Weights::Owned(weights),
            lease,
            cost,
        }
    }
}

/// Hands over bound stages in execution order.
pub trait Feed<'w> {
    /// Stage `index`'s weights; called once per stage, in order.
    fn take(&mut self, index: usize) -> Result<Bound<'w>>;

    /// The pass is done with stage `index`: keep it, free it, or hand it to whoever frees.
    fn give_back(&mut self, index: usize, unit: Bound<'w>) {
        let _ = index;
        drop(unit);
    }
}

/// Weights kept for the whole pass: `units[i - first]` is stage `i`'s.
pub struct Resident<'w> {
    pub first: usize,
    pub units: &'w [UnitWeights],
}

impl<'w> Feed<'w> for Resident<'w> {
    fn take(&mut self, index: usize) -> Result<Bound<'w>> {
        index
            .checked_sub(self.first)
            .and_then(|i| self.units.get(i))
            .map(Bound::held)
            .ok_or(RuntimeError::NotDelivered { unit: index })
    }
}

/// What running one unit took.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitRun {
    pub index: usize,
    /// Inside [`Feed::take`]: reading inline, or waiting for a reader that reads ahead.
    pub take_s: f64,
    pub delivery: Delivery,
    pub compute_s: f64,
    /// Inside [`Feed::give_back`] (freeing the unit where the feed frees inline).
    pub give_back_s: f64,
    /// Matrix-product FLOPs the unit's compute counted.
    pub flops: u64,
    /// What a split after this unit would send: the f32 elements of the activation and the
    /// skips the state holds, and the activation's channels (its last dimension).
    pub boundary_elements: u64,
    pub boundary_channels: u64,
}

/// A pass's figures: the sums, and each unit's when asked for.
#[derive(Debug, Default)]
pub struct PassRecord {
    pub stats: ExecStats,
    pub units: Vec<UnitRun>,
}

/// Runs stages over one state, pulling each from a feed.
#[derive(Clone, Copy)]
pub struct Runner<'a> {
    model: &'a dyn Model,
    trace: Option<&'a Trace>,
    per_unit: bool,
}

impl<'a> Runner<'a> {
    pub fn new(model: &'a dyn Model) -> Self {
        Self {
            model,
            trace: None,
            per_unit: false,
        }
    }

    /// Records the inference track (waiting for each unit, computing it) into `trace`.
    pub fn traced(mut self, trace: Option<&'a Trace>) -> Self {
        self.trace = trace;
        self
    }

    /// Keeps a [`UnitRun`] per unit in the record.
    pub fn per_unit(mut self) -> Self {
        self.per_unit = true;
        self
    }

    /// Runs stages `stages` in order. A feed error stops the pass at that unit.
    pub fn run<'w>(
        &self,
        state: &mut State,
        stages: Range<usize>,
        feed: &mut dyn Feed<'w>,
    ) -> Result<PassRecord> {
        let count = self.model.stages().len();
        if stages.start > stages.end || stages.end > count {
            return Err(RuntimeError::StageRange {
                start: stages.start,
                end: stages.end,
                stages: count,
            });
        }
        let mut record = PassRecord::default();
        for index in stages {
            let waiting = Instant::now();
            let unit = feed.take(index)?;
            let computing = Instant::now();
            self.span(SpanKind::WaitUnit, index, waiting, computing);
            let flops_before = matmul_flops();
            self.model.run_stage(index, &unit.weights, state)?;
            let done = Instant::now();
            let flops = matmul_flops().saturating_sub(flops_before);
            self.span(SpanKind::Compute, index, computing, done);
            // Sampled while the unit is still held: the pass's memory includes its weights.
            let stats = &mut record.stats;
            stats.memory = stats.memory.max(MemorySample::now());
            let delivery = unit.cost;
            let giving_back = Instant::now();
            feed.give_back(index, unit);
            let given_back = Instant::now();
            stats.load_s += delivery.load_s;
            stats.wait_s += delivery.wait_s;
            stats.bytes_read += delivery.bytes_read;
            stats.copied_bytes += delivery.copied_bytes;
            stats.compute_s += (done - computing).as_secs_f64();
            if self.per_unit {
                let activations = state
                    .hidden
                    .iter()
                    .chain(state.skips.iter().map(|(_, t)| t));
                record.units.push(UnitRun {
                    boundary_elements: activations.map(|t| t.len() as u64).sum(),
                    boundary_channels: state.hidden.as_ref().map_or(0, |t| t.last_dim() as u64),
                    index,
                    take_s: (computing - waiting).as_secs_f64(),
                    delivery,
                    compute_s: (done - computing).as_secs_f64(),
                    give_back_s: (given_back - giving_back).as_secs_f64(),
                    flops,
                });
            }
        }
        Ok(record)
    }

    fn span(&self, kind: SpanKind, unit: usize, start: Instant, end: Instant) {
        if let Some(trace) = self.trace {
            trace.span(Track::Inference, kind, unit, start, end);
        }
    }
}

/// Runs every stage of `model` over `state` from `feed`.
pub fn run_pass<'w>(
    model: &dyn Model,
    state: &mut State,
    feed: &mut dyn Feed<'w>,
) -> Result<ExecStats> {
    run_range(model, state, 0..model.stages().len(), feed)
}

/// Runs the contiguous stages `stages` of `model` over `state` from `feed` (a device that
/// holds only part of a model runs its part).
pub fn run_range<'w>(
    model: &dyn Model,
    state: &mut State,
    stages: Range<usize>,
    feed: &mut dyn Feed<'w>,
) -> Result<ExecStats> {
    Ok(Runner::new(model).run(state, stages, feed)?.stats)
}
