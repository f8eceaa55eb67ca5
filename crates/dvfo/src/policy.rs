//! Controllers the DQN is compared with, and the oracle it is held to. Every controller sees
//! what DVFO's does when it decides ("thinking while moving": the next action is chosen while
//! the current inference runs): the rate the last inference measured and what that inference
//! did. Only the oracle reads the rate the coming inference will meet.

use crate::action::Action;
use crate::env::{Environment, Outcome};

/// What a controller knows when it picks the next inference's action.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The rate the last transfer measured (for the first inference, a probe's).
    pub observed_mbit: f64,
    /// The rate the coming inference will meet: the oracle's alone.
    pub actual_mbit: f64,
    /// The last inference's action and outcome.
    pub previous: Option<(Action, Outcome)>,
}

pub trait Policy {
    fn name(&self) -> String;
    fn choose(&mut self, env: &Environment, step: &Step) -> Action;
}

/// Everything on the board at the top levels (under a budget, streamed as Hermes plans it).
pub struct EdgeOnly;

impl Policy for EdgeOnly {
    fn name(&self) -> String {
        "edge-only".into()
    }

    fn choose(&mut self, env: &Environment, _: &Step) -> Action {
        Action {
            cpu: env.board.top_cpu(),
            memory: env.board.top_memory(),
            offload: env.edge_only(),
        }
    }
}

/// The oracle held to one knob: the action of least cost at the coming rate among those
/// that leave every other knob where [`EdgeOnly`] has it (the top levels, the board computing
/// everything, its head streamed as Hermes plans it). What tuning that knob alone can win,
/// beside which the joint [`Oracle`] shows what tuning them together adds.
pub struct OneKnob {
    knob: Knob,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// CPU and memory levels (DVFS alone).
    Levels,
    /// PipeLoad's loaders and depth for a model streamed under its budget (memory alone).
    Shape,
    /// Split and compression, each head streamed as Hermes plans it (offloading alone).
    Offload,
}

impl OneKnob {
    pub fn new(knob: Knob) -> Self {
        Self { knob }
    }

    fn allows(&self, env: &Environment, action: Action) -> bool {
        let top = action.cpu == env.board.top_cpu() && action.memory == env.board.top_memory();
        let offload = env.space.offloads[action.offload];
        match self.knob {
            Knob::Levels => action.offload == env.edge_only(),
            Knob::Shape => top && offload.split == env.space.stages,
            Knob::Offload => {
                top && env.offload(offload.split, offload.compression) == Some(action.offload)
            }
        }
    }
}

impl Policy for OneKnob {
    fn name(&self) -> String {
        match self.knob {
            Knob::Levels => "levels-only",
            Knob::Shape => "shape-only",
            Knob::Offload => "offload-only",
        }
        .into()
    }

    fn choose(&mut self, env: &Environment, step: &Step) -> Action {
        let allowed = env.space.actions().filter(|&a| self.allows(env, a));
        // Edge only at the top levels is allowed under every knob, so there is always one.
        least_cost(env, step.actual_mbit, allowed)
            .map_or_else(|| EdgeOnly.choose(env, step), |(a, _)| a)
    }
}

/// The levels of least cost for `offload`'s board phase, and that cost.
fn best_levels(env: &Environment, offload: usize) -> (Action, f64) {
    let mut best: Option<(Action, f64)> = None;
    for cpu in 0..env.space.cpu_levels {
        for memory in 0..env.space.memory_levels {
            let action = Action {
                cpu,
                memory,
                offload,
            };
            let local = env.local(action);
            let cost = env.cost(local.local_s, local.local_j);
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((action, cost));
            }
        }
    }
    best.expect("a board has at least one level of each")
}

/// Everything on the server: the inputs are sent as they are.
pub struct CloudOnly;

impl Policy for CloudOnly {
    fn name(&self) -> String {
        "cloud-only".into()
    }

    fn choose(&mut self, env: &Environment, _: &Step) -> Action {
        Action {
            cpu: env.board.top_cpu(),
            memory: env.board.top_memory(),
            offload: env.space.cloud_only(),
        }
    }
}

/// Neurosurgeon: the uncompressed split of least latency at the observed rate, the board at
/// its top levels (under a budget, each head streamed as Hermes plans it).
pub struct Neurosurgeon;

impl Policy for Neurosurgeon {
    fn name(&self) -> String {
        "neurosurgeon".into()
    }

    fn choose(&mut self, env: &Environment, step: &Step) -> Action {
        neurosurgeon_split(env, env.board.top_cpu(), step.observed_mbit)
    }
}

/// The uncompressed split of least latency at `mbit` with the CPU at `cpu`, memory at top.
fn neurosurgeon_split(env: &Environment, cpu: usize, mbit: f64) -> Action {
    let memory = env.board.top_memory();
    (0..=env.space.stages)
        .filter_map(|split| env.offload(split, 0))
        .map(|offload| Action {
            cpu,
            memory,
            offload,
        })
        .min_by(|a, b| {
            let la = env.outcome(*a, mbit).latency_s();
            let lb = env.outcome(*b, mbit).latency_s();
            la.total_cmp(&lb)
        })
        .expect("an action space has at least the edge-only offload")
}

/// Linux's ondemand governor under Neurosurgeon's split: the CPU goes to the top level when the
/// last inference kept it busier than `UP_THRESHOLD`, and otherwise to the lowest level at or
/// above `min + load * (max - min)` (the kernel's proportional rule, load as a share of the
/// inference the CPU computed).
pub struct Ondemand;

const UP_THRESHOLD: f64 = 0.8;

impl Policy for Ondemand {
    fn name(&self) -> String {
        "ondemand".into()
    }

    fn choose(&mut self, env: &Environment, step: &Step) -> Action {
        let levels = &env.board.cpu.levels;
        let top = env.board.top_cpu();
        let cpu = match step.previous {
            None => top,
            Some((_, outcome)) => {
                let latency = outcome.latency_s();
                let load = if latency > 0.0 {
                    outcome.local_s / latency
                } else {
                    1.0
                };
                if load > UP_THRESHOLD {
                    top
                } else {
                    let (low, high) = (levels[0].mhz, levels[top].mhz);
                    let target = low + load * (high - low);
                    levels.iter().position(|l| l.mhz >= target).unwrap_or(top)
                }
            }
        };
        neurosurgeon_split(env, cpu, step.observed_mbit)
    }
}

/// The exhaustive oracle: the action of least cost at the rate the inference will meet.
/// The levels only change the board's phase and the rate only the rest, so the best levels
/// for each offload are found once and each step compares offloads; [`brute_force`] is the
/// same search without that shortcut.
pub struct Oracle {
    /// Per offload: the best levels and the board phase's cost.
    best_local: Vec<(Action, f64)>,
}

impl Oracle {
    pub fn new(env: &Environment) -> Self {
        let best_local = (0..env.space.offloads.len())
            .map(|offload| best_levels(env, offload))
            .collect();
        Self { best_local }
    }

    /// The best action at `mbit` and its cost.
    pub fn best(&self, env: &Environment, mbit: f64) -> (Action, f64) {
        let mut best: Option<(Action, f64)> = None;
        for (offload, &(action, local_cost)) in self.best_local.iter().enumerate() {
            let remote = env.remote(offload, mbit);
            let cost = local_cost + env.cost(remote.latency_s(), remote.energy_j());
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((action, cost));
            }
        }
        best.expect("an action space has at least one offload")
    }
}

impl Policy for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }

    fn choose(&mut self, env: &Environment, step: &Step) -> Action {
        self.best(env, step.actual_mbit).0
    }
}

/// Every action tried at `mbit`: the least cost and the first action that has it.
pub fn brute_force(env: &Environment, mbit: f64) -> (Action, f64) {
    least_cost(env, mbit, env.space.actions()).expect("an action space is never empty")
}

/// The least cost among `actions` at `mbit` and the first action that has it.
fn least_cost(
    env: &Environment,
    mbit: f64,
    actions: impl Iterator<Item = Action>,
) -> Option<(Action, f64)> {
    actions.map(|a| (a, env.outcome(a, mbit).cost)).fold(
        None,
        |best: Option<(Action, f64)>, (a, c)| match best {
            Some((_, b)) if b <= c => best,
            _ => Some((a, c)),
        },
    )
}
