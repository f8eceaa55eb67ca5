//! `edgerun partition`: SwapNet's partitioner -- blocks of consecutive units for a budget,
//! predicted by delay models fitted on the model's profile.

use anyhow::Result;
use clap::Args;
use edgerun_runtime::delay::fit_profiles;
use edgerun_runtime::human_bytes;
use serde_json::json;

use super::profile::BudgetedStore;

#[derive(Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub store: BudgetedStore,
    /// Never read the next block while one runs.
    #[arg(long)]
    pub no_prefetch: bool,
    /// Print JSON (blocks with units, bytes, flops, t_in_s, t_ex_s, t_out_s).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PartitionArgs) -> Result<()> {
    let (_source, profile) = args.store.open()?;
    let models = fit_profiles(std::slice::from_ref(&profile))?;
    let units = profile.part_units();
    let plan = profile.partition(&models, args.store.budget, !args.no_prefetch)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "architecture": profile.architecture,
                "budget_bytes": args.store.budget,
                "reserve_bytes": profile.reserve_bytes,
                "delay_models": models,
                "prefetch": plan.prefetch,
                "predicted_latency_s": plan.predicted_latency_s,
                "predicted_peak_bytes": plan.predicted_peak_bytes,
                "blocks": plan.blocks,
            }))?
        );
        return Ok(());
    }
    println!(
        "{}: {} units into {} blocks under {} ({}), predicted {:.3} s, peak {}",
        profile.architecture,
        units.len(),
        plan.blocks.len(),
        human_bytes(args.store.budget),
        if plan.prefetch {
            "next block read while one runs"
        } else {
            "one block at a time"
        },
        plan.predicted_latency_s,
        human_bytes(plan.predicted_peak_bytes)
    );
    println!(
        "{:<5} {:<44} {:>11} {:>10} {:>9} {:>9} {:>9}",
        "block", "units", "bytes", "GFLOP", "t_in s", "t_ex s", "t_out s"
    );
    for (i, b) in plan.blocks.iter().enumerate() {
        let names = match b.units.as_slice() {
            [one] => one.clone(),
            [first, .., last] => format!("{first} .. {last} ({})", b.units.len()),
            [] => String::new(),
        };
        println!(
            "{i:<5} {names:<44} {:>11} {:>10.3} {:>9.4} {:>9.4} {:>9.4}",
            human_bytes(b.bytes),
            b.flops as f64 / 1e9,
            b.t_in_s,
            b.t_ex_s,
            b.t_out_s
        );
    }
    let r2 = |m: &edgerun_runtime::delay::LinearDelay| m.r2;
    println!(
        "delay models R^2: t_in {:.3}, t_ex {:.3}, t_out {:.3}",
        r2(&models.t_in),
        r2(&models.t_ex),
        r2(&models.t_out)
    );
    Ok(())
}
