//! Quantised packed stores: every fixture family packs in int8 and q4 and runs under every
//! strategy bit for bit alike; each stays near its f32 outputs (the error and the argmax
//! agreement printed, bounded loosely: the fixtures' weights are random); the real
//! all-MiniLM-L6-v2 keeps its sentence embeddings within the measured cosine.

mod common;

use common::{bits, fixtures, minilm, FIXTURES};
use edgerun_runtime::attention_eval::{row_cosines, top1_agreement};
use edgerun_runtime::{Embedder, Io, Session, SessionOptions};
use edgerun_store::packed::PackOptions;
use edgerun_store::{read_inputs, ModelSource};
use edgerun_tensor::quant::QuantFormat;
use edgerun_tensor::Tensor;

fn quantised(format: QuantFormat) -> PackOptions {
    PackOptions {
        quant: Some(format),
        ..PackOptions::default()
    }
}

/// Largest |a - b| over the largest |b|, and the share of rows (last axis) whose argmax agree.
fn compare(a: &Tensor, b: &Tensor) -> (f32, f64) {
    let (x, y) = (a.contiguous(), b.contiguous());
    let scale = y
        .values()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let err = x
        .values()
        .iter()
        .zip(y.values())
        .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
    (err / scale, top1_agreement(b, a))
}

#[test]
fn every_family_runs_quantised_and_every_strategy_agrees() {
    let Some(root) = fixtures() else { return };
    let repo = common::repo_fixtures();
    let dirs = FIXTURES
        .iter()
        .map(|n| root.join(n))
        .chain([repo.join("yolov3-tiny")]);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let float = Session::open(&dir, SessionOptions::default()).unwrap();
        let float = float.run(inputs.clone(), false).unwrap();
        for format in [QuantFormat::Int8, QuantFormat::Q4] {
            let store = common::pack_fixture_with(
                &dir,
                &format!("quant-{name}-{format}"),
                &quantised(format),
            );
            let mut reference = None;
            for strategy in common::STRATEGIES {
                let session = Session::open(
                    &store,
                    SessionOptions {
                        strategy,
                        io: Io::Direct,
                        ..SessionOptions::default()
                    },
                )
                .unwrap();
                let outputs = session.run(inputs.clone(), true).unwrap();
                let got = bits(&outputs);
                match &reference {
                    None => {
                        for (n, t) in &float.tensors {
                            let q = outputs.tensors.iter().find(|(m, _)| m == n).unwrap();
                            assert!(
                                q.1.contiguous().values().iter().all(|v| v.is_finite()),
                                "{name} {format} {n}"
                            );
                            let (err, agree) = compare(&q.1, t);
                            eprintln!("{name} {format} {n}: max error {err:.4} of the largest output, argmax agreement {agree:.2}");
                            let bound = match format {
                                QuantFormat::Int8 => 0.15,
                                QuantFormat::Q4 => 0.6,
                            };
                            assert!(err < bound, "{name} {format} {n}: error {err}");
                        }
                        reference = Some(got);
                    }
                    Some(r) => assert_eq!(&got, r, "{name} {format} {strategy:?}"),
                }
            }
        }
    }
}

#[test]
fn minilm_embeddings_keep_their_direction_quantised() {
    let (Some(root), Some(model)) = (fixtures(), minilm()) else {
        return;
    };
    let reference = common::minilm_reference(&root);
    // Measured (2026-12-06, against sentence-transformers, over the four sentences): int8 at
    // least 0.9966 (mean 0.9971), q4 at least 0.9691 (mean 0.9701).
    for (format, least) in [(QuantFormat::Int8, 0.995), (QuantFormat::Q4, 0.94)] {
        let store =
            common::pack_fixture_with(&model, &format!("minilm-{format}"), &quantised(format));
        let embedder = Embedder::load(&ModelSource::open(&store).unwrap()).unwrap();
        let got = embedder.embed(&common::minilm_sentences(&root)).unwrap();
        assert_eq!(got.shape(), reference.shape());
        let (mean, min) = row_cosines(&reference, &got);
        eprintln!("minilm {format}: cosine mean {mean:.5}, least {min:.5}");
        assert!(min >= least, "{format}: a sentence's cosine is {min}");
    }
}
