//! Hermes' Layer Profiler: per unit its bytes, cold load time (O_DIRECT), compute time and the
//! pass's activation reserve; per machine the aggregate read throughput with 1, 2 and 4
//! concurrent loaders. The planner predicts from this.
//!
//! Units are loaded as the executors load them: through a governor, into recycled read
//! buffers, so the costs measured are the costs PipeLoad pays.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use std::sync::Arc;

use edgerun_models::{Inputs, Model, RunOptions, StageSpec, UnitWeights};
use edgerun_store::{IoMode, ModelSource, ReadOptions};
use serde::{Deserialize, Serialize};

use crate::admit::admit_stage;
use crate::executor::reserve_bytes;
use crate::inline_feed::InlineFeed;
use crate::pass::{run_pass, Runner};
use crate::planner::{Throughput, UnitCost};
use crate::{Governor, Lease, Result, RuntimeError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnitProfile {
    pub id: String,
    pub resident_bytes: u64,
    pub read_bytes: u64,
    /// Cold read and bind, O_DIRECT, one loader alone.
    pub load_s: f64,
    /// Matrix-product FLOPs of the unit's compute on the profiled input (0 in profiles written
    /// before this field existed).
    #[serde(default)]
    pub flops: u64,
    /// Median over the profiling passes.
    pub compute_s: f64,
    /// Dropping the bound unit (freeing its buffer: SwapNet's swap-out), fastest pass.
    #[serde(default)]
    pub free_s: f64,
    /// f32 elements a split after this unit sends (activation and skips) on the profiled
    /// input, and the activation's channels (0 in profiles written before these fields).
    #[serde(default)]
    pub boundary_elements: u64,
    #[serde(default)]
    pub boundary_channels: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub architecture: String,
    pub threads: usize,
    /// Activation reserve of the profiled input (see `Model::activation_bytes`).
    pub reserve_bytes: u64,
    pub units: Vec<UnitProfile>,
    /// Aggregate read throughput by number of concurrent loaders.
    pub throughput: Vec<Throughput>,
    /// How much slower compute runs while that many loaders read (1.0 = not at all): loaders
    /// and compute share the cores (checksums, page faults, copies).
    #[serde(default)]
    pub compute_slowdown: Vec<Slowdown>,
    /// f32 elements of a pass's outputs on the profiled input (what a server sends back; 0
    /// in profiles written before this field).
    #[serde(default)]
    pub output_elements: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Slowdown {
    pub loaders: usize,
    pub factor: f64,
}

impl Profile {
    /// Checks what the planner and the delay models take on trust: every time and rate
    /// finite and positive (a free may take no measurable time), loader counts and threads
    /// at least 1, at least one unit and one throughput.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(RuntimeError::InvalidProfile { why });
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if self.units.is_empty() {
            return bad("no units".into());
        }
        if self.threads == 0 {
            return bad("threads is 0".into());
        }
        for u in &self.units {
            if !positive(u.load_s) || !positive(u.compute_s) {
                return bad(format!(
                    "unit {}: load_s {} and compute_s {} must be positive seconds",
                    u.id, u.load_s, u.compute_s
                ));
            }
            if !(u.free_s.is_finite() && u.free_s >= 0.0) {
                return bad(format!("unit {}: free_s {} is not a time", u.id, u.free_s));
            }
            if u.resident_bytes == 0 || u.read_bytes == 0 {
                return bad(format!("unit {}: a unit of 0 bytes", u.id));
            }
        }
        if self.throughput.is_empty() {
            return bad("no read throughput".into());
        }
        for t in &self.throughput {
            if t.loaders == 0 || !positive(t.bytes_per_s) {
                return bad(format!(
                    "throughput of {} loaders at {} bytes/s: both must be positive",
                    t.loaders, t.bytes_per_s
                ));
            }
        }
        for s in &self.compute_slowdown {
            if s.loaders == 0 || !positive(s.factor) {
                return bad(format!(
                    "compute slowdown {} with {} loaders: both must be positive",
                    s.factor, s.loaders
                ));
            }
        }
        Ok(())
    }

    /// Checks the profile was taken of `model`: same architecture, same units in order.
    pub fn check_model(&self, model: &dyn Model) -> Result<()> {
        let bad = |why: String| Err(RuntimeError::InvalidProfile { why });
        if self.architecture != model.architecture() {
            return bad(format!(
                "taken of a {}, not of this {}",
                self.architecture,
                model.architecture()
            ));
        }
        let stages = model.stages();
        if stages.len() != self.units.len() {
            return bad(format!(
                "{} units for a model of {} stages",
                self.units.len(),
                stages.len()
            ));
        }
        if let Some((u, s)) = self.units.iter().zip(stages).find(|(u, s)| u.id != s.id) {
            return bad(format!("unit {} where the model has stage {}", u.id, s.id));
        }
        Ok(())
    }

    /// `(loaders, factor)` pairs for the planner.
    pub fn slowdowns(&self) -> Vec<(usize, f64)> {
        self.compute_slowdown
            .iter()
            .map(|s| (s.loaders, s.factor))
            .collect()
    }

    /// The units as SwapNet's partitioner takes them.
    pub fn part_units(&self) -> Vec<crate::partition::PartUnit> {
        self.units
            .iter()
            .map(|u| crate::partition::PartUnit {
                id: u.id.clone(),
                resident_bytes: u.resident_bytes,
                read_bytes: u.read_bytes,
                flops: u.flops,
            })
            .collect()
    }

    /// The smallest budget a pass of the profiled input runs in: the largest unit plus the
    /// activation reserve.
    pub fn minimum_bytes(&self) -> u64 {
        let largest = self.units.iter().map(|u| u.resident_bytes).max();
        largest.unwrap_or(0) + self.reserve_bytes
    }

    /// Hermes' plan for `budget` with 1 to `max_loaders` loading agents.
    pub fn plan(&self, budget: u64, max_loaders: usize) -> Result<crate::planner::Plan> {
        crate::planner::plan_with(
            &self.unit_costs(),
            self.reserve_bytes,
            budget,
            max_loaders,
            &self.throughput,
            &self.slowdowns(),
        )
        .ok_or(RuntimeError::BelowMinimum {
            budget,
            minimum: self.minimum_bytes(),
        })
    }

    /// SwapNet's blocks for `budget`, predicted by `models` fitted on this profile.
    pub fn partition(
        &self,
        models: &crate::delay::DelayModels,
        budget: u64,
        allow_prefetch: bool,
    ) -> Result<crate::partition::Partition> {
        crate::partition::partition(
            &self.part_units(),
            models,
            budget,
            self.reserve_bytes,
            allow_prefetch,
        )
        .ok_or(RuntimeError::BelowMinimum {
            budget,
            minimum: self.minimum_bytes(),
        })
    }

    pub fn unit_costs(&self) -> Vec<UnitCost> {
        self.units
            .iter()
            .map(|u| UnitCost {
                id: u.id.clone(),
                resident_bytes: u.resident_bytes,
                read_bytes: u.read_bytes,
                compute_s: u.compute_s,
            })
            .collect()
    }
}

const DIRECT: ReadOptions = ReadOptions {
    io: IoMode::Direct,
    verify: false,
};

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Loads stage `index` as the executors do: into a read buffer from `governor`.
fn load(
    governor: &Arc<Governor>,
    source: &ModelSource,
    index: usize,
    stage: &StageSpec,
) -> Result<(UnitWeights, Option<Lease>)> {
    admit_stage(governor, source, index, stage, DIRECT)?.load_stage(source, index, stage, DIRECT)
}

/// One streamed pass whose compute is timed while `loaders` threads keep reading units.
fn compute_under_load(
    governor: &Arc<Governor>,
    source: &ModelSource,
    model: &dyn Model,
    inputs: &Inputs,
    loaders: usize,
) -> Result<f64> {
    let stages = model.stages();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut state = model.start(inputs.clone(), RunOptions::default())?;
    let mut feed = InlineFeed {
        source,
        model,
        read: DIRECT,
        governor,
    };
    std::thread::scope(|scope| -> Result<f64> {
        for k in 0..loaders {
            let stop = &stop;
            scope.spawn(move || {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let index = i % stages.len();
                    let _ = load(governor, source, index, &stages[index]);
                    i += loaders;
                }
            });
        }
        let result = run_pass(model, &mut state, &mut feed);
        stop.store(true, Ordering::Relaxed);
        result.map(|stats| stats.compute_s)
    })
}

/// Profiles `source` on `inputs` with `runs` streamed passes.
pub fn profile(source: &ModelSource, inputs: Inputs, runs: usize) -> Result<Profile> {
    if !matches!(source, ModelSource::Packed(_)) {
        return Err(RuntimeError::NeedsPackedStore {
            what: "profiling times each unit's O_DIRECT read".into(),
        });
    }
    let model = source.model()?;
    let stages = model.stages();
    let sizes = stages
        .iter()
        .enumerate()
        .map(|(i, stage)| source.resident_bytes(i, stage, DIRECT));
    // Room for every unit once plus one per loader and the pass: loads never wait here.
    let governor = Governor::new(sizes.clone().sum::<u64>() + 6 * sizes.max().unwrap_or(0));
    let mut load_s = vec![f64::INFINITY; stages.len()];
    let mut compute: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    let mut flops = vec![0u64; stages.len()];
    let mut free_s = vec![f64::INFINITY; stages.len()];
    let mut boundary = vec![(0u64, 0u64); stages.len()];
    let mut reserve = 0;
    let mut output_elements = 0;
    let runner = Runner::new(model.as_ref()).per_unit();
    for _ in 0..runs.max(1) {
        let mut state = model.start(inputs.clone(), RunOptions::default())?;
        reserve = reserve_bytes(model.as_ref(), &state);
        let mut feed = InlineFeed {
            source,
            model: model.as_ref(),
            read: DIRECT,
            governor: &governor,
        };
        let record = runner.run(&mut state, 0..stages.len(), &mut feed)?;
        output_elements = state.outputs.iter().map(|(_, t)| t.len() as u64).sum();
        for unit in record.units {
            let i = unit.index;
            load_s[i] = load_s[i].min(unit.take_s);
            compute[i].push(unit.compute_s);
            flops[i] = unit.flops;
            free_s[i] = free_s[i].min(unit.give_back_s);
            boundary[i] = (unit.boundary_elements, unit.boundary_channels);
        }
    }
    let units = stages
        .iter()
        .enumerate()
        .map(|(i, stage)| UnitProfile {
            id: stage.id.clone(),
            resident_bytes: source.resident_bytes(i, stage, DIRECT),
            read_bytes: source.read_bytes(i, stage),
            load_s: load_s[i],
            flops: flops[i],
            compute_s: median(&compute[i]),
            free_s: free_s[i],
            boundary_elements: boundary[i].0,
            boundary_channels: boundary[i].1,
        })
        .collect();
    let throughput = [1, 2, 4]
        .iter()
        .map(|&k| aggregate_throughput(&governor, source, model.as_ref(), k))
        .collect::<Result<Vec<_>>>()?;
    let alone: f64 = compute.iter().map(|c| median(c)).sum();
    let mut compute_slowdown = Vec::new();
    for k in [1, 2, 4] {
        let busy = compute_under_load(&governor, source, model.as_ref(), &inputs, k)?;
        compute_slowdown.push(Slowdown {
            loaders: k,
            factor: (busy / alone.max(1e-9)).max(1.0),
        });
    }
    Ok(Profile {
        architecture: model.architecture().into(),
        threads: edgerun_tensor::parallel::threads(),
        reserve_bytes: reserve,
        units,
        throughput,
        compute_slowdown,
        output_elements,
    })
}

/// Reads every unit once with `loaders` threads (O_DIRECT) and returns bytes per second.
fn aggregate_throughput(
    governor: &Arc<Governor>,
    source: &ModelSource,
    model: &dyn Model,
    loaders: usize,
) -> Result<Throughput> {
    let stages = model.stages();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..loaders)
            .map(|_| {
                scope.spawn(|| -> Result<u64> {
                    let mut bytes = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(stage) = stages.get(i) else {
                            return Ok(bytes);
                        };
                        drop(load(governor, source, i, stage)?);
                        bytes += source.read_bytes(i, stage);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("profiler thread"))
            .collect()
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(Throughput {
        loaders,
        bytes_per_s: total as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}
