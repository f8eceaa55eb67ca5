//! `edgerun dvfo` as a user runs it: calibrate a packed model, train a policy, evaluate it
//! beside the baselines; bad boards, traces, policies and flags end in one `error:` line and
//! a non-zero exit, and no input is overwritten.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Scratch;

const CONFIG: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 50,
  "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 32,
  "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "gelu"}"#;

const BOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../boards");

fn edgerun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = edgerun(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str], expected: &str) {
    let out = edgerun(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 1 for a refused value, 2 for flags clap refuses; never a signal.
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?}: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A packed tiny BERT and its inputs.
fn packed(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let folder = scratch.path("bert");
    common::write_model(&folder, CONFIG, &|n| n == "pooler.dense.weight");
    let ids =
        edgerun_models::IdTensor::new(vec![1, 32], (0..32).map(|i| 1 + i % 40).collect()).unwrap();
    let inputs = scratch.path("inputs.safetensors");
    edgerun_store::write_tensors(
        &inputs,
        &[("input_ids".into(), edgerun_store::OutputTensor::I64(ids))],
    )
    .unwrap();
    let store = scratch.path("bert.packed");
    ok(&["pack", folder.to_str().unwrap(), store.to_str().unwrap()]);
    (store, inputs)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `dvfo eval --board BOARD --calibration CALIBRATION` and `extra`.
fn eval_args<'a>(board: &'a str, calibration: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "dvfo",
        "eval",
        "--board",
        board,
        "--calibration",
        calibration,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn calibrate_train_and_eval_a_packed_model() {
    let scratch = Scratch::new("dvfo-flow");
    let (store, inputs) = packed(&scratch);
    let calibration = scratch.path("cal.json");
    ok(&[
        "dvfo",
        "calibrate",
        "--model",
        s(&store),
        "--input",
        s(&inputs),
        "--output",
        s(&calibration),
    ]);
    let text = std::fs::read_to_string(&calibration).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Embeddings, three layers, pooler: splits 1..5, five compressions each.
    assert_eq!(json["stages"].as_array().unwrap().len(), 5);
    assert_eq!(json["boundaries"].as_array().unwrap().len(), 4 * 5);
    for b in json["boundaries"].as_array().unwrap() {
        if b["compression"] == "none" {
            assert!(b["cosine"].as_f64().unwrap() > 1.0 - 1e-12, "{b}");
        }
    }

    let board = format!("{BOARDS}/jetson-nano.toml");
    let policy = scratch.path("policy.safetensors");
    ok(&[
        "dvfo",
        "train",
        "--board",
        &board,
        "--calibration",
        s(&calibration),
        "--steps",
        "1500",
        "--hidden",
        "32",
        "--output",
        s(&policy),
    ]);
    let json_out = scratch.path("eval.jsonl");
    let table = ok(&[
        "dvfo",
        "eval",
        "--board",
        &board,
        "--calibration",
        s(&calibration),
        "--policy",
        s(&policy),
        "--trace",
        "constant:4",
        "--trace",
        "walk:3",
        "--len",
        "50",
        "--json",
        s(&json_out),
    ]);
    for name in [
        "edge-only",
        "cloud-only",
        "neurosurgeon",
        "ondemand",
        "levels-only",
        "offload-only",
        "dqn",
        "oracle",
    ] {
        assert_eq!(
            table.matches(name).count(),
            2,
            "{name} in both tables:\n{table}"
        );
    }
    assert!(
        !table.contains("shape-only"),
        "no budget, no shapes:\n{table}"
    );
    let lines = std::fs::read_to_string(&json_out).unwrap();
    assert_eq!(lines.lines().count(), 16);
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["board"], "jetson-nano");
        assert!(v["summary"]["cost"].as_f64().unwrap() > 0.0);
    }

    // Under a budget that holds the largest unit but not the model, the edge streams: the
    // table gains the shapes alone, and a policy trained without a budget is refused.
    let units = json["stages"].as_array().unwrap();
    let bytes =
        |key: &str| -> Vec<u64> { units.iter().map(|u| u[key].as_u64().unwrap()).collect() };
    let reserve = json["reserve_bytes"].as_u64().unwrap();
    let largest = bytes("resident_bytes").into_iter().max().unwrap() + reserve;
    let total = bytes("resident_bytes").iter().sum::<u64>() + reserve;
    assert!(largest < total);
    let budget = largest.to_string();
    let (b, c) = (board.as_str(), s(&calibration));
    let streamed = ok(&eval_args(
        b,
        c,
        &["--budget", &budget, "--trace", "constant:4", "--len", "20"],
    ));
    assert!(streamed.contains("shape-only"), "{streamed}");
    assert!(streamed.contains("streamed ("), "{streamed}");
    refused(
        &eval_args(b, c, &["--budget", &budget, "--policy", s(&policy)]),
        "another action set",
    );
    let too_small = (largest - 1).to_string();
    refused(
        &eval_args(b, c, &["--budget", &too_small]),
        "cannot hold the largest unit",
    );
    refused(&eval_args(b, c, &["--budget", "lots"]), "--budget");

    // The policy belongs to its board, eta and action set.
    let nx = format!("{BOARDS}/jetson-xavier-nx.toml");
    refused(
        &[
            "dvfo",
            "eval",
            "--board",
            &nx,
            "--calibration",
            s(&calibration),
            "--policy",
            s(&policy),
        ],
        "trained for board \"jetson-nano\"",
    );
    refused(
        &[
            "dvfo",
            "eval",
            "--board",
            &board,
            "--calibration",
            s(&calibration),
            "--policy",
            s(&policy),
            "--eta",
            "0.9",
        ],
        "eta",
    );
    // An output never replaces an input.
    let before = std::fs::read(&calibration).unwrap();
    refused(
        &[
            "dvfo",
            "train",
            "--board",
            &board,
            "--calibration",
            s(&calibration),
            "--output",
            s(&calibration),
        ],
        "--output",
    );
    assert_eq!(std::fs::read(&calibration).unwrap(), before);
}

#[test]
fn bad_boards_traces_policies_and_flags_are_refused_in_words() {
    let scratch = Scratch::new("dvfo-bad");
    let (store, inputs) = packed(&scratch);
    let calibration = scratch.path("cal.json");
    ok(&[
        "dvfo",
        "calibrate",
        "--model",
        s(&store),
        "--input",
        s(&inputs),
        "--output",
        s(&calibration),
        "--compress",
        "none,int8",
    ]);
    let board = format!("{BOARDS}/jetson-nano.toml");
    let cal = s(&calibration);
    let eval = |extra: &[&str], expected: &str| {
        let mut args = vec![
            "dvfo",
            "eval",
            "--board",
            board.as_str(),
            "--calibration",
            cal,
        ];
        args.extend_from_slice(extra);
        refused(&args, expected);
    };
    eval(&["--trace", "walk:x"], "not a seed");
    eval(&["--trace", "constant:0"], "not from");
    eval(&["--trace", "steps:1,2"], "@N");
    eval(&["--trace", "file:/nonexistent"], "cannot read");
    eval(&["--eta", "2"], "eta");
    eval(&["--min-cosine", "nan"], "cosine floor");
    eval(&["--rtt-ms=-1"], "--rtt-ms");
    eval(&["--len", "0"], "1 to");

    let broken = scratch.path("broken.toml");
    std::fs::write(&broken, "name = \"x\"\nidle_w = 1\n[cpu]\ncores = 0\n").unwrap();
    refused(
        &["dvfo", "eval", "--board", s(&broken), "--calibration", cal],
        "board",
    );
    let garbage = scratch.path("garbage.safetensors");
    std::fs::write(&garbage, b"12345678 not safetensors").unwrap();
    eval(&["--policy", s(&garbage)], "not safetensors");
    let bad_cal = scratch.path("bad-cal.json");
    std::fs::write(&bad_cal, "{\"format\": \"something else\"}").unwrap();
    refused(
        &[
            "dvfo",
            "eval",
            "--board",
            &board,
            "--calibration",
            s(&bad_cal),
        ],
        "calibration",
    );
    refused(&["dvfo", "eval", "--board", &board], "give --model");
    refused(
        &[
            "dvfo",
            "calibrate",
            "--model",
            s(&store),
            "--output",
            s(&scratch.path("c.json")),
            "--compress",
            "int8",
        ],
        "start with none",
    );
    refused(
        &[
            "dvfo",
            "calibrate",
            "--model",
            s(&store),
            "--output",
            s(&scratch.path("c.json")),
            "--compress",
            "none,zip",
        ],
        "expected none",
    );
    refused(
        &[
            "dvfo",
            "train",
            "--board",
            &board,
            "--calibration",
            cal,
            "--steps",
            "0",
            "--output",
            s(&scratch.path("p")),
        ],
        "DQN options",
    );
}
