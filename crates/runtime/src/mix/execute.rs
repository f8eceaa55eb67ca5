//! Running a mix's schedule: one compute thread takes the turns in order; the reads come
//! either inline (prefetch depth 0) or from one reader thread that walks the same order up to
//! `depth` steps ahead.
//!
//! The reader is admitted by the governor, so reading ahead never passes the cap; it just
//! waits. It cannot deadlock: activation reserves and the shared scratch are leased for the
//! whole mix before it starts, the compute thread frees a streamed block before it waits for the next one, and the
//! reader delivers in order. So when the compute thread waits for turn t, nothing is held but
//! kept units and reserves, and every model's quota (kept + one block + reserve) leaves room
//! for turn t's block.

use std::sync::Arc;
use std::time::Instant;

use edgerun_models::{Inputs, Model, RunOptions, State};
use edgerun_store::packed::PackedStore;
use edgerun_store::ReadOptions;

use super::residency::ModelPlan;
use super::schedule::{reads, Turn};
use super::{MixEvent, MixOptions, ReadSpan};
use crate::governor::Lease;
use crate::pass::{run_range, Resident};
use crate::read_ahead::{read_ahead, Reader};
use crate::swap::{swap_in, Loaded};
use crate::{Governor, Outputs, Result, RuntimeError};

/// A model ready to run in the mix.
pub(super) struct Runner<'s> {
    pub name: String,
    pub store: &'s PackedStore,
    pub model: Box<dyn Model>,
    pub inputs: Inputs,
    pub inferences: usize,
    pub plan: ModelPlan,
    pub reserve: u64,
    /// What the plan may hold at once: kept units, one streamed block, the reserve.
    pub quota: u64,
}

/// What the compute thread gets for a turn.
enum Delivery {
    /// A kept step after the first pass: its units are already held.
    Kept,
    Read {
        loaded: Loaded,
        began: Instant,
    },
}

pub(super) struct Executed {
    pub latencies_s: Vec<Vec<f64>>,
    /// Per model and inference: its own steps' wait + execute + swap-out.
    pub service_s: Vec<Vec<f64>>,
    pub copied_bytes: Vec<u64>,
    pub read_bytes: Vec<u64>,
    pub outputs: Vec<Outputs>,
}

fn fetch(
    runners: &[Runner],
    turn: &Turn,
    governor: &Arc<Governor>,
    read: ReadOptions,
) -> Result<Delivery> {
    let runner = &runners[turn.model];
    if !reads(&runner.plan, turn) {
        return Ok(Delivery::Kept);
    }
    let units = runner.plan.steps[turn.step].units.clone();
    let began = Instant::now();
    let loaded = swap_in(runner.store, runner.model.as_ref(), governor, read, &units)?;
    Ok(Delivery::Read { loaded, began })
}

/// Runs `turns` and reports each step through `on_event`.
pub(super) fn execute(
    runners: &[Runner],
    turns: &[Turn],
    scratch: u64,
    governor: &Arc<Governor>,
    options: MixOptions,
    started: Instant,
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<Executed> {
    let reserves = runners
        .iter()
        .map(|r| governor.acquire(r.reserve, &format!("{} activations", r.name)))
        .chain(std::iter::once(
            governor.acquire(scratch, "the scratch of the stage running"),
        ))
        .collect::<Result<Vec<Lease>>>()?;
    let (read, depth) = (options.read, options.prefetch);
    let result = if depth == 0 {
        let mut next = |turn: &Turn| fetch(runners, turn, governor, read);
        compute(runners, turns, &mut next, started, on_event)
    } else {
        std::thread::scope(|scope| {
            let reader: Reader<Delivery> = read_ahead(scope, depth, turns, |turn| {
                fetch(runners, turn, governor, read)
            });
            let mut next = |turn: &Turn| {
                reader.next(|| format!("{} step {}", runners[turn.model].name, turn.step))
            };
            compute(runners, turns, &mut next, started, on_event)
        })
    };
    drop(reserves);
    result
}

/// Per model, what its current inference holds.
struct Progress {
    state: Option<(State, Instant)>,
    service_s: f64,
    kept: Vec<Option<Loaded>>,
}

fn compute(
    runners: &[Runner],
    turns: &[Turn],
    next: &mut dyn FnMut(&Turn) -> Result<Delivery>,
    started: Instant,
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<Executed> {
    let mut progress: Vec<Progress> = runners
        .iter()
        .map(|r| Progress {
            state: None,
            service_s: 0.0,
            kept: (0..r.plan.steps.len()).map(|_| None).collect(),
        })
        .collect();
    let models = runners.len();
    let mut executed = Executed {
        latencies_s: vec![Vec::new(); models],
        service_s: vec![Vec::new(); models],
        copied_bytes: vec![0; models],
        read_bytes: vec![0; models],
        outputs: (0..models).map(|_| Outputs::default()).collect(),
    };
    let seconds = |at: Instant| (at - started).as_secs_f64();
    for turn in turns {
        let runner = &runners[turn.model];
        let here = &mut progress[turn.model];
        let waiting = Instant::now();
        let delivery = next(turn)?;
        let computing = Instant::now();
        let (loaded, read) = match delivery {
            Delivery::Kept => (None, None),
            Delivery::Read { loaded, began } => {
                let read_began = began + std::time::Duration::from_secs_f64(loaded.wait_s);
                let span = ReadSpan {
                    start_s: seconds(read_began),
                    seconds: loaded.load_s,
                    bytes: loaded.bytes_read,
                };
                executed.copied_bytes[turn.model] += loaded.copied_bytes;
                executed.read_bytes[turn.model] += loaded.bytes_read;
                (Some(loaded), Some((span, read_began)))
            }
        };
        if turn.step == 0 {
            let state = runner
                .model
                .start(runner.inputs.clone(), RunOptions::default())?;
            let began = read.as_ref().map_or(computing, |(_, at)| *at);
            here.state = Some((state, began));
        }
        let step = &runner.plan.steps[turn.step];
        let weights = match (&loaded, &here.kept[turn.step]) {
            (Some(loaded), _) => loaded,
            (None, Some(kept)) => kept,
            (None, None) => {
                return Err(RuntimeError::StepNeverRead {
                    model: runner.name.clone(),
                    step: turn.step,
                })
            }
        };
        let (state, _) = here.state.as_mut().expect("started at step 0");
        let mut feed = Resident {
            first: step.units.start,
            units: &weights.units,
        };
        run_range(runner.model.as_ref(), state, step.units.clone(), &mut feed)?;
        let execute_s = computing.elapsed().as_secs_f64();
        let swapping_out = Instant::now();
        match loaded {
            Some(loaded) if step.kept => here.kept[turn.step] = Some(loaded),
            other => drop(other),
        }
        let last_step = turn.step + 1 == runner.plan.steps.len();
        if last_step && turn.inference + 1 == runner.inferences {
            here.kept.iter_mut().for_each(|k| *k = None);
        }
        let (wait_s, swap_out_s) = (
            (computing - waiting).as_secs_f64(),
            swapping_out.elapsed().as_secs_f64(),
        );
        here.service_s += wait_s + execute_s + swap_out_s;
        on_event(&MixEvent::Step {
            model: turn.model,
            inference: turn.inference,
            block: turn.step,
            blocks: runner.plan.steps.len(),
            kept: step.kept,
            read: read.map(|(span, _)| span),
            start_s: seconds(computing),
            wait_s,
            execute_s,
            swap_out_s,
        });
        if last_step {
            let (mut state, began) = here.state.take().expect("started at step 0");
            executed.outputs[turn.model] = Outputs::from_state(&mut state);
            let latency_s = began.elapsed().as_secs_f64();
            executed.latencies_s[turn.model].push(latency_s);
            executed.service_s[turn.model].push(std::mem::take(&mut here.service_s));
            on_event(&MixEvent::Done {
                model: turn.model,
                inference: turn.inference,
                latency_s,
            });
        }
    }
    Ok(executed)
}
