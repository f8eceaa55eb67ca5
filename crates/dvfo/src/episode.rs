//! A controller driven over a bandwidth trace, one inference per sample, and what it cost.

use std::time::Instant;

use serde::Serialize;

use crate::action::Action;
use crate::env::{Environment, Outcome};
use crate::policy::{Policy, Step};
use crate::trace::Trace;

#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub mbit_per_s: f64,
    pub action: Action,
    pub outcome: Outcome,
}

/// Means over a trace.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub policy: String,
    pub trace: String,
    pub inferences: usize,
    pub latency_ms: f64,
    pub p95_latency_ms: f64,
    pub energy_mj: f64,
    pub cost: f64,
    pub cosine: f64,
    pub least_cosine: f64,
    /// Share of inferences that sent anything.
    pub offloaded: f64,
    pub bytes_up: f64,
    /// Time the controller took to decide, per inference.
    pub decide_us: f64,
    /// The action taken most often, described ([`crate::ActionSpace::describe`]).
    pub most_chosen: String,
}

/// Runs `policy` over `trace`. The first inference's observed rate is its own (a probe before
/// the run); after that each sees the rate of the inference before.
pub fn run(env: &Environment, policy: &mut dyn Policy, trace: &Trace) -> (Vec<Record>, Summary) {
    let mut records: Vec<Record> = Vec::with_capacity(trace.len());
    let mut decide_s = 0.0;
    for (t, &actual) in trace.mbit_per_s.iter().enumerate() {
        let step = Step {
            observed_mbit: if t == 0 {
                actual
            } else {
                trace.mbit_per_s[t - 1]
            },
            actual_mbit: actual,
            previous: records.last().map(|r| (r.action, r.outcome)),
        };
        let started = Instant::now();
        let action = policy.choose(env, &step);
        decide_s += started.elapsed().as_secs_f64();
        records.push(Record {
            mbit_per_s: actual,
            action,
            outcome: env.outcome(action, actual),
        });
    }
    let summary = summarise(env, &policy.name(), &trace.name, &records, decide_s);
    (records, summary)
}

pub fn summarise(
    env: &Environment,
    policy: &str,
    trace: &str,
    records: &[Record],
    decide_s: f64,
) -> Summary {
    let mut counts: std::collections::HashMap<Action, usize> = std::collections::HashMap::new();
    for r in records {
        *counts.entry(r.action).or_default() += 1;
    }
    // The most frequent, the earliest index among equals, so the report is the same each run.
    let most_chosen = counts
        .into_iter()
        .max_by_key(|&(a, n)| (n, std::cmp::Reverse(env.space.index(a))))
        .map_or(String::new(), |(a, _)| {
            env.space.describe(&env.calibration, a)
        });
    let n = records.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Record) -> f64| records.iter().map(f).sum::<f64>() / n;
    let mut latencies: Vec<f64> = records.iter().map(|r| r.outcome.latency_s()).collect();
    latencies.sort_by(f64::total_cmp);
    let p95 = latencies
        .get(((latencies.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    Summary {
        policy: policy.to_string(),
        trace: trace.to_string(),
        inferences: records.len(),
        latency_ms: 1e3 * mean(&|r| r.outcome.latency_s()),
        p95_latency_ms: 1e3 * p95,
        energy_mj: 1e3 * mean(&|r| r.outcome.energy_j()),
        cost: mean(&|r| r.outcome.cost),
        cosine: mean(&|r| r.outcome.cosine),
        least_cosine: records.iter().map(|r| r.outcome.cosine).fold(1.0, f64::min),
        offloaded: mean(&|r| f64::from(u8::from(r.outcome.bytes_up > 0))),
        bytes_up: mean(&|r| r.outcome.bytes_up as f64),
        decide_us: 1e6 * decide_s / n,
        most_chosen,
    }
}
