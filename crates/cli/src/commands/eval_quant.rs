//! `edgerun eval-quant`: a quantised store against the f32 store of the same model, output by
//! output and layer by layer.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_runtime::{evaluate_quantisation, EvalInput, TensorComparison};
use edgerun_store::read_inputs;
use serde_json::json;

#[derive(Args)]
pub struct EvalQuantArgs {
    /// The reference: an f32 packed store (or the Hugging Face folder it was packed from).
    pub reference: PathBuf,
    /// The same model packed with --dtype int8 or q4 (or any other store of it).
    pub quantised: PathBuf,
    /// Model inputs (input_ids/attention_mask or pixel_values).
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    pub input: Option<PathBuf>,
    /// A sentence for a sentence-transformers model (repeatable); compares the pooled
    /// embeddings and the encoder's layers.
    #[arg(long)]
    pub text: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvalQuantArgs) -> Result<()> {
    let reference = super::open_model(&args.reference)?;
    let quantised = super::open_model(&args.quantised)?;
    let input = match &args.input {
        Some(path) => {
            EvalInput::Tensors(Box::new(read_inputs(path).context("cannot read inputs")?))
        }
        None => EvalInput::Texts(args.text.clone()),
    };
    let report = evaluate_quantisation(&reference, &quantised, &input)?;
    if args.json {
        let rows = |v: &[TensorComparison]| v.iter().map(row_json).collect::<Vec<_>>();
        let doc = json!({
            "reference": args.reference,
            "quantised": args.quantised,
            "outputs": rows(&report.outputs),
            "hidden_states": rows(&report.hidden_states),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("outputs:");
    print_table(&report.outputs);
    if !report.hidden_states.is_empty() {
        println!("\nhidden states (each stage's output; the error a layer adds is the step from the row above):");
        print_table(&report.hidden_states);
    }
    if report.outputs.iter().any(|r| !r.finite) {
        eprintln!("warning: the quantised store gave non-finite outputs (marked above)");
    }
    Ok(())
}

fn row_json(r: &TensorComparison) -> serde_json::Value {
    json!({
        "name": r.name,
        "stage": r.stage,
        "mean_cosine": r.mean_cosine,
        "min_cosine": r.min_cosine,
        "max_abs_error": r.max_abs_error,
        "reference_max": r.reference_max,
        "top1_agreement": r.top1_agreement,
        "finite": r.finite,
    })
}

fn print_table(rows: &[TensorComparison]) {
    println!(
        "{:<28} {:<28} {:>10} {:>10} {:>12} {:>12} {:>7}",
        "tensor", "stage", "mean cos", "min cos", "max |error|", "max |ref|", "top-1"
    );
    for r in rows {
        let top1 = r
            .top1_agreement
            .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0));
        println!(
            "{:<28} {:<28} {:>10.6} {:>10.6} {:>12.4e} {:>12.4e} {:>7}{}",
            r.name,
            r.stage.as_deref().unwrap_or("-"),
            r.mean_cosine,
            r.min_cosine,
            r.max_abs_error,
            r.reference_max,
            top1,
            if r.finite { "" } else { "  NON-FINITE" }
        );
    }
}
