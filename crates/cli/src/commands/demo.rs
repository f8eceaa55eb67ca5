//! `edgerun demo`: synthesizes BERT-base (once) and runs it, timing load and forward.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use edgerun_models::{IdTensor, Inputs, RunOptions};
use edgerun_runtime::{Executor, FullExecutor};
use edgerun_store::synth::{synthesize, SynthOptions};
use edgerun_store::{HfFolder, ModelSource};

#[derive(Args)]
pub struct DemoArgs {
    /// Where the synthesized model is kept between runs.
    #[arg(long, default_value = "models/demo-bert-base")]
    pub dir: PathBuf,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=512))]
    pub seq: usize,
    /// Forward passes to time.
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub runs: usize,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if !args.dir.join("config.json").exists() {
        eprintln!("synthesizing bert-base into {} ...", args.dir.display());
        synthesize(
            "bert-base",
            &args.dir,
            &SynthOptions::default(),
            &mut |_, _| {},
        )?;
    }
    let started = Instant::now();
    let folder = HfFolder::open(&args.dir)?;
    let weight_bytes = folder.weight_bytes();
    let executor = FullExecutor::load(&ModelSource::Hf(folder))?;
    let load_s = started.elapsed().as_secs_f64();
    let ids: Vec<i64> = (0..args.seq as i64)
        .map(|i| 101 + (i * 7919) % 30000)
        .collect();
    let inputs = Inputs {
        input_ids: Some(IdTensor::new(vec![1, args.seq], ids)?),
        ..Inputs::default()
    };
    let mut times = Vec::new();
    let mut checksum = 0.0f64;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let out = executor.forward(inputs.clone(), RunOptions::default())?;
        times.push(t.elapsed().as_secs_f64());
        checksum = out
            .get("pooler_output")
            .map(|p| p.values().iter().map(|&v| v as f64).sum())
            .unwrap_or(0.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} ({} parameters, {:.0} MiB): loaded in {:.3} s; forward of 1x{} tokens: median {:.1} ms over {} runs (pooler checksum {checksum:.4})",
        executor.model().architecture(),
        executor.model().parameters(),
        weight_bytes as f64 / (1 << 20) as f64,
        load_s,
        args.seq,
        times[times.len() / 2] * 1e3,
        times.len()
    );
    Ok(())
}
