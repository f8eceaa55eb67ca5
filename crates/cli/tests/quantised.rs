//! Quantised stores through the binary, on a small GPT-2 it writes itself: `pack --dtype int8`
//! and `q4` (and `--keep`), `inspect --tensors` reporting what each tensor became, budgets that
//! follow the real bytes (the smallest budget a quantised store accepts is a fraction of the f32
//! store's), a budgeted pipeload giving the bytes of a full run, and `eval-quant`'s report.

mod common;

use common::{ok, refused, Scratch};
use edgerun_models::IdTensor;
use edgerun_store::{write_tensors, OutputTensor};

const CONFIG: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 512,
  "n_embd": 128, "n_layer": 3, "n_head": 4, "n_positions": 64, "eos_token_id": 511}"#;

fn s(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// The smallest budget `store` accepts, from the refusal of a one-byte budget.
fn minimum(store: &std::path::Path, ids: &std::path::Path, out: &std::path::Path) -> u64 {
    let message = refused(
        &[
            "run",
            s(store),
            "--input",
            s(ids),
            "--output",
            s(out),
            "--strategy",
            "stream",
            "--budget",
            "1",
        ],
        "minimum",
    );
    let digits: String = message
        .split("minimum of ")
        .nth(1)
        .expect("the refusal names the minimum")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a byte count")
}

/// The longest unit of a packed store, from its manifest.
fn largest_unit(store: &std::path::Path) -> u64 {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("manifest.json")).unwrap()).unwrap();
    manifest["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["length"].as_u64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn quantised_stores_pack_inspect_budget_and_evaluate() {
    let dir = Scratch::new("quantised-cli");
    let hf = dir.path("hf");
    common::write_model(&hf, CONFIG, &|n| n.starts_with("transformer."));
    let ids = dir.path("ids.safetensors");
    let id_tensor = IdTensor::new(vec![1, 8], (1..=8).collect()).unwrap();
    write_tensors(&ids, &[("input_ids".into(), OutputTensor::I64(id_tensor))]).unwrap();
    let out = dir.path("out.safetensors");

    let f32_store = dir.path("f32");
    ok(&["pack", s(&hf), s(&f32_store)]);
    let f32_minimum = minimum(&f32_store, &ids, &out);
    for dtype in ["int8", "q4"] {
        let store = dir.path(dtype);
        ok(&["pack", s(&hf), s(&store), "--dtype", dtype]);
        let inspect = ok(&["inspect", s(&store), "--tensors", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let tensors = doc["tensors"].as_array().unwrap();
        let dtype_of = |name: &str| {
            tensors
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("{name} listed"))["dtype"]
                .clone()
        };
        assert_eq!(dtype_of("transformer.h.0.attn.c_attn.weight"), dtype);
        assert_eq!(dtype_of("transformer.wte.weight"), dtype);
        assert_eq!(dtype_of("transformer.h.0.ln_1.weight"), "f32");
        let quant = &tensors
            .iter()
            .find(|t| t["name"] == "transformer.h.0.mlp.c_fc.weight")
            .unwrap()["quant"];
        assert_eq!(quant["matrix"], serde_json::json!([128, 512]));
        assert_eq!(quant["group"], if dtype == "int8" { 128 } else { 32 });

        // Budgets count the bytes the store holds: the minimum is the largest unit plus the
        // model's reserve, so the two minimums differ by exactly the two largest units.
        let quantised_minimum = minimum(&store, &ids, &out);
        assert_eq!(
            f32_minimum - quantised_minimum,
            largest_unit(&f32_store) - largest_unit(&store),
            "{dtype}"
        );
        assert!(
            largest_unit(&store) * 3 < largest_unit(&f32_store),
            "{dtype}"
        );
        let full = dir.path(&format!("{dtype}-full.safetensors"));
        ok(&[
            "run",
            s(&store),
            "--input",
            s(&ids),
            "--output",
            s(&full),
            "--strategy",
            "full",
        ]);
        let budget = (quantised_minimum + 4096).to_string();
        ok(&[
            "run",
            s(&store),
            "--input",
            s(&ids),
            "--output",
            s(&out),
            "--strategy",
            "pipeload",
            "--budget",
            &budget,
            "--io",
            "direct",
        ]);
        assert_eq!(
            std::fs::read(&full).unwrap(),
            std::fs::read(&out).unwrap(),
            "{dtype}"
        );

        let report = ok(&[
            "eval-quant",
            s(&f32_store),
            s(&store),
            "--input",
            s(&ids),
            "--json",
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
        let logits = doc["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "logits")
            .expect("logits compared");
        assert!(
            logits["mean_cosine"].as_f64().unwrap() > 0.9,
            "{dtype}: {logits}"
        );
        assert!(logits["top1_agreement"].as_f64().is_some());
        assert_eq!(doc["hidden_states"].as_array().unwrap().len(), 4, "{dtype}");
    }
    // --keep leaves the matching matrix in f16.
    let kept = dir.path("kept");
    ok(&[
        "pack",
        s(&hf),
        s(&kept),
        "--dtype",
        "q4",
        "--keep",
        "*.c_attn.*",
    ]);
    let inspect = ok(&["inspect", s(&kept), "--tensors", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    for t in doc["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if name.ends_with("c_attn.weight") {
            assert_eq!(t["dtype"], "f16", "{name}");
        } else if name.ends_with("c_fc.weight") {
            assert_eq!(t["dtype"], "q4", "{name}");
        }
    }
    ok(&["run", s(&kept), "--input", s(&ids), "--output", s(&out)]);
    // Two different models are refused by eval-quant.
    let other = dir.path("other");
    common::write_model(
        &other,
        &CONFIG.replace(r#""n_layer": 3"#, r#""n_layer": 2"#),
        &|n| n.starts_with("transformer."),
    );
    refused(
        &["eval-quant", s(&f32_store), s(&other), "--input", s(&ids)],
        "different models",
    );
}
