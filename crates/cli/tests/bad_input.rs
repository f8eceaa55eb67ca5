//! Bad input through the binary: each case must exit 1 with one readable `error:` line, no
//! panic, and no output file left behind. The model is a tiny BERT the test writes itself, so
//! these run without ../shared.

mod common;

use std::path::{Path, PathBuf};

use common::Scratch;
use std::process::Command;

use edgerun_models::IdTensor;
use edgerun_store::{write_tensors, OutputTensor};
use edgerun_tensor::Tensor;

const CONFIG: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 50,
  "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
  "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu"}"#;

/// Writes the tiny BERT and an input file into `dir`.
fn tiny_bert(dir: &Path) {
    common::write_model(dir, CONFIG, &|n| n == "pooler.dense.weight");
    let ids = IdTensor::new(vec![1, 4], vec![1, 2, 3, 4]).unwrap();
    write_tensors(
        &dir.join("inputs.safetensors"),
        &[("input_ids".into(), OutputTensor::I64(ids))],
    )
    .unwrap();
}

/// Runs `edgerun run` on `dir` and asserts a clean failure whose message contains `needle`.
fn expect_failure(dir: &Path, input: &Path, needle: &str) {
    expect_failure_with(dir, input, &[], needle);
}

/// As `expect_failure`, with extra flags.
fn expect_failure_with(dir: &Path, input: &Path, extra: &[&str], needle: &str) {
    let out_file = dir.join("out.safetensors");
    let output = Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args([
            "run",
            dir.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out_file.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(!out_file.exists(), "an output file was left behind");
    assert!(
        !dir.join("out.safetensors.tmp").exists(),
        "a temporary file was left behind"
    );
}

fn patch_file(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn the_tiny_model_runs() {
    let s = Scratch::new("ok");
    tiny_bert(&s.0);
    let out = s.0.join("out.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args([
            "run",
            s.0.to_str().unwrap(),
            "--input",
            s.0.join("inputs.safetensors").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(out.exists());
}

#[test]
fn truncated_safetensors() {
    let s = Scratch::new("truncated");
    tiny_bert(&s.0);
    patch_file(&s.0.join("model.safetensors"), |b| {
        b.truncate(b.len() - 100)
    });
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "not a valid safetensors file",
    );
}

#[test]
fn header_length_that_lies() {
    let s = Scratch::new("headerlen");
    tiny_bert(&s.0);
    patch_file(&s.0.join("model.safetensors"), |b| {
        b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes())
    });
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "exceeds the file size",
    );
}

#[test]
fn header_offsets_that_lie() {
    let s = Scratch::new("offsets");
    tiny_bert(&s.0);
    patch_file(&s.0.join("model.safetensors"), |b| {
        let text = String::from_utf8_lossy(b).into_owned();
        let at = text
            .find("\"data_offsets\":[0,")
            .expect("first tensor at 0")
            + "\"data_offsets\":[".len();
        b[at] = b'8'; // the first tensor now starts at 8: offsets no longer tile the data
    });
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "not a valid safetensors file",
    );
}

#[test]
fn missing_tensor() {
    let s = Scratch::new("missing");
    tiny_bert(&s.0);
    let config = CONFIG.replace("\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2");
    std::fs::write(s.0.join("config.json"), config).unwrap();
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "no tensor encoder.layer.1.",
    );
}

#[test]
fn config_that_disagrees_with_the_weights() {
    let s = Scratch::new("shape");
    tiny_bert(&s.0);
    std::fs::write(
        s.0.join("config.json"),
        CONFIG.replace("\"intermediate_size\": 16", "\"intermediate_size\": 32"),
    )
    .unwrap();
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "the config implies shape [32, 8]",
    );
}

#[test]
fn unknown_model_type() {
    let s = Scratch::new("unknown");
    tiny_bert(&s.0);
    std::fs::write(
        s.0.join("config.json"),
        CONFIG.replace("\"bert\"", "\"mamba\""),
    )
    .unwrap();
    expect_failure(
        &s.0,
        &s.0.join("inputs.safetensors"),
        "unknown architecture: model_type \"mamba\"",
    );
}

#[test]
fn malformed_config() {
    let s = Scratch::new("malformed");
    tiny_bert(&s.0);
    std::fs::write(s.0.join("config.json"), "{\"model_type\": \"bert\", ").unwrap();
    expect_failure(&s.0, &s.0.join("inputs.safetensors"), "config.json");
}

#[test]
fn input_that_is_not_safetensors() {
    let s = Scratch::new("notst");
    tiny_bert(&s.0);
    let input = s.0.join("input.txt");
    std::fs::write(&input, "input_ids = [1, 2, 3]").unwrap();
    expect_failure(&s.0, &input, "not a valid safetensors file");
}

#[test]
fn input_without_the_expected_tensor() {
    let s = Scratch::new("noids");
    tiny_bert(&s.0);
    let input = s.0.join("other.safetensors");
    let t = Tensor::from_vec(&[2], vec![1.0, 2.0]).unwrap();
    write_tensors(&input, &[("something_else".into(), OutputTensor::F32(t))]).unwrap();
    expect_failure(&s.0, &input, "input_ids");
}

#[test]
fn token_id_outside_the_vocabulary() {
    let s = Scratch::new("badid");
    tiny_bert(&s.0);
    let input = s.0.join("ids.safetensors");
    let ids = IdTensor::new(vec![1, 2], vec![1, 50]).unwrap();
    write_tensors(&input, &[("input_ids".into(), OutputTensor::I64(ids))]).unwrap();
    expect_failure(
        &s.0,
        &input,
        "token id 50 is outside the embedding table of 50 rows",
    );
}

#[test]
fn missing_model_folder() {
    let s = Scratch::new("nofolder");
    expect_failure(&s.0.join("nope"), &s.0.join("inputs.safetensors"), "nope");
}

/// Packs the tiny BERT from `dir` into `dir/packed`.
fn packed_tiny_bert(dir: &Path) -> PathBuf {
    tiny_bert(dir);
    let packed = dir.join("packed");
    let status = Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args(["pack", dir.to_str().unwrap(), packed.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    packed
}

#[test]
fn budget_below_the_minimum_names_the_minimum() {
    let s = Scratch::new("budget");
    let packed = packed_tiny_bert(&s.0);
    expect_failure_with(
        &packed,
        &s.0.join("inputs.safetensors"),
        &["--strategy", "stream", "--budget", "1KiB"],
        "below this model's minimum of",
    );
}

#[test]
fn budget_on_an_hf_folder_is_refused() {
    let s = Scratch::new("budgethf");
    tiny_bert(&s.0);
    expect_failure_with(
        &s.0,
        &s.0.join("inputs.safetensors"),
        &["--strategy", "stream", "--budget", "1GiB"],
        "needs a packed store",
    );
}

#[test]
fn corrupt_unit_fails_its_checksum() {
    let s = Scratch::new("crc");
    let packed = packed_tiny_bert(&s.0);
    patch_file(&packed.join("weights.bin"), |b| b[10] ^= 1);
    expect_failure_with(
        &packed,
        &s.0.join("inputs.safetensors"),
        &["--strategy", "stream"],
        "checksum mismatch",
    );
}

#[test]
fn truncated_packed_store_fails_at_open() {
    let s = Scratch::new("trunc");
    let packed = packed_tiny_bert(&s.0);
    patch_file(&packed.join("weights.bin"), |b| b.truncate(b.len() / 2));
    expect_failure(&packed, &s.0.join("inputs.safetensors"), "truncated");
}

#[test]
fn attention_without_a_fixed_point_form_is_refused() {
    let s = Scratch::new("attention-fixed");
    tiny_bert(&s.0);
    let input = s.0.join("inputs.safetensors");
    let flags = ["--attention", "sima", "--fixed-point", "Q8.8"];
    expect_failure_with(&s.0, &input, &flags, "no fixed-point form");
}

#[test]
fn malformed_q_format_is_refused() {
    let s = Scratch::new("attention-qformat");
    tiny_bert(&s.0);
    let input = s.0.join("inputs.safetensors");
    let flags = ["--attention", "taylor", "--fixed-point", "Q9.9"];
    expect_failure_with(&s.0, &input, &flags, "Q9.9");
}
