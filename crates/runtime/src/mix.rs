//! SwapNet's multi-DNN scheduling: several models share one memory cap. Each gets a quota --
//! its own minimum (largest unit plus activation reserve), then a share of what the cap has
//! left in proportion to its importance -- is partitioned into blocks that fit its quota,
//! and the models take turns, one block step at a time (round robin): swap-in, execute,
//! swap-out. Before every swap-in the scheduler checks that what is resident plus the block
//! stays under the global cap.
//!
//! A model whose quota holds all its weights runs as one block, kept between its inferences.
//!
//! Quotas proportional to importance alone would strand a model whose single largest unit
//! exceeds its share (VGG-19's 411 MB classifier layer); granting minimums first keeps every
//! mix whose minimums fit the cap runnable, and importance still decides who gets the rest.

use std::ops::Range;
use std::time::Instant;

use edgerun_models::{Inputs, Model, RunOptions, State};
use edgerun_store::packed::PackedStore;
use edgerun_store::{ModelSource, ReadOptions};
use serde::Serialize;

use crate::delay::DelayModels;
use crate::executor::reserve_bytes;
use crate::partition::{partition, Partition};
use crate::swap::{block_bytes, packed_units, swap_in};
use crate::{human_bytes, Governor, Outputs, Result, RuntimeError};

/// One model of a mix.
pub struct MixModel<'s> {
    pub name: String,
    pub source: &'s ModelSource,
    pub inputs: Inputs,
    /// Share of the cap, relative to the other models' importance.
    pub importance: f64,
    pub inferences: usize,
    /// Delay models and per-unit FLOPs (a profile); `None` sizes blocks to minimise reads.
    pub delays: Option<(DelayModels, Vec<u64>)>,
}

/// What happened, as it happens (progress bars, traces).
#[derive(Clone, Debug, Serialize)]
pub enum MixEvent {
    /// Model `model` ran block `block` of `blocks` in inference `inference`.
    Step {
        model: usize,
        inference: usize,
        block: usize,
        blocks: usize,
        start_s: f64,
        swap_in_s: f64,
        execute_s: f64,
        swap_out_s: f64,
    },
    /// Model `model` finished inference `inference` after `latency_s`.
    Done {
        model: usize,
        inference: usize,
        latency_s: f64,
    },
}

/// Per model: its quota, plan, measured and predicted latency.
#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub quota_bytes: u64,
    pub reserve_bytes: u64,
    pub blocks: usize,
    pub latencies_s: Vec<f64>,
    pub predicted_latency_s: f64,
    /// Its blocks' predicted swap-in + execute + swap-out, alone.
    pub predicted_alone_s: f64,
    pub copied_bytes: u64,
}

#[derive(Debug)]
pub struct MixReport {
    pub models: Vec<ModelReport>,
    pub cap_bytes: u64,
    pub peak_bytes: u64,
    pub wall_s: f64,
    /// Each model's outputs of its last inference.
    pub outputs: Vec<Outputs>,
}

/// A model prepared for the mix: its plan and the state of its current inference.
struct Runner<'s> {
    store: &'s PackedStore,
    model: Box<dyn Model>,
    blocks: Vec<Range<usize>>,
    plan: Partition,
    reserve: u64,
    state: Option<(State, crate::governor::Lease, Instant)>,
    next_block: usize,
    done: usize,
    /// A model whose whole weights fit its quota as one block keeps that block between its
    /// inferences instead of swapping it out and in again (it stays leased).
    kept: Option<crate::swap::Loaded>,
}

/// Runs every model `inferences` times under `cap`, calling `on_event` after every step.
pub fn run_mix(
    models: &[MixModel],
    cap: u64,
    read: ReadOptions,
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<MixReport> {
    if models.is_empty() {
        return Err(RuntimeError::Unsupported(
            "a mix needs at least one model".into(),
        ));
    }
    let total_importance: f64 = models.iter().map(|m| m.importance.max(0.0)).sum();
    if total_importance.is_nan() || total_importance <= 0.0 {
        return Err(RuntimeError::Unsupported(
            "the models' importance weights must add up to more than 0".into(),
        ));
    }
    let options = RunOptions::default;
    struct Prepared<'s> {
        store: &'s PackedStore,
        model: Box<dyn Model>,
        reserve: u64,
        units: Vec<crate::partition::PartUnit>,
        delays: DelayModels,
        minimum: u64,
    }
    let mut prepared = Vec::with_capacity(models.len());
    for m in models {
        let ModelSource::Packed(store) = m.source else {
            return Err(RuntimeError::Unsupported(format!(
                "{}: a mix swaps blocks of packed stores (edgerun pack)",
                m.name
            )));
        };
        let model = m.source.model()?;
        let probe = model.start(m.inputs.clone(), options())?;
        let reserve = reserve_bytes(model.as_ref(), &probe);
        let (delays, flops) = m
            .delays
            .clone()
            .unwrap_or_else(|| (DelayModels::read_only(), vec![0; model.stages().len()]));
        let units = packed_units(store, model.as_ref(), &flops);
        let minimum = units.iter().map(|u| u.resident_bytes).max().unwrap_or(0) + reserve;
        prepared.push(Prepared {
            store,
            model,
            reserve,
            units,
            delays,
            minimum,
        });
    }
    let minimums: u64 = prepared.iter().map(|p| p.minimum).sum();
    if minimums > cap {
        let listed: Vec<String> = models
            .iter()
            .zip(&prepared)
            .map(|(m, p)| format!("{} {}", m.name, human_bytes(p.minimum)))
            .collect();
        return Err(RuntimeError::Budget(format!(
            "the cap of {} is below the models' minimums together, {} ({})",
            human_bytes(cap),
            human_bytes(minimums),
            listed.join(", ")
        )));
    }
    let surplus = cap - minimums;
    let mut runners = Vec::with_capacity(models.len());
    let mut quotas = Vec::with_capacity(models.len());
    for (m, p) in models.iter().zip(prepared) {
        let quota = p.minimum + (surplus as f64 * m.importance.max(0.0) / total_importance) as u64;
        let plan = partition(&p.units, &p.delays, quota, p.reserve, false).ok_or_else(|| {
            RuntimeError::Budget(format!(
                "{}: no partition fits its quota of {}",
                m.name,
                human_bytes(quota)
            ))
        })?;
        let blocks = plan.ranges();
        quotas.push(quota);
        runners.push(Runner {
            store: p.store,
            model: p.model,
            blocks,
            plan,
            reserve: p.reserve,
            state: None,
            next_block: 0,
            done: 0,
            kept: None,
        });
    }
    let predicted = predict_round_robin(&runners, models);
    let governor = Governor::new(cap);
    let started = Instant::now();
    let mut latencies = vec![Vec::new(); models.len()];
    let mut copied = vec![0u64; models.len()];
    let mut outputs: Vec<Outputs> = (0..models.len()).map(|_| Outputs::default()).collect();
    while runners
        .iter()
        .zip(models)
        .any(|(r, m)| r.done < m.inferences)
    {
        for (index, (runner, spec)) in runners.iter_mut().zip(models).enumerate() {
            if runner.done >= spec.inferences {
                continue;
            }
            if runner.state.is_none() {
                let state = runner.model.start(spec.inputs.clone(), options())?;
                let lease =
                    governor.acquire(runner.reserve, &format!("{} activations", spec.name))?;
                runner.state = Some((state, lease, Instant::now()));
                runner.next_block = 0;
            }
            let block = runner.blocks[runner.next_block].clone();
            let bytes = if runner.kept.is_some() {
                0
            } else {
                block_bytes(runner.store, &block)
            };
            if governor.used() + bytes > cap {
                return Err(RuntimeError::Budget(format!(
                    "{}: swapping in {} with {} resident would exceed the cap of {}",
                    spec.name,
                    human_bytes(bytes),
                    human_bytes(governor.used()),
                    human_bytes(cap)
                )));
            }
            let step_began = Instant::now();
            let step_start = (step_began - started).as_secs_f64();
            let loaded = match runner.kept.take() {
                Some(kept) => kept,
                None => {
                    let loaded =
                        swap_in(runner.store, runner.model.as_ref(), &governor, read, &block)?;
                    copied[index] += loaded.copied_bytes;
                    loaded
                }
            };
            let executing = Instant::now();
            let (state, _, _) = runner.state.as_mut().expect("started above");
            for (i, weights) in block.clone().zip(&loaded.units) {
                runner.model.run_stage(i, weights, state)?;
            }
            let execute_s = executing.elapsed().as_secs_f64();
            let swapping_out = Instant::now();
            if runner.blocks.len() == 1 && runner.done + 1 < spec.inferences {
                runner.kept = Some(loaded);
            } else {
                drop(loaded);
            }
            on_event(&MixEvent::Step {
                model: index,
                inference: runner.done,
                block: runner.next_block,
                blocks: runner.blocks.len(),
                start_s: step_start,
                swap_in_s: (executing - step_began).as_secs_f64(),
                execute_s,
                swap_out_s: swapping_out.elapsed().as_secs_f64(),
            });
            runner.next_block += 1;
            if runner.next_block == runner.blocks.len() {
                let (mut state, lease, began) = runner.state.take().expect("started above");
                drop(lease);
                outputs[index] = Outputs::from_state(&mut state);
                let latency_s = began.elapsed().as_secs_f64();
                latencies[index].push(latency_s);
                on_event(&MixEvent::Done {
                    model: index,
                    inference: runner.done,
                    latency_s,
                });
                runner.done += 1;
            }
        }
    }
    let reports = runners
        .iter()
        .zip(models)
        .enumerate()
        .map(|(i, (r, m))| ModelReport {
            name: m.name.clone(),
            quota_bytes: quotas[i],
            reserve_bytes: r.reserve,
            blocks: r.blocks.len(),
            latencies_s: latencies[i].clone(),
            predicted_latency_s: predicted[i],
            predicted_alone_s: r.plan.predicted_latency_s,
            copied_bytes: copied[i],
        })
        .collect();
    Ok(MixReport {
        models: reports,
        cap_bytes: cap,
        peak_bytes: governor.peak(),
        wall_s: started.elapsed().as_secs_f64(),
        outputs,
    })
}

/// The baseline a user gets without SwapNet: every model mapped whole (`mmap`, the page cache
/// decides what stays), taking turns one inference at a time. Under a memory cgroup of the
/// same cap the kernel evicts and re-reads pages instead of the runtime swapping blocks.
/// Latency per inference is its own pass; quotas, blocks and predictions do not apply.
pub fn run_mix_mapped(
    models: &[MixModel],
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<MixReport> {
    let read = ReadOptions {
        io: edgerun_store::packed::IoMode::Mmap,
        verify: false,
    };
    let executors = models
        .iter()
        .map(|m| crate::FullExecutor::load_with(m.source, read, Governor::new(u64::MAX)))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut latencies = vec![Vec::new(); models.len()];
    let mut outputs: Vec<Outputs> = (0..models.len()).map(|_| Outputs::default()).collect();
    let rounds = models.iter().map(|m| m.inferences).max().unwrap_or(0);
    for round in 0..rounds {
        for (index, (executor, m)) in executors.iter().zip(models).enumerate() {
            if round >= m.inferences {
                continue;
            }
            let began = Instant::now();
            outputs[index] =
                crate::Executor::forward(executor, m.inputs.clone(), RunOptions::default())?;
            let latency_s = began.elapsed().as_secs_f64();
            latencies[index].push(latency_s);
            on_event(&MixEvent::Done {
                model: index,
                inference: round,
                latency_s,
            });
        }
    }
    let reports = models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelReport {
            name: m.name.clone(),
            quota_bytes: 0,
            reserve_bytes: 0,
            blocks: 1,
            latencies_s: latencies[i].clone(),
            predicted_latency_s: f64::NAN,
            predicted_alone_s: f64::NAN,
            copied_bytes: 0,
        })
        .collect();
    Ok(MixReport {
        models: reports,
        cap_bytes: u64::MAX,
        peak_bytes: 0,
        wall_s: started.elapsed().as_secs_f64(),
        outputs,
    })
}

/// Mean predicted latency per model: the round robin replayed with each block step's
/// predicted duration (swap-in + execute + swap-out).
fn predict_round_robin(runners: &[Runner], models: &[MixModel]) -> Vec<f64> {
    // A single-block model keeps its block after its first inference: compute only.
    let step = |r: &Runner, b: usize, inference: usize| {
        let block = &r.plan.blocks[b];
        if r.blocks.len() == 1 && inference > 0 {
            block.t_ex_s
        } else {
            block.t_in_s + block.t_ex_s + block.t_out_s
        }
    };
    let mut clock = 0.0;
    let mut next = vec![0usize; runners.len()];
    let mut done = vec![0usize; runners.len()];
    let mut began = vec![0.0; runners.len()];
    let mut total = vec![0.0; runners.len()];
    while runners
        .iter()
        .zip(models)
        .enumerate()
        .any(|(i, (_, m))| done[i] < m.inferences)
    {
        for (i, (r, m)) in runners.iter().zip(models).enumerate() {
            if done[i] >= m.inferences {
                continue;
            }
            if next[i] == 0 {
                began[i] = clock;
            }
            clock += step(r, next[i], done[i]);
            next[i] += 1;
            if next[i] == r.blocks.len() {
                total[i] += clock - began[i];
                done[i] += 1;
                next[i] = 0;
            }
        }
    }
    total
        .iter()
        .zip(models)
        .map(|(t, m)| t / m.inferences.max(1) as f64)
        .collect()
}
