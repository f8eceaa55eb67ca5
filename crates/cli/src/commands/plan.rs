//! `edgerun plan`: Hermes' Pipeline Planner, the number of loading agents for a budget.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use edgerun_runtime::human_bytes;
use edgerun_runtime::planner::plan_with;
use edgerun_runtime::profile::profile;

use super::profile::{load_profile, profiling_inputs};
use super::strategy::parse_size;

#[derive(Args)]
pub struct PlanArgs {
    /// A packed store (edgerun pack).
    pub model: PathBuf,
    /// The memory budget, e.g. 300MiB.
    #[arg(long, value_parser = parse_size)]
    pub budget: u64,
    /// A profile from `edgerun profile` (default: profile now, one pass).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Inputs to profile with when no --profile is given.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Largest number of loading agents to consider.
    #[arg(long, default_value_t = 8)]
    pub max_loaders: usize,
    /// Print JSON (loaders, predicted_latency_s, predicted_peak_bytes, candidates).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let source = super::open_model(&args.model)?;
    let profile = match &args.profile {
        Some(path) => load_profile(path)?,
        None => profile(
            &source,
            profiling_inputs(&source, args.input.as_deref())?,
            1,
        )?,
    };
    let units = profile.unit_costs();
    let largest = units.iter().map(|u| u.resident_bytes).max().unwrap_or(0);
    let plan = plan_with(&units, profile.reserve_bytes, args.budget, args.max_loaders, &profile.throughput, &profile.slowdowns()).ok_or_else(|| {
        anyhow!("a budget of {} bytes is below this model's minimum of {} bytes (largest unit plus activations)", args.budget, largest + profile.reserve_bytes)
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} units, budget {}",
        profile.architecture,
        units.len(),
        human_bytes(args.budget)
    )?;
    writeln!(out, "{:>8} {:>14} {:>14}", "loaders", "latency s", "peak")?;
    for c in &plan.candidates {
        let mark = if c.loaders == plan.loaders {
            "  <- plan"
        } else {
            ""
        };
        writeln!(
            out,
            "{:>8} {:>14.3} {:>14}{mark}",
            c.loaders,
            c.predicted_latency_s,
            human_bytes(c.predicted_peak_bytes)
        )?;
    }
    Ok(())
}
