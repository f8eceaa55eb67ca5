//! What a model of a mix keeps and what it streams within its quota.
//!
//! SwapNet swaps every block out after use. When the quota holds more than one block, the
//! bytes beyond the streaming window are better spent keeping units resident across
//! inferences: every kept byte is a byte not re-read on every pass. A plan keeps a set of
//! units `K` and streams the rest in blocks, with
//!
//! `bytes(K) + largest streamed block + activation reserve <= quota`,
//!
//! so the model never holds more than its quota, whether on its first pass (kept units are
//! read once, in order) or later. Choosing `K` to minimise the streamed bytes is a knapsack;
//! the planner tries every size `u` of the largest streamed unit (units larger than `u` must
//! be kept), fills the rest of the room with the largest units that fit (greedy), partitions
//! each streamed run with the exact block partitioner, and keeps the candidate whose streamed
//! blocks cost least to swap (predicted swap-in + swap-out per pass; ties: more bytes kept).
//! Compute is left out of the choice: the same units run whatever is kept, and a fitted
//! per-block constant in `t_ex` would otherwise count splitting a run as extra work.

use std::ops::Range;

use serde::Serialize;

use crate::delay::DelayModels;
use crate::partition::{partition_span, PartUnit};

/// One step of a model's pass: a run of consecutive units, kept or streamed.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub units: Range<usize>,
    /// Read on the first pass only, then held until the model's last inference.
    pub kept: bool,
    pub resident_bytes: u64,
    pub t_in_s: f64,
    pub t_ex_s: f64,
    pub t_out_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelPlan {
    pub steps: Vec<Step>,
    pub kept_bytes: u64,
    /// The largest streamed step (0 when everything is kept).
    pub window_bytes: u64,
    /// What streamed steps may hold at once: the quota less the reserve and kept units.
    pub room_bytes: u64,
    /// One pass after the first, steps one after another: streamed steps' swap-in + execute
    /// + swap-out, kept steps' execute.
    pub predicted_steady_s: f64,
}

impl ModelPlan {
    /// Predicted swap-in + swap-out of one pass after the first.
    pub fn swap_s(&self) -> f64 {
        self.steps
            .iter()
            .filter(|s| !s.kept)
            .map(|s| s.t_in_s + s.t_out_s)
            .sum()
    }
}

impl ModelPlan {
    /// Bytes read on every pass after the first.
    pub fn streamed_bytes(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| !s.kept)
            .map(|s| s.resident_bytes)
            .sum()
    }

    /// The step's predicted duration on pass `inference`, run alone.
    pub fn step_s(&self, step: usize, inference: usize) -> f64 {
        let s = &self.steps[step];
        match (s.kept, inference) {
            (true, 0) => s.t_in_s + s.t_ex_s,
            (true, _) => s.t_ex_s,
            (false, _) => s.t_in_s + s.t_ex_s + s.t_out_s,
        }
    }
}

/// The plan for `quota` bytes with `reserve` for activations; `None` if not even the largest
/// unit fits. `keep` false streams everything (SwapNet as published).
pub fn plan_model(
    units: &[PartUnit],
    delays: &DelayModels,
    quota: u64,
    reserve: u64,
    keep: bool,
) -> Option<ModelPlan> {
    let room = quota.checked_sub(reserve)?;
    let mut best = plan_with(units, &vec![false; units.len()], delays, quota, reserve);
    if !keep {
        return best;
    }
    let mut sizes: Vec<u64> = units.iter().map(|u| u.resident_bytes).collect();
    sizes.push(0); // the largest streamed unit is "none": everything kept
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    let mut by_size: Vec<usize> = (0..units.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(units[i].resident_bytes));
    for largest_streamed in sizes {
        let mut kept = vec![false; units.len()];
        let mut left = room.saturating_sub(largest_streamed);
        let mut feasible = room >= largest_streamed;
        for &i in &by_size {
            let bytes = units[i].resident_bytes;
            if bytes > largest_streamed {
                feasible &= bytes <= left;
                left = left.saturating_sub(bytes);
                kept[i] = true;
            } else if bytes <= left {
                left -= bytes;
                kept[i] = true;
            }
        }
        if !feasible {
            continue;
        }
        let Some(candidate) = plan_with(units, &kept, delays, quota, reserve) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some(b) => {
                candidate.swap_s() < b.swap_s()
                    || (candidate.swap_s() == b.swap_s() && candidate.kept_bytes > b.kept_bytes)
            }
        };
        if better {
            best = Some(candidate);
        }
    }
    best
}

/// The steps for the kept set `kept`: kept runs as single steps, streamed runs partitioned
/// into blocks that fit beside everything kept.
fn plan_with(
    units: &[PartUnit],
    kept: &[bool],
    delays: &DelayModels,
    quota: u64,
    reserve: u64,
) -> Option<ModelPlan> {
    let kept_bytes: u64 = units
        .iter()
        .zip(kept)
        .filter(|(_, k)| **k)
        .map(|(u, _)| u.resident_bytes)
        .sum();
    let window_budget = quota.checked_sub(kept_bytes)?;
    if reserve > window_budget {
        return None;
    }
    let mut steps = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let end = (start..units.len())
            .find(|&i| kept[i] != kept[start])
            .unwrap_or(units.len());
        if kept[start] {
            let run = &units[start..end];
            let read: u64 = run.iter().map(|u| u.read_bytes).sum();
            let flops: u64 = run.iter().map(|u| u.flops).sum();
            steps.push(Step {
                units: start..end,
                kept: true,
                resident_bytes: run.iter().map(|u| u.resident_bytes).sum(),
                t_in_s: delays.t_in.predict(read as f64, start as f64),
                t_ex_s: delays.t_ex.predict(flops as f64, start as f64),
                t_out_s: 0.0,
            });
        } else {
            let blocks = partition_span(units, start..end, delays, window_budget, reserve, false)?;
            steps.extend(blocks.blocks.into_iter().map(|b| Step {
                units: b.first_unit..b.first_unit + b.units.len(),
                kept: false,
                resident_bytes: b.resident_bytes,
                t_in_s: b.t_in_s,
                t_ex_s: b.t_ex_s,
                t_out_s: b.t_out_s,
            }));
        }
        start = end;
    }
    let window_bytes = steps
        .iter()
        .filter(|s| !s.kept)
        .map(|s| s.resident_bytes)
        .max()
        .unwrap_or(0);
    let mut plan = ModelPlan {
        steps,
        kept_bytes,
        window_bytes,
        room_bytes: window_budget - reserve,
        predicted_steady_s: 0.0,
    };
    plan.predicted_steady_s = (0..plan.steps.len()).map(|s| plan.step_s(s, 1)).sum();
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units(sizes: &[u64]) -> Vec<PartUnit> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| PartUnit {
                id: format!("u{i}"),
                resident_bytes: b,
                read_bytes: b,
                flops: b * 10,
            })
            .collect()
    }

    fn covers_in_order(plan: &ModelPlan, n: usize) -> bool {
        plan.steps.first().map(|s| s.units.start) == Some(0)
            && plan.steps.last().map(|s| s.units.end) == Some(n)
            && plan
                .steps
                .windows(2)
                .all(|w| w[0].units.end == w[1].units.start)
            && plan.steps.iter().all(|s| !s.units.is_empty())
    }

    #[test]
    fn keeps_everything_when_it_fits_and_nothing_without_keep() {
        let u = units(&[100, 300, 50]);
        let delays = DelayModels::read_only();
        let all = plan_model(&u, &delays, 460, 10, true).unwrap();
        assert_eq!(all.kept_bytes, 450);
        assert_eq!(all.steps.len(), 1);
        assert_eq!(all.streamed_bytes(), 0);
        let none = plan_model(&u, &delays, 460, 10, false).unwrap();
        assert_eq!(none.kept_bytes, 0);
        assert_eq!(none.streamed_bytes(), 450);
        assert!(plan_model(&u, &delays, 309, 10, true).is_none());
    }

    #[test]
    fn keeping_the_largest_unit_can_shrink_the_window() {
        // Room 400: keeping the 300-byte unit leaves a 100-byte window, which streams the
        // rest (150 bytes) -- better than keeping nothing (450 streamed).
        let u = units(&[100, 300, 50]);
        let plan = plan_model(&u, &DelayModels::read_only(), 410, 10, true).unwrap();
        assert_eq!(plan.kept_bytes, 300);
        assert_eq!(plan.streamed_bytes(), 150);
        assert!(plan.kept_bytes + plan.window_bytes + 10 <= 410);
    }

    proptest! {
        /// Any plan tiles the units in order, holds at most its quota at any point, and never
        /// streams more than the plan that keeps nothing.
        #[test]
        fn plans_fit_their_quota_and_stream_no_more_than_swapping_everything(
            sizes in prop::collection::vec(1u64..1_000, 1..24),
            slack in 0u64..4_000,
            reserve in 0u64..100,
        ) {
            let u = units(&sizes);
            let largest = *sizes.iter().max().unwrap();
            let quota = largest + reserve + slack;
            let delays = DelayModels::read_only();
            let kept = plan_model(&u, &delays, quota, reserve, true).unwrap();
            let swapped = plan_model(&u, &delays, quota, reserve, false).unwrap();
            prop_assert!(covers_in_order(&kept, u.len()));
            prop_assert!(covers_in_order(&swapped, u.len()));
            prop_assert!(kept.kept_bytes + kept.window_bytes + reserve <= quota);
            prop_assert_eq!(kept.kept_bytes + kept.room_bytes + reserve, quota);
            prop_assert!(kept.window_bytes <= kept.room_bytes);
            prop_assert!(swapped.window_bytes + reserve <= quota);
            prop_assert!(kept.streamed_bytes() <= swapped.streamed_bytes());
            prop_assert!(kept.swap_s() <= swapped.swap_s() + 1e-12);
            let total: u64 = sizes.iter().sum();
            if total + reserve <= quota {
                prop_assert_eq!(kept.streamed_bytes(), 0);
            }
        }
    }
}
