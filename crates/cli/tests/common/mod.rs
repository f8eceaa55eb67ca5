//! Tiny models the CLI tests write themselves, so they run without ../shared.

#![allow(dead_code)]

use std::path::Path;

use edgerun_models::build_model;
use edgerun_store::{write_tensors, OutputTensor};
use edgerun_tensor::Tensor;

/// Writes `config` and a model.safetensors with small deterministic values for every tensor
/// the family names; `has_tensor` picks prefixes and heads as a checkpoint's names would.
pub fn write_model(dir: &Path, config: &str, has_tensor: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let model = build_model(
        config,
        edgerun_models::Checkpoint {
            has_tensor,
            tensors: None,
        },
    )
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    let tensors: Vec<_> = model
        .stages()
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| seen.insert(t.name.clone()))
        .map(|t| {
            let values = (0..t.elements())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
                .collect();
            (
                t.name.clone(),
                OutputTensor::F32(Tensor::from_vec(&t.shape, values).unwrap()),
            )
        })
        .collect();
    write_tensors(&dir.join("model.safetensors"), &tensors).unwrap();
}
