//! SwapNet's partitioner: split a model's units into blocks (runs of consecutive units, one
//! aligned read each) that minimise predicted latency under a memory budget.
//!
//! Without prefetch a block is read, run and dropped before the next is read:
//! `sum (t_in + t_ex + t_out)`, and each block plus the activation reserve must fit. With
//! prefetch the next block is read while the current one runs:
//! `t_in(B1) + sum_i [max(t_ex(Bi), t_in(Bi+1)) + t_out(Bi)] + t_ex(Bm) + t_out(Bm)`, and
//! every two consecutive blocks plus the reserve must fit. Both are solved exactly by dynamic
//! programming (O(n^2) and O(n^3) in the number of units) and the faster feasible plan wins.

use serde::Serialize;

use crate::delay::DelayModels;

/// What the partitioner knows of one unit.
#[derive(Clone, Debug)]
pub struct PartUnit {
    pub id: String,
    /// Bytes held once bound.
    pub resident_bytes: u64,
    /// Bytes read from disk.
    pub read_bytes: u64,
    pub flops: u64,
}

/// A block of the plan: units `first..first + units.len()`.
#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub units: Vec<String>,
    pub first_unit: usize,
    pub bytes: u64,
    pub resident_bytes: u64,
    pub flops: u64,
    pub t_in_s: f64,
    pub t_ex_s: f64,
    pub t_out_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    pub blocks: Vec<Block>,
    pub prefetch: bool,
    pub predicted_latency_s: f64,
    /// The most bytes resident at once: the largest block (or pair of consecutive blocks with
    /// prefetch) plus the reserve.
    pub predicted_peak_bytes: u64,
}

impl Partition {
    /// The blocks as ranges of unit indices.
    pub fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        self.blocks
            .iter()
            .map(|b| b.first_unit..b.first_unit + b.units.len())
            .collect()
    }
}

struct Costs<'a> {
    /// The span's units; unit `i` here is unit `offset + i` of the model (its depth).
    units: &'a [PartUnit],
    offset: usize,
    models: &'a DelayModels,
    resident: Vec<u64>,
    read: Vec<u64>,
    flops: Vec<u64>,
}

impl<'a> Costs<'a> {
    fn new(units: &'a [PartUnit], offset: usize, models: &'a DelayModels) -> Self {
        let prefix = |f: fn(&PartUnit) -> u64| {
            std::iter::once(0)
                .chain(units.iter().scan(0u64, move |acc, u| {
                    *acc += f(u);
                    Some(*acc)
                }))
                .collect::<Vec<u64>>()
        };
        Self {
            units,
            offset,
            models,
            resident: prefix(|u| u.resident_bytes),
            read: prefix(|u| u.read_bytes),
            flops: prefix(|u| u.flops),
        }
    }

    fn depth(&self, i: usize) -> f64 {
        (self.offset + i) as f64
    }

    fn resident(&self, i: usize, j: usize) -> u64 {
        self.resident[j] - self.resident[i]
    }

    fn t_in(&self, i: usize, j: usize) -> f64 {
        self.models
            .t_in
            .predict((self.read[j] - self.read[i]) as f64, self.depth(i))
    }

    fn t_ex(&self, i: usize, j: usize) -> f64 {
        self.models
            .t_ex
            .predict((self.flops[j] - self.flops[i]) as f64, self.depth(i))
    }

    fn t_out(&self, i: usize, j: usize) -> f64 {
        self.models
            .t_out
            .predict(self.resident(i, j) as f64, self.depth(i))
    }

    fn block(&self, i: usize, j: usize) -> Block {
        Block {
            units: self.units[i..j].iter().map(|u| u.id.clone()).collect(),
            first_unit: self.offset + i,
            bytes: self.read[j] - self.read[i],
            resident_bytes: self.resident(i, j),
            flops: self.flops[j] - self.flops[i],
            t_in_s: self.t_in(i, j),
            t_ex_s: self.t_ex(i, j),
            t_out_s: self.t_out(i, j),
        }
    }
}

/// The best plan for `budget` bytes with `reserve` for activations; `None` if not even the
/// largest single unit fits. `allow_prefetch` false forces the sequential plan.
pub fn partition(
    units: &[PartUnit],
    models: &DelayModels,
    budget: u64,
    reserve: u64,
    allow_prefetch: bool,
) -> Option<Partition> {
    partition_span(
        units,
        0..units.len(),
        models,
        budget,
        reserve,
        allow_prefetch,
    )
}

/// The same for the units `span` of a model only (a run between units kept resident); block
/// positions and depths stay the model's.
pub fn partition_span(
    units: &[PartUnit],
    span: std::ops::Range<usize>,
    models: &DelayModels,
    budget: u64,
    reserve: u64,
    allow_prefetch: bool,
) -> Option<Partition> {
    let costs = Costs::new(units.get(span.clone())?, span.start, models);
    let room = budget.checked_sub(reserve)?;
    let sequential = sequential_plan(&costs, room);
    let prefetched = if allow_prefetch {
        prefetch_plan(&costs, room)
    } else {
        None
    };
    let (cuts, prefetch, latency) = match (sequential, prefetched) {
        (Some(s), Some(p)) if p.1 < s.1 => (p.0, true, p.1),
        (Some(s), _) => (s.0, false, s.1),
        (None, Some(p)) => (p.0, true, p.1),
        (None, None) => return None,
    };
    let blocks: Vec<Block> = cuts.windows(2).map(|w| costs.block(w[0], w[1])).collect();
    let peak = if prefetch {
        blocks
            .windows(2)
            .map(|w| w[0].resident_bytes + w[1].resident_bytes)
            .chain(blocks.iter().map(|b| b.resident_bytes))
            .max()
    } else {
        blocks.iter().map(|b| b.resident_bytes).max()
    }
    .unwrap_or(0);
    Some(Partition {
        blocks,
        prefetch,
        predicted_latency_s: latency,
        predicted_peak_bytes: peak + reserve,
    })
}

/// Cut points `0 = c0 < c1 < ... = n` and the latency, one block at a time.
fn sequential_plan(costs: &Costs, room: u64) -> Option<(Vec<usize>, f64)> {
    let n = costs.units.len();
    let mut best = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    best[0] = 0.0;
    for j in 1..=n {
        for i in 0..j {
            if costs.resident(i, j) > room || !best[i].is_finite() {
                continue;
            }
            let t = best[i] + costs.t_in(i, j) + costs.t_ex(i, j) + costs.t_out(i, j);
            if t < best[j] {
                (best[j], from[j]) = (t, i);
            }
        }
    }
    best[n].is_finite().then(|| (trace_back(&from, n), best[n]))
}

/// The same with the next block read while the current one runs.
fn prefetch_plan(costs: &Costs, room: u64) -> Option<(Vec<usize>, f64)> {
    let n = costs.units.len();
    // best[i][j]: the cheapest way to have run everything before unit i and to have read the
    // block i..j, which is about to run.
    let mut best = vec![vec![f64::INFINITY; n + 1]; n + 1];
    let mut from = vec![vec![usize::MAX; n + 1]; n + 1];
    for (j, cell) in best[0].iter_mut().enumerate().skip(1) {
        if costs.resident(0, j) <= room {
            *cell = costs.t_in(0, j);
        }
    }
    for j in 1..n {
        for i in 0..j {
            if !best[i][j].is_finite() {
                continue;
            }
            for k in j + 1..=n {
                if costs.resident(i, j) + costs.resident(j, k) > room {
                    break;
                }
                let t = best[i][j] + costs.t_ex(i, j).max(costs.t_in(j, k)) + costs.t_out(i, j);
                if t < best[j][k] {
                    (best[j][k], from[j][k]) = (t, i);
                }
            }
        }
    }
    let (last_start, latency) = (0..n)
        .filter(|&i| best[i][n].is_finite())
        .map(|i| (i, best[i][n] + costs.t_ex(i, n) + costs.t_out(i, n)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut cuts = vec![n, last_start];
    let (mut i, mut j) = (last_start, n);
    while i > 0 {
        let previous = from[i][j];
        cuts.push(previous);
        (i, j) = (previous, i);
    }
    cuts.reverse();
    Some((cuts, latency))
}

fn trace_back(from: &[usize], n: usize) -> Vec<usize> {
    let mut cuts = vec![n];
    let mut j = n;
    while j > 0 {
        j = from[j];
        cuts.push(j);
    }
    cuts.reverse();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay::LinearDelay;
    use proptest::prelude::*;

    fn models(read_s_per_byte: f64, overhead_s: f64) -> DelayModels {
        let line = |per_x, constant_s| LinearDelay {
            per_x,
            per_depth: 0.0,
            constant_s,
            r2: 1.0,
            samples: 10,
        };
        DelayModels {
            t_in: line(read_s_per_byte, overhead_s),
            t_ex: line(1e-9, 1e-4),
            t_out: line(1e-11, 0.0),
        }
    }

    fn units(sizes: &[(u64, u64)]) -> Vec<PartUnit> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(bytes, flops))| PartUnit {
                id: format!("u{i}"),
                resident_bytes: bytes,
                read_bytes: bytes,
                flops,
            })
            .collect()
    }

    /// Latency of explicit cuts by the module's formulas; `None` when a block (or pair) does
    /// not fit.
    fn latency(costs: &Costs, cuts: &[usize], room: u64, prefetch: bool) -> Option<f64> {
        let blocks: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        if !prefetch {
            return blocks
                .iter()
                .all(|&(i, j)| costs.resident(i, j) <= room)
                .then(|| {
                    blocks
                        .iter()
                        .map(|&(i, j)| costs.t_in(i, j) + costs.t_ex(i, j) + costs.t_out(i, j))
                        .sum()
                });
        }
        let fits = blocks.iter().all(|&(i, j)| costs.resident(i, j) <= room)
            && blocks
                .windows(2)
                .all(|w| costs.resident(w[0].0, w[0].1) + costs.resident(w[1].0, w[1].1) <= room);
        fits.then(|| {
            let mut t = costs.t_in(blocks[0].0, blocks[0].1);
            for w in blocks.windows(2) {
                t += costs.t_ex(w[0].0, w[0].1).max(costs.t_in(w[1].0, w[1].1))
                    + costs.t_out(w[0].0, w[0].1);
            }
            let &(i, j) = blocks.last().unwrap();
            t + costs.t_ex(i, j) + costs.t_out(i, j)
        })
    }

    proptest! {
        /// The dynamic programs find the best of all 2^(n-1) partitions, and the plan fits.
        #[test]
        fn optimal_against_brute_force(
            sizes in prop::collection::vec((1u64..200, 1u64..1_000_000), 1..10),
            room in 150u64..600, per_byte in 1e-6f64..1e-3, overhead in 0.0f64..0.05, prefetch in any::<bool>(),
        ) {
            let units = units(&sizes);
            let m = models(per_byte, overhead);
            let costs = Costs::new(&units, 0, &m);
            let n = units.len();
            let mut best: Option<f64> = None;
            for mask in 0u32..(1 << (n - 1)) {
                let mut cuts = vec![0];
                cuts.extend((1..n).filter(|i| mask & (1 << (i - 1)) != 0));
                cuts.push(n);
                for p in [false, prefetch] {
                    if let Some(t) = latency(&costs, &cuts, room, p) {
                        best = Some(best.map_or(t, |b: f64| b.min(t)));
                    }
                }
            }
            let plan = partition(&units, &m, room + 10, 10, prefetch);
            match (best, plan) {
                (None, None) => {}
                (Some(b), Some(p)) => {
                    prop_assert!((p.predicted_latency_s - b).abs() <= 1e-9 * b.max(1.0), "{} vs {}", p.predicted_latency_s, b);
                    prop_assert!(p.predicted_peak_bytes <= room + 10);
                    let covered: Vec<String> = p.blocks.iter().flat_map(|b| b.units.clone()).collect();
                    prop_assert_eq!(covered, units.iter().map(|u| u.id.clone()).collect::<Vec<_>>());
                }
                (b, p) => prop_assert!(false, "brute force {:?}, plan {:?}", b, p.map(|p| p.predicted_latency_s)),
            }
        }
    }

    #[test]
    fn a_per_read_overhead_merges_small_units() {
        let units = units(&[(10, 100); 8]);
        let plan = partition(&units, &models(1e-6, 0.5), 1000, 0, false).unwrap();
        assert_eq!(plan.blocks.len(), 1);
        assert!(partition(&units, &models(1e-6, 0.5), 15, 10, true).is_none());
    }
}
