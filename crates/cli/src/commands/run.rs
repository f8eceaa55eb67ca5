//! `edgerun run`: one forward pass from an input file to an output file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_store::{read_inputs, write_tensors, OutputTensor};

use super::attention::AttentionArgs;
use super::strategy::StrategyArgs;

#[derive(Args)]
pub struct RunArgs {
    /// A Hugging Face model folder (config.json + safetensors) or a packed store.
    pub model: PathBuf,
    /// Inputs as transformers names them: input_ids, attention_mask, token_type_ids or pixel_values.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the outputs (last_hidden_state, pooler_output, logits).
    #[arg(long)]
    pub output: PathBuf,
    /// Also write hidden_states.N, as output_hidden_states=True.
    #[arg(long)]
    pub hidden_states: bool,
    #[command(flatten)]
    pub attention: AttentionArgs,
    #[command(flatten)]
    pub strategy: StrategyArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let source = Arc::new(super::open_model(&args.model)?);
    let mut outputs = vec![("--output", Some(args.output.as_path()))];
    outputs.extend(args.strategy.output_paths());
    super::check_outputs(
        &outputs,
        &[
            ("--input", Some(args.input.as_path())),
            ("--profile", args.strategy.profile.as_deref()),
        ],
        Some(&source),
    )?;
    let attention = args.attention.algorithm(source.model()?.as_ref())?;
    let inputs = read_inputs(&args.input).context("cannot read inputs")?;
    let started = Instant::now();
    let session = args.strategy.session(source, attention, false)?;
    let outputs = session.run(inputs, args.hidden_states)?;
    let wall = started.elapsed();
    let tensors: Vec<_> = outputs
        .tensors
        .into_iter()
        .map(|(n, t)| (n, OutputTensor::F32(t)))
        .collect();
    write_tensors(&args.output, &tensors).context("cannot write outputs")?;
    args.strategy.finish(&session, wall)
}
