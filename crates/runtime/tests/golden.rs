//! Golden tests: every output of the Hugging Face fixtures, hidden states included, within the
//! tolerance each meta.json states; greedy ids of the causal models.

mod common;

use common::{fixtures, max_diff, read_all, tolerance, Expected};
use std::path::Path;

use edgerun_models::{IdTensor, Inputs, RunOptions};
use edgerun_runtime::{generate, Executor, FullExecutor, GenerateOptions};
use edgerun_store::{read_inputs, ModelSource};

fn check_forward(name: &str) {
    check_outputs(name, 2);
}

/// Compares every float tensor of expected.safetensors; `at_least` of them must exist.
fn check_outputs(name: &str, at_least: usize) {
    let Some(root) = fixtures() else { return };
    check_outputs_in(&root.join(name), name, at_least);
}

fn check_outputs_in(dir: &Path, name: &str, at_least: usize) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let folder = ModelSource::open(dir).unwrap();
    let executor = FullExecutor::load(&folder).unwrap();
    let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
    let outputs = executor
        .forward(
            inputs,
            RunOptions {
                hidden_states: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
    let mut compared = 0;
    for (key, expected) in read_all(&dir.join("expected.safetensors")) {
        let Expected::F32 { shape, values } = expected else {
            continue;
        };
        let got = outputs
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: no output {key}"));
        let diff = max_diff(
            &key,
            got.shape(),
            got.contiguous().values(),
            &shape,
            &values,
        );
        let tol = tolerance(&meta, &values);
        assert!(
            diff <= tol,
            "{name} {key}: max |diff| {diff} > tolerance {tol}"
        );
        eprintln!("{name} {key}: max |diff| {diff:.3e} (tolerance {tol:.3e})");
        compared += 1;
    }
    assert!(
        compared >= at_least,
        "{name}: compared only {compared} tensors"
    );
}

#[test]
fn bert_tiny_matches_transformers() {
    check_forward("bert-tiny");
}

#[test]
fn vit_tiny_matches_transformers() {
    check_forward("vit-tiny");
}

#[test]
fn gpt2_tiny_matches_transformers() {
    check_forward("gpt2-tiny");
}

#[test]
fn gptj_tiny_matches_transformers() {
    check_forward("gptj-tiny");
}

#[test]
fn resnet_tiny_matches_transformers() {
    check_forward("resnet-tiny");
}

#[test]
fn vgg_tiny_matches_torchvision() {
    check_outputs("vgg-tiny", 1);
}

#[test]
fn fcn_tiny_matches_torchvision() {
    check_outputs("fcn-tiny", 1);
}

/// YOLOv3 has no upstream golden: this fixture, kept in the repository, comes from timm's own
/// darknet53 backbone plus heads written with torch.nn (`bench/peers/yolov3_fixture.py`).
#[test]
fn yolov3_tiny_matches_timm_darknet53_with_torch_heads() {
    let dir = common::repo_fixtures().join("yolov3-tiny");
    check_outputs_in(&dir, "yolov3-tiny", 3);
}

fn greedy(dir: &Path, new_tokens: usize) -> IdTensor {
    let folder = ModelSource::open(dir).unwrap();
    let executor = FullExecutor::load(&folder).unwrap();
    let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
    generate(
        &executor,
        inputs,
        &GenerateOptions {
            max_new_tokens: new_tokens,
            stop_at_eos: true,
            attention: Default::default(),
        },
    )
    .unwrap()
}

/// Greedy ids from the saved weights must equal the fixture's `greedy_ids` exactly; the first
/// new token must also be the argmax of the fixture's own last-position logits, and decoding
/// with the KV cache must agree with full recomputation at every step.
fn check_greedy(name: &str) {
    let Some(root) = fixtures() else { return };
    let dir = root.join(name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let new_tokens = meta["greedy_new_tokens"].as_u64().unwrap() as usize;
    let expected = read_all(&dir.join("expected.safetensors"));
    let Some((_, Expected::I64 { shape, values })) =
        expected.iter().find(|(n, _)| n == "greedy_ids")
    else {
        panic!("{name}: no greedy_ids")
    };
    let Some((
        _,
        Expected::F32 {
            shape: logits_shape,
            values: logits,
        },
    )) = expected.iter().find(|(n, _)| n == "logits")
    else {
        panic!("{name}: no logits")
    };

    let got = greedy(&dir, new_tokens);
    assert_eq!(&got.shape, shape, "{name}: greedy_ids shape");
    let (prompt, vocab) = (logits_shape[1], logits_shape[2]);
    let last = &logits[(prompt - 1) * vocab..prompt * vocab];
    let argmax = (0..vocab).fold(0, |best, i| if last[i] > last[best] { i } else { best });
    assert_eq!(
        got.values[prompt], argmax as i64,
        "{name}: first new token vs fixture logits"
    );

    let folder = ModelSource::open(&dir).unwrap();
    let executor = FullExecutor::load(&folder).unwrap();
    for step in prompt..got.values.len() {
        let ids = IdTensor::new(vec![1, step], got.values[..step].to_vec()).unwrap();
        let outputs = executor
            .forward(
                Inputs {
                    input_ids: Some(ids),
                    ..Inputs::default()
                },
                RunOptions::default(),
            )
            .unwrap();
        let logits = outputs.get("logits").unwrap().contiguous();
        let row = &logits.values()[(step - 1) * vocab..step * vocab];
        let best = (0..vocab).fold(0, |best, i| if row[i] > row[best] { i } else { best });
        assert_eq!(
            got.values[step], best as i64,
            "{name}: cached decoding differs from recomputation at {step}"
        );
    }

    assert_eq!(&got.values, values, "{name}: greedy_ids");
}

#[test]
fn gpt2_tiny_greedy_ids() {
    check_greedy("gpt2-tiny");
}

#[test]
fn gptj_tiny_greedy_ids() {
    check_greedy("gptj-tiny");
}
