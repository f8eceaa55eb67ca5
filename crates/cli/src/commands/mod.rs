//! One module per subcommand, each with its clap arguments and a `run`.

pub mod demo;
pub mod embed;
pub mod generate;
pub mod inspect;
pub mod run;
pub mod synth;

use std::path::Path;

use anyhow::{Context, Result};
use edgerun_store::HfFolder;

/// Opens MODEL (a Hugging Face folder) with the path in the error.
pub fn open_model(path: &Path) -> Result<HfFolder> {
    HfFolder::open(path).with_context(|| format!("cannot open model {}", path.display()))
}
