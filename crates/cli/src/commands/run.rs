//! `edgerun run`: one forward pass from an input file to an output file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_store::{read_inputs, write_tensors, OutputTensor};

use super::attention::AttentionArgs;
use super::offload::OffloadArgs;
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
    #[command(flatten)]
    pub offload: OffloadArgs,
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
    args.offload.check()?;
    let model = source.model()?;
    let attention = args.attention.algorithm(model.as_ref())?;
    let inputs = read_inputs(&args.input).context("cannot read inputs")?;
    let offload = args.offload.plan(
        &args.model,
        model.as_ref(),
        &inputs,
        args.strategy.profile.as_deref(),
    )?;
    let started = Instant::now();
    let part = offload.as_ref().map(|o| 0..o.split);
    let session = args.strategy.part_session(source, attention, false, part)?;
    let outputs = match &offload {
        None => session.run(inputs, args.hidden_states)?.tensors,
        Some(o) => {
            let (outputs, report) = edgerun_serve::split::run_split(
                &session,
                &o.client,
                &o.name,
                inputs,
                o.split,
                args.offload.compress,
                args.hidden_states,
            )?;
            eprintln!(
                "offload: stages 0..{} here ({:.1} ms), {}..{} on {} ({:.1} ms); sent {} bytes ({}), received {}",
                report.split,
                report.edge_s * 1e3,
                report.split,
                report.stages,
                o.client.url(),
                report.remote_s * 1e3,
                report.sent_bytes,
                args.offload.compress,
                report.received_bytes
            );
            outputs
        }
    };
    let wall = started.elapsed();
    let tensors: Vec<_> = outputs
        .into_iter()
        .map(|(n, t)| (n, OutputTensor::F32(t)))
        .collect();
    write_tensors(&args.output, &tensors).context("cannot write outputs")?;
    args.strategy.finish(&session, wall)
}
