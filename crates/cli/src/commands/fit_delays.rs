//! `edgerun fit-delays`: SwapNet's linear delay models fitted over one or more models.

use std::path::PathBuf;

use anyhow::{ensure, Result};
use clap::Args;
use edgerun_runtime::delay::{fit_profiles, LinearDelay};
use edgerun_runtime::profile::{profile, Profile};
use serde_json::json;

use super::profile::{load_profile, profiling_inputs};

#[derive(Args)]
pub struct FitDelaysArgs {
    /// Packed stores to profile now (one pass each, default inputs).
    pub models: Vec<PathBuf>,
    /// Profiles from `edgerun profile` to include.
    #[arg(long)]
    pub profile: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: FitDelaysArgs) -> Result<()> {
    ensure!(
        !args.models.is_empty() || !args.profile.is_empty(),
        "give packed stores or --profile files to fit on"
    );
    let mut profiles: Vec<Profile> = Vec::new();
    for path in &args.models {
        let source = super::open_model(path)?;
        eprintln!("profiling {}", path.display());
        profiles.push(profile(&source, profiling_inputs(&source, None)?, 1)?);
    }
    for path in &args.profile {
        profiles.push(load_profile(path, None)?);
    }
    let models = fit_profiles(&profiles)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "models": profiles.iter().map(|p| &p.architecture).collect::<Vec<_>>(),
                "t_in": models.t_in, "t_ex": models.t_ex, "t_out": models.t_out,
            }))?
        );
        return Ok(());
    }
    let line = |name: &str, unit: &str, m: &LinearDelay| {
        println!(
            "{name:<6} = {:.4e} s/{unit} * {unit} + {:.4e} s/depth * depth + {:.4e} s   R^2 {:.4} ({} blocks)",
            m.per_x, m.per_depth, m.constant_s, m.r2, m.samples
        );
    };
    line("t_in", "byte", &models.t_in);
    line("t_ex", "FLOP", &models.t_ex);
    line("t_out", "byte", &models.t_out);
    Ok(())
}
