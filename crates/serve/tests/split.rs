//! Split inference against a real server in this process: with `none` every split of every
//! fixture gives a local run's bits; compressed boundaries stay within the bounds stated here;
//! the real MiniLM split at its middle layer keeps its sentence embeddings.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgerun_runtime::{Session, SessionOptions, TextHead};
use edgerun_serve::client::Client;
use edgerun_serve::server::ServerOptions;
use edgerun_serve::split::run_split;
use edgerun_serve::{Compression, Rest};
use edgerun_store::ModelSource;
use edgerun_tensor::Tensor;

use support::{cosine, served, TestServer};

/// Every fixture, and YOLOv3 (whose heads read skips kept by earlier stages).
fn fixture_dirs(root: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = common::FIXTURES
        .iter()
        .map(|f| (f.to_string(), root.join(f)))
        .collect();
    let yolo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/yolov3-tiny");
    dirs.push(("yolov3-tiny".into(), yolo));
    dirs
}

fn head(dir: &Path, split: usize) -> Session {
    let options = SessionOptions {
        part: Some(0..split),
        ..SessionOptions::default()
    };
    Session::open(dir, options).unwrap()
}

fn as_bits(outputs: &[(String, Tensor)]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    outputs
        .iter()
        .map(|(n, t)| {
            let t = t.contiguous();
            (
                n.clone(),
                t.shape().to_vec(),
                t.values().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

fn client(server: &TestServer) -> Client {
    Client::new(&server.url, Duration::from_secs(60)).unwrap()
}

#[test]
fn every_split_of_every_fixture_without_compression_is_a_local_run_bit_for_bit() {
    let Some(root) = common::fixtures() else {
        return;
    };
    for (name, dir) in fixture_dirs(&root) {
        let inputs = edgerun_store::read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let local = Session::open(&dir, SessionOptions::default()).unwrap();
        let expected = as_bits(&local.run(inputs.clone(), true).unwrap().tensors);
        let server = TestServer::start(
            vec![served(&name, &dir, SessionOptions::default())],
            ServerOptions::default(),
        );
        let client = client(&server);
        let stages = local.model().stages().len();
        for split in 0..=stages {
            let (outputs, report) = run_split(
                &head(&dir, split),
                &client,
                &name,
                inputs.clone(),
                split,
                Compression::None,
                true,
            )
            .unwrap();
            assert!(
                as_bits(&outputs) == expected,
                "{name} split at {split} differs from a local run"
            );
            assert_eq!(
                report.sent_bytes == 0,
                split == stages,
                "{name} split {split}"
            );
        }
    }
}

/// The least cosine, over outputs and splits `1..stages`, of a compressed split against the
/// local run.
fn least_cosine(name: &str, dir: &Path, client: &Client, how: Compression) -> (f64, u64) {
    let inputs = edgerun_store::read_inputs(&dir.join("inputs.safetensors")).unwrap();
    let local = Session::open(dir, SessionOptions::default()).unwrap();
    let expected = local.run(inputs.clone(), false).unwrap().tensors;
    let stages = local.model().stages().len();
    let mut least = 1f64;
    let mut sent = 0;
    for split in 1..stages {
        let (outputs, report) = run_split(
            &head(dir, split),
            client,
            name,
            inputs.clone(),
            split,
            how,
            false,
        )
        .unwrap();
        sent += report.sent_bytes;
        for ((n, got), (m, want)) in outputs.iter().zip(&expected) {
            assert_eq!(n, m);
            least = least.min(cosine(
                got.contiguous().values(),
                want.contiguous().values(),
            ));
        }
    }
    (least, sent)
}

#[test]
fn compressed_boundaries_stay_close_to_a_local_run() {
    let Some(root) = common::fixtures() else {
        return;
    };
    // The least output cosine over every split of every fixture, with margin below what was
    // measured (README, "Split inference").
    let bounds = [
        (Compression::F16, 0.9999),
        (Compression::Int8, 0.999),
        (
            Compression::Channels {
                share: 0.5,
                rest: Rest::Int4,
            },
            0.99,
        ),
        (
            Compression::Channels {
                share: 0.5,
                rest: Rest::Mean,
            },
            0.5,
        ),
    ];
    for (name, dir) in fixture_dirs(&root) {
        let server = TestServer::start(
            vec![served(&name, &dir, SessionOptions::default())],
            ServerOptions::default(),
        );
        let client = client(&server);
        let (_, full_bytes) = least_cosine(&name, &dir, &client, Compression::None);
        for (how, bound) in bounds {
            let (least, sent) = least_cosine(&name, &dir, &client, how);
            eprintln!("{name} {how}: least cosine {least:.6}, {sent} bytes sent vs {full_bytes}");
            assert!(
                least >= bound,
                "{name} {how}: least cosine {least} below {bound}"
            );
            assert!(
                sent < full_bytes,
                "{name} {how}: {sent} bytes, not fewer than {full_bytes}"
            );
        }
    }
}

#[test]
fn minilm_split_at_its_middle_layer_keeps_the_sentence_embeddings() {
    let (Some(root), Some(dir)) = (common::fixtures(), common::minilm()) else {
        return;
    };
    let sentences = common::minilm_sentences(&root);
    let reference = common::minilm_reference(&root);
    let source = ModelSource::open(&dir).unwrap();
    let text = TextHead::load(&source).unwrap();
    let inputs = text.tokenize(&sentences).unwrap();
    let mask = inputs.attention_mask.clone().unwrap();
    let local = Session::open(&dir, SessionOptions::default()).unwrap();
    let stages = local.model().stages().len();
    let middle = stages / 2;
    let server = TestServer::start(
        vec![served("minilm", &dir, SessionOptions::default())],
        ServerOptions::default(),
    );
    let client = client(&server);
    let local_embeddings = local.embed(&sentences).unwrap();
    for (how, bound) in [
        (Compression::None, 1.0),
        (Compression::Int8, 0.999),
        (
            Compression::Channels {
                share: 0.25,
                rest: Rest::Int4,
            },
            0.99,
        ),
    ] {
        let (outputs, report) = run_split(
            &head(&dir, middle),
            &client,
            "minilm",
            inputs.clone(),
            middle,
            how,
            false,
        )
        .unwrap();
        let outputs = edgerun_runtime::Outputs { tensors: outputs };
        let embeddings = text.pool(&outputs, &mask, local.model()).unwrap();
        let rows = |t: &Tensor| {
            t.contiguous()
                .values()
                .chunks(t.last_dim())
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        };
        let (got, here, want) = (rows(&embeddings), rows(&local_embeddings), rows(&reference));
        let least_local = got
            .iter()
            .zip(&here)
            .map(|(a, b)| cosine(a, b))
            .fold(1.0, f64::min);
        let least_reference = got
            .iter()
            .zip(&want)
            .map(|(a, b)| cosine(a, b))
            .fold(1.0, f64::min);
        eprintln!(
            "MiniLM split at stage {middle} of {stages}, {how}: {} bytes sent; least cosine {least_local:.6} to the local run, {least_reference:.6} to sentence-transformers",
            report.sent_bytes
        );
        if how == Compression::None {
            assert!(
                got == here,
                "an uncompressed split differs from the local run"
            );
        }
        assert!(
            least_local >= bound - 1e-12,
            "{how}: {least_local} below {bound}"
        );
        assert!(
            least_reference >= 0.99,
            "{how}: {least_reference} to the reference"
        );
    }
}
