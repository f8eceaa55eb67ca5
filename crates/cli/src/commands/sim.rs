//! `edgerun sim`: the accelerator simulators.

use anyhow::Result;
use clap::Subcommand;

use super::{sim_gemm, sim_samm};

#[derive(Subcommand)]
pub enum SimCommand {
    /// One GEMM on a cycle-level systolic array (cycles equal SCALE-Sim 3.0.0's).
    Gemm(sim_gemm::SimGemmArgs),
    /// A ViT on the ViTALiTy SAMM accelerator: cycles per stage, utilisation, power.
    Samm(sim_samm::SimSammArgs),
}

pub fn run(command: SimCommand) -> Result<()> {
    match command {
        SimCommand::Gemm(args) => sim_gemm::run(args),
        SimCommand::Samm(args) => sim_samm::run(args),
    }
}
