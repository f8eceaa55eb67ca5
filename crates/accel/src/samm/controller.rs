//! The SAMM controller: sequences one ViT (patch embedding, encoder layers, classifier) over
//! the arrays and the vector unit, stage by stage, and prices the whole inference.
//!
//! Attention cores come from the cycle-level simulation (the [`SammLedger`]). Projections, MLP
//! and classifier GEMMs run on the 17x32 array and take their counts from
//! [`closed_form_stats`], which the tests hold equal to the simulation: simulating ViT-Base's
//! 9 G MACs per image PE by PE would take minutes and tell nothing new. Norms, GELU and
//! residual adds take `elements * ops / lanes` cycles on the vector unit. Stages run one after
//! another; nothing overlaps across stages.

use serde::{Deserialize, Serialize};

use super::{HeadCycles, SammConfig, SammLedger};
use crate::energy::{price, Activity, Energy, EnergyTable, Node};
use crate::systolic::{closed_form_stats, GemmStats};
use crate::{AccelError, GemmDims, Result};

/// The shapes of a Hugging Face ViT, from its config.json.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct VitWorkload {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Classifier outputs; 0 for a bare ViTModel.
    #[serde(skip)]
    pub num_labels: usize,
    #[serde(skip)]
    pub batch: usize,
}

fn three() -> usize {
    3
}

impl VitWorkload {
    /// Reads config.json; `num_labels` is what the checkpoint's classifier has (0 if none).
    pub fn from_config_json(text: &str, num_labels: usize, batch: usize) -> Result<Self> {
        let mut w: VitWorkload = serde_json::from_str(text)
            .map_err(|e| AccelError::Config(format!("config.json is not a ViT config: {e}")))?;
        if w.patch_size == 0 || w.image_size < w.patch_size || w.num_attention_heads == 0 {
            return Err(AccelError::Config(format!(
                "ViT config with image {} patch {} heads {} cannot be scheduled",
                w.image_size, w.patch_size, w.num_attention_heads
            )));
        }
        w.num_labels = num_labels;
        w.batch = batch.max(1);
        Ok(w)
    }

    pub fn tokens(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// One stage of the schedule.
#[derive(Clone, Debug, Serialize)]
pub struct StageCycles {
    pub name: String,
    /// `array` (17x32 GEMMs), `samm` (attention cores) or `vector`.
    pub unit: &'static str,
    pub cycles: u64,
}

/// Utilisation of one array over the inference.
#[derive(Clone, Debug, Serialize)]
pub struct ArrayUse {
    pub array: String,
    pub busy_cycles: u64,
    pub macs: u64,
    /// MACs over PE-cycles while the array was busy.
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PowerReport {
    pub node: Node,
    pub clock_hz: f64,
    pub seconds: f64,
    pub gated: Energy,
    pub ungated: Energy,
    /// On-chip dynamic power (energy without DRAM over time), with and without clock gating.
    pub dynamic_power_gated_w: f64,
    pub dynamic_power_ungated_w: f64,
    pub gating_reduction: f64,
    /// The same comparison for the attention datapath alone (three arrays, column
    /// accumulator, divider), which is what the SAMM adds to a ViT.
    pub attention_gated_pj: f64,
    pub attention_ungated_pj: f64,
    pub attention_gating_reduction: f64,
    pub energy_per_inference_gated_j: f64,
    pub energy_per_inference_ungated_j: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SammReport {
    pub cycles: u64,
    pub stages: Vec<StageCycles>,
    pub arrays: Vec<ArrayUse>,
    /// Mean per-head cycles by unit.
    pub head: HeadCycles,
    pub heads_simulated: usize,
    pub power: PowerReport,
}

/// Builds the schedule and the report from the workload and what the datapath recorded.
pub fn report(
    workload: &VitWorkload,
    config: &SammConfig,
    ledger: &SammLedger,
    node: Node,
) -> Result<SammReport> {
    let w = workload;
    let heads_per_layer = w.num_attention_heads * w.batch;
    if ledger.heads.len() != heads_per_layer * w.num_hidden_layers {
        return Err(AccelError::Config(format!(
            "the datapath ran {} attention heads; a {}-layer ViT with {} heads and batch {} needs {}",
            ledger.heads.len(),
            w.num_hidden_layers,
            w.num_attention_heads,
            w.batch,
            heads_per_layer * w.num_hidden_layers
        )));
    }
    let tokens = w.tokens() * w.batch;
    let (h, inter) = (w.hidden_size, w.intermediate_size);
    let lanes = config.vector_lanes.max(1) as u64;
    let mut schedule = Schedule::default();
    let mut gemm_stats = GemmStats::default();
    let mut gemm = |name: String, dims: GemmDims, schedule: &mut Schedule| {
        let stats = closed_form_stats(config.qg_array, config.dataflow, dims);
        gemm_stats.add(&stats);
        schedule.push(name, "array", stats.busy_cycles);
    };
    let vector = |elements: usize, ops: u64| (elements as u64 * ops).div_ceil(lanes);

    let patches = (w.image_size / w.patch_size).pow(2) * w.batch;
    let patch_len = w.num_channels * w.patch_size * w.patch_size;
    gemm(
        "embeddings.patch_embeddings".into(),
        GemmDims {
            m: patches,
            k: patch_len,
            n: h,
        },
        &mut schedule,
    );
    schedule.push(
        "embeddings.position".into(),
        "vector",
        vector(tokens * h, 1),
    );
    for (layer, heads) in ledger.heads.chunks(heads_per_layer).enumerate() {
        let p = format!("encoder.layer.{layer}");
        schedule.push(
            format!("{p}.layernorm_before"),
            "vector",
            vector(tokens * h, 4),
        );
        for proj in ["query", "key", "value"] {
            gemm(
                format!("{p}.attention.{proj}"),
                GemmDims {
                    m: tokens,
                    k: h,
                    n: h,
                },
                &mut schedule,
            );
        }
        let core: u64 = heads.iter().map(|c| c.critical_path).sum();
        schedule.push(format!("{p}.attention.taylor"), "samm", core);
        gemm(
            format!("{p}.attention.output"),
            GemmDims {
                m: tokens,
                k: h,
                n: h,
            },
            &mut schedule,
        );
        schedule.push(format!("{p}.residual_1"), "vector", vector(tokens * h, 1));
        schedule.push(
            format!("{p}.layernorm_after"),
            "vector",
            vector(tokens * h, 4),
        );
        gemm(
            format!("{p}.intermediate"),
            GemmDims {
                m: tokens,
                k: h,
                n: inter,
            },
            &mut schedule,
        );
        schedule.push(format!("{p}.gelu"), "vector", vector(tokens * inter, 2));
        gemm(
            format!("{p}.output"),
            GemmDims {
                m: tokens,
                k: inter,
                n: h,
            },
            &mut schedule,
        );
        schedule.push(format!("{p}.residual_2"), "vector", vector(tokens * h, 1));
    }
    schedule.push("layernorm".into(), "vector", vector(tokens * h, 4));
    if w.num_labels > 0 {
        gemm(
            "classifier".into(),
            GemmDims {
                m: w.batch,
                k: h,
                n: w.num_labels,
            },
            &mut schedule,
        );
    }

    let mut qg_total = gemm_stats;
    qg_total.add(&ledger.qg);
    let arrays = [
        (config.qg_array, "qg", &qg_total),
        (config.kv_array, "kv", &ledger.kv),
        (config.qk_array, "qk", &ledger.qk),
    ]
    .iter()
    .map(|(shape, role, s)| ArrayUse {
        array: format!("{role} {shape}"),
        busy_cycles: s.busy_cycles,
        macs: s.mac_pe_cycles,
        utilization: s.utilization(),
    })
    .collect();

    // Activity: every array's PE-cycles, vector and divider work, SRAM words at the arrays'
    // ports and the vector unit's (one read and one write per element op), weights and
    // activations in and out of DRAM once.
    let mut activity = Activity::default();
    for s in [&qg_total, &ledger.kv, &ledger.qk] {
        activity.mac_pe_cycles += s.mac_pe_cycles;
        activity.idle_pe_cycles += s.idle_pe_cycles;
        activity.register_writes += s.register_writes;
        activity.sram_words +=
            s.sram.ifmap_reads + s.sram.filter_reads + s.sram.ofmap_reads + s.sram.ofmap_writes;
    }
    let vector_ops = schedule.vector_cycles * lanes;
    activity.adds += vector_ops + ledger.accumulator_adds;
    activity.divisions += ledger.divisions;
    activity.sram_words += 2 * vector_ops;
    let embeddings = patch_len * h + h + (w.tokens() + 1) * h;
    let per_layer = 4 * h * h + 2 * h * inter + 9 * h + inter;
    let weights = embeddings + w.num_hidden_layers * per_layer + 2 * h + w.num_labels * (h + 1);
    let outputs = if w.num_labels > 0 {
        w.batch * w.num_labels
    } else {
        tokens * h
    };
    activity.dram_words += (weights + patches * patch_len + outputs) as u64;

    let mut attention = Activity::default();
    for s in [&ledger.qg, &ledger.kv, &ledger.qk] {
        attention.mac_pe_cycles += s.mac_pe_cycles;
        attention.idle_pe_cycles += s.idle_pe_cycles;
        attention.register_writes += s.register_writes;
        attention.sram_words +=
            s.sram.ifmap_reads + s.sram.filter_reads + s.sram.ofmap_reads + s.sram.ofmap_writes;
    }
    attention.adds = ledger.accumulator_adds;
    attention.divisions = ledger.divisions;

    let table = EnergyTable::at(node);
    let attention_gated = price(&table, &attention, config.sram_bytes, true).on_chip_pj();
    let attention_ungated = price(&table, &attention, config.sram_bytes, false).on_chip_pj();
    let gated = price(&table, &activity, config.sram_bytes, true);
    let ungated = price(&table, &activity, config.sram_bytes, false);
    let cycles = schedule.stages.iter().map(|s| s.cycles).sum::<u64>();
    let seconds = cycles as f64 / node.clock_hz();
    let power = |e: &Energy| {
        if seconds > 0.0 {
            e.on_chip_pj() * 1e-12 / seconds
        } else {
            0.0
        }
    };
    let heads_simulated = ledger.heads.len();
    let mean = |f: fn(&HeadCycles) -> u64| {
        ledger.heads.iter().map(f).sum::<u64>() / heads_simulated.max(1) as u64
    };
    Ok(SammReport {
        cycles,
        stages: schedule.stages,
        arrays,
        head: HeadCycles {
            column_accumulator: mean(|c| c.column_accumulator),
            kv_array: mean(|c| c.kv_array),
            qk_array: mean(|c| c.qk_array),
            qg_array: mean(|c| c.qg_array),
            divider: mean(|c| c.divider),
            critical_path: mean(|c| c.critical_path),
        },
        heads_simulated,
        power: PowerReport {
            node,
            clock_hz: node.clock_hz(),
            seconds,
            dynamic_power_gated_w: power(&gated),
            dynamic_power_ungated_w: power(&ungated),
            gating_reduction: 1.0
                - gated.on_chip_pj() / ungated.on_chip_pj().max(f64::MIN_POSITIVE),
            attention_gated_pj: attention_gated,
            attention_ungated_pj: attention_ungated,
            attention_gating_reduction: 1.0
                - attention_gated / attention_ungated.max(f64::MIN_POSITIVE),
            energy_per_inference_gated_j: gated.total_pj() * 1e-12,
            energy_per_inference_ungated_j: ungated.total_pj() * 1e-12,
            gated,
            ungated,
        },
    })
}

#[derive(Default)]
struct Schedule {
    stages: Vec<StageCycles>,
    vector_cycles: u64,
}

impl Schedule {
    fn push(&mut self, name: String, unit: &'static str, cycles: u64) {
        if unit == "vector" {
            self.vector_cycles += cycles;
        }
        self.stages.push(StageCycles { name, unit, cycles });
    }
}
