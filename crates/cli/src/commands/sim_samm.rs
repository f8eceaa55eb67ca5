//! `edgerun sim samm`: a Hugging Face ViT on the simulated SAMM accelerator. The attention
//! heads run on the cycle-level datapath; the logits must equal those of the same model with
//! the fixed-point Taylor kernel (`run --attention taylor --fixed-point ...`) bit for bit.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, ensure, Result};
use clap::Args;
use edgerun_accel::energy::Node;
use edgerun_accel::samm::controller::report;
use edgerun_accel::samm::{SammConfig, SammEngine, VitWorkload};
use edgerun_accel::{ArrayShape, Dataflow};
use edgerun_models::RunOptions;
use edgerun_runtime::attention_eval::{row_cosines, top1_agreement};
use edgerun_runtime::{Executor, FullExecutor, Outputs};
use edgerun_tensor::fixed::{QFormat, TaylorEngine};
use edgerun_tensor::kernels::{AttentionAlgorithm, AttentionVariant, Centre};
use edgerun_tensor::Tensor;
use serde_json::json;

use super::attention::FixedPointArgs;

#[derive(Args)]
pub struct SimSammArgs {
    /// A Hugging Face ViT folder (or packed store), e.g. the vit-tiny fixture.
    #[arg(long)]
    pub model: PathBuf,
    /// pixel_values in a safetensors file (default: one reproducible pseudo-random image).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Dataflow of all three arrays.
    #[arg(long, default_value = "os")]
    pub dataflow: Dataflow,
    /// The array for Q G' and every projection GEMM.
    #[arg(long, default_value = "17x32")]
    pub qg_array: ArrayShape,
    /// The array for K^T V.
    #[arg(long, default_value = "16x32")]
    pub kv_array: ArrayShape,
    /// The array for Q k_sum.
    #[arg(long, default_value = "17x1")]
    pub qk_array: ArrayShape,
    /// Mean-centre the keys over tokens (the paper) or over features.
    #[arg(long, default_value = "tokens", value_parser = ["tokens", "features"])]
    pub centre: String,
    /// Process node for clock and energy: 45, 65, 90 or 180 (nm). The paper synthesised at 180.
    #[arg(long, default_value = "180")]
    pub node: Node,
    #[command(flatten)]
    pub fixed: FixedPointArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SimSammArgs) -> Result<()> {
    let (source, model, inputs) = super::sim::open_vit(&args.model, args.input.as_deref(), "samm")?;
    let batch = inputs
        .pixel_values
        .as_ref()
        .map_or(1, |p| p.shape().first().copied().unwrap_or(1));
    let fp = args
        .fixed
        .parse(Some(QFormat::new(8, 8)?))?
        .expect("a default format");
    let centre = if args.centre == "features" {
        Centre::Features
    } else {
        Centre::Tokens
    };
    let config = SammConfig {
        qg_array: args.qg_array,
        kv_array: args.kv_array,
        qk_array: args.qk_array,
        dataflow: args.dataflow,
        fixed_point: fp,
        ..SammConfig::default()
    };
    let taylor = AttentionAlgorithm::new(AttentionVariant::Taylor(centre), Some(fp))?;
    let executor = FullExecutor::load(&source)?;
    let engine = Arc::new(SammEngine::new(config.clone()));
    let forward =
        |attention: AttentionAlgorithm, engine: Option<Arc<dyn TaylorEngine>>| -> Result<Outputs> {
            let options = RunOptions {
                attention,
                taylor_engine: engine,
                ..RunOptions::default()
            };
            Ok(executor.forward(inputs.clone(), options)?)
        };
    let simulated = forward(taylor, Some(engine.clone()))?;
    let kernel = forward(taylor, None)?;
    let float = forward(AttentionAlgorithm::default(), None)?;
    let bit_exact = simulated.tensors.len() == kernel.tensors.len()
        && simulated
            .tensors
            .iter()
            .zip(&kernel.tensors)
            .all(|((na, a), (nb, b))| na == nb && a.shape() == b.shape() && bits(a) == bits(b));
    let (name, out, reference) = primary(&simulated, &float)?;
    let (cosine, _) = row_cosines(reference, out);
    let top1 = (name == "logits").then(|| top1_agreement(reference, out));
    let num_labels = if name == "logits" {
        out.shape().last().copied().unwrap_or(0)
    } else {
        0
    };
    let workload = VitWorkload::from_config_json(&source.config_json(), num_labels, batch)?;
    let samm = report(&workload, &config, &engine.ledger(), args.node)?;

    if args.json {
        let value = json!({
            "model": model.architecture(),
            "fixed_point": fp.to_string(),
            "centre": args.centre,
            "dataflow": args.dataflow.short_name(),
            "matches_fixed_point_model": bit_exact,
            "output": name,
            "cosine_vs_f32_softmax": cosine,
            "top1_agreement_vs_f32_softmax": top1,
            "samm": samm,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_report(&samm, &workload, &config, args.node);
        println!("output {name} equals the fixed-point Taylor model bit for bit: {bit_exact}");
        print!("against the f32 softmax model: cosine {cosine:.6}");
        if let Some(top1) = top1 {
            print!(", top-1 agreement {:.1}%", 100.0 * top1);
        }
        println!();
    }
    ensure!(
        bit_exact,
        "the simulated datapath disagrees with the fixed-point Taylor kernel"
    );
    Ok(())
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.contiguous()
        .values()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn primary<'a>(
    simulated: &'a Outputs,
    float: &'a Outputs,
) -> Result<(String, &'a Tensor, &'a Tensor)> {
    for name in ["logits", "last_hidden_state"] {
        if let (Some(a), Some(b)) = (simulated.get(name), float.get(name)) {
            return Ok((name.to_string(), a, b));
        }
    }
    bail!("the model returned neither logits nor last_hidden_state")
}

fn print_report(r: &edgerun_accel::samm::SammReport, w: &VitWorkload, c: &SammConfig, node: Node) {
    println!(
        "SAMM: arrays qg {} / kv {} / qk {}, {} dataflow, {}; ViT {} layers x {} heads, {} tokens",
        c.qg_array,
        c.kv_array,
        c.qk_array,
        c.dataflow,
        c.fixed_point,
        w.num_hidden_layers,
        w.num_attention_heads,
        w.tokens()
    );
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    for stage in &r.stages {
        // Fold per-layer stages into one row per kind: encoder.layer.N.x -> encoder.layer.*.x
        let kind = match stage.name.strip_prefix("encoder.layer.") {
            Some(rest) => format!(
                "encoder.layer.*.{}",
                rest.split_once('.').map_or(rest, |(_, k)| k)
            ),
            None => stage.name.clone(),
        };
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some(entry) => entry.1 += stage.cycles,
            None => by_kind.push((kind, stage.cycles)),
        }
    }
    println!(
        "{:<40} {:>14} {:>7}",
        "stage (all layers)", "cycles", "share"
    );
    for (kind, cycles) in &by_kind {
        println!(
            "{kind:<40} {cycles:>14} {:>6.1}%",
            100.0 * *cycles as f64 / r.cycles.max(1) as f64
        );
    }
    println!("{:<40} {:>14}", "total", r.cycles);
    let h = &r.head;
    println!(
        "per head: column accumulator {}, kv array {}, qk array {}, qg array {}, divider {} -> {} cycles",
        h.column_accumulator, h.kv_array, h.qk_array, h.qg_array, h.divider, h.critical_path
    );
    for a in &r.arrays {
        println!(
            "array {:<12} busy {:>12} cycles, utilization {:>5.1}%",
            a.array,
            a.busy_cycles,
            100.0 * a.utilization
        );
    }
    let p = &r.power;
    println!(
        "{node} at {:.0} MHz: {:.3} ms per inference; dynamic power {:.2} mW gated, {:.2} mW ungated ({:.1}% less with clock gating)",
        p.clock_hz / 1e6,
        p.seconds * 1e3,
        p.dynamic_power_gated_w * 1e3,
        p.dynamic_power_ungated_w * 1e3,
        100.0 * p.gating_reduction
    );
    println!(
        "attention datapath alone: {:.3} uJ gated, {:.3} uJ ungated ({:.1}% less with clock gating)",
        p.attention_gated_pj * 1e-6,
        p.attention_ungated_pj * 1e-6,
        100.0 * p.attention_gating_reduction
    );
    println!(
        "energy per inference: {:.3} uJ gated, {:.3} uJ ungated (DRAM {:.3} uJ of each)",
        p.energy_per_inference_gated_j * 1e6,
        p.energy_per_inference_ungated_j * 1e6,
        p.gated.dram_pj * 1e-6
    );
}
