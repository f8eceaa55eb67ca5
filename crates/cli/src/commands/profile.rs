//! `edgerun profile`: Hermes' Layer Profiler, written as JSON for `plan` and `run`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use edgerun_models::Inputs;
use edgerun_runtime::profile::{profile, Profile};
use edgerun_store::{read_inputs, ModelSource};

#[derive(Args)]
pub struct ProfileArgs {
    /// A packed store (edgerun pack).
    pub model: PathBuf,
    /// Inputs to profile with (default for text models: 128 token ids; required for images).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Streamed passes; compute times are their median.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub runs: usize,
    /// Where to write the profile.
    #[arg(long)]
    pub output: PathBuf,
}

/// The inputs a profile or plan runs on: the file given, or 128 token ids for text models.
pub fn profiling_inputs(source: &ModelSource, input: Option<&Path>) -> Result<Inputs> {
    if let Some(path) = input {
        return read_inputs(path).context("cannot read inputs");
    }
    Ok(edgerun_runtime::example_inputs(source)?)
}

pub fn run(args: ProfileArgs) -> Result<()> {
    let source = super::open_model(&args.model)?;
    super::check_outputs(
        &[("--output", Some(args.output.as_path()))],
        &[("--input", args.input.as_deref())],
        Some(&source),
    )?;
    let inputs = profiling_inputs(&source, args.input.as_deref())?;
    let profile = profile(&source, inputs, args.runs)?;
    edgerun_store::write_file(&args.output, serde_json::to_string_pretty(&profile)? + "\n")
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let read: u64 = profile.units.iter().map(|u| u.read_bytes).sum();
    let load: f64 = profile.units.iter().map(|u| u.load_s).sum();
    let compute: f64 = profile.units.iter().map(|u| u.compute_s).sum();
    eprintln!(
        "{}: {} units, {} bytes; cold load {load:.3} s, compute {compute:.3} s; read {}; wrote {}",
        profile.architecture,
        profile.units.len(),
        read,
        throughput_line(&profile),
        args.output.display()
    );
    Ok(())
}

fn throughput_line(profile: &Profile) -> String {
    profile
        .throughput
        .iter()
        .map(|t| format!("{} loader(s) {:.2} GB/s", t.loaders, t.bytes_per_s / 1e9))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a profile written by `edgerun profile` and validates it, against `model` where
/// given (a profile of another model would plan for units it does not have).
pub fn load_profile(path: &Path, model: Option<&dyn edgerun_models::Model>) -> Result<Profile> {
    let text = edgerun_store::read_metadata(path, "profile")
        .with_context(|| format!("cannot read profile {}", path.display()))?;
    let profile: Profile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an edgerun profile", path.display()))?;
    profile
        .validate()
        .and_then(|()| model.map_or(Ok(()), |m| profile.check_model(m)))
        .with_context(|| format!("{}", path.display()))?;
    Ok(profile)
}

/// A packed store, a budget, and the profile to plan with: what `plan` and `partition` share.
#[derive(clap::Args)]
pub struct BudgetedStore {
    /// A packed store (edgerun pack).
    pub model: PathBuf,
    /// The memory budget, e.g. 300MiB.
    #[arg(long, value_parser = super::strategy::parse_size)]
    pub budget: u64,
    /// A profile from `edgerun profile` (default: profile now, one pass).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Inputs to profile with when no --profile is given.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

impl BudgetedStore {
    /// The store and its profile (loaded, or measured now).
    pub fn open(&self) -> Result<(ModelSource, Profile)> {
        let source = super::open_model(&self.model)?;
        let profile = match &self.profile {
            Some(path) => load_profile(path, Some(source.model()?.as_ref()))?,
            None => profile(
                &source,
                profiling_inputs(&source, self.input.as_deref())?,
                1,
            )?,
        };
        Ok((source, profile))
    }
}
