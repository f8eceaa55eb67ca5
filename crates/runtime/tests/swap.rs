//! SwapNet's executor against the load-all baseline: bit-identical outputs for every fixture
//! and every tiling of its units into blocks, with and without prefetch, the cap never
//! exceeded, no weight byte copied after the read, and a clear error below the minimum.

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{bits, fixtures, forward, FIXTURES};
use edgerun_runtime::swap::BlockPlan;
use edgerun_runtime::{Executor, FullExecutor, Governor, RuntimeError, SwapExecutor};
use edgerun_store::packed::IoMode;
use edgerun_store::{ModelSource, ReadOptions};
use proptest::prelude::*;

fn direct() -> ReadOptions {
    ReadOptions {
        io: IoMode::Direct,
        verify: true,
    }
}

/// Blocks from cut flags: a cut after unit i where `cuts[i]` is set.
fn tiling(units: usize, cuts: &[bool]) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let mut start = 0;
    for i in 1..units {
        if cuts[(i - 1) % cuts.len()] {
            blocks.push(start..i);
            start = i;
        }
    }
    blocks.push(start..units);
    blocks
}

struct Packed {
    dir: PathBuf,
    source: Arc<ModelSource>,
    reference: Vec<(String, Vec<u32>)>,
}

fn packed(root: &Path, name: &str) -> Packed {
    let dir = root.join(name);
    let store = common::pack_fixture(&dir, &format!("swap-{name}"));
    let source = Arc::new(ModelSource::open(&store).unwrap());
    let full = FullExecutor::load(&ModelSource::open(&dir).unwrap()).unwrap();
    let reference = bits(&forward(&full, &dir).unwrap());
    Packed {
        dir,
        source,
        reference,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any tiling, either mode, any cap from the plan's minimum up: identical outputs, the
    /// governor never over its cap, zero copies.
    #[test]
    fn any_tiling_matches_full(fixture in 0usize..FIXTURES.len(), cuts in prop::collection::vec(any::<bool>(), 1..12), prefetch in any::<bool>(), slack in 0u64..4_000_000) {
        let Some(root) = fixtures() else { return Ok(()) };
        let p = packed(&root, FIXTURES[fixture]);
        let units = p.source.model().unwrap().stages().len();
        let blocks = tiling(units, &cuts);
        // Find the plan's minimum with an unbounded governor, then run capped at it (+ slack).
        let probe = SwapExecutor::new(p.source.clone(), direct(), Governor::new(u64::MAX), BlockPlan::Fixed { blocks: blocks.clone(), prefetch }).unwrap();
        forward(&probe, &p.dir).unwrap();
        let needed = probe.governor().peak();
        // The stated minimum holds two blocks at once with prefetch; a probe whose read of the
        // next block happened to start after the last one was freed peaks lower.
        let at_peak = SwapExecutor::new(p.source.clone(), direct(), Governor::new(needed), BlockPlan::Fixed { blocks: blocks.clone(), prefetch }).unwrap();
        let minimum = match forward(&at_peak, &p.dir) {
            Err(RuntimeError::BelowMinimum { minimum, .. }) => minimum,
            other => { other.unwrap(); needed }
        };
        let cap = minimum + slack;
        let executor = SwapExecutor::new(p.source.clone(), direct(), Governor::new(cap), BlockPlan::Fixed { blocks, prefetch }).unwrap();
        let outputs = forward(&executor, &p.dir).unwrap();
        prop_assert_eq!(bits(&outputs), p.reference.clone());
        prop_assert!(executor.governor().peak() <= cap);
        prop_assert_eq!(executor.stats().copied_bytes, 0);
    }
}

#[test]
fn partitioned_runs_match_full_at_their_minimum() {
    let Some(root) = fixtures() else { return };
    let all = FIXTURES
        .iter()
        .map(|name| (root.clone(), *name))
        .chain(std::iter::once((common::repo_fixtures(), "yolov3-tiny")));
    for (root, name) in all {
        let p = packed(&root, name);
        let units = p.source.model().unwrap().stages().len();
        let (models, flops) = (
            edgerun_runtime::delay::DelayModels::read_only(),
            vec![0; units],
        );
        let plan = || BlockPlan::Partition {
            models,
            flops: flops.clone(),
            allow_prefetch: true,
        };
        let unbounded =
            SwapExecutor::new(p.source.clone(), direct(), Governor::new(u64::MAX), plan()).unwrap();
        assert_eq!(
            bits(&forward(&unbounded, &p.dir).unwrap()),
            p.reference,
            "{name} unbounded"
        );
        // The smallest budget: each unit its own block, no prefetch.
        let single: Vec<Range<usize>> = (0..units).map(|i| i..i + 1).collect();
        let probe = SwapExecutor::new(
            p.source.clone(),
            direct(),
            Governor::new(u64::MAX),
            BlockPlan::Fixed {
                blocks: single,
                prefetch: false,
            },
        )
        .unwrap();
        forward(&probe, &p.dir).unwrap();
        let minimum = probe.governor().peak();
        let tight =
            SwapExecutor::new(p.source.clone(), direct(), Governor::new(minimum), plan()).unwrap();
        assert_eq!(
            bits(&forward(&tight, &p.dir).unwrap()),
            p.reference,
            "{name} at {minimum}"
        );
        assert!(tight.governor().peak() <= minimum);
        let below = SwapExecutor::new(
            p.source.clone(),
            direct(),
            Governor::new(minimum - 1),
            plan(),
        )
        .unwrap();
        match forward(&below, &p.dir).unwrap_err() {
            RuntimeError::BelowMinimum { budget, minimum: m } => {
                assert_eq!((budget, m), (minimum - 1, minimum), "{name}");
            }
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn blocks_that_do_not_tile_are_refused() {
    let Some(root) = fixtures() else { return };
    let p = packed(&root, "bert-tiny");
    let units = p.source.model().unwrap().stages().len();
    let short: Vec<Range<usize>> = std::iter::once(0..1).collect();
    let late: Vec<Range<usize>> = std::iter::once(1..units).collect();
    for blocks in [short, late, vec![0..2, 3..units]] {
        let plan = BlockPlan::Fixed {
            blocks,
            prefetch: false,
        };
        let refused = SwapExecutor::new(p.source.clone(), direct(), Governor::new(u64::MAX), plan);
        assert!(matches!(refused, Err(RuntimeError::BlocksDoNotTile { .. })));
    }
}
