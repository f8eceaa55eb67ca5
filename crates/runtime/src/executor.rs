//! Executors: how a pass gets each stage's weights.
//!
//! [`FullExecutor`] binds every stage before the first runs (the load-all baseline; with
//! `IoMode::Mmap` it is the mmap strategy). [`StreamExecutor`] loads one unit, runs it, and
//! frees it before the next, every byte leased from the [`Governor`]. Each is a feed for the
//! one pass loop (`pass::run_pass`), so their outputs are identical.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgerun_models::{Inputs, Model, RunOptions, State, UnitWeights};
use edgerun_store::{ModelSource, ReadOptions};
use edgerun_tensor::Tensor;

use crate::governor::Governor;
use crate::inline_feed::InlineFeed;
use crate::memory::MemorySample;
use crate::pass::{run_range, Resident};
use crate::{Result, RuntimeError};

/// Named outputs of a pass in transformers' order, then `hidden_states.N` if recorded.
#[derive(Debug, Default)]
pub struct Outputs {
    pub tensors: Vec<(String, Tensor)>,
}

impl Outputs {
    pub fn from_state(state: &mut State) -> Self {
        let mut tensors = std::mem::take(&mut state.outputs);
        tensors.extend(
            std::mem::take(&mut state.hidden_states)
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("hidden_states.{i}"), t)),
        );
        Self { tensors }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Time and memory an executor spent, summed over passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecStats {
    pub load_s: f64,
    pub compute_s: f64,
    /// Time spent waiting for the budget.
    pub wait_s: f64,
    pub bytes_read: u64,
    /// Weight bytes copied between reading and computing (widened f16/bf16 tensors); zero
    /// when every tensor borrows the buffer it was read into.
    pub copied_bytes: u64,
    /// Largest memory figures sampled after each stage.
    pub memory: MemorySample,
}

impl ExecStats {
    /// Adds one pass's figures (memory: the larger of each).
    pub fn add(&mut self, pass: &ExecStats) {
        self.load_s += pass.load_s;
        self.compute_s += pass.compute_s;
        self.wait_s += pass.wait_s;
        self.bytes_read += pass.bytes_read;
        self.copied_bytes += pass.copied_bytes;
        self.memory = self.memory.max(pass.memory);
    }
}

/// Fails at once when `governor`'s cap is below `minimum`, naming the minimum.
pub(crate) fn check_minimum(governor: &Governor, minimum: u64) -> Result<()> {
    if minimum > governor.cap() {
        return Err(RuntimeError::BelowMinimum {
            budget: governor.cap(),
            minimum,
        });
    }
    Ok(())
}

/// Something that runs a model's stages in order. Shared between threads: a server runs
/// several passes on one executor, each leasing from the same governor.
pub trait Executor: Send + Sync {
    fn model(&self) -> &dyn Model;
    /// Runs the contiguous stages `stages` over `state` (a split's head or tail runs part of
    /// the model; a pass runs all of it).
    fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()>;
    fn stats(&self) -> ExecStats;
    fn governor(&self) -> &Arc<Governor>;

    /// Every stage, in order.
    fn all_stages(&self) -> Range<usize> {
        0..self.model().stages().len()
    }

    /// One forward pass.
    fn forward(&self, inputs: Inputs, options: RunOptions) -> Result<Outputs> {
        let mut state = self.model().start(inputs, options)?;
        self.run_stages(&mut state, self.all_stages())?;
        Ok(Outputs::from_state(&mut state))
    }
}

/// Refuses a range that is not inside the model's `count` stages.
pub(crate) fn check_range(stages: &Range<usize>, count: usize) -> Result<()> {
    if stages.start > stages.end || stages.end > count {
        return Err(RuntimeError::StageRange {
            start: stages.start,
            end: stages.end,
            stages: count,
        });
    }
    Ok(())
}

/// Bytes a pass needs besides its weights: the model's activation estimate plus gemm's
/// transient packing. `bench/src/bin/pack_bytes.rs` measured that packing on the largest
/// products edgerun runs (VGG-19's 411 MB classifier, GPT-2's tied head computed transposed,
/// BERT-large's FFN): at most 0.27% of the weight (405 KB for the head at 128 tokens), so the
/// bound is 1/64 of the largest tensor or 1 MiB, whichever is more. A quantised product's
/// codes of its input fit the same MiB (`quant::qgemm::BAND_BYTES`: taller inputs are
/// quantised a band of rows at a time). gemm also keeps a
/// per-thread packing cache of about 4 MiB after its first call; that one-time cache is not
/// counted here (see ARCHITECTURE.md).
pub fn reserve_bytes(model: &dyn Model, state: &State) -> u64 {
    model.activation_bytes(state) + gemm_packing_bytes(largest_tensor_bytes(model))
}

/// The part of [`reserve_bytes`] needed only while a stage runs (im2col buffers and gemm's
/// packing): a scheduler that runs one stage at a time across models holds it once.
pub fn transient_bytes(model: &dyn Model, state: &State) -> u64 {
    model.scratch_bytes(state) + gemm_packing_bytes(largest_tensor_bytes(model))
}

fn largest_tensor_bytes(model: &dyn Model) -> u64 {
    model
        .stages()
        .iter()
        .flat_map(|s| &s.tensors)
        .map(|t| t.elements() as u64 * 4)
        .max()
        .unwrap_or(0)
}

/// The bound on gemm's transient packing for products whose largest operand has
/// `largest_tensor_bytes` (see [`reserve_bytes`]).
pub fn gemm_packing_bytes(largest_tensor_bytes: u64) -> u64 {
    (largest_tensor_bytes / 64).max(1 << 20)
}

/// The smallest budget a pass on `state` can run in: the largest unit plus the reserve.
pub fn minimum_bytes(
    source: &ModelSource,
    model: &dyn Model,
    read: ReadOptions,
    state: &State,
) -> u64 {
    range_minimum_bytes(source, model, read, state, 0..model.stages().len())
}

/// The same for running the stages `stages` only: their largest unit plus the reserve.
pub fn range_minimum_bytes(
    source: &ModelSource,
    model: &dyn Model,
    read: ReadOptions,
    state: &State,
    stages: Range<usize>,
) -> u64 {
    let largest = stages
        .filter_map(|i| Some(source.resident_bytes(i, model.stages().get(i)?, read)))
        .max()
        .unwrap_or(0);
    largest + reserve_bytes(model, state)
}

/// Before a streamed pass over `stages`: the range is the model's, the budget holds the
/// range's largest unit plus the reserve, and the reserve is leased (held for the pass).
pub(crate) fn lease_streamed_pass(
    source: &ModelSource,
    model: &dyn Model,
    read: ReadOptions,
    governor: &Arc<Governor>,
    state: &State,
    stages: &Range<usize>,
) -> Result<crate::governor::Lease> {
    check_range(stages, model.stages().len())?;
    let minimum = range_minimum_bytes(source, model, read, state, stages.clone());
    check_minimum(governor, minimum)?;
    reserve_activations(governor, model, state)
}
/// Holds the activation reserve of a pass against the governor, sized from `state`.
pub(crate) fn reserve_activations(
    governor: &Arc<Governor>,
    model: &dyn Model,
    state: &State,
) -> Result<crate::governor::Lease> {
    governor.acquire(reserve_bytes(model, state), "the activation reserve")
}

pub struct FullExecutor {
    model: Box<dyn Model>,
    /// The stages whose weights are bound (all, or a split's head or tail).
    part: Range<usize>,
    weights: Vec<UnitWeights>,
    governor: Arc<Governor>,
    _leases: Vec<crate::governor::Lease>,
    stats: Mutex<ExecStats>,
}

impl FullExecutor {
    /// Builds the model and binds all its stages (unbounded budget).
    pub fn load(source: &ModelSource) -> Result<Self> {
        Self::load_with(source, ReadOptions::default(), Governor::new(u64::MAX))
    }

    /// The bound stages' weights, in stage order from the first bound (a compiler for an
    /// accelerator reads them).
    pub fn weights(&self) -> &[UnitWeights] {
        &self.weights
    }

    /// The stages whose weights are bound.
    pub fn part(&self) -> Range<usize> {
        self.part.clone()
    }

    pub fn load_with(
        source: &ModelSource,
        read: ReadOptions,
        governor: Arc<Governor>,
    ) -> Result<Self> {
        Self::load_part(source, read, governor, None)
    }

    /// Binds the stages `part` only (every stage with `None`): a device that runs one side of
    /// a split holds only that side's weights.
    pub fn load_part(
        source: &ModelSource,
        read: ReadOptions,
        governor: Arc<Governor>,
        part: Option<Range<usize>>,
    ) -> Result<Self> {
        let model = source.model()?;
        let part = part.unwrap_or(0..model.stages().len());
        check_range(&part, model.stages().len())?;
        let started = Instant::now();
        let mut weights = Vec::with_capacity(part.len());
        let mut leases = Vec::with_capacity(part.len());
        let mut bytes_read = 0;
        for (i, stage) in model
            .stages()
            .iter()
            .enumerate()
            .skip(part.start)
            .take(part.len())
        {
            let bytes = source.resident_bytes(i, stage, read);
            leases.push(governor.try_acquire(bytes).ok_or_else(|| {
                RuntimeError::FullDoesNotFit {
                    budget: governor.cap(),
                    stage: stage.id.clone(),
                }
            })?);
            weights.push(source.load_stage(i, stage, read)?);
            bytes_read += source.read_bytes(i, stage);
        }
        let stats = ExecStats {
            load_s: started.elapsed().as_secs_f64(),
            bytes_read,
            memory: MemorySample::now(),
            ..ExecStats::default()
        };
        Ok(Self {
            model,
            part,
            weights,
            governor,
            _leases: leases,
            stats: Mutex::new(stats),
        })
    }
}

impl Executor for FullExecutor {
    fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()> {
        check_range(&stages, self.model.stages().len())?;
        if stages.start < self.part.start || stages.end > self.part.end {
            return Err(RuntimeError::NotHeld {
                start: stages.start,
                end: stages.end,
                held_start: self.part.start,
                held_end: self.part.end,
            });
        }
        let _reserve = reserve_activations(&self.governor, self.model.as_ref(), state)?;
        let mut feed = Resident {
            first: self.part.start,
            units: &self.weights,
        };
        let pass = run_range(self.model.as_ref(), state, stages, &mut feed)?;
        self.stats.lock().expect("stats lock").add(&pass);
        Ok(())
    }

    fn stats(&self) -> ExecStats {
        *self.stats.lock().expect("stats lock")
    }

    fn governor(&self) -> &Arc<Governor> {
        &self.governor
    }
}

/// One unit at a time: lease, load, bind, run, free. No overlap of loading and compute.
pub struct StreamExecutor {
    source: Arc<ModelSource>,
    model: Box<dyn Model>,
    read: ReadOptions,
    governor: Arc<Governor>,
    stats: Mutex<ExecStats>,
}

impl StreamExecutor {
    pub fn new(
        source: Arc<ModelSource>,
        read: ReadOptions,
        governor: Arc<Governor>,
    ) -> Result<Self> {
        Ok(Self {
            model: source.model()?,
            source,
            read,
            governor,
            stats: Mutex::new(ExecStats::default()),
        })
    }

    /// The smallest budget a pass on `state` can run in: the largest unit plus the reserve.
    pub fn minimum_bytes(&self, state: &State) -> u64 {
        minimum_bytes(&self.source, self.model.as_ref(), self.read, state)
    }
}

impl Executor for StreamExecutor {
    fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()> {
        let _reserve = lease_streamed_pass(
            &self.source,
            self.model.as_ref(),
            self.read,
            &self.governor,
            state,
            &stages,
        )?;
        let mut feed = InlineFeed {
            source: &self.source,
            model: self.model.as_ref(),
            read: self.read,
            governor: &self.governor,
        };
        let pass = run_range(self.model.as_ref(), state, stages, &mut feed)?;
        self.stats.lock().expect("stats lock").add(&pass);
        Ok(())
    }

    fn stats(&self) -> ExecStats {
        *self.stats.lock().expect("stats lock")
    }

    fn governor(&self) -> &Arc<Governor> {
        &self.governor
    }
}

const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// The largest binary unit `bytes` reaches (an index into `UNITS`), TiB at most.
fn binary_unit(bytes: u64) -> usize {
    (1..UNITS.len())
        .rev()
        .find(|&u| bytes >= 1 << (10 * u))
        .unwrap_or(0)
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    match binary_unit(bytes) {
        0 => format!("{bytes} B"),
        unit => {
            let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
            format!("{value:.1} {}", UNITS[unit])
        }
    }
}

/// Like [`human_bytes`] but never below `bytes`: the tenths are rounded up, so the text read
/// back by `size::parse_size` is at least `bytes` (for minimums a user may paste as a budget).
pub fn human_bytes_up(bytes: u64) -> String {
    match binary_unit(bytes) {
        0 => format!("{bytes} B"),
        unit => {
            let tenths = (u128::from(bytes) * 10).div_ceil(1 << (10 * unit));
            format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::parse_size;
    use proptest::prelude::*;

    /// The divide-by-1024 loop `human_bytes` replaces: the same text for every size.
    fn human_bytes_by_division(bytes: u64) -> String {
        let mut value = bytes as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{bytes} B")
        } else {
            format!("{value:.1} {}", UNITS[unit])
        }
    }

    proptest! {
        #[test]
        fn human_bytes_equals_dividing_by_1024(bytes in any::<u64>()) {
            prop_assert_eq!(human_bytes(bytes), human_bytes_by_division(bytes));
        }

        #[test]
        fn rounded_up_sizes_read_back_at_least_as_large(bytes in 1..u64::MAX / 2) {
            let text = human_bytes_up(bytes);
            let back = parse_size(&text).unwrap();
            prop_assert!(back >= bytes, "{bytes} printed as {text} reads back as {back}");
        }
    }

    #[test]
    fn rounds_tenths_up() {
        assert_eq!(human_bytes_up(1023), "1023 B");
        assert_eq!(human_bytes_up(1024), "1.0 KiB");
        assert_eq!(human_bytes_up(1025), "1.1 KiB");
        assert_eq!(human_bytes_up(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1363149), "1.3 MiB");
        assert_eq!(human_bytes(u64::MAX), human_bytes_by_division(u64::MAX));
        assert_eq!(human_bytes_up(1363149), "1.4 MiB");
    }
}
