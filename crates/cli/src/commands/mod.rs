//! One module per subcommand, each with its clap arguments and a `run`.

pub mod attention;
pub mod bench_io;
pub mod demo;
pub mod embed;
pub mod eval_attention;
pub mod fit_delays;
pub mod generate;
pub mod inspect;
pub mod mix;
pub mod pack;
pub mod partition;
pub mod plan;
pub mod profile;
pub mod run;
pub mod sim;
pub mod sim_arap;
pub mod sim_gemm;
pub mod sim_samm;
pub mod strategy;
pub mod synth;

use std::path::Path;

use anyhow::{Context, Result};
use edgerun_store::ModelSource;

/// Opens MODEL (a Hugging Face folder or a packed store) with the path in the error.
pub fn open_model(path: &Path) -> Result<ModelSource> {
    ModelSource::open(path).with_context(|| format!("cannot open model {}", path.display()))
}
