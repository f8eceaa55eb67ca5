//! `edgerun embed`: sentence embeddings from text.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_runtime::{Session, SessionOptions};
use edgerun_store::{write_tensors, OutputTensor};

#[derive(Args)]
pub struct EmbedArgs {
    /// A sentence-transformers model folder (config.json, model.safetensors, tokenizer.json, 1_Pooling/).
    pub model: PathBuf,
    /// A text to embed; repeat for several.
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// Write `sentence_embedding` [texts, dim] here; otherwise print one JSON array per text.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let folder = super::open_model(&args.model)?;
    super::check_outputs(&[("--output", args.output.as_deref())], &[], Some(&folder))?;
    let session = Session::from_source(Arc::new(folder), SessionOptions::default())?;
    let embeddings = session.embed(&args.text)?;
    match &args.output {
        Some(path) => {
            write_tensors(
                path,
                &[(
                    "sentence_embedding".into(),
                    OutputTensor::F32(embeddings.clone()),
                )],
            )
            .context("cannot write outputs")?;
            eprintln!(
                "wrote {} embeddings of {} to {}",
                embeddings.shape()[0],
                embeddings.shape()[1],
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            for row in embeddings.values().chunks_exact(embeddings.shape()[1]) {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
    }
    Ok(())
}
