//! DVFO's learned controller: a deep Q-network (Mnih et al. 2015: experience replay, a target
//! network, epsilon-greedy exploration) with branching heads ([`network`]), trained on the
//! environment over a bandwidth trace and saved as safetensors ([`file`]).
//!
//! The observation is what DVFO's "thinking while moving" agent has when it decides the next
//! inference's action while the current one runs: the rate the last transfer measured (log,
//! scaled so 0.5 and 20 Mbit/s map to 0 and 1), the last action (each branch as a share of its
//! range) and that inference's latency and energy over the edge-only reference. Model and
//! stage features are constant for one policy (a policy is trained per board and model), so
//! they are not inputs; they are checked when a policy file is loaded.

pub mod file;
pub mod network;
mod replay;

use std::time::Instant;

use candle_core::{Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};

use crate::action::Action;
use crate::env::Environment;
use crate::policy::{EdgeOnly, Policy, Step};
use crate::trace::{Trace, WALK_MAX_MBIT, WALK_MIN_MBIT};
use crate::{DvfoError, Result};

use network::{net, Network};
use replay::{Replay, Transition};

pub const OBSERVATION: usize = 8;

#[derive(Clone, Debug)]
pub struct DqnOptions {
    pub steps: usize,
    pub hidden: usize,
    pub batch: usize,
    pub replay: usize,
    pub learning_rate: f64,
    /// Discount. The action changes the next state only through the "last action" inputs,
    /// which change no cost, so the best policy is the same at any discount; bootstrapping
    /// only adds the target network's error. 0 by default: the Q of each action taken
    /// regresses on that inference's own cost.
    pub gamma: f64,
    /// Steps between target-network syncs.
    pub target_every: usize,
    /// Exploration falls linearly from 1 to `epsilon_end` over this share of the steps.
    pub explore_share: f64,
    pub epsilon_end: f64,
    /// Steps of pure exploration before learning starts.
    pub warmup: usize,
    pub seed: u64,
}

impl Default for DqnOptions {
    fn default() -> Self {
        Self {
            steps: 20_000,
            hidden: 128,
            batch: 64,
            replay: 20_000,
            learning_rate: 1e-3,
            gamma: 0.0,
            target_every: 250,
            explore_share: 0.6,
            epsilon_end: 0.02,
            warmup: 500,
            seed: 1,
        }
    }
}

impl DqnOptions {
    pub fn check(&self) -> Result<()> {
        let ok = (1..=10_000_000).contains(&self.steps)
            && (1..=4096).contains(&self.hidden)
            && (1..=65_536).contains(&self.batch)
            && (1..=10_000_000).contains(&self.replay)
            && self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && (0.0..1.0).contains(&self.gamma)
            && self.target_every >= 1
            && (0.0..=1.0).contains(&self.explore_share)
            && (0.0..=1.0).contains(&self.epsilon_end);
        if ok {
            Ok(())
        } else {
            Err(DvfoError::invalid(
                "DQN options out of range (steps and replay 1 to 10M, hidden 1 to 4096, batch 1 to 65536, \
                 learning rate positive, gamma in [0, 1), epsilon and explore share in [0, 1])",
            ))
        }
    }
}

/// The observation for `step` (see the module's doc).
pub fn observe(env: &Environment, step: &Step) -> [f32; OBSERVATION] {
    let (low, high) = (WALK_MIN_MBIT.ln(), WALK_MAX_MBIT.ln());
    let rate = (step.observed_mbit.max(1e-6).ln() - low) / (high - low);
    let share = |i: usize, n: usize| {
        if n > 1 {
            i as f64 / (n - 1) as f64
        } else {
            0.0
        }
    };
    let mut o = [0.0f32; OBSERVATION];
    o[0] = rate as f32;
    if let Some((action, outcome)) = step.previous {
        let space = &env.space;
        let offload = space.offloads[action.offload];
        o[1] = share(action.cpu, space.cpu_levels) as f32;
        o[2] = share(action.memory, space.memory_levels) as f32;
        o[3] = share(offload.split, space.stages + 1) as f32;
        o[4] = share(offload.compression, env.calibration.compressions.len()) as f32;
        o[5] = 1.0;
        o[6] = (outcome.latency_s() / env.reference.0).min(10.0) as f32;
        o[7] = (outcome.energy_j() / env.reference.1).min(10.0) as f32;
    }
    o
}

fn to_action(choice: [usize; 3]) -> Action {
    Action {
        cpu: choice[0],
        memory: choice[1],
        offload: choice[2],
    }
}

/// A trained network as a controller.
pub struct DqnPolicy {
    pub network: Network,
}

impl std::fmt::Debug for DqnPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DqnPolicy")
            .field("hidden", &self.network.hidden)
            .field("branches", &self.network.branches)
            .finish()
    }
}

impl DqnPolicy {
    fn check_fits(&self, env: &Environment) -> Result<()> {
        let want = [
            env.space.cpu_levels,
            env.space.memory_levels,
            env.space.offloads.len(),
        ];
        if self.network.branches != want {
            return Err(DvfoError::invalid(format!(
                "the network chooses among {:?} (cpu, memory, offload), the environment offers {want:?}",
                self.network.branches
            )));
        }
        Ok(())
    }
}

impl Policy for DqnPolicy {
    fn name(&self) -> String {
        "dqn".into()
    }

    fn choose(&mut self, env: &Environment, step: &Step) -> Action {
        // A network whose branches fit the environment (checked when made or loaded) and a
        // finite observation cannot fail; if the library does, the top levels on the board
        // are the safe answer.
        match self.network.greedy(&observe(env, step)) {
            Ok(choice) => to_action(choice),
            Err(_) => EdgeOnly.choose(env, step),
        }
    }
}

/// What training did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub steps: usize,
    pub seconds: f64,
    /// Mean cost over the last tenth of training (exploration included).
    pub final_cost: f64,
}

/// Trains a controller for `env` over `trace` (repeated as needed) for `options.steps`
/// inferences. `progress(step, mean cost of the last 1000)` is called every 1000 steps.
pub fn train(
    env: &Environment,
    trace: &Trace,
    options: &DqnOptions,
    mut progress: impl FnMut(usize, f64),
) -> Result<(DqnPolicy, TrainReport)> {
    options.check()?;
    if trace.is_empty() {
        return Err(DvfoError::invalid("the training trace is empty"));
    }
    let started = Instant::now();
    let branches = [
        env.space.cpu_levels,
        env.space.memory_levels,
        env.space.offloads.len(),
    ];
    let online = Network::new(OBSERVATION, options.hidden, branches, options.seed)?;
    let target = Network::new(OBSERVATION, options.hidden, branches, options.seed)?;
    target.copy_from(&online)?;
    let mut optimiser = AdamW::new(
        online.all_vars(),
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .map_err(net)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut replay = Replay::new(options.replay);
    let explore_steps = (options.explore_share * options.steps as f64).max(1.0);
    let mut previous = None;
    let mut observed = trace.mbit_per_s[0];
    let mut recent = Vec::with_capacity(1000);
    let mut tail_cost = (0.0, 0usize);
    for t in 0..options.steps {
        let actual = trace.mbit_per_s[t % trace.len()];
        let step = Step {
            observed_mbit: observed,
            actual_mbit: actual,
            previous,
        };
        let observation = observe(env, &step);
        let epsilon = (1.0 - t as f64 / explore_steps).max(options.epsilon_end);
        let choice = if t < options.warmup || rng.random::<f64>() < epsilon {
            [
                rng.random_range(0..branches[0]),
                rng.random_range(0..branches[1]),
                rng.random_range(0..branches[2]),
            ]
        } else {
            online.greedy(&observation)?
        };
        let action = to_action(choice);
        let outcome = env.outcome(action, actual);
        previous = Some((action, outcome));
        observed = actual;
        let next = observe(
            env,
            &Step {
                observed_mbit: observed,
                actual_mbit: actual,
                previous,
            },
        );
        replay.push(Transition {
            observation: observation.to_vec(),
            action: choice.map(|c| c as u32),
            reward: reward(outcome.cost),
            next: next.to_vec(),
        });
        recent.push(outcome.cost);
        if t >= options.steps - options.steps / 10 {
            tail_cost.0 += outcome.cost;
            tail_cost.1 += 1;
        }
        if t >= options.warmup && replay.len() >= options.batch {
            learn(&online, &target, &mut optimiser, &replay, &mut rng, options)?;
        }
        if (t + 1) % options.target_every == 0 {
            target.copy_from(&online)?;
        }
        if recent.len() == 1000 {
            progress(t + 1, recent.iter().sum::<f64>() / 1000.0);
            recent.clear();
        }
    }
    let report = TrainReport {
        steps: options.steps,
        seconds: started.elapsed().as_secs_f64(),
        final_cost: tail_cost.0 / tail_cost.1.max(1) as f64,
    };
    let policy = DqnPolicy { network: online };
    policy.check_fits(env)?;
    Ok((policy, report))
}

/// The reward of an inference of cost `cost`: minus its logarithm. Per state the least cost
/// and the least log-cost are the same action, so the greedy policy is unchanged, but an
/// offload over a slow link (cost tens of times the reference) no longer lands in the Huber
/// loss's linear tail, where its Q moved too slowly to stop being chosen (seen as a policy
/// sending 100 kB at 0.5 Mbit/s).
fn reward(cost: f64) -> f32 {
    -(cost.max(1e-9).ln()) as f32
}

/// One gradient step on a sampled batch: the Q of each joint action taken towards
/// `r + gamma * Q_target(s', a')`, with `a'` the online network's greedy offload at its best
/// levels (double Q-learning).
fn learn(
    online: &Network,
    target: &Network,
    optimiser: &mut AdamW,
    replay: &Replay,
    rng: &mut impl Rng,
    options: &DqnOptions,
) -> Result<()> {
    let batch = replay.sample(rng, options.batch);
    let n = batch.len();
    let dev = Device::Cpu;
    let flat = |f: &dyn Fn(&Transition) -> &[f32]| -> Vec<f32> {
        batch.iter().flat_map(|t| f(t).iter().copied()).collect()
    };
    let x = Tensor::from_vec(flat(&|t| &t.observation), (n, OBSERVATION), &dev).map_err(net)?;
    let rewards: Vec<f32> = batch.iter().map(|t| t.reward).collect();
    let mut y = Tensor::from_vec(rewards, n, &dev).map_err(net)?;
    if options.gamma > 0.0 {
        let xn = Tensor::from_vec(flat(&|t| &t.next), (n, OBSERVATION), &dev).map_err(net)?;
        let choice = online
            .best_per_offload(&xn)?
            .argmax_keepdim(D::Minus1)
            .map_err(net)?;
        let bootstrap = target
            .best_per_offload(&xn)?
            .gather(&choice, 1)
            .and_then(|q| q.squeeze(1))
            .and_then(|q| q * options.gamma)
            .map_err(net)?;
        y = (y + bootstrap).map_err(net)?;
    }
    let actions: Vec<[u32; 3]> = batch.iter().map(|t| t.action).collect();
    let q = online.q(&x, &actions)?;
    candle_nn::loss::huber(&q, &y.detach(), 1.0)
        .and_then(|loss| optimiser.backward_step(&loss))
        .map_err(net)
}
