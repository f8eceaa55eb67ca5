//! One inference as DVFO's environment sees it, in phases: the board computes stages
//! `0..split` at the chosen levels and encodes the boundary; the radio sends it; the server
//! decodes and computes the rest while the board waits; the radio receives the outputs. The
//! objective is DVFO's weighted cost `eta * E / E_ref + (1 - eta) * T / T_ref`, normalised by
//! the edge-only pass at the top levels.
//!
//! Where each number comes from, so that a report can say it:
//! - the board's stage times are **predicted**: this machine's measured stage time scaled by
//!   its sustained FLOP rate over the board's at the CPU level, or the stage's memory traffic
//!   at the memory level's bandwidth, whichever is longer (a roofline per stage);
//! - encode time is this machine's measurement scaled the same way; decode and the server's
//!   stages are this machine's measurements divided by `server_speedup`;
//! - transfer times are bytes at the trace's rate (the same both ways) plus half the round
//!   trip each way;
//! - every joule is **modelled**: power from the board file times the phase's time.
//!
//! Under a memory budget ([`crate::action::Budget`]), a head that does not fit streams: its
//! time is PipeLoad's, as Hermes' planner predicts it (`runtime::planner::simulate_with`),
//! with the board's stage times at the chosen levels, the board's storage read curve, the
//! units' bytes and the reserve from the calibration, and the offload's loaders and depth.
//! The CPU draws its busy power while computing and idles while it waits for a unit; the
//! storage draws its busy power for the bytes read at the shape's aggregate rate (loaders
//! are taken to cost no CPU time: an assumption).

use edgerun_runtime::planner::{aggregate, simulate_with, Throughput, UnitCost};

use crate::action::{Action, ActionSpace, LoadPlan};
use crate::board::Board;
use crate::calibrate::Calibration;
use crate::{DvfoError, Result};

#[derive(Clone, Debug)]
pub struct EnvOptions {
    /// Weight of energy in the cost (DVFO's eta), 0 to 1.
    pub eta: f64,
    pub round_trip_s: f64,
    /// How many times faster than this machine the server computes.
    pub server_speedup: f64,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            eta: 0.5,
            round_trip_s: 0.010,
            server_speedup: 1.0,
        }
    }
}

/// The time and energy of each phase of one inference, and its cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outcome {
    pub local_s: f64,
    pub upload_s: f64,
    pub server_s: f64,
    pub download_s: f64,
    pub local_j: f64,
    pub upload_j: f64,
    pub wait_j: f64,
    pub download_j: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Least cosine of the outputs to a whole local pass.
    pub cosine: f64,
    pub cost: f64,
}

impl Outcome {
    pub fn latency_s(&self) -> f64 {
        self.local_s + self.upload_s + self.server_s + self.download_s
    }

    pub fn energy_j(&self) -> f64 {
        self.local_j + self.upload_j + self.wait_j + self.download_j
    }
}

pub struct Environment {
    pub board: Board,
    pub calibration: Calibration,
    pub space: ActionSpace,
    pub options: EnvOptions,
    /// Latency and energy of the edge-only pass at the top levels.
    pub reference: (f64, f64),
    /// Per stage and level pair, the board's time (`[stage][cpu][memory]`).
    stage_s: Vec<Vec<Vec<f64>>>,
    /// The board's phase of every action (`ActionSpace::index`): seconds and joules.
    local: Vec<(f64, f64)>,
    /// Per split and compression, the shape Hermes' planner would stream its head with.
    planned: std::collections::HashMap<(usize, usize), usize>,
}

impl Environment {
    pub fn new(
        board: Board,
        calibration: Calibration,
        space: ActionSpace,
        options: EnvOptions,
    ) -> Result<Self> {
        if !(options.eta.is_finite() && (0.0..=1.0).contains(&options.eta)) {
            return Err(DvfoError::invalid(format!(
                "eta {} is not from 0 to 1",
                options.eta
            )));
        }
        if !(options.round_trip_s.is_finite() && options.round_trip_s >= 0.0) {
            return Err(DvfoError::invalid("the round trip is not a time"));
        }
        if !(options.server_speedup.is_finite() && options.server_speedup > 0.0) {
            return Err(DvfoError::invalid("the server speed-up is not positive"));
        }
        if space.stages != calibration.stages.len() {
            return Err(DvfoError::invalid("the action space is of another model"));
        }
        let host = calibration.host_flops_per_s();
        let stage_s = calibration
            .stages
            .iter()
            .map(|s| {
                (0..board.cpu.levels.len())
                    .map(|c| {
                        let compute = if host.is_finite() && host > 0.0 {
                            s.compute_s * host / board.cpu_flops_per_s(c)
                        } else {
                            s.compute_s
                        };
                        (0..board.memory.levels.len())
                            .map(|m| {
                                compute.max(s.traffic_bytes as f64 / board.memory_bytes_per_s(m))
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut env = Self {
            board,
            calibration,
            space,
            options,
            reference: (1.0, 1.0),
            stage_s,
            local: Vec::new(),
            planned: std::collections::HashMap::new(),
        };
        let mut streamer = env.streamer()?;
        env.local = env
            .space
            .actions()
            .map(|a| env.board_phase(a, streamer.as_mut()))
            .collect::<Result<_>>()?;
        env.planned = env.hermes_shapes();
        let top = Action {
            cpu: env.board.top_cpu(),
            memory: env.board.top_memory(),
            offload: env.edge_only(),
        };
        let edge = env.outcome(top, 1.0);
        if !(edge.latency_s() > 0.0 && edge.energy_j() > 0.0) {
            return Err(DvfoError::invalid(
                "the edge-only pass takes no time or energy",
            ));
        }
        env.reference = (edge.latency_s(), edge.energy_j());
        Ok(env)
    }

    /// The board's time for stage `stage` at these levels.
    pub fn stage_s(&self, stage: usize, cpu: usize, memory: usize) -> f64 {
        self.stage_s[stage][cpu][memory]
    }

    /// The board's time for the encoder at this CPU level (it runs on the board).
    fn encode_s(&self, host_s: f64, cpu: usize) -> f64 {
        let host = self.calibration.host_flops_per_s();
        if host.is_finite() && host > 0.0 {
            host_s * host / self.board.cpu_flops_per_s(cpu)
        } else {
            host_s
        }
    }

    /// One inference with `action` at `mbit_per_s`.
    pub fn outcome(&self, action: Action, mbit_per_s: f64) -> Outcome {
        let local = self.local(action);
        let remote = self.remote(action.offload, mbit_per_s);
        let mut out = Outcome {
            local_s: local.local_s,
            local_j: local.local_j,
            ..remote
        };
        out.cost = self.cost(out.latency_s(), out.energy_j());
        out
    }

    /// The board's phase alone (its cost is [`Self::cost`] of it).
    pub fn local(&self, action: Action) -> Outcome {
        let (local_s, local_j) = self.local[self.space.index(action)];
        Outcome {
            local_s,
            local_j,
            ..Outcome::default()
        }
    }

    /// The offload splitting at `split` with `compression` as Hermes would run its head:
    /// resident if it fits, else the shape of least latency at the top levels (the first
    /// within 1% of it, so the fewest loaders and the shallowest depth, as the planner picks).
    pub fn offload(&self, split: usize, compression: usize) -> Option<usize> {
        self.planned.get(&(split, compression)).copied()
    }

    /// Everything on the board, its head streamed as Hermes would where it must.
    pub fn edge_only(&self) -> usize {
        self.offload(self.space.stages, 0)
            .expect("an action space always offers the edge-only split")
    }

    fn hermes_shapes(&self) -> std::collections::HashMap<(usize, usize), usize> {
        let (cpu, memory) = (self.board.top_cpu(), self.board.top_memory());
        let mut planned = std::collections::HashMap::new();
        for (i, o) in self.space.offloads.iter().enumerate() {
            planned.entry((o.split, o.compression)).or_insert_with(|| {
                let latency = |offload: usize| {
                    self.local(Action {
                        cpu,
                        memory,
                        offload,
                    })
                    .local_s
                };
                let variants: Vec<usize> = self.space.variants(o.split, o.compression).collect();
                let best = variants
                    .iter()
                    .map(|&v| latency(v))
                    .fold(f64::INFINITY, f64::min);
                variants
                    .into_iter()
                    .find(|&v| latency(v) <= best * 1.01)
                    .unwrap_or(i)
            });
        }
        planned
    }

    /// What streaming a head needs, gathered once: `None` without a budget.
    fn streamer(&self) -> Result<Option<Streamer>> {
        let Some(budget) = &self.space.budget else {
            return Ok(None);
        };
        let missing =
            || DvfoError::invalid("a streamed head needs the board's storage and the units' sizes");
        let storage = self.board.storage.as_ref().ok_or_else(missing)?;
        let (bytes, reserve_bytes) = self.calibration.unit_bytes().ok_or_else(missing)?;
        let units = self
            .calibration
            .stages
            .iter()
            .zip(bytes)
            .map(|(stage, (resident_bytes, read_bytes))| UnitCost {
                id: stage.id.clone(),
                resident_bytes,
                read_bytes,
                compute_s: 0.0,
            })
            .collect();
        Ok(Some(Streamer {
            units,
            reserve_bytes,
            budget_bytes: budget.bytes,
            throughputs: storage.throughputs(),
            storage_w: storage.busy_w,
        }))
    }

    /// Seconds and joules of the board's phase of `action`: its stages (resident or
    /// streamed) and the boundary's encoding.
    fn board_phase(&self, action: Action, streamer: Option<&mut Streamer>) -> Result<(f64, f64)> {
        let offload = self.space.offloads[action.offload];
        let busy_w = self.board.busy_w(action.cpu, action.memory);
        let compute: Vec<f64> = (0..offload.split)
            .map(|s| self.stage_s(s, action.cpu, action.memory))
            .collect();
        let compute_s: f64 = compute.iter().sum();
        let (mut local_s, mut local_j) = match self.space.plan(action.offload) {
            None => (compute_s, compute_s * busy_w),
            Some(plan) => {
                let streamer = streamer.ok_or_else(|| {
                    DvfoError::invalid(
                        "a streamed head needs the board's storage and the units' sizes",
                    )
                })?;
                let (latency_s, read_s) = streamer.stream(&compute, plan)?;
                let waiting_s = (latency_s - compute_s).max(0.0);
                (
                    latency_s,
                    compute_s * busy_w
                        + waiting_s * self.board.idle_w
                        + read_s * streamer.storage_w,
                )
            }
        };
        if offload.split > 0 && offload.split < self.space.stages {
            let b = self
                .calibration
                .boundary(offload.split, offload.compression);
            let encode_s = self.encode_s(b.encode_s, action.cpu);
            local_s += encode_s;
            local_j += encode_s * busy_w;
        }
        Ok((local_s, local_j))
    }

    /// Everything after the board's phase, which no level changes.
    pub fn remote(&self, offload: usize, mbit_per_s: f64) -> Outcome {
        let offload = self.space.offloads[offload];
        let n = self.space.stages;
        if offload.split == n {
            return Outcome {
                cosine: 1.0,
                ..Outcome::default()
            };
        }
        let (bytes_up, decode_s, cosine) = match offload.split {
            0 => (self.calibration.input_bytes, 0.0, 1.0),
            k => {
                let b = self.calibration.boundary(k, offload.compression);
                (b.bytes, b.decode_s, b.cosine)
            }
        };
        let bytes_down = self.calibration.output_bytes;
        let bits_per_s = mbit_per_s * 1e6;
        let half_trip = self.options.round_trip_s / 2.0;
        let upload_s = bytes_up as f64 * 8.0 / bits_per_s + half_trip;
        let server_s = (decode_s
            + self.calibration.stages[offload.split..]
                .iter()
                .map(|s| s.compute_s)
                .sum::<f64>())
            / self.options.server_speedup;
        let download_s = bytes_down as f64 * 8.0 / bits_per_s + half_trip;
        let board = &self.board;
        Outcome {
            upload_s,
            server_s,
            download_s,
            upload_j: upload_s * (board.idle_w + board.uplink_w(mbit_per_s)),
            wait_j: server_s * (board.idle_w + board.downlink_w(0.0)),
            download_j: download_s * (board.idle_w + board.downlink_w(mbit_per_s)),
            bytes_up,
            bytes_down,
            cosine,
            ..Outcome::default()
        }
    }

    /// DVFO's weighted cost of a latency and an energy.
    pub fn cost(&self, latency_s: f64, energy_j: f64) -> f64 {
        let eta = self.options.eta;
        eta * energy_j / self.reference.1 + (1.0 - eta) * latency_s / self.reference.0
    }
}

/// A budgeted model's units, the reserve, the budget and the board's read curve, for
/// PipeLoad's planner to time streamed heads.
struct Streamer {
    /// Every unit's bytes; `compute_s` is filled in per action.
    units: Vec<UnitCost>,
    reserve_bytes: u64,
    budget_bytes: u64,
    throughputs: Vec<Throughput>,
    storage_w: f64,
}

impl Streamer {
    /// PipeLoad's latency over the head whose stages take `compute` seconds on the board,
    /// streamed with `plan`, and the seconds the storage spends reading.
    fn stream(&mut self, compute: &[f64], plan: LoadPlan) -> Result<(f64, f64)> {
        let head = &mut self.units[..compute.len()];
        for (unit, &compute_s) in head.iter_mut().zip(compute) {
            unit.compute_s = compute_s;
        }
        let pass = simulate_with(
            head,
            self.reserve_bytes,
            self.budget_bytes,
            (plan.loaders, plan.depth),
            &self.throughputs,
            &[],
        )
        .ok_or_else(|| DvfoError::invalid("a streamed head's unit does not fit the budget"))?;
        let read_bytes: u64 = head.iter().map(|u| u.read_bytes).sum();
        let read_s = (read_bytes as f64 / aggregate(&self.throughputs, plan.loaders))
            .min(pass.predicted_latency_s);
        Ok((pass.predicted_latency_s, read_s))
    }
}
