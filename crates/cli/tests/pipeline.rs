//! The PipeLoad tool chain through the binary on a tiny model it writes itself: pack, profile,
//! plan (JSON keys, peak within budget), then `run --strategy pipeload --profile` with a trace,
//! a timeline and a report, whose output equals `--strategy full` byte for byte.

mod common;

use std::path::Path;
use std::process::Command;

use edgerun_models::IdTensor;
use edgerun_store::{write_tensors, OutputTensor};

const CONFIG: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 300,
  "n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 64, "eos_token_id": 299}"#;

fn edgerun(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edgerun {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tiny_gpt2(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    common::write_model(dir, CONFIG, &|n| n.starts_with("transformer."));
    let ids = IdTensor::new(vec![1, 8], (1..=8).collect()).unwrap();
    write_tensors(
        &dir.join("ids.safetensors"),
        &[("input_ids".into(), OutputTensor::I64(ids))],
    )
    .unwrap();
}

#[test]
fn pack_profile_plan_and_run_pipeload() {
    let work = std::env::temp_dir().join(format!("edgerun-pipeline-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (hf, packed) = (work.join("hf"), work.join("packed"));
    tiny_gpt2(&hf);
    let p = |name: &str| work.join(name).display().to_string();
    let ids = hf.join("ids.safetensors").display().to_string();
    edgerun(&["pack", hf.to_str().unwrap(), packed.to_str().unwrap()]);
    edgerun(&[
        "profile",
        packed.to_str().unwrap(),
        "--input",
        &ids,
        "--runs",
        "2",
        "--output",
        &p("profile.json"),
    ]);
    let budget = "2MiB";
    let plan = edgerun(&[
        "plan",
        packed.to_str().unwrap(),
        "--budget",
        budget,
        "--profile",
        &p("profile.json"),
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let loaders = plan["loaders"].as_u64().unwrap();
    assert!((1..=8).contains(&loaders));
    assert!(plan["predicted_latency_s"].as_f64().unwrap() > 0.0);
    assert!(plan["predicted_peak_bytes"].as_u64().unwrap() <= 2 << 20);
    assert_eq!(plan["candidates"].as_array().unwrap().len(), 8);

    edgerun(&[
        "run",
        packed.to_str().unwrap(),
        "--input",
        &ids,
        "--output",
        &p("full.safetensors"),
    ]);
    edgerun(&[
        "run",
        packed.to_str().unwrap(),
        "--input",
        &ids,
        "--output",
        &p("pipe.safetensors"),
        "--strategy",
        "pipeload",
        "--budget",
        budget,
        "--profile",
        &p("profile.json"),
        "--trace",
        &p("trace.json"),
        "--timeline",
        &p("timeline.svg"),
        "--report",
        &p("report.json"),
    ]);
    assert_eq!(
        std::fs::read(p("full.safetensors")).unwrap(),
        std::fs::read(p("pipe.safetensors")).unwrap()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("report.json")).unwrap()).unwrap();
    assert_eq!(report["strategy"], "pipeload");
    assert_eq!(
        report["loaders"].as_u64(),
        Some(loaders),
        "run used the planner's loader count"
    );
    assert!(report["peak_bytes"].as_u64().unwrap() <= 2 << 20);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("trace.json")).unwrap()).unwrap();
    assert!(trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("compute h.2"))));
    assert!(std::fs::read_to_string(p("timeline.svg"))
        .unwrap()
        .starts_with("<svg"));
    std::fs::remove_dir_all(&work).unwrap();
}
