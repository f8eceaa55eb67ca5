//! `edgerun pack`: an HF folder to a packed store (manifest.json + weights.bin).

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use edgerun_store::packed::pack;
use edgerun_store::HfFolder;
use edgerun_tensor::DType;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct PackArgs {
    /// The Hugging Face folder to pack.
    pub model: PathBuf,
    /// The store to write (created if missing).
    pub out: PathBuf,
    /// Convert every tensor to f32, f16 or bf16 (default: keep each tensor's dtype).
    #[arg(long)]
    pub dtype: Option<String>,
}

pub fn run(args: PackArgs) -> Result<()> {
    let dtype = match &args.dtype {
        Some(name) => Some(
            DType::parse(name)
                .ok_or_else(|| anyhow!("unknown --dtype {name:?} (f32, f16, bf16)"))?,
        ),
        None => None,
    };
    let folder = HfFolder::open(&args.model)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("pack [{bar:30}] {pos}/{len} units, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let summary = pack(&folder, &args.out, dtype, &mut |done, total| {
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
