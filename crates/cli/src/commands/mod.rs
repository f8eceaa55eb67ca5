//! One module per subcommand, each with its clap arguments and a `run`.

pub mod attention;
pub mod bench_io;
pub mod demo;
pub mod dvfo;
pub mod embed;
pub mod eval_attention;
pub mod eval_quant;
pub mod fit_delays;
pub mod generate;
pub mod inspect;
pub mod link;
pub mod mix;
pub mod offload;
pub mod pack;
pub mod partition;
pub mod plan;
pub mod profile;
pub mod run;
pub mod serve;
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

fn view(list: &[(String, std::path::PathBuf)]) -> Vec<edgerun_store::NamedPath<'_>> {
    list.iter()
        .map(|(flag, path)| edgerun_store::NamedPath { flag, path })
        .collect()
}

/// Refuses, before any work, outputs that name one file twice or name a file the command
/// reads: an input (`(flag, path)`, absent flags skipped) or one of `model`'s own files.
pub fn check_outputs(
    outputs: &[(&str, Option<&Path>)],
    inputs: &[(&str, Option<&Path>)],
    model: Option<&ModelSource>,
) -> Result<()> {
    let named = |list: &[(&str, Option<&Path>)]| -> Vec<(String, std::path::PathBuf)> {
        list.iter()
            .filter_map(|(flag, path)| path.map(|p| (flag.to_string(), p.to_path_buf())))
            .collect()
    };
    let outputs = named(outputs);
    let mut inputs = named(inputs);
    if let Some(model) = model {
        inputs.extend(
            model
                .files()
                .into_iter()
                .map(|f| (format!("the model's {}", f.display()), f)),
        );
    }
    edgerun_store::check_distinct(&view(&outputs), &view(&inputs))?;
    Ok(())
}
