//! `edgerun sim`: the accelerator simulators.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use edgerun_models::{Inputs, Model};
use edgerun_store::{read_inputs, ModelSource};
use edgerun_tensor::Tensor;

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

/// One `[1, channels, size, size]` image of reproducible values in [-1, 1).
pub fn default_image(config_json: &str) -> Result<Inputs> {
    let config: serde_json::Value = serde_json::from_str(config_json)?;
    let get = |key: &str, default: u64| {
        config.get(key).and_then(|v| v.as_u64()).unwrap_or(default) as usize
    };
    let (channels, size) = (get("num_channels", 3), get("image_size", 224));
    let values: Vec<f32> = (0..channels * size * size)
        .map(|i| ((i as f32 * 0.618_034).fract() * 2.0) - 1.0)
        .collect();
    Ok(Inputs {
        pixel_values: Some(Tensor::from_vec(&[1, channels, size, size], values)?),
        ..Inputs::default()
    })
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
        None => default_image(&source.config_json())?,
    };
    Ok((source, model, inputs))
}
