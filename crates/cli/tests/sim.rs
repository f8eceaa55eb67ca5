//! `edgerun sim`: the GEMM simulator's published examples through the binary, a ViT on the
//! SAMM (its logits equal to the fixed-point Taylor model's), and clean refusals.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

const VIT: &str = r#"{
  "model_type": "vit", "architectures": ["ViTForImageClassification"],
  "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
  "intermediate_size": 32, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
  "image_size": 8, "patch_size": 4, "num_channels": 3, "qkv_bias": true,
  "id2label": {"0": "a", "1": "b", "2": "c"}
}"#;

fn edgerun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerun-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn gemm_cycles_are_scale_sims_through_the_cli() {
    for (dataflow, cycles) in [("os", 78), ("ws", 161), ("is", 191)] {
        let out = edgerun(&[
            "sim",
            "gemm",
            "--array",
            "17x32",
            "--dataflow",
            dataflow,
            "--m",
            "17",
            "--n",
            "32",
            "--k",
            "32",
            "--json",
        ]);
        let report = json(&out);
        assert_eq!(report["cycles"], cycles, "{dataflow}");
        assert_eq!(report["matches_kernel"], true);
        assert!(report["utilization"].as_f64().unwrap() > 0.0);
        assert_eq!(report["sram"]["ifmap_reads"], 17 * 32);
    }
}

#[test]
fn a_vit_on_the_samm_matches_the_fixed_point_model() {
    let dir = scratch("vit");
    common::write_model(&dir, VIT, &|n| {
        n == "classifier.weight" || n.starts_with("vit.")
    });
    let out = edgerun(&["sim", "samm", "--model", dir.to_str().unwrap(), "--json"]);
    let report = json(&out);
    assert_eq!(report["matches_fixed_point_model"], true);
    let samm = &report["samm"];
    assert_eq!(samm["heads_simulated"], 8);
    assert!(samm["cycles"].as_u64().unwrap() > 0);
    let power = &samm["power"];
    assert!(
        power["dynamic_power_gated_w"].as_f64().unwrap()
            <= power["dynamic_power_ungated_w"].as_f64().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_vit_encoder_runs_on_the_arap_within_its_bound() {
    let dir = scratch("arap");
    common::write_model(&dir, VIT, &|n| {
        n == "classifier.weight" || n.starts_with("vit.")
    });
    let trace = dir.join("trace.json");
    let asm = dir.join("program.s");
    let out = edgerun(&[
        "sim",
        "arap",
        "--model",
        dir.to_str().unwrap(),
        "--json",
        "--trace",
        trace.to_str().unwrap(),
        "--asm",
        asm.to_str().unwrap(),
    ]);
    let report = json(&out);
    let rel = report["rel_error"].as_f64().unwrap();
    assert!(
        rel > 0.0 && rel <= report["rel_error_bound"].as_f64().unwrap(),
        "{report}"
    );
    assert!(report["cycles"].as_u64().unwrap() > 0);
    for peg in ["PEG00", "PEG01", "PEG10", "PEG11"] {
        assert!(report["utilization"][peg].as_f64().unwrap() > 0.0, "{peg}");
    }
    assert!(report["handshake_stall_cycles"].as_u64().is_some());
    assert_eq!(report["instruction_counts"]["smv"], 8);
    let events: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    assert!(events["traceEvents"].as_array().unwrap().len() > 50);
    let program = std::fs::read_to_string(&asm).unwrap();
    assert!(
        program.lines().any(|l| l.starts_with("wait p00 s")),
        "{program}"
    );
    let one_layer = json(&edgerun(&[
        "sim",
        "arap",
        "--model",
        dir.to_str().unwrap(),
        "--layers",
        "1",
        "--json",
    ]));
    assert_eq!(one_layer["compared_with"], "hidden_states.1");
    let bad = edgerun(&[
        "sim",
        "arap",
        "--model",
        dir.to_str().unwrap(),
        "--layers",
        "9",
    ]);
    expect_clean_failure(&bad, "--layers");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_clean_failure(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn samm_refuses_a_model_that_is_not_a_vit() {
    let dir = scratch("bert");
    let bert = r#"{"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10,
        "max_position_embeddings": 8, "type_vocab_size": 2}"#;
    common::write_model(&dir, bert, &|_| false);
    let out = edgerun(&["sim", "samm", "--model", dir.to_str().unwrap()]);
    expect_clean_failure(&out, "runs ViT models");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gemm_with_an_empty_dimension_is_refused() {
    let out = edgerun(&["sim", "gemm", "--m", "0", "--n", "4", "--k", "4"]);
    expect_clean_failure(&out, "at least 1");
}

#[test]
fn a_vit_without_qkv_bias_runs_on_the_arap_and_the_samm() {
    let dir = scratch("arap-nobias");
    let config = VIT.replace(r#""qkv_bias": true"#, r#""qkv_bias": false"#);
    common::write_model(&dir, &config, &|n| {
        n == "classifier.weight" || n.starts_with("vit.")
    });
    let arap = json(&edgerun(&[
        "sim",
        "arap",
        "--model",
        dir.to_str().unwrap(),
        "--json",
    ]));
    let rel = arap["rel_error"].as_f64().unwrap();
    assert!(
        rel > 0.0 && rel <= arap["rel_error_bound"].as_f64().unwrap(),
        "{arap}"
    );
    let samm = json(&edgerun(&[
        "sim",
        "samm",
        "--model",
        dir.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(samm["matches_fixed_point_model"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}
