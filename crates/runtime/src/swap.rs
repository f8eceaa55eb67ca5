//! SwapNet's executor: a model run as blocks (runs of consecutive units). Each block is
//! swapped in with one read straight into the aligned buffer its tensors then borrow
//! (zero-copy: nothing is copied between the read and the compute), run, and swapped out by
//! dropping the reference -- weights are never written back. With prefetch, a loader thread
//! reads the next block while the current one runs, admitted by the same governor, so the two
//! blocks and the activation reserve never exceed the budget.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgerun_models::{Model, State, UnitWeights};
use edgerun_store::packed::{IoMode, PackedStore};
use edgerun_store::{ModelSource, ReadOptions};

use crate::admit::admit_block;
use crate::delay::DelayModels;
use crate::executor::{check_minimum, check_range, reserve_activations, reserve_bytes};
use crate::governor::Lease;
use crate::partition::{partition_span, PartUnit};
use crate::pass::{run_range, Bound, Delivery, Feed};
use crate::read_ahead::read_ahead;
use crate::{ExecStats, Executor, Governor, Result, RuntimeError};

pub struct SwapExecutor {
    source: Arc<ModelSource>,
    model: Box<dyn Model>,
    read: ReadOptions,
    governor: Arc<Governor>,
    plan: BlockPlan,
    stats: Mutex<ExecStats>,
}

/// Where the blocks come from.
#[derive(Clone, Debug)]
pub enum BlockPlan {
    /// These blocks (they must tile the units in order), with or without prefetch.
    Fixed {
        blocks: Vec<Range<usize>>,
        prefetch: bool,
    },
    /// [`partition`] at each pass, for the governor's budget and the pass's reserve, with
    /// these delay models and per-unit FLOPs.
    Partition {
        models: DelayModels,
        flops: Vec<u64>,
        allow_prefetch: bool,
    },
}

/// A swapped-in block: its units bound (holding its read buffer), the lease on the copies
/// binding made, what it cost.
pub(crate) struct Loaded {
    pub units: Vec<UnitWeights>,
    pub(crate) copies: Option<Lease>,
    pub load_s: f64,
    pub wait_s: f64,
    pub bytes_read: u64,
    pub copied_bytes: u64,
}

/// The partitioner's view of a packed model's units.
pub(crate) fn packed_units(store: &PackedStore, model: &dyn Model, flops: &[u64]) -> Vec<PartUnit> {
    model
        .stages()
        .iter()
        .enumerate()
        .map(|(i, stage)| PartUnit {
            id: stage.id.clone(),
            resident_bytes: store.resident_bytes(i),
            read_bytes: store.manifest().units[i].length,
            flops: flops.get(i).copied().unwrap_or(0),
        })
        .collect()
}

/// Bytes the units of `block` hold once bound.
pub(crate) fn block_bytes(store: &PackedStore, block: &Range<usize>) -> u64 {
    block.clone().map(|i| store.resident_bytes(i)).sum()
}

/// Swap-in: books the block's bytes, reads it with one read into a governed (recycled where
/// possible) buffer, binds its units by reference, and counts what binding had to copy.
pub(crate) fn swap_in(
    store: &PackedStore,
    model: &dyn Model,
    governor: &Arc<Governor>,
    read: ReadOptions,
    block: &Range<usize>,
) -> Result<Loaded> {
    let waited = Instant::now();
    let label = &model.stages()[block.start].id;
    let admitted = admit_block(governor, store, read, block, label)?;
    let loading = Instant::now();
    let (buffer, copies) = admitted.read_block(store, read, block)?;
    let mut units = Vec::with_capacity(block.len());
    let mut copied_bytes = 0;
    for i in block.clone() {
        let view = store.unit_of_block(&buffer, block.start, i);
        let weights = store.bind_unit(i, &view)?;
        copied_bytes += weights
            .iter()
            .filter(|(_, t)| !t.borrows_buffer())
            .map(|(_, t)| t.len() as u64 * 4)
            .sum::<u64>();
        units.push(weights);
    }
    Ok(Loaded {
        units,
        copies,
        load_s: loading.elapsed().as_secs_f64(),
        wait_s: (loading - waited).as_secs_f64(),
        bytes_read: buffer.len as u64,
        copied_bytes,
    })
}

impl SwapExecutor {
    pub fn new(
        source: Arc<ModelSource>,
        read: ReadOptions,
        governor: Arc<Governor>,
        plan: BlockPlan,
    ) -> Result<Self> {
        if !matches!(*source, ModelSource::Packed(_)) {
            return Err(RuntimeError::NeedsPackedStore {
                what: "--strategy swap reads blocks".into(),
            });
        }
        if read.io == IoMode::Mmap {
            return Err(RuntimeError::SwapNeedsReads);
        }
        let model = source.model()?;
        let units = model.stages().len();
        match &plan {
            BlockPlan::Fixed { blocks, .. } => {
                let tiles = blocks.first().map(|b| b.start) == Some(0)
                    && blocks.last().map(|b| b.end) == Some(units)
                    && blocks.windows(2).all(|w| w[0].end == w[1].start)
                    && blocks.iter().all(|b| b.start < b.end);
                if !tiles {
                    return Err(RuntimeError::BlocksDoNotTile {
                        blocks: blocks.clone(),
                        units,
                    });
                }
            }
            BlockPlan::Partition { flops, .. } if flops.len() != units => {
                return Err(RuntimeError::ProfileMismatch {
                    profiled: flops.len(),
                    stages: units,
                });
            }
            BlockPlan::Partition { .. } => {}
        }
        Ok(Self {
            source,
            model,
            read,
            governor,
            plan,
            stats: Mutex::new(ExecStats::default()),
        })
    }

    fn store(&self) -> &PackedStore {
        match &*self.source {
            ModelSource::Packed(store) => store,
            ModelSource::Hf(_) => unreachable!("checked packed in SwapExecutor::new"),
        }
    }

    /// The blocks of a pass on `state`, and whether the next is read while one runs.
    pub fn blocks(&self, state: &State) -> Result<(Vec<Range<usize>>, bool)> {
        self.blocks_of(state, 0..self.model.stages().len())
    }

    /// The blocks that run the stages `stages` only: fixed blocks cut at the range's ends, or
    /// the partition of that span.
    pub fn blocks_of(
        &self,
        state: &State,
        stages: Range<usize>,
    ) -> Result<(Vec<Range<usize>>, bool)> {
        let (models, flops, allow_prefetch) = match &self.plan {
            BlockPlan::Fixed { blocks, prefetch } => {
                let cut = blocks
                    .iter()
                    .map(|b| b.start.max(stages.start)..b.end.min(stages.end))
                    .filter(|b| b.start < b.end)
                    .collect();
                return Ok((cut, *prefetch));
            }
            BlockPlan::Partition {
                models,
                flops,
                allow_prefetch,
            } => (models, flops, *allow_prefetch),
        };
        let units = packed_units(self.store(), self.model.as_ref(), flops);
        let reserve = reserve_bytes(self.model.as_ref(), state);
        if stages.is_empty() {
            return Ok((Vec::new(), false));
        }
        let cap = self.governor.cap();
        let plan = partition_span(&units, stages.clone(), models, cap, reserve, allow_prefetch)
            .ok_or_else(|| {
                let largest = units[stages]
                    .iter()
                    .map(|u| u.resident_bytes)
                    .max()
                    .unwrap_or(0);
                RuntimeError::BelowMinimum {
                    budget: self.governor.cap(),
                    minimum: largest + reserve,
                }
            })?;
        Ok((plan.ranges(), plan.prefetch))
    }

    /// The largest block (two consecutive ones with prefetch) plus the activation reserve.
    fn minimum_bytes(&self, blocks: &[Range<usize>], prefetch: bool, state: &State) -> u64 {
        let bytes = |b: &Range<usize>| block_bytes(self.store(), b);
        let single = blocks.iter().map(bytes).max().unwrap_or(0);
        let pair = blocks
            .windows(2)
            .map(|w| bytes(&w[0]) + bytes(&w[1]))
            .max()
            .unwrap_or(0);
        let largest = if prefetch { single.max(pair) } else { single };
        largest + reserve_bytes(self.model.as_ref(), state)
    }

    fn swap_in(&self, block: &Range<usize>) -> Result<Loaded> {
        swap_in(
            self.store(),
            self.model.as_ref(),
            &self.governor,
            self.read,
            block,
        )
    }
}

/// Swapped-in blocks handed to the pass unit by unit. A block's first unit carries the cost
/// of its read; the block's buffer is freed when its last unit is given back (its tensors
/// all borrow it), and the lease on its copies with it.
struct BlockFeed<'b, N> {
    blocks: &'b [Range<usize>],
    next_block: N,
    position: usize,
    expected: usize,
    units: VecDeque<UnitWeights>,
    copies: Option<Lease>,
}

impl<'b, N: FnMut(&Range<usize>) -> Result<Loaded>> BlockFeed<'b, N> {
    fn new(blocks: &'b [Range<usize>], next_block: N) -> Self {
        Self {
            blocks,
            next_block,
            position: 0,
            expected: blocks.first().map_or(0, |b| b.start),
            units: VecDeque::new(),
            copies: None,
        }
    }
}

impl<'w, N: FnMut(&Range<usize>) -> Result<Loaded>> Feed<'w> for BlockFeed<'_, N> {
    fn take(&mut self, index: usize) -> Result<Bound<'w>> {
        if index != self.expected {
            return Err(RuntimeError::NotDelivered { unit: index });
        }
        let mut cost = Delivery::default();
        if self.units.is_empty() {
            let block = self
                .blocks
                .get(self.position)
                .ok_or(RuntimeError::NotDelivered { unit: index })?;
            self.position += 1;
            let loaded = (self.next_block)(block)?;
            cost = Delivery {
                load_s: loaded.load_s,
                wait_s: loaded.wait_s,
                bytes_read: loaded.bytes_read,
                copied_bytes: loaded.copied_bytes,
            };
            self.units = loaded.units.into();
            self.copies = loaded.copies;
        }
        let weights = self
            .units
            .pop_front()
            .ok_or(RuntimeError::NotDelivered { unit: index })?;
        self.expected += 1;
        Ok(Bound::owned(weights, None, cost))
    }

    fn give_back(&mut self, _index: usize, unit: Bound<'w>) {
        drop(unit);
        if self.units.is_empty() {
            self.copies = None;
        }
    }
}

impl Executor for SwapExecutor {
    fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()> {
        check_range(&stages, self.model.stages().len())?;
        let (blocks, prefetch) = self.blocks_of(state, stages.clone())?;
        check_minimum(&self.governor, self.minimum_bytes(&blocks, prefetch, state))?;
        let _reserve = reserve_activations(&self.governor, self.model.as_ref(), state)?;
        let model = self.model.as_ref();
        let stats = if !prefetch {
            let mut feed = BlockFeed::new(&blocks, |b: &Range<usize>| self.swap_in(b));
            run_range(model, state, stages, &mut feed)?
        } else {
            std::thread::scope(|scope| -> Result<ExecStats> {
                // One block in flight: read while the one before it runs.
                let reader = read_ahead(scope, 1, &blocks, |b| self.swap_in(b));
                let mut feed = BlockFeed::new(&blocks, |b: &Range<usize>| {
                    reader.next(|| format!("block {b:?}"))
                });
                run_range(model, state, stages, &mut feed)
            })?
        };
        self.stats.lock().expect("stats lock").add(&stats);
        Ok(())
    }

    fn stats(&self) -> ExecStats {
        *self.stats.lock().expect("stats lock")
    }

    fn governor(&self) -> &Arc<Governor> {
        &self.governor
    }
}
