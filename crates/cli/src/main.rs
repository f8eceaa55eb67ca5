//! `edgerun`: run Hugging Face models on machines with little memory.
//!
//! Flags are parsed and validated here, at the edge; library errors arrive typed and are
//! printed as one `error:` line (with their causes) and exit status 1.

mod commands;
mod timeline;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgerun",
    version,
    about = "Run Hugging Face models on devices whose memory is smaller than the model"
)]
struct Cli {
    /// Worker threads for kernels, 1 to 256 (default: all cores).
    #[arg(long, global = true, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one forward pass and write the outputs transformers would return.
    Run(commands::run::RunArgs),
    /// Serve models on the Open Inference Protocol v2 (KServe, Triton clients), whole or
    /// from a split stage on.
    Serve(commands::serve::ServeArgs),
    /// Greedy decoding with a causal language model (GPT-2, GPT-J).
    Generate(commands::generate::GenerateArgs),
    /// Sentence embeddings with a sentence-transformers model folder.
    Embed(commands::embed::EmbedArgs),
    /// Every attention variant (Taylor, SimA, shift-softmax, fixed point) against softmax:
    /// FLOPs and fidelity on one model and input.
    EvalAttention(commands::eval_attention::EvalAttentionArgs),
    /// A quantised store against the f32 store of the same model: cosine, top-1 agreement and
    /// error of every output and of every layer's hidden state.
    EvalQuant(commands::eval_quant::EvalQuantArgs),
    /// Architecture, parameters, and bytes and dtypes per stage.
    Inspect(commands::inspect::InspectArgs),
    /// Pack an HF folder into a store of aligned, checksummed units.
    Pack(commands::pack::PackArgs),
    /// Write a randomly initialised model with a real published config.
    Synth(commands::synth::SynthArgs),
    /// Layer Profiler: per-unit bytes, FLOPs, cold load, compute and free times, read throughput.
    Profile(commands::profile::ProfileArgs),
    /// Pipeline Planner: loading agents for a budget, with predicted latency and peak.
    Plan(commands::plan::PlanArgs),
    /// SwapNet's partitioner: blocks of consecutive units for a budget, with predicted delays.
    Partition(commands::partition::PartitionArgs),
    /// SwapNet's delay models (t_in, t_ex, t_out linear in size and depth) fitted over models.
    FitDelays(commands::fit_delays::FitDelaysArgs),
    /// Several models under one memory cap (SwapNet): quotas, blocks, round robin.
    Mix(commands::mix::MixArgs),
    /// Cold sequential read throughput of a file, buffered and O_DIRECT.
    BenchIo(commands::bench_io::BenchIoArgs),
    /// Accelerator simulators: a systolic GEMM, a ViT on the SAMM, a ViT encoder on the ARAP.
    #[command(subcommand)]
    Sim(commands::sim::SimCommand),
    /// DVFO: a learned controller for CPU and memory levels, split point and boundary
    /// compression on a modelled edge board, against baselines and an exhaustive oracle.
    #[command(subcommand)]
    Dvfo(commands::dvfo::DvfoCommand),
    /// Synthesize BERT-base and run it: the quick start.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    // Freed unit buffers must leave the process: glibc serves allocations above this size with
    // their own mappings and returns them on free, instead of keeping them in its heap.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        edgerun_tensor::parallel::set_threads(threads);
    }
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::EvalAttention(args) => commands::eval_attention::run(args),
        Command::EvalQuant(args) => commands::eval_quant::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Pack(args) => commands::pack::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Sim(command) => commands::sim::run(command),
        Command::Demo(args) => commands::demo::run(args),
        Command::Dvfo(command) => commands::dvfo::run(command),
        Command::BenchIo(args) => commands::bench_io::run(args),
        Command::Profile(args) => commands::profile::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Partition(args) => commands::partition::run(args),
        Command::FitDelays(args) => commands::fit_delays::run(args),
        Command::Mix(args) => commands::mix::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn chain(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
