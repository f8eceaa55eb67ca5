//! `edgerun generate`: greedy decoding from token ids or a text prompt.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgerun_models::tokenizer::Tokenizer;
use edgerun_store::{read_inputs, write_tensors, OutputTensor};

use super::attention::AttentionArgs;
use super::strategy::StrategyArgs;

#[derive(Args)]
pub struct GenerateArgs {
    /// A causal language model folder (GPT-2, GPT-J).
    pub model: PathBuf,
    /// Prompt token ids (input_ids, optional attention_mask) in a safetensors file.
    #[arg(long, conflicts_with = "prompt", required_unless_present = "prompt")]
    pub input: Option<PathBuf>,
    /// A text prompt, tokenized with the folder's tokenizer.json.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Tokens to generate after the prompt.
    #[arg(long, default_value_t = 20)]
    pub max_new_tokens: usize,
    /// Write `sequences` (int64, prompt + new tokens) here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub attention: AttentionArgs,
    #[command(flatten)]
    pub strategy: StrategyArgs,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let folder = Arc::new(super::open_model(&args.model)?);
    let mut outputs = vec![("--output", args.output.as_deref())];
    outputs.extend(args.strategy.output_paths());
    super::check_outputs(
        &outputs,
        &[
            ("--input", args.input.as_deref()),
            ("--profile", args.strategy.profile.as_deref()),
        ],
        Some(&folder),
    )?;
    let attention = args.attention.algorithm(folder.model()?.as_ref())?;
    let tokenizer = match &args.prompt {
        Some(_) => {
            let Some(json) = folder.read_optional("tokenizer.json")? else {
                bail!(
                    "{} has no tokenizer.json: pass token ids with --input instead of --prompt",
                    args.model.display()
                )
            };
            Some(Tokenizer::from_bytes(&json)?)
        }
        None => None,
    };
    let inputs = match (&args.input, &args.prompt, &tokenizer) {
        (Some(path), _, _) => read_inputs(path).context("cannot read inputs")?,
        (None, Some(prompt), Some(tok)) => {
            let mut inputs = tok.encode_batch(std::slice::from_ref(prompt))?;
            inputs.token_type_ids = None;
            inputs
        }
        _ => bail!("give --input or --prompt"),
    };
    let prompt_len = inputs.ids()?.dims2("input_ids")?.1;
    let started = Instant::now();
    let session = args.strategy.session(folder, attention, true)?;
    let sequences = session.generate(inputs, args.max_new_tokens, true)?;
    let elapsed = started.elapsed();
    if let Some(tok) = &tokenizer {
        println!("{}", tok.decode(&sequences.values)?);
    } else if args.output.is_none() {
        println!("{:?}", sequences.values);
    }
    if let Some(path) = &args.output {
        write_tensors(
            path,
            &[("sequences".into(), OutputTensor::I64(sequences.clone()))],
        )
        .context("cannot write outputs")?;
    }
    eprintln!(
        "{} tokens ({} new)",
        sequences.shape[1],
        sequences.shape[1] - prompt_len
    );
    args.strategy.finish(&session, elapsed)
}
