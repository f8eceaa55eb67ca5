//! Admission of a unit (or a block of units) to the budget before it is read: its read buffer
//! comes from the governor, recycled where an idle one has its length, and the f32 copies
//! binding makes (widened f16/bf16, transposed HF weights) take a lease.
//!
//! Every budgeted executor loads through here, so they all gain from recycled buffers: a
//! loader reading into a buffer already faulted in spares the compute threads the page faults
//! and zeroing of a fresh mapping.

use std::ops::Range;
use std::sync::Arc;

use edgerun_models::{StageSpec, UnitWeights};
use edgerun_store::packed::{PackedStore, UnitBuffer};
use edgerun_store::{IoMode, ModelSource, ReadOptions};

use crate::governor::{GovernedBuf, Lease};
use crate::swap::block_bytes;
use crate::{Governor, Result};

/// Bytes booked for one load: the buffer it reads into, the buffer it widens f16/bf16 into,
/// and the lease on any other copies.
pub(crate) struct Admitted {
    buffer: Option<GovernedBuf>,
    widened: Option<GovernedBuf>,
    copies: Option<Lease>,
}

/// Books `resident` bytes, `buffer_len` of them as a read buffer and `widened_len` as a
/// widening buffer.
fn admit_bytes(
    governor: &Arc<Governor>,
    resident: u64,
    buffer_len: Option<usize>,
    widened_len: Option<usize>,
    what: &str,
) -> Result<Admitted> {
    governor.refuse_beyond_cap(resident, what)?;
    let buffer = buffer_len
        .map(|len| governor.buffer(len, what))
        .transpose()?;
    let widened = widened_len
        .map(|len| governor.buffer(len, what))
        .transpose()?;
    let booked = buffer_len.unwrap_or(0) + widened_len.unwrap_or(0);
    let copies = resident.saturating_sub(booked as u64);
    let copies = (copies > 0)
        .then(|| governor.acquire(copies, what))
        .transpose()?;
    Ok(Admitted {
        buffer,
        widened,
        copies,
    })
}

/// Books what stage `index` of `source` holds once bound with `read`.
pub(crate) fn admit_stage(
    governor: &Arc<Governor>,
    source: &ModelSource,
    index: usize,
    stage: &StageSpec,
    read: ReadOptions,
) -> Result<Admitted> {
    admit_bytes(
        governor,
        source.resident_bytes(index, stage, read),
        source.read_buffer_len(index, read),
        source.widened_len(index),
        &stage.id,
    )
}

/// Books what the units of `block` hold once bound, read as one block.
pub(crate) fn admit_block(
    governor: &Arc<Governor>,
    store: &PackedStore,
    read: ReadOptions,
    block: &Range<usize>,
    what: &str,
) -> Result<Admitted> {
    let resident = block_bytes(store, block);
    let buffer_len = match read.io {
        IoMode::Mmap => None,
        _ => Some(store.block_len(block.clone())?),
    };
    admit_bytes(governor, resident, buffer_len, None, what)
}

impl Admitted {
    /// Reads and binds stage `index` into the booked buffers. The lease returned holds any
    /// other copies; the buffers are held by the tensors that borrow them and go back to the
    /// governor's idle list when the last one is dropped.
    pub(crate) fn load_stage(
        self,
        source: &ModelSource,
        index: usize,
        stage: &StageSpec,
        read: ReadOptions,
    ) -> Result<(UnitWeights, Option<Lease>)> {
        let weights = source.load_stage_into(index, stage, read, self.buffer, self.widened)?;
        Ok((weights, self.copies))
    }

    /// Reads `block` with one read into the booked buffer.
    pub(crate) fn read_block(
        self,
        store: &PackedStore,
        read: ReadOptions,
        block: &Range<usize>,
    ) -> Result<(UnitBuffer, Option<Lease>)> {
        let buffer = match self.buffer {
            Some(buffer) => store.read_block_into(block.clone(), read.io, read.verify, buffer)?,
            None => store.read_block(block.clone(), read.io, read.verify)?,
        };
        Ok((buffer, self.copies))
    }
}
