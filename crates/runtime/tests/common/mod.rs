//! Locating ../shared/fixtures and comparing tensors with a stated tolerance.

#![allow(dead_code)]

use std::path::PathBuf;

use edgerun_models::RunOptions;
use edgerun_runtime::{Executor, Outputs};
use edgerun_store::safetensors_index::SafetensorsIndex;

/// Every strategy, for tests that hold them all to the same bits.
pub const STRATEGIES: [edgerun_runtime::Strategy; 5] = [
    edgerun_runtime::Strategy::Full,
    edgerun_runtime::Strategy::Mmap,
    edgerun_runtime::Strategy::Stream,
    edgerun_runtime::Strategy::Pipeload,
    edgerun_runtime::Strategy::Swap,
];

/// Every fixture a strategy must reproduce bit for bit.
pub const FIXTURES: &[&str] = &[
    "bert-tiny",
    "vit-tiny",
    "gpt2-tiny",
    "gptj-tiny",
    "resnet-tiny",
    "vgg-tiny",
    "fcn-tiny",
];

/// One pass of `executor` on the fixture `dir`'s inputs, hidden states recorded.
pub fn forward(executor: &dyn Executor, dir: &std::path::Path) -> edgerun_runtime::Result<Outputs> {
    let inputs = edgerun_store::read_inputs(&dir.join("inputs.safetensors")).unwrap();
    executor.forward(
        inputs,
        RunOptions {
            hidden_states: true,
            ..RunOptions::default()
        },
    )
}

/// Outputs as bit patterns, for exact comparison across strategies.
pub fn bits(o: &Outputs) -> Vec<(String, Vec<u32>)> {
    o.tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.contiguous()
                    .values()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            )
        })
        .collect()
}

/// The fixtures folder, or None (with a message) when it is absent and not required.
/// Fixtures kept in this repository (no upstream golden exists for them): `yolov3-tiny`.
pub fn repo_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("EDGERUN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("EDGERUN_REQUIRE_FIXTURES").is_some() {
        panic!(
            "EDGERUN_REQUIRE_FIXTURES is set but {} does not exist",
            dir.display()
        );
    }
    eprintln!(
        "skipping: fixtures folder {} not found (set EDGERUN_FIXTURES)",
        dir.display()
    );
    None
}

pub enum Expected {
    F32 { shape: Vec<usize>, values: Vec<f32> },
    I64 { shape: Vec<usize>, values: Vec<i64> },
}

/// Every tensor of a safetensors file.
pub fn read_all(path: &std::path::Path) -> Vec<(String, Expected)> {
    let bytes = std::fs::read(path).unwrap();
    let index = SafetensorsIndex::parse(path, &bytes).unwrap();
    let mut out: Vec<_> = index
        .tensors
        .iter()
        .map(|(name, e)| {
            let data = &bytes[e.start..e.end];
            let t = match e.dtype {
                safetensors::Dtype::I64 => Expected::I64 {
                    shape: e.shape.clone(),
                    values: data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                },
                _ => Expected::F32 {
                    shape: e.shape.clone(),
                    values: edgerun_tensor::DType::F32.widen(data).unwrap(),
                },
            };
            (name.clone(), t)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Tolerance of meta.json: `max_abs * max(1, max|expected|)`, or `max_abs * max|expected|`
/// where its note says "relative to max |expected|" (the torchvision fixtures).
pub fn tolerance(meta: &serde_json::Value, expected: &[f32]) -> f32 {
    let max_abs = meta["tolerance"]["max_abs"].as_f64().unwrap() as f32;
    let peak = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let relative = meta["tolerance"]["note"]
        .as_str()
        .is_some_and(|n| n.contains("relative to max") && !n.contains("max(1"));
    if relative {
        max_abs * peak
    } else {
        max_abs * peak.max(1.0)
    }
}

/// Largest absolute difference; panics on shape mismatch.
pub fn max_diff(
    name: &str,
    got_shape: &[usize],
    got: &[f32],
    shape: &[usize],
    expected: &[f32],
) -> f32 {
    assert_eq!(got_shape, shape, "{name}: shape");
    got.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Tests in one binary run in parallel: packing happens under this lock.
static PACKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This process's directory for packed copies, `$TMP/edgerun-tests/PID`. A test binary has no
/// teardown, so the first call removes the directories of processes that no longer run
/// instead: what is left behind is at most one run's.
fn packed_copies() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("edgerun-tests");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
                let gone =
                    pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        root.join(std::process::id().to_string())
    })
}

/// A packed copy of the fixture folder `fixture` under a temporary directory named by `tag`,
/// packed on first use and shared by later calls with the same tag.
pub fn pack_fixture(fixture: &std::path::Path, tag: &str) -> PathBuf {
    pack_fixture_with(fixture, tag, &edgerun_store::packed::PackOptions::default())
}

/// As [`pack_fixture`], with pack options (a quantised copy).
pub fn pack_fixture_with(
    fixture: &std::path::Path,
    tag: &str,
    options: &edgerun_store::packed::PackOptions,
) -> PathBuf {
    let _guard = PACKING.lock().unwrap_or_else(|e| e.into_inner());
    let out = packed_copies().join(format!("edgerun-{tag}"));
    if !out.join("manifest.json").exists() {
        let _ = std::fs::remove_dir_all(&out);
        let folder = edgerun_store::HfFolder::open(fixture).unwrap();
        edgerun_store::packed::pack_with(&folder, &out, options, &mut |_, _| {}).unwrap();
    }
    out
}

/// The sentences of the MiniLM fixture (`minilm-real/meta.json`).
pub fn minilm_sentences(root: &std::path::Path) -> Vec<String> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("minilm-real/meta.json")).unwrap())
            .unwrap();
    meta["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// sentence-transformers' embeddings of the MiniLM fixture's sentences
/// (`minilm-real/expected.safetensors`), `[sentences, dim]`.
pub fn minilm_reference(root: &std::path::Path) -> edgerun_tensor::Tensor {
    let expected = read_all(&root.join("minilm-real/expected.safetensors"));
    let Some((_, Expected::F32 { shape, values })) = expected
        .into_iter()
        .find(|(n, _)| n == "sentence_embedding")
    else {
        panic!("no sentence_embedding")
    };
    edgerun_tensor::Tensor::from_vec(&shape, values).unwrap()
}

/// The real all-MiniLM-L6-v2 folder, or `None` (with a message) when it was not fetched.
pub fn minilm() -> Option<PathBuf> {
    let dir = std::env::var_os("EDGERUN_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        });
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var_os("EDGERUN_REQUIRE_MINILM").is_some() {
        panic!(
            "EDGERUN_REQUIRE_MINILM is set but {} has no model (run scripts/fetch-minilm.sh)",
            dir.display()
        );
    }
    eprintln!(
        "skipping: {} not found (run scripts/fetch-minilm.sh)",
        dir.display()
    );
    None
}
