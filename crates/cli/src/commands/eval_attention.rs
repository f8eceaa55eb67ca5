//! `edgerun eval-attention`: every attention variant on one model and input, against softmax.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgerun_runtime::{evaluate_attention, EvalInput, VariantReport};
use edgerun_store::read_inputs;
use edgerun_tensor::fixed::QFormat;
use edgerun_tensor::kernels::{AttentionAlgorithm, AttentionVariant, Centre};
use serde_json::json;

use super::attention::FixedPointArgs;

#[derive(Args)]
pub struct EvalAttentionArgs {
    /// A Hugging Face folder or packed store (BERT, ViT, GPT-2, GPT-J).
    pub model: PathBuf,
    /// Model inputs (input_ids/attention_mask or pixel_values); compares logits if the model has
    /// them, else last_hidden_state.
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    pub input: Option<PathBuf>,
    /// A sentence for a sentence-transformers folder (repeatable); compares the pooled
    /// embeddings.
    #[arg(long)]
    pub text: Vec<String>,
    /// Fixed-point arithmetic of the taylor and shift-softmax rows (default Q8.8).
    #[command(flatten)]
    pub fixed: FixedPointArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EvalAttentionArgs) -> Result<()> {
    let source = super::open_model(&args.model)?;
    let input = match &args.input {
        Some(path) => {
            EvalInput::Tensors(Box::new(read_inputs(path).context("cannot read inputs")?))
        }
        None => EvalInput::Texts(args.text.clone()),
    };
    let fixed = args.fixed.parse(Some(QFormat::new(8, 8)?))?;
    let f32_variants = [
        AttentionVariant::Taylor(Centre::Tokens),
        AttentionVariant::Taylor(Centre::Features),
        AttentionVariant::Sima,
        AttentionVariant::ShiftSoftmax,
    ];
    let mut algorithms: Vec<AttentionAlgorithm> = f32_variants
        .iter()
        .map(|&v| AttentionAlgorithm::new(v, None))
        .collect::<Result<_, _>>()?;
    for variant in [
        AttentionVariant::Taylor(Centre::Tokens),
        AttentionVariant::ShiftSoftmax,
    ] {
        algorithms.push(AttentionAlgorithm::new(variant, fixed)?);
    }
    let reports = evaluate_attention(&source, &input, &algorithms)?;
    if reports.iter().any(|r| r.skipped.is_none() && !r.finite) && !args.json {
        eprintln!("warning: a variant produced non-finite outputs (marked below)");
    }
    if args.json {
        let rows: Vec<_> = reports.iter().map(report_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "variants": rows }))?
        );
        return Ok(());
    }
    print_table(&reports);
    if reports.len() < 2 {
        bail!("no variant ran");
    }
    Ok(())
}

fn arithmetic(r: &VariantReport) -> String {
    r.algorithm
        .fixed_point
        .map_or("f32".to_string(), |fp| fp.to_string())
}

fn report_json(r: &VariantReport) -> serde_json::Value {
    let number = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
    json!({
        "attention": r.algorithm.variant.name(),
        "arithmetic": arithmetic(r),
        "output": r.output,
        "attention_flops": r.attention_flops,
        "mean_cosine": number(r.mean_cosine),
        "min_cosine": number(r.min_cosine),
        "top1_agreement": r.top1_agreement,
        "finite": r.finite,
        "skipped": r.skipped,
    })
}

fn print_table(reports: &[VariantReport]) {
    let reference_flops = reports.first().map_or(0, |r| r.attention_flops).max(1) as f64;
    if let Some(first) = reports.first() {
        println!("compared output: {}", first.output);
    }
    println!(
        "{:<16} {:<40} {:>12} {:>8} {:>10} {:>10} {:>7}",
        "attention", "arithmetic", "attn MFLOP", "x ref", "mean cos", "min cos", "top-1"
    );
    for r in reports {
        if let Some(why) = &r.skipped {
            println!(
                "{:<16} {:<40} skipped: {why}",
                r.algorithm.variant.name(),
                arithmetic(r)
            );
            continue;
        }
        let top1 = r
            .top1_agreement
            .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0));
        println!(
            "{:<16} {:<40} {:>12.3} {:>8.3} {:>10.6} {:>10.6} {:>7}{}",
            r.algorithm.variant.name(),
            arithmetic(r),
            r.attention_flops as f64 / 1e6,
            r.attention_flops as f64 / reference_flops,
            r.mean_cosine,
            r.min_cosine,
            top1,
            if r.finite { "" } else { "  NON-FINITE" }
        );
    }
}
