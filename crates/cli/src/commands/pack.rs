//! `edgerun pack`: an HF folder to a packed store (manifest.json + weights.bin).

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use edgerun_store::packed::{pack_with, PackOptions};
use edgerun_store::HfFolder;
use edgerun_tensor::quant::QuantFormat;
use edgerun_tensor::DType;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct PackArgs {
    /// The Hugging Face folder to pack.
    pub model: PathBuf,
    /// The store to write (created if missing).
    pub out: PathBuf,
    /// f32, f16 or bf16: convert every tensor (default: keep each tensor's dtype). int8 or
    /// q4: quantise matrix weights (Linear, Conv1D, convolutions, a tied LM head) to 8 bits
    /// per weight with a scale per output, or to 4 bits in blocks of 32 inputs with an f16
    /// scale each; norms, biases and embedding tables keep their dtype.
    #[arg(long)]
    pub dtype: Option<String>,
    /// With int8 or q4: keep matrix weights whose names match PATTERN in f16 (`*` matches any
    /// run of characters, e.g. `lm_head.weight` or `*.conv1.*`). Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub keep: Vec<String>,
}

pub fn run(args: PackArgs) -> Result<()> {
    let mut options = PackOptions {
        keep: args.keep.clone(),
        ..PackOptions::default()
    };
    if let Some(name) = &args.dtype {
        match (DType::parse(name), QuantFormat::parse(name)) {
            (Some(dtype), _) => options.dtype = Some(dtype),
            (None, Some(format)) => options.quant = Some(format),
            (None, None) => {
                return Err(anyhow!(
                    "unknown --dtype {name:?} (f32, f16, bf16, int8 or q4)"
                ))
            }
        }
    }
    if !options.keep.is_empty() && options.quant.is_none() {
        return Err(anyhow!(
            "--keep applies to quantised packs (--dtype int8 or q4)"
        ));
    }
    let folder = HfFolder::open(&args.model)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("pack [{bar:30}] {pos}/{len} units, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let summary = pack_with(&folder, &args.out, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "packed {} units, {} bytes, into {}",
        summary.units,
        summary.data_bytes,
        args.out.display()
    );
    Ok(())
}
