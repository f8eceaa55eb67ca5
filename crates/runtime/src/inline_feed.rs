//! The streaming feed: each unit is admitted to the budget, read and bound when the pass
//! reaches it, and freed as soon as it has run. Nothing overlaps; the profiler measures with
//! it because it is what every other feed's reads cost without contention.

use std::sync::Arc;
use std::time::Instant;

use edgerun_models::Model;
use edgerun_store::{ModelSource, ReadOptions};

use crate::admit::admit_stage;
use crate::pass::{Bound, Delivery, Feed};
use crate::{Governor, Result};

pub struct InlineFeed<'a> {
    pub source: &'a ModelSource,
    pub model: &'a dyn Model,
    pub read: ReadOptions,
    pub governor: &'a Arc<Governor>,
}

impl<'a> Feed<'a> for InlineFeed<'a> {
    fn take(&mut self, index: usize) -> Result<Bound<'a>> {
        let stage = &self.model.stages()[index];
        let waited = Instant::now();
        let admitted = admit_stage(self.governor, self.source, index, stage, self.read)?;
        let loading = Instant::now();
        let (weights, lease) = admitted.load_stage(self.source, index, stage, self.read)?;
        let cost = Delivery {
            load_s: loading.elapsed().as_secs_f64(),
            wait_s: (loading - waited).as_secs_f64(),
            bytes_read: self.source.read_bytes(index, stage),
            copied_bytes: 0,
        };
        Ok(Bound::owned(weights, lease, cost))
    }
}
