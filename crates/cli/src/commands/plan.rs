//! `edgerun plan`: Hermes' Pipeline Planner, the number of loading agents and the read-ahead
//! depth for a budget.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use edgerun_runtime::human_bytes;

use super::profile::BudgetedStore;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub store: BudgetedStore,
    /// Largest number of loading agents to consider (1 to 64, as --loaders).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub max_loaders: usize,
    /// Print JSON (loaders, depth, predicted_latency_s, predicted_peak_bytes, candidates).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PlanArgs) -> Result<()> {
    let (_source, profile) = args.store.open()?;
    let units = profile.unit_costs();
    let plan = profile.plan(args.store.budget, args.max_loaders)?;
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
        human_bytes(args.store.budget)
    )?;
    writeln!(
        out,
        "{:>8} {:>8} {:>14} {:>14}",
        "loaders", "depth", "latency s", "peak"
    )?;
    for c in &plan.candidates {
        let mark = if c.loaders == plan.loaders {
            "  <- plan"
        } else {
            ""
        };
        writeln!(
            out,
            "{:>8} {:>8} {:>14.3} {:>14}{mark}",
            c.loaders,
            c.depth.map_or("budget".into(), |d| d.to_string()),
            c.predicted_latency_s,
            human_bytes(c.predicted_peak_bytes)
        )?;
    }
    writeln!(
        out,
        "depth: units read ahead of the one computing (budget: as many as it holds)"
    )?;
    Ok(())
}
