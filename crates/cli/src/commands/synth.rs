//! `edgerun synth`: a random model with a real published config, for benchmarks at real size.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use edgerun_models::presets::NAMES;
use edgerun_store::synth::{synthesize, SynthOptions};
use edgerun_tensor::DType;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct SynthArgs {
    /// One of: bert-base, bert-large, vit-base-16, vit-large-16, gpt2, gpt2-medium, gpt-j-6b, resnet-50, resnet-101.
    #[arg(long)]
    pub arch: String,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype of the weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Seed of the deterministic weight generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest shard in bytes before the checkpoint is split, as save_pretrained does.
    #[arg(long, default_value_t = 5_000_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_bytes: u64,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let dtype = DType::parse(&args.dtype)
        .ok_or_else(|| anyhow!("unknown --dtype {:?} (f32, f16, bf16)", args.dtype))?;
    if !NAMES.contains(&args.arch.as_str()) {
        return Err(anyhow!(
            "unknown --arch {:?}; choose one of {}",
            args.arch,
            NAMES.join(", ")
        ));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("synth {}", args.arch));
    let options = SynthOptions {
        dtype,
        shard_bytes: args.shard_bytes.max(1),
        seed: args.seed,
    };
    let summary = synthesize(&args.arch, &args.out, &options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "{}: {} parameters, {} bytes in {} file(s) under {}",
        args.arch,
        summary.parameters,
        summary.bytes,
        summary.shards,
        args.out.display()
    );
    Ok(())
}
