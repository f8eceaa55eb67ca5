//! `edgerun sim arap`: a Hugging Face ViT's encoder compiled for the ARAP reconfigurable
//! array, run cycle by cycle, and compared with the f32 model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use edgerun_accel::arap::bound::LAMBDA;
use edgerun_accel::arap::compiler::{compile, EncoderWeights, LayerWeights};
use edgerun_accel::arap::isa::disassemble;
use edgerun_accel::arap::machine::run as run_machine;
use edgerun_accel::arap::{resources, trace};
use edgerun_models::RunOptions;
use edgerun_runtime::{Executor, FullExecutor};
use edgerun_tensor::fixed::QFormat;
use edgerun_tensor::{kernels, Tensor};
use serde_json::json;

use super::attention::FixedPointArgs;

#[derive(Args)]
pub struct SimArapArgs {
    /// A Hugging Face ViT folder (or packed store), e.g. the vit-tiny fixture.
    #[arg(long)]
    pub model: PathBuf,
    /// pixel_values in a safetensors file (default: one reproducible pseudo-random image).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Encoder layers to compile: a number, or `all` (then the final layernorm too).
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// Token rows per tile of the attention-output / FFN pipeline between PEG00 and PEG10.
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub tile_rows: usize,
    /// Data format (default Q6.10: ViT activations after layernorm stay within +-32).
    #[command(flatten)]
    pub fixed: FixedPointArgs,
    /// Write a Chrome trace (a track per PEG) here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the program as assembly text here.
    #[arg(long)]
    pub asm: Option<PathBuf>,
    /// Print JSON: cycles, rel_error, utilization, handshake_stall_cycles, instruction_counts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SimArapArgs) -> Result<()> {
    let (source, model, inputs) = super::sim::open_vit(&args.model, args.input.as_deref(), "arap")?;
    super::check_outputs(
        &[
            ("--trace", args.trace.as_deref()),
            ("--asm", args.asm.as_deref()),
        ],
        &[("--input", args.input.as_deref())],
        Some(&source),
    )?;
    let config: serde_json::Value = serde_json::from_str(&source.config_json())?;
    let get = |key: &str| config.get(key).and_then(|v| v.as_u64()).map(|v| v as usize);
    let (Some(hidden), Some(heads), Some(intermediate), Some(total_layers)) = (
        get("hidden_size"),
        get("num_attention_heads"),
        get("intermediate_size"),
        get("num_hidden_layers"),
    ) else {
        bail!("config.json lacks hidden_size, num_attention_heads, intermediate_size or num_hidden_layers");
    };
    let layers = match args.layers.as_str() {
        "all" => total_layers,
        n => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= total_layers)
            .with_context(|| {
                format!("--layers takes a number up to {total_layers} or `all`, not `{n}`")
            })?,
    };
    let fp = args
        .fixed
        .parse(Some(QFormat::new(6, 10)?))?
        .expect("a default format");
    let executor = FullExecutor::load(&source)?;
    let outputs = executor.forward(
        inputs,
        RunOptions {
            hidden_states: true,
            ..RunOptions::default()
        },
    )?;
    let embeddings = outputs
        .get("hidden_states.0")
        .context("the model recorded no embeddings")?;
    // A bare ViTModel returns the final layernorm's output; a classifier only the layers'.
    let final_norm = layers == total_layers && outputs.get("last_hidden_state").is_some();
    let expected_name = if final_norm {
        "last_hidden_state".to_string()
    } else {
        format!("hidden_states.{layers}")
    };
    let expected = outputs
        .get(&expected_name)
        .with_context(|| format!("the model returned no {expected_name}"))?;
    let weights = encoder_weights(&executor, hidden, heads, intermediate, layers, final_norm)?;

    let [batch, tokens, width] = *embeddings.shape() else {
        bail!("embeddings are not [batch, tokens, hidden]")
    };
    ensure!(
        width == hidden,
        "embeddings are {width} wide, config says {hidden}"
    );
    let (emb, want) = (embeddings.contiguous(), expected.contiguous());
    let mut cycles = 0u64;
    let (mut err2, mut bound2, mut norm2) = (0f64, 0f64, 0f64);
    let mut last = None;
    // Frames go through the array one at a time.
    for frame in 0..batch {
        let input = &emb.values()[frame * tokens * hidden..(frame + 1) * tokens * hidden];
        let compiled = compile(&weights, input, tokens, &fp, args.tile_rows)?;
        let result = run_machine(&compiled.program, &fp)?;
        if let Err(why) = trace::check(&result.records) {
            bail!("the trace checker rejects the run: {why}");
        }
        cycles += result.cycles;
        let reference = &want.values()[frame * tokens * hidden..(frame + 1) * tokens * hidden];
        let out = compiled.output;
        for (i, &r) in reference.iter().enumerate() {
            let word = out.base + (i / hidden) * out.stride + i % hidden;
            let got = fp.format.to_f32(result.activations[word]) as f64;
            err2 += (got - r as f64).powi(2);
            bound2 += (LAMBDA * result.activation_error[word]).powi(2);
            norm2 += (r as f64).powi(2);
        }
        last = Some((compiled, result));
    }
    let (compiled, result) = last.expect("a batch has at least one frame");
    let rel_error = (err2 / norm2.max(f64::MIN_POSITIVE)).sqrt();
    let rel_bound = (bound2 / norm2.max(f64::MIN_POSITIVE)).sqrt();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for ins in &compiled.program.instructions {
        *counts.entry(ins.op.mnemonic()).or_default() += batch as u64;
    }
    if let Some(path) = &args.trace {
        edgerun_store::write_file(
            path,
            serde_json::to_vec(&trace::chrome_trace(&result.records))?,
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.asm {
        edgerun_store::write_file(path, disassemble(&compiled.program.instructions))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let utilization: BTreeMap<String, f64> = result
        .pegs
        .iter()
        .map(|p| (p.name.clone(), p.utilization))
        .collect();
    let stalls: u64 = result.pegs.iter().map(|p| p.handshake_stall_cycles).sum();
    let variants = resources::estimate();
    let saving = 1.0 - variants[0].luts as f64 / variants[1].luts as f64;
    if args.json {
        let value = json!({
            "model": model.architecture(),
            "layers": layers,
            "frames": batch,
            "tokens": tokens,
            "fixed_point": fp.to_string(),
            "compared_with": expected_name,
            "cycles": cycles,
            "rel_error": rel_error,
            "rel_error_bound": rel_bound,
            "bound_informative": rel_bound < 1.0,
            "utilization": utilization,
            "handshake_stall_cycles": stalls,
            "issue_stall_cycles": result.issue_stall_cycles,
            "pegs": result.pegs,
            "instruction_counts": counts,
            "trace_check": "passed",
            "softmax_max_abs_error": result.softmax_max_abs_error,
            "softmax_mean_abs_error": result.softmax_mean_abs_error,
            "resources": {"variants": variants, "logic_saving": saving},
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "ARAP: {} layers of a {}-wide, {}-head ViT, {} tokens x {} frame(s), {}",
        layers, hidden, heads, tokens, batch, fp
    );
    println!("cycles: {cycles} (last frame {})", result.cycles);
    println!(
        "{:<6} {:>12} {:>12} {:>14} {:>8}",
        "group", "busy", "reconfigure", "handshake wait", "util"
    );
    for p in &result.pegs {
        println!(
            "{:<6} {:>12} {:>12} {:>14} {:>7.1}%",
            p.name,
            p.busy_cycles,
            p.reconfigure_cycles,
            p.handshake_stall_cycles,
            100.0 * p.utilization
        );
    }
    let listed: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!("instructions: {}", listed.join(", "));
    let bound_note = if rel_bound < 1.0 {
        ""
    } else {
        "; above 1, so uninformative at this depth"
    };
    println!(
        "encoder output vs the f32 model ({expected_name}): relative Frobenius error {rel_error:.3e} (derived bound {rel_bound:.3e}{bound_note})"
    );
    println!(
        "shift-and-add softmax vs exact softmax of the same scores: max |dp| {:.3e}, mean {:.3e}",
        result.softmax_max_abs_error, result.softmax_mean_abs_error
    );
    println!("trace checker: every cross-group read follows its handshake");
    for v in &variants {
        println!("resources, {}: {} LUT-equivalents", v.name, v.luts);
    }
    println!(
        "divider- and exp-free softmax saves {:.1}% of logic (the paper reports 17.09%)",
        100.0 * saving
    );
    Ok(())
}

/// The encoder's weights by their Hugging Face names (with or without the `vit.` prefix).
fn encoder_weights(
    executor: &FullExecutor,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    layers: usize,
    with_final_norm: bool,
) -> Result<EncoderWeights> {
    let mut all: BTreeMap<String, &Tensor> = BTreeMap::new();
    for unit in executor.weights() {
        for (name, tensor) in unit.iter() {
            all.insert(name.trim_start_matches("vit.").to_string(), tensor);
        }
    }
    let take = |name: &str| -> Result<Vec<f32>> {
        all.get(name)
            .map(|t| t.contiguous().values().to_vec())
            .with_context(|| format!("the checkpoint has no {name}"))
    };
    let pair = |prefix: &str| -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            take(&format!("{prefix}.weight"))?,
            take(&format!("{prefix}.bias"))?,
        ))
    };
    // A projection without a bias (ViT's `qkv_bias: false`) adds zeros. The store has already
    // checked the checkpoint against the model's own tensor list, so an absent bias is one the
    // config says the model lacks, not one the file lost.
    // Projections are bound packed for the GEMM; the compiler reads them as `[in, out]`.
    let linear = |prefix: &str, outputs: usize| -> Result<(Vec<f32>, Vec<f32>)> {
        let name = format!("{prefix}.weight");
        let tensor = all
            .get(name.as_str())
            .with_context(|| format!("the checkpoint has no {name}"))?;
        let weight = match *tensor.shape() {
            [_, inputs, _] => kernels::gemm::unpack(tensor.contiguous().values(), inputs, outputs),
            _ => tensor.contiguous().values().to_vec(),
        };
        let bias = match all.get(format!("{prefix}.bias").as_str()) {
            Some(t) => t.contiguous().values().to_vec(),
            None => vec![0.0; outputs],
        };
        Ok((weight, bias))
    };
    let layers = (0..layers)
        .map(|l| {
            let p = format!("encoder.layer.{l}");
            Ok(LayerWeights {
                ln_before: pair(&format!("{p}.layernorm_before"))?,
                query: linear(&format!("{p}.attention.attention.query"), hidden)?,
                key: linear(&format!("{p}.attention.attention.key"), hidden)?,
                value: linear(&format!("{p}.attention.attention.value"), hidden)?,
                output: linear(&format!("{p}.attention.output.dense"), hidden)?,
                ln_after: pair(&format!("{p}.layernorm_after"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), intermediate)?,
                ffn_output: linear(&format!("{p}.output.dense"), hidden)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EncoderWeights {
        hidden,
        heads,
        intermediate,
        layers,
        final_ln: if with_final_norm {
            Some(pair("layernorm")?)
        } else {
            None
        },
    })
}
