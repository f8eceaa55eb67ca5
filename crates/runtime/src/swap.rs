//! SwapNet's executor: a model run as blocks (runs of consecutive units). Each block is
//! swapped in with one read straight into the aligned buffer its tensors then borrow
//! (zero-copy: nothing is copied between the read and the compute), run, and swapped out by
//! dropping the reference -- weights are never written back. With prefetch, a loader thread
//! reads the next block while the current one runs, admitted by the same governor, so the two
//! blocks and the activation reserve never exceed the budget.

use std::ops::Range;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edgerun_models::{Model, State, UnitWeights};
use edgerun_store::packed::{IoMode, PackedStore};
use edgerun_store::{ModelSource, ReadOptions};

use crate::admit::admit_block;
use crate::delay::DelayModels;
use crate::executor::{check_minimum, reserve_activations, reserve_bytes};
use crate::governor::Lease;
use crate::partition::{partition, PartUnit};
use crate::{human_bytes, ExecStats, Executor, Governor, MemorySample, Result, RuntimeError};

pub struct SwapExecutor<'s> {
    store: &'s PackedStore,
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
    pub(crate) _copies: Option<Lease>,
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
        _copies: copies,
        load_s: loading.elapsed().as_secs_f64(),
        wait_s: (loading - waited).as_secs_f64(),
        bytes_read: buffer.len as u64,
        copied_bytes,
    })
}

impl<'s> SwapExecutor<'s> {
    pub fn new(
        source: &'s ModelSource,
        read: ReadOptions,
        governor: Arc<Governor>,
        plan: BlockPlan,
    ) -> Result<Self> {
        let ModelSource::Packed(store) = source else {
            return Err(RuntimeError::Unsupported(
                "--strategy swap reads blocks of a packed store (edgerun pack MODEL OUT)".into(),
            ));
        };
        if read.io == IoMode::Mmap {
            return Err(RuntimeError::Unsupported(
                "--strategy swap swaps blocks in with a read; use --io direct or --io pread".into(),
            ));
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
                    return Err(RuntimeError::Unsupported(format!(
                        "the blocks {blocks:?} do not cover the model's {units} units in order"
                    )));
                }
            }
            BlockPlan::Partition { flops, .. } if flops.len() != units => {
                return Err(RuntimeError::Unsupported(format!(
                    "the profile has {} units, the model {units}: profile this store again",
                    flops.len()
                )));
            }
            BlockPlan::Partition { .. } => {}
        }
        Ok(Self {
            store,
            model,
            read,
            governor,
            plan,
            stats: Mutex::new(ExecStats::default()),
        })
    }

    /// The blocks of a pass on `state`, and whether the next is read while one runs.
    pub fn blocks(&self, state: &State) -> Result<(Vec<Range<usize>>, bool)> {
        let (models, flops, allow_prefetch) = match &self.plan {
            BlockPlan::Fixed { blocks, prefetch } => return Ok((blocks.clone(), *prefetch)),
            BlockPlan::Partition {
                models,
                flops,
                allow_prefetch,
            } => (models, flops, *allow_prefetch),
        };
        let units = packed_units(self.store, self.model.as_ref(), flops);
        let reserve = reserve_bytes(self.model.as_ref(), state);
        let plan = partition(&units, models, self.governor.cap(), reserve, allow_prefetch).ok_or_else(|| {
            let largest = units.iter().map(|u| u.resident_bytes).max().unwrap_or(0);
            RuntimeError::Budget(format!(
                "a budget of {} bytes is below this model's minimum of {} bytes ({}: the largest unit plus activations)",
                self.governor.cap(),
                largest + reserve,
                human_bytes(largest + reserve)
            ))
        })?;
        let blocks = plan.ranges();
        Ok((blocks, plan.prefetch))
    }

    fn block_bytes(&self, block: &Range<usize>) -> u64 {
        block_bytes(self.store, block)
    }

    /// The largest block (two consecutive ones with prefetch) plus the activation reserve.
    fn minimum_bytes(&self, blocks: &[Range<usize>], prefetch: bool, state: &State) -> u64 {
        let single = blocks
            .iter()
            .map(|b| self.block_bytes(b))
            .max()
            .unwrap_or(0);
        let pair = blocks
            .windows(2)
            .map(|w| self.block_bytes(&w[0]) + self.block_bytes(&w[1]))
            .max()
            .unwrap_or(0);
        let largest = if prefetch { single.max(pair) } else { single };
        largest + reserve_bytes(self.model.as_ref(), state)
    }

    fn swap_in(&self, block: &Range<usize>) -> Result<Loaded> {
        swap_in(
            self.store,
            self.model.as_ref(),
            &self.governor,
            self.read,
            block,
        )
    }

    /// Runs one swapped-in block, then swaps it out (drops it).
    fn execute(
        &self,
        block: &Range<usize>,
        loaded: Loaded,
        state: &mut State,
        stats: &mut ExecStats,
    ) -> Result<()> {
        stats.load_s += loaded.load_s;
        stats.wait_s += loaded.wait_s;
        stats.bytes_read += loaded.bytes_read;
        stats.copied_bytes += loaded.copied_bytes;
        let computing = Instant::now();
        for (i, weights) in block.clone().zip(&loaded.units) {
            self.model.run_stage(i, weights, state)?;
        }
        stats.compute_s += computing.elapsed().as_secs_f64();
        stats.memory = stats.memory.max(MemorySample::now());
        drop(loaded);
        Ok(())
    }
}

impl Executor for SwapExecutor<'_> {
    fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    fn run_stages(&self, state: &mut State) -> Result<()> {
        let (blocks, prefetch) = self.blocks(state)?;
        check_minimum(&self.governor, self.minimum_bytes(&blocks, prefetch, state))?;
        let _reserve = reserve_activations(&self.governor, self.model.as_ref(), state)?;
        let mut stats = ExecStats::default();
        if !prefetch {
            for block in &blocks {
                let loaded = self.swap_in(block)?;
                self.execute(block, loaded, state, &mut stats)?;
            }
        } else {
            // One block in flight: the channel holds at most one swapped-in block.
            let (sender, receiver) = sync_channel::<Result<Loaded>>(0);
            std::thread::scope(|scope| -> Result<()> {
                let blocks = &blocks;
                scope.spawn(move || {
                    for block in blocks {
                        let loaded = self.swap_in(block);
                        let failed = loaded.is_err();
                        if sender.send(loaded).is_err() || failed {
                            return;
                        }
                    }
                });
                for block in blocks {
                    let loaded = receiver.recv().map_err(|_| {
                        RuntimeError::Unsupported("the swap-in thread stopped early".into())
                    })??;
                    self.execute(block, loaded, state, &mut stats)?;
                }
                Ok(())
            })?;
        }
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
