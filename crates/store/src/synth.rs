//! Random checkpoints with the published configs of real models (`edgerun synth`).
//!
//! Weights follow transformers' initialisation in scale (N(0, 0.02)-like matrices, unit norms,
//! fan-in-scaled convolutions) but are drawn from a fast uniform generator: benchmarks need the
//! real sizes and finite activations, not trained values. Output is deterministic for a seed.
//! Large models are sharded like `save_pretrained` (model-0000x-of-0000y + index).

use std::collections::HashSet;
use std::path::Path;

use edgerun_models::presets::{preset, NAMES};
use edgerun_models::{build_model, ModelError, TensorSpec};
use edgerun_tensor::DType;

use crate::tensor_file::{dtype_tag, EntryHeader, SafetensorsWriter};
use crate::{Result, StoreError};

#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub dtype: DType,
    /// Largest shard before a new file starts.
    pub shard_bytes: u64,
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            shard_bytes: 5_000_000_000,
            seed: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SynthSummary {
    pub parameters: u64,
    pub bytes: u64,
    pub shards: usize,
}

/// Writes preset `name` into `out_dir`; `progress(done_bytes, total_bytes)` is called as it goes.
pub fn synthesize(
    name: &str,
    out_dir: &Path,
    options: &SynthOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary> {
    let preset = preset(name).ok_or_else(|| {
        ModelError::UnknownArchitecture(format!("{name} (synth knows {})", NAMES.join(", ")))
    })?;
    let mut config = preset.config.clone();
    config["dtype"] = serde_json::Value::String(torch_dtype(options.dtype).into());
    config["_name_or_path"] =
        serde_json::Value::String(format!("edgerun synth {name} (shape of {})", preset.source));
    let has_tensor = |n: &str| preset.present.contains(&n);
    synthesize_config(&config, &has_tensor, out_dir, options, progress)
}

/// Writes a model of any `config` (a config.json's value) into `out_dir`: the tensors its
/// family names, `has_tensor` choosing prefixes and optional heads as a checkpoint would.
pub fn synthesize_config(
    config: &serde_json::Value,
    has_tensor: &dyn Fn(&str) -> bool,
    out_dir: &Path,
    options: &SynthOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary> {
    let checkpoint = edgerun_models::Checkpoint {
        has_tensor,
        tensors: None,
    };
    let model = build_model(&config.to_string(), checkpoint)?;
    let mut seen = HashSet::new();
    let specs: Vec<&TensorSpec> = model
        .stages()
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| seen.insert(t.name.clone()))
        .collect();

    let size = options.dtype.size_bytes() as u64;
    let mut shards: Vec<Vec<&TensorSpec>> = vec![Vec::new()];
    let mut current = 0u64;
    for spec in &specs {
        let bytes = spec.elements() as u64 * size;
        if current > 0 && current + bytes > options.shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += bytes;
        shards.last_mut().expect("one shard").push(spec);
    }

    std::fs::create_dir_all(out_dir).map_err(|e| StoreError::io(out_dir, e))?;
    let total: u64 = specs.iter().map(|s| s.elements() as u64 * size).sum();
    let count = shards.len();
    let file_name = |i: usize| {
        if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        }
    };
    let mut done = 0u64;
    let mut weight_map = serde_json::Map::new();
    let mut values = Vec::new();
    let mut bytes = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let entries = shard
            .iter()
            .map(|s| EntryHeader {
                name: s.name.clone(),
                dtype: dtype_tag(options.dtype),
                shape: s.shape.clone(),
            })
            .collect();
        let mut writer =
            SafetensorsWriter::create(&out_dir.join(file_name(i)), entries, &[("format", "pt")])?;
        for spec in shard {
            fill(spec, options.seed, &mut values);
            bytes.clear();
            options.dtype.narrow_into(&values, &mut bytes);
            writer.write_next(&bytes)?;
            weight_map.insert(spec.name.clone(), serde_json::Value::String(file_name(i)));
            done += bytes.len() as u64;
            progress(done, total);
        }
        writer.finish()?;
    }
    if count > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json(&out_dir.join("model.safetensors.index.json"), &index)?;
    }
    write_json(&out_dir.join("config.json"), config)?;
    Ok(SynthSummary {
        parameters: specs.iter().map(|s| s.elements() as u64).sum(),
        bytes: total,
        shards: count,
    })
}

fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    crate::write_file(path, text.as_bytes())
}

/// Deterministic values for one tensor, scaled as transformers initialises its kind.
fn fill(spec: &TensorSpec, seed: u64, out: &mut Vec<f32>) {
    let n = spec.elements();
    out.clear();
    let name = spec.name.as_str();
    let constant = if name.ends_with("running_var") {
        Some(1.0)
    } else if name.ends_with("running_mean") || (spec.shape.len() == 1 && name.ends_with("bias")) {
        Some(0.0)
    } else if spec.shape.len() == 1 && name.ends_with("weight") {
        Some(1.0) // LayerNorm and BatchNorm scales
    } else {
        None
    };
    if let Some(c) = constant {
        out.resize(n, c);
        return;
    }
    let std = if spec.shape.len() == 4 {
        (2.0 / spec.shape[1..].iter().product::<usize>() as f32).sqrt()
    } else {
        0.02
    };
    // Uniform on [-a, a] has standard deviation a / sqrt(3).
    let amplitude = std * 3f32.sqrt();
    let mut state = seed
        ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    out.extend((0..n).map(|_| {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * amplitude
    }));
}
