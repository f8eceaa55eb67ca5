//! The SwapNet tool chain through the binary on tiny models it writes itself: partition and
//! fit-delays (JSON keys), `run --strategy swap` equal to `--strategy full` byte for byte
//! with zero copied bytes, and `mix` over two models with its report and its errors.

mod common;

use std::path::{Path, PathBuf};

use common::{edgerun, ok, Scratch};

use edgerun_models::IdTensor;
use edgerun_store::{write_tensors, OutputTensor};

const GPT2: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 300,
  "n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 64, "eos_token_id": 299}"#;
const VGG: &str = r#"{"library": "torchvision", "architecture": "vgg11", "num_classes": 5,
  "overrides": {"cfg": [8, "M", 16, "M"], "pool_size": 2, "classifier_hidden": 16}}"#;

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("swapnet-{name}"))
}

/// A packed tiny GPT-2 with token ids, and a packed tiny VGG (it profiles on a default image).
fn stores(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let gpt2 = dir.join("gpt2");
    common::write_model(&gpt2, GPT2, &|n| n.starts_with("transformer."));
    let ids = dir.join("ids.safetensors");
    let tokens = IdTensor::new(vec![1, 8], (1..=8).collect()).unwrap();
    write_tensors(&ids, &[("input_ids".into(), OutputTensor::I64(tokens))]).unwrap();
    let vgg = dir.join("vgg");
    common::write_model(&vgg, VGG, &|_| false);
    let (gp, vp) = (dir.join("gpt2.packed"), dir.join("vgg.packed"));
    ok(&["pack", gpt2.to_str().unwrap(), gp.to_str().unwrap()]);
    ok(&["pack", vgg.to_str().unwrap(), vp.to_str().unwrap()]);
    (gp, vp, ids)
}

#[test]
fn partition_swap_and_fit_delays_through_the_binary() {
    let scratch = scratch("chain");
    let dir = &scratch.0;
    let (gpt2, _, ids) = stores(dir);
    let (store, ids) = (gpt2.to_str().unwrap(), ids.to_str().unwrap());
    let profile = dir.join("profile.json");
    ok(&[
        "profile",
        store,
        "--input",
        ids,
        "--output",
        profile.to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_slice(
        &ok(&[
            "partition",
            store,
            "--budget",
            "64MiB",
            "--profile",
            profile.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    let blocks = plan["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty());
    for key in ["units", "bytes", "flops", "t_in_s", "t_ex_s", "t_out_s"] {
        assert!(blocks[0].get(key).is_some(), "{key} missing: {plan}");
    }
    let fitted: serde_json::Value = serde_json::from_slice(
        &ok(&[
            "fit-delays",
            "--profile",
            profile.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert!(fitted["t_in"]["r2"].as_f64().is_some(), "{fitted}");

    let (full, swap, report) = (
        dir.join("full.safetensors"),
        dir.join("swap.safetensors"),
        dir.join("report.json"),
    );
    ok(&[
        "run",
        store,
        "--input",
        ids,
        "--output",
        full.to_str().unwrap(),
    ]);
    ok(&[
        "run",
        store,
        "--input",
        ids,
        "--output",
        swap.to_str().unwrap(),
        "--strategy",
        "swap",
        "--io",
        "direct",
        "--budget",
        "8MiB",
        "--profile",
        profile.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&full).unwrap(), std::fs::read(&swap).unwrap());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["copied_bytes"], 0);
    assert!(report["peak_bytes"].as_u64().unwrap() <= 8 << 20);
}

#[test]
fn two_models_mix_under_one_cap() {
    let scratch = scratch("mix");
    let dir = &scratch.0;
    let (gpt2, vgg, ids) = stores(dir);
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "budget = \"16MiB\"\ninferences = 2\n[[model]]\nname = \"lm\"\nstore = \"{}\"\ninput = \"{}\"\nimportance = 2\n[[model]]\nname = \"cnn\"\nstore = \"{}\"\n",
            gpt2.file_name().unwrap().to_str().unwrap(),
            ids.file_name().unwrap().to_str().unwrap(),
            vgg.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let (report_path, trace) = (dir.join("report.json"), dir.join("trace.json"));
    let report = &report_path;
    ok(&[
        "mix",
        scenario.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert!(report["peak_bytes"].as_u64().unwrap() <= 16 << 20);
    for model in report["models"].as_array().unwrap() {
        assert_eq!(model["latencies_s"].as_array().unwrap().len(), 2, "{model}");
        assert_eq!(model["copied_bytes"], 0);
    }
    let events: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = events["traceEvents"].as_array().unwrap();
    assert!(events.len() > 6);
    // Reads appear on a track of their own (the reader thread).
    assert!(events
        .iter()
        .any(|e| e["name"].as_str().is_some_and(|n| n.starts_with("read "))));
    // SwapNet as published: everything streamed, read inline.
    ok(&[
        "mix",
        scenario.to_str().unwrap(),
        "--prefetch",
        "0",
        "--no-keep",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    for model in report["models"].as_array().unwrap() {
        assert_eq!(model["kept_bytes"], 0, "{model}");
    }

    // Too small a cap names every model's minimum; an unknown key is refused.
    let small = edgerun(&["mix", scenario.to_str().unwrap(), "--budget", "100KiB"]);
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert_eq!(small.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("minimums") && stderr.contains("lm") && stderr.contains("cnn"),
        "{stderr}"
    );
    std::fs::write(
        &scenario,
        "budget = \"16MiB\"\nbudgt = 3\n[[model]]\nname = \"x\"\nstore = \"gpt2.packed\"\n",
    )
    .unwrap();
    let bad = edgerun(&["mix", scenario.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("budgt"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn swap_on_a_hugging_face_folder_is_refused() {
    let scratch = scratch("hf");
    let dir = &scratch.0;
    common::write_model(&dir.join("m"), GPT2, &|n| n.starts_with("transformer."));
    let ids = dir.join("ids.safetensors");
    let tokens = IdTensor::new(vec![1, 4], vec![1, 2, 3, 4]).unwrap();
    write_tensors(&ids, &[("input_ids".into(), OutputTensor::I64(tokens))]).unwrap();
    let out = edgerun(&[
        "run",
        dir.join("m").to_str().unwrap(),
        "--input",
        ids.to_str().unwrap(),
        "--output",
        dir.join("o.safetensors").to_str().unwrap(),
        "--strategy",
        "swap",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("packed store"), "{stderr}");
}
