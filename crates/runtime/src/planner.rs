//! Hermes' Pipeline Planner: predicts PipeLoad's latency and peak memory for each number of
//! loading agents and read-ahead depth by simulating the pipeline on a profile, and picks the
//! fastest (per loader count, the depth with the lowest predicted peak within 1% of its best:
//! reading further ahead only holds memory, which recycled read buffers then keep).
//!
//! The model: units are admitted to the budget in execution order, each by the first free
//! loader, once the bytes of units not yet freed plus its own fit under the cap and, with a
//! depth d, once the unit d + 1 places before it is done; a unit reads
//! at its share of the profiled aggregate throughput for the reads in flight when it starts;
//! compute runs in order once a unit is loaded and its predecessor is done; a unit is freed when
//! its compute ends; with a profile's slowdowns, compute stretches by the factor measured for
//! the reads in flight when it starts (loaders and compute share the cores).

use serde::{Deserialize, Serialize};

/// What the planner knows of one unit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnitCost {
    pub id: String,
    /// Bytes held while resident (counted against the budget).
    pub resident_bytes: u64,
    /// Bytes read from disk.
    pub read_bytes: u64,
    pub compute_s: f64,
}

/// Aggregate read throughput (bytes/s) with a given number of concurrent loaders.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    pub loaders: usize,
    pub bytes_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    pub loaders: usize,
    /// At most this many units admitted ahead of the one computing; `None`: as many as the
    /// budget holds.
    #[serde(default)]
    pub depth: Option<usize>,
    pub predicted_latency_s: f64,
    pub predicted_peak_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub loaders: usize,
    #[serde(default)]
    pub depth: Option<usize>,
    pub predicted_latency_s: f64,
    pub predicted_peak_bytes: u64,
    pub budget_bytes: u64,
    pub candidates: Vec<Candidate>,
}

/// Compute slowdown while `k` loaders read: the measured point at or below `k` nearest to it.
fn slowdown(slowdowns: &[(usize, f64)], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    slowdowns
        .iter()
        .filter(|s| s.0 <= k)
        .max_by_key(|s| s.0)
        .map_or(1.0, |s| s.1)
}

/// Aggregate throughput for `k` loaders: the measured point at or below `k` nearest to it
/// (more loaders than measured are assumed to gain nothing).
pub fn aggregate(throughputs: &[Throughput], k: usize) -> f64 {
    throughputs
        .iter()
        .filter(|t| t.loaders <= k)
        .max_by_key(|t| t.loaders)
        .or_else(|| throughputs.iter().min_by_key(|t| t.loaders))
        .map_or(1e9, |t| t.bytes_per_s)
}

/// Simulates PipeLoad with `loaders` agents; `None` if some unit can never fit.
pub fn simulate(
    units: &[UnitCost],
    reserve_bytes: u64,
    budget_bytes: u64,
    loaders: usize,
    throughputs: &[Throughput],
) -> Option<Candidate> {
    simulate_with(
        units,
        reserve_bytes,
        budget_bytes,
        (loaders, None),
        throughputs,
        &[],
    )
}

/// As [`simulate`] for `(loaders, depth)`, with compute slowed by `slowdowns[(k, factor)]`
/// while k reads are in flight.
pub fn simulate_with(
    units: &[UnitCost],
    reserve_bytes: u64,
    budget_bytes: u64,
    (loaders, depth): (usize, Option<usize>),
    throughputs: &[Throughput],
    slowdowns: &[(usize, f64)],
) -> Option<Candidate> {
    let loaders = loaders.max(1);
    let depth = depth.map(|d| d.max(1));
    let mut loaded_at = vec![0.0f64; units.len()];
    let mut loader_free = vec![0.0f64; loaders];
    let mut admitted_at = vec![0.0f64; units.len()];
    let mut freed_at = vec![0.0f64; units.len()];
    let mut previous_done = 0.0f64;
    let mut previous_admit = 0.0f64;
    let mut peak = reserve_bytes;
    for (i, unit) in units.iter().enumerate() {
        if reserve_bytes + unit.resident_bytes > budget_bytes {
            return None;
        }
        let (slot, &free) = loader_free
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("one loader");
        let mut start = free.max(previous_admit);
        // Read-ahead depth: unit i waits for unit i - depth - 1 to be done.
        if let Some(behind) = depth.and_then(|d| i.checked_sub(d + 1)) {
            start = start.max(freed_at[behind]);
        }
        let resident_at = |t: f64| -> u64 {
            (0..i)
                .filter(|&j| admitted_at[j] <= t && freed_at[j] > t)
                .map(|j| units[j].resident_bytes)
                .sum()
        };
        while reserve_bytes + resident_at(start) + unit.resident_bytes > budget_bytes {
            // Wait for the next free among the units resident now.
            start = (0..i)
                .map(|j| freed_at[j])
                .filter(|&f| f > start)
                .fold(f64::INFINITY, f64::min);
            debug_assert!(
                start.is_finite(),
                "units are freed in order, so one always frees"
            );
        }
        peak = peak.max(reserve_bytes + resident_at(start) + unit.resident_bytes);
        admitted_at[i] = start;
        previous_admit = start;
        // Reads in flight when this one starts share the disk with it.
        let active = 1 + (0..i).filter(|&j| loaded_at[j] > start).count();
        let loaded =
            start + unit.read_bytes as f64 * active as f64 / aggregate(throughputs, active);
        loaded_at[i] = loaded;
        loader_free[slot] = loaded;
        let compute_start = loaded.max(previous_done);
        let reading = (0..=i)
            .filter(|&j| admitted_at[j] <= compute_start && loaded_at[j] > compute_start)
            .count();
        let done = compute_start + unit.compute_s * slowdown(slowdowns, reading);
        freed_at[i] = done;
        previous_done = done;
    }
    Some(Candidate {
        loaders,
        depth,
        predicted_latency_s: previous_done,
        predicted_peak_bytes: peak,
    })
}

/// Every candidate from 1 to `max_loaders` agents and the fastest (the fewest agents on ties
/// within 1%); `None` if the budget cannot hold the largest unit and the reserve.
pub fn plan(
    units: &[UnitCost],
    reserve_bytes: u64,
    budget_bytes: u64,
    max_loaders: usize,
    throughputs: &[Throughput],
) -> Option<Plan> {
    plan_with(
        units,
        reserve_bytes,
        budget_bytes,
        max_loaders,
        throughputs,
        &[],
    )
}

/// As [`plan`], with measured compute slowdowns under concurrent reads.
pub fn plan_with(
    units: &[UnitCost],
    reserve_bytes: u64,
    budget_bytes: u64,
    max_loaders: usize,
    throughputs: &[Throughput],
    slowdowns: &[(usize, f64)],
) -> Option<Plan> {
    let candidates: Vec<Candidate> = (1..=max_loaders.max(1))
        .filter_map(|k| {
            // Depths below k would idle loaders; beyond k + 6 they only hold more memory.
            let depths = (k..=k + 6).map(Some).chain([None]);
            let shapes: Vec<Candidate> = depths
                .filter_map(|d| {
                    let shape = (k, d);
                    simulate_with(
                        units,
                        reserve_bytes,
                        budget_bytes,
                        shape,
                        throughputs,
                        slowdowns,
                    )
                })
                .collect();
            leanest_within_1_percent(shapes)
        })
        .collect();
    let best_latency = candidates
        .iter()
        .map(|c| c.predicted_latency_s)
        .fold(f64::INFINITY, f64::min);
    let best = candidates
        .iter()
        .find(|c| c.predicted_latency_s <= best_latency * 1.01)?
        .clone();
    Some(Plan {
        loaders: best.loaders,
        depth: best.depth,
        predicted_latency_s: best.predicted_latency_s,
        predicted_peak_bytes: best.predicted_peak_bytes,
        budget_bytes,
        candidates,
    })
}

/// Of candidates for one loader count, the one with the lowest peak among those within 1% of
/// the fastest: reading further ahead than that buys nothing and holds memory.
fn leanest_within_1_percent(candidates: Vec<Candidate>) -> Option<Candidate> {
    let fastest = candidates
        .iter()
        .map(|c| c.predicted_latency_s)
        .fold(f64::INFINITY, f64::min);
    candidates
        .into_iter()
        .filter(|c| c.predicted_latency_s <= fastest * 1.01)
        .min_by_key(|c| c.predicted_peak_bytes)
}

/// Which units to keep resident across passes (tokens of `generate`), greedily in execution
/// order, so that the pinned bytes plus the reserve plus the largest unit still streamed fit
/// the budget: every token then reads only the unpinned units.
pub fn residency(resident_bytes: &[u64], reserve_bytes: u64, budget_bytes: u64) -> Vec<bool> {
    let mut pinned = vec![false; resident_bytes.len()];
    let mut pinned_sum = 0u64;
    for i in 0..resident_bytes.len() {
        let largest_streamed = (0..resident_bytes.len())
            .filter(|&j| j != i && !pinned[j])
            .map(|j| resident_bytes[j])
            .max()
            .unwrap_or(0);
        if pinned_sum + resident_bytes[i] + reserve_bytes + largest_streamed <= budget_bytes {
            pinned[i] = true;
            pinned_sum += resident_bytes[i];
        }
    }
    pinned
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(bytes: u64, compute_s: f64) -> UnitCost {
        UnitCost {
            id: String::new(),
            resident_bytes: bytes,
            read_bytes: bytes,
            compute_s,
        }
    }

    const GBPS: f64 = 1e9;

    #[test]
    fn one_loader_unbounded_is_a_two_stage_pipeline() {
        // Loads of 1 s each, compute 0.5 s: the last compute starts after the last load.
        let units = vec![unit(1_000_000_000, 0.5); 3];
        let t = [Throughput {
            loaders: 1,
            bytes_per_s: GBPS,
        }];
        let c = simulate(&units, 0, u64::MAX, 1, &t).unwrap();
        assert!((c.predicted_latency_s - 3.5).abs() < 1e-9);
        assert_eq!(c.predicted_peak_bytes, 2_000_000_000);
    }

    #[test]
    fn a_tight_budget_serialises_loads_behind_frees() {
        // Room for one unit at a time: load, compute, free, load...
        let units = vec![unit(100, 1.0); 3];
        let t = [Throughput {
            loaders: 1,
            bytes_per_s: 100.0,
        }];
        let c = simulate(&units, 0, 100, 4, &t).unwrap();
        assert!(
            (c.predicted_latency_s - 6.0).abs() < 1e-9,
            "{}",
            c.predicted_latency_s
        );
        assert_eq!(c.predicted_peak_bytes, 100);
        assert!(simulate(&units, 1, 100, 1, &t).is_none());
    }

    #[test]
    fn more_loaders_help_only_when_throughput_scales() {
        let units = vec![unit(1_000_000_000, 0.1); 8];
        let flat = [
            Throughput {
                loaders: 1,
                bytes_per_s: GBPS,
            },
            Throughput {
                loaders: 4,
                bytes_per_s: GBPS,
            },
        ];
        let scaling = [
            Throughput {
                loaders: 1,
                bytes_per_s: GBPS,
            },
            Throughput {
                loaders: 4,
                bytes_per_s: 3.0 * GBPS,
            },
        ];
        assert_eq!(plan(&units, 0, u64::MAX, 8, &flat).unwrap().loaders, 1);
        let p = plan(&units, 0, u64::MAX, 8, &scaling).unwrap();
        assert!(p.loaders >= 2, "{p:?}");
        assert!(
            p.predicted_latency_s < 0.6 * p.candidates[0].predicted_latency_s,
            "{p:?}"
        );
    }

    #[test]
    fn a_depth_bounds_memory_without_slowing_a_compute_bound_pipeline() {
        // Reads of 0.01 s, compute of 0.1 s: unbounded, the loader reads everything ahead.
        let units = vec![unit(100, 0.1); 10];
        let t = [Throughput {
            loaders: 1,
            bytes_per_s: 10_000.0,
        }];
        let run = |depth| simulate_with(&units, 0, u64::MAX, (1, depth), &t, &[]).unwrap();
        let (free, shallow) = (run(None), run(Some(2)));
        assert_eq!(free.predicted_peak_bytes, 1000);
        assert_eq!(shallow.predicted_peak_bytes, 300);
        assert!((free.predicted_latency_s - 1.01).abs() < 1e-9);
        assert!((shallow.predicted_latency_s - free.predicted_latency_s).abs() < 1e-9);
        // The planner takes the shallowest depth that costs nothing: one unit ahead.
        let p = plan(&units, 0, u64::MAX, 1, &t).unwrap();
        assert_eq!(
            (p.loaders, p.depth, p.predicted_peak_bytes),
            (1, Some(1), 200)
        );
    }

    #[test]
    fn residency_keeps_room_for_the_largest_streamed_unit() {
        assert_eq!(residency(&[10, 10, 10], 0, 100), vec![true, true, true]);
        assert_eq!(residency(&[10, 10, 10], 0, 30), vec![true, true, true]);
        assert_eq!(residency(&[10, 10, 10], 5, 30), vec![true, false, false]);
        assert_eq!(residency(&[50, 10, 10], 0, 60), vec![true, false, false]);
        assert_eq!(residency(&[10, 10], 0, 15), vec![false, false]);
    }

    proptest! {
        #[test]
        fn residency_fits(sizes in prop::collection::vec(1u64..100, 1..20), reserve in 0u64..50, slack in 0u64..500) {
            let budget = reserve + sizes.iter().max().unwrap() + slack;
            let pinned = residency(&sizes, reserve, budget);
            let pinned_sum: u64 = sizes.iter().zip(&pinned).filter(|(_, &p)| p).map(|(s, _)| s).sum();
            let streamed = sizes.iter().zip(&pinned).filter(|(_, &p)| !p).map(|(s, _)| *s).max().unwrap_or(0);
            prop_assert!(pinned_sum + reserve + streamed <= budget);
        }

        #[test]
        fn predictions_respect_the_budget_and_both_floors(
            sizes in prop::collection::vec((1u64..1000, 0.0f64..0.01), 1..30), reserve in 0u64..500, slack in 0u64..3000, loaders in 1usize..8, rate in 1e3f64..1e6,
        ) {
            let units: Vec<UnitCost> = sizes.iter().map(|&(b, c)| unit(b, c)).collect();
            let largest = units.iter().map(|u| u.resident_bytes).max().unwrap();
            let budget = reserve + largest + slack;
            let t = [Throughput { loaders: 1, bytes_per_s: rate }];
            let c = simulate(&units, reserve, budget, loaders, &t).unwrap();
            prop_assert!(c.predicted_peak_bytes <= budget);
            let compute: f64 = units.iter().map(|u| u.compute_s).sum();
            let read: f64 = units.iter().map(|u| u.read_bytes as f64).sum::<f64>() / rate;
            prop_assert!(c.predicted_latency_s + 1e-9 >= compute);
            prop_assert!(c.predicted_latency_s + 1e-9 >= read / loaders as f64 * 0.999);
        }
    }
}
