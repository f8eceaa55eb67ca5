//! SwapNet's multi-DNN scheduling: several models share one memory cap.
//!
//! - Only one stage computes at a time, so the scratch a stage needs while it runs (im2col
//!   buffers, gemm packing) is reserved once for the mix, the largest of any model's. What
//!   stays live between a model's steps (its activations) is reserved per model.
//! - Each model gets a quota: its own minimum (largest unit plus live activations), then a
//!   share of what the cap has left in proportion to its importance. Quotas by importance
//!   alone would strand a model whose largest unit exceeds its share (VGG-19's 411 MB
//!   classifier layer); minimums first keep every mix whose minimums fit the cap runnable.
//! - Within its quota a model keeps what it can resident across inferences and streams the
//!   rest in blocks ([`residency`]); with `keep` off it streams everything, as SwapNet does.
//! - The models take turns one step at a time (round robin, [`schedule`]): swap-in, execute,
//!   swap-out. One reader thread reads ahead in that order, admitted by the governor, so one
//!   model's reads overlap another's compute and the cap still holds ([`execute`]).
//!
//! Module map: `residency` (kept vs streamed per quota), `schedule` (order and prediction),
//! `execute` (the compute and reader threads), `mapped` (the page-cache baseline).

mod execute;
mod mapped;
pub mod residency;
pub mod scenario;
pub mod schedule;

use std::time::Instant;

use edgerun_models::{Inputs, RunOptions};
use edgerun_store::{ModelSource, ReadOptions};
use serde::Serialize;

use crate::delay::DelayModels;
use crate::executor::{reserve_bytes, transient_bytes};
use crate::swap::packed_units;
use crate::{Governor, Outputs, Result, RuntimeError};
use execute::{execute, Runner};
pub use mapped::run_mix_mapped;
use residency::plan_model;
pub use scenario::{Scenario, ScenarioModel};
use schedule::{predict, round_robin};

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

/// How a mix runs.
#[derive(Clone, Copy, Debug)]
pub struct MixOptions {
    pub read: ReadOptions,
    /// Steps the reader may run ahead of the compute thread; 0 reads inline.
    pub prefetch: usize,
    /// Keep units resident across inferences where the quota allows.
    pub keep: bool,
}

/// A read, as the reader did it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ReadSpan {
    pub start_s: f64,
    pub seconds: f64,
    pub bytes: u64,
}

/// What happened, as it happens (progress bars, traces).
#[derive(Clone, Debug, Serialize)]
pub enum MixEvent {
    /// Model `model` ran step `block` of `blocks` in inference `inference`: it waited
    /// `wait_s` for the step's weights, then computed from `start_s`.
    Step {
        model: usize,
        inference: usize,
        block: usize,
        blocks: usize,
        kept: bool,
        /// `None` for a kept step after the first pass.
        read: Option<ReadSpan>,
        start_s: f64,
        wait_s: f64,
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
    /// Activations live between its steps (its share of the reserve; scratch is shared).
    pub reserve_bytes: u64,
    /// Steps per pass: kept runs and streamed blocks.
    pub blocks: usize,
    pub kept_bytes: u64,
    /// Bytes read on every pass after the first.
    pub streamed_bytes: u64,
    /// Bytes read over the whole mix.
    pub read_bytes: u64,
    /// Per inference, from its first read (or step) to its last step, the other models'
    /// turns included.
    pub latencies_s: Vec<f64>,
    /// Per inference, its own steps only: waiting for weights, executing, swapping out.
    pub service_s: Vec<f64>,
    pub predicted_latency_s: f64,
    /// One pass after the first, alone, steps one after another.
    pub predicted_alone_s: f64,
    pub copied_bytes: u64,
}

#[derive(Debug)]
pub struct MixReport {
    pub models: Vec<ModelReport>,
    pub cap_bytes: u64,
    /// Scratch for the stage running, shared by every model.
    pub scratch_bytes: u64,
    pub peak_bytes: u64,
    pub wall_s: f64,
    pub predicted_wall_s: f64,
    /// Each model's outputs of its last inference.
    pub outputs: Vec<Outputs>,
}

/// The most steps a schedule may hold: it is laid out in memory (a few tens of bytes a step)
/// before the first read.
pub const MAX_TURNS: usize = 1 << 22;
/// The most inferences one model of a mix may run (each keeps its latency for the report).
pub const MAX_INFERENCES: usize = 100_000;

/// Runs every model `inferences` times under `cap`, calling `on_event` after every step.
pub fn run_mix(
    models: &[MixModel],
    cap: u64,
    options: MixOptions,
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<MixReport> {
    let (runners, scratch) = plan_runners(models, cap, options.keep)?;
    let steps: Vec<usize> = runners.iter().map(|r| r.plan.steps.len()).collect();
    let inferences: Vec<usize> = runners.iter().map(|r| r.inferences).collect();
    let total: u128 = steps
        .iter()
        .zip(&inferences)
        .map(|(&s, &i)| s as u128 * i as u128)
        .sum();
    if total > MAX_TURNS as u128 {
        return Err(RuntimeError::TooLarge {
            what: "the schedule's steps (blocks x inferences over all models)",
            value: total,
            limit: MAX_TURNS as u128,
        });
    }
    let turns = round_robin(&steps, &inferences);
    // Reading further ahead than the schedule holds changes nothing; the bound keeps the
    // channel's capacity to the schedule's length.
    let options = MixOptions {
        prefetch: options.prefetch.min(turns.len()),
        ..options
    };
    let plans: Vec<_> = runners.iter().map(|r| &r.plan).collect();
    let predicted = predict(&turns, &plans, options.prefetch);
    let governor = Governor::new(cap);
    let started = Instant::now();
    let executed = execute(
        &runners, &turns, scratch, &governor, options, started, on_event,
    )?;
    let reports = runners
        .iter()
        .enumerate()
        .map(|(i, r)| ModelReport {
            name: r.name.clone(),
            quota_bytes: r.quota,
            reserve_bytes: r.reserve,
            blocks: r.plan.steps.len(),
            kept_bytes: r.plan.kept_bytes,
            streamed_bytes: r.plan.streamed_bytes(),
            read_bytes: executed.read_bytes[i],
            latencies_s: executed.latencies_s[i].clone(),
            service_s: executed.service_s[i].clone(),
            predicted_latency_s: predicted.latency_s[i],
            predicted_alone_s: r.plan.predicted_steady_s,
            copied_bytes: executed.copied_bytes[i],
        })
        .collect();
    Ok(MixReport {
        models: reports,
        cap_bytes: cap,
        scratch_bytes: scratch,
        peak_bytes: governor.peak(),
        wall_s: started.elapsed().as_secs_f64(),
        predicted_wall_s: predicted.wall_s,
        outputs: executed.outputs,
    })
}

/// A model of the mix before its quota: what it needs, at least.
struct Prepared<'s> {
    store: &'s edgerun_store::packed::PackedStore,
    model: Box<dyn edgerun_models::Model>,
    /// Activations live between its steps.
    reserve: u64,
    /// Scratch while one of its stages runs.
    scratch: u64,
    units: Vec<crate::partition::PartUnit>,
    delays: DelayModels,
    /// Its largest unit plus its reserve.
    minimum: u64,
}

/// Checks what a scenario says of its models: at least one, names distinct, importance
/// finite and positive, at least one inference each.
pub fn check_models(models: &[MixModel]) -> Result<()> {
    check_entries(
        models
            .iter()
            .map(|m| (m.name.as_str(), m.importance, m.inferences)),
    )
}

/// `check_models` on `(name, importance, inferences)` alone, so that a scenario can be
/// checked as it is read, before any model is opened or profiled.
pub fn check_entries<'a>(entries: impl IntoIterator<Item = (&'a str, f64, usize)>) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, importance, inferences) in entries {
        if seen.contains(&name) {
            return Err(RuntimeError::DuplicateModel {
                name: name.to_string(),
            });
        }
        seen.push(name);
        if !(importance.is_finite() && importance > 0.0) {
            return Err(RuntimeError::BadImportance {
                name: name.to_string(),
                importance,
            });
        }
        if inferences == 0 {
            return Err(RuntimeError::NoInferences {
                name: name.to_string(),
            });
        }
        if inferences > MAX_INFERENCES {
            return Err(RuntimeError::TooLarge {
                what: "inferences of one model",
                value: inferences as u128,
                limit: MAX_INFERENCES as u128,
            });
        }
    }
    if seen.is_empty() {
        return Err(RuntimeError::EmptyMix);
    }
    Ok(())
}

fn prepare<'s>(models: &[MixModel<'s>]) -> Result<Vec<Prepared<'s>>> {
    check_models(models)?;
    models
        .iter()
        .map(|m| {
            let ModelSource::Packed(store) = m.source else {
                return Err(RuntimeError::NeedsPackedStore {
                    what: format!("{}: a mix swaps blocks", m.name),
                });
            };
            let model = m.source.model()?;
            let probe = model.start(m.inputs.clone(), RunOptions::default())?;
            let scratch = transient_bytes(model.as_ref(), &probe);
            let reserve = reserve_bytes(model.as_ref(), &probe).saturating_sub(scratch);
            let (delays, flops) = m
                .delays
                .clone()
                .unwrap_or_else(|| (DelayModels::read_only(), vec![0; model.stages().len()]));
            let units = packed_units(store, model.as_ref(), &flops);
            let minimum = units.iter().map(|u| u.resident_bytes).max().unwrap_or(0) + reserve;
            Ok(Prepared {
                store,
                model,
                reserve,
                scratch,
                units,
                delays,
                minimum,
            })
        })
        .collect()
}

/// The smallest cap `models` can run under: every model's minimum plus the shared scratch.
pub fn minimum_cap(models: &[MixModel]) -> Result<u64> {
    let prepared = prepare(models)?;
    Ok(minimum_of(&prepared).0)
}

/// The minimums together and the shared scratch (included in the first).
fn minimum_of(prepared: &[Prepared]) -> (u64, u64) {
    let scratch = prepared.iter().map(|p| p.scratch).max().unwrap_or(0);
    let minimums = prepared.iter().map(|p| p.minimum).sum::<u64>() + scratch;
    (minimums, scratch)
}

/// Quotas for the cap (minimums first, the rest by importance), each model's plan, and the
/// shared scratch.
fn plan_runners<'s>(
    models: &[MixModel<'s>],
    cap: u64,
    keep: bool,
) -> Result<(Vec<Runner<'s>>, u64)> {
    let prepared = prepare(models)?;
    let total_importance: f64 = models.iter().map(|m| m.importance.max(0.0)).sum();
    if total_importance.is_nan() || total_importance <= 0.0 {
        return Err(RuntimeError::EmptyMix);
    }
    let (minimums, scratch) = minimum_of(&prepared);
    if minimums > cap {
        return Err(RuntimeError::MixBelowMinimum {
            cap,
            minimum: minimums,
            per_model: models
                .iter()
                .zip(&prepared)
                .map(|(m, p)| (m.name.clone(), p.minimum))
                .collect(),
            scratch,
        });
    }
    let surplus = cap - minimums;
    let runners = models
        .iter()
        .zip(prepared)
        .map(|(m, p)| {
            let quota =
                p.minimum + (surplus as f64 * m.importance.max(0.0) / total_importance) as u64;
            let plan =
                plan_model(&p.units, &p.delays, quota, p.reserve, keep).ok_or_else(|| {
                    RuntimeError::NoPlanFits {
                        model: m.name.clone(),
                        quota,
                    }
                })?;
            Ok(Runner {
                name: m.name.clone(),
                store: p.store,
                model: p.model,
                inputs: m.inputs.clone(),
                inferences: m.inferences,
                plan,
                reserve: p.reserve,
                quota,
            })
        })
        .collect::<Result<_>>()?;
    Ok((runners, scratch))
}
