//! Runs a model from a program of your own, without the CLI: open a packed store (or a
//! Hugging Face folder) as a session under a memory budget, run one pass on an input file, and
//! print the outputs and what the pass cost.
//!
//! cargo run --release -p edgerun-runtime --example run_under_budget -- STORE INPUTS [BUDGET]

use std::path::PathBuf;
use std::process::ExitCode;

use edgerun_runtime::size::parse_size;
use edgerun_runtime::{human_bytes, Session, SessionOptions, Strategy};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: run_under_budget STORE INPUTS [BUDGET]";
    let model = PathBuf::from(args.next().ok_or(usage)?);
    let inputs = PathBuf::from(args.next().ok_or(usage)?);
    let budget = args.next().map(|b| parse_size(&b)).transpose()?;
    let session = Session::open(
        &model,
        SessionOptions {
            // Under a budget, PipeLoad overlaps reading with compute; without one, load all.
            strategy: if budget.is_some() {
                Strategy::Pipeload
            } else {
                Strategy::Full
            },
            budget,
            ..SessionOptions::default()
        },
    )?;
    let outputs = session.run(edgerun_store::read_inputs(&inputs)?, false)?;
    for (name, tensor) in &outputs.tensors {
        println!("{name} {:?}", tensor.shape());
    }
    let stats = session.stats();
    println!(
        "{}: compute {:.3} s, read {}, peak {} of budget {}",
        session.model().architecture(),
        stats.compute_s,
        human_bytes(stats.bytes_read),
        human_bytes(session.governor().peak()),
        budget.map_or("none".into(), human_bytes),
    );
    Ok(())
}
