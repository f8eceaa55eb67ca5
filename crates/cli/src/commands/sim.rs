//! `edgerun sim`: the accelerator simulators.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use edgerun_models::{Inputs, Model};
use edgerun_store::{read_inputs, ModelSource};

use super::{sim_arap, sim_gemm, sim_samm};

#[derive(Subcommand)]
pub enum SimCommand {
    /// One GEMM on a cycle-level systolic array (cycles equal SCALE-Sim 3.0.0's).
    Gemm(sim_gemm::SimGemmArgs),
    /// A ViT on the ViTALiTy SAMM accelerator: cycles per stage, utilisation, power.
    Samm(sim_samm::SimSammArgs),
    /// A ViT encoder compiled for the ARAP reconfigurable array and run cycle by cycle.
    Arap(sim_arap::SimArapArgs),
}

pub fn run(command: SimCommand) -> Result<()> {
    match command {
        SimCommand::Gemm(args) => sim_gemm::run(args),
        SimCommand::Samm(args) => sim_samm::run(args),
        SimCommand::Arap(args) => sim_arap::run(args),
    }
}

/// Opens `path` for simulator `which` (`samm`, `arap`), refusing anything but a ViT, and its
/// inputs: the file `input`, else one default image.
pub fn open_vit(
    path: &Path,
    input: Option<&Path>,
    which: &str,
) -> Result<(ModelSource, Box<dyn Model>, Inputs)> {
    let source = super::open_model(path)?;
    let model = source.model()?;
    if !model.architecture().starts_with("ViT") {
        bail!(
            "sim {which} runs ViT models; {} is a {}",
            path.display(),
            model.architecture()
        );
    }
    let inputs = match input {
        Some(file) => read_inputs(file).context("cannot read inputs")?,
        None => edgerun_runtime::example::example_image(&source.config_json())?,
    };
    Ok((source, model, inputs))
}
