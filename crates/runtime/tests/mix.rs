//! Several models under one cap: every output bit-identical to the model run alone, the cap
//! never exceeded, every model served in turn (no starvation), and a clear error when a
//! quota cannot hold a model.

mod common;

use std::path::Path;

use common::{bits, fixtures};
use edgerun_models::RunOptions;
use edgerun_runtime::executor::minimum_bytes;
use edgerun_runtime::mix::{run_mix, MixEvent, MixModel, MixOptions};
use edgerun_runtime::{Executor, FullExecutor, RuntimeError};
use edgerun_store::packed::IoMode;
use edgerun_store::{read_inputs, ModelSource, ReadOptions};
use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    "bert-tiny",
    "vit-tiny",
    "gpt2-tiny",
    "resnet-tiny",
    "vgg-tiny",
    "fcn-tiny",
];

fn read() -> ReadOptions {
    ReadOptions {
        io: IoMode::Direct,
        verify: true,
    }
}

fn options(prefetch: usize, keep: bool) -> MixOptions {
    MixOptions {
        read: read(),
        prefetch,
        keep,
    }
}

struct Fixture {
    dir: std::path::PathBuf,
    source: ModelSource,
    reference: Vec<(String, Vec<u32>)>,
    minimum: u64,
}

fn fixture(root: &Path, name: &str) -> Fixture {
    let dir = root.join(name);
    let store = common::pack_fixture(&dir, &format!("mix-{name}"));
    let source = ModelSource::open(&store).unwrap();
    let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
    let full = FullExecutor::load(&ModelSource::open(&dir).unwrap()).unwrap();
    let reference = bits(&full.forward(inputs.clone(), RunOptions::default()).unwrap());
    let model = source.model().unwrap();
    let state = model.start(inputs, RunOptions::default()).unwrap();
    let minimum = minimum_bytes(&source, model.as_ref(), read(), &state);
    Fixture {
        dir,
        source,
        reference,
        minimum,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn mixes_match_their_models_alone_under_the_cap(
        picks in prop::collection::vec((0usize..FIXTURES.len(), 1u32..4, 1usize..3), 2..4),
        slack in 0u64..3_000_000,
        prefetch in 0usize..4,
        keep in any::<bool>(),
    ) {
        let Some(root) = fixtures() else { return Ok(()) };
        let loaded: Vec<Fixture> = picks.iter().map(|(f, _, _)| fixture(&root, FIXTURES[*f])).collect();
        let models: Vec<MixModel> = picks
            .iter()
            .zip(&loaded)
            .enumerate()
            .map(|(i, ((f, w, k), fx))| MixModel {
                name: format!("{}#{i}", FIXTURES[*f]),
                source: &fx.source,
                inputs: read_inputs(&fx.dir.join("inputs.safetensors")).unwrap(),
                importance: *w as f64,
                inferences: *k,
                delays: None,
            })
            .collect();
        // The smallest cap the mix runs under, plus slack shared by importance.
        let cap = edgerun_runtime::mix::minimum_cap(&models).unwrap() + slack;
        let mut order = Vec::new();
        let mut reads_as_planned = true;
        let report = run_mix(&models, cap, options(prefetch, keep), &mut |e| {
            if let MixEvent::Step { model, inference, kept, read, .. } = e {
                order.push(*model);
                // A kept step is read on the first pass only; a streamed one on every pass.
                reads_as_planned &= read.is_some() == (!kept || *inference == 0);
                reads_as_planned &= keep || !kept;
            }
        })
        .unwrap();
        prop_assert!(reads_as_planned);
        prop_assert!(report.peak_bytes <= cap);
        for (i, (fx, model)) in loaded.iter().zip(&report.models).enumerate() {
            prop_assert_eq!(model.latencies_s.len(), picks[i].2);
            prop_assert_eq!(bits(&report.outputs[i]), fx.reference.clone());
            prop_assert_eq!(model.copied_bytes, 0);
        }
        // Round robin: while two models both have work, neither steps twice before the other.
        for a in 0..models.len() {
            let steps: Vec<usize> = order.iter().enumerate().filter(|(_, &m)| m == a).map(|(p, _)| p).collect();
            for w in steps.windows(2) {
                let between = &order[w[0] + 1..w[1]];
                for b in (0..models.len()).filter(|&b| b != a) {
                    prop_assert!(between.iter().filter(|&&m| m == b).count() <= 1);
                }
            }
        }
    }
}

#[test]
fn a_cap_below_the_minimums_names_them() {
    let Some(root) = fixtures() else { return };
    let (a, b) = (fixture(&root, "bert-tiny"), fixture(&root, "vgg-tiny"));
    let inputs = |f: &Fixture| read_inputs(&f.dir.join("inputs.safetensors")).unwrap();
    let models = [
        MixModel {
            name: "bert".into(),
            source: &a.source,
            inputs: inputs(&a),
            importance: 1.0,
            inferences: 1,
            delays: None,
        },
        MixModel {
            name: "vgg".into(),
            source: &b.source,
            inputs: inputs(&b),
            importance: 1.0,
            inferences: 1,
            delays: None,
        },
    ];
    // Reserving each model's whole activation reserve always suffices; sharing the scratch
    // of the stage running can only need less.
    let cap = edgerun_runtime::mix::minimum_cap(&models).unwrap();
    assert!(cap <= a.minimum + b.minimum);
    assert!(run_mix(&models, cap, options(2, true), &mut |_| {}).is_ok());
    let cap = cap - 1;
    match run_mix(&models, cap, options(2, true), &mut |_| {}).unwrap_err() {
        RuntimeError::MixBelowMinimum {
            cap: refused,
            minimum,
            per_model,
            ..
        } => {
            assert_eq!((refused, minimum), (cap, cap + 1));
            let names: Vec<&str> = per_model.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["bert", "vgg"]);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn the_mapped_baseline_runs_every_model_in_turn() {
    let Some(root) = fixtures() else { return };
    let (a, b) = (fixture(&root, "vit-tiny"), fixture(&root, "resnet-tiny"));
    let inputs = |f: &Fixture| read_inputs(&f.dir.join("inputs.safetensors")).unwrap();
    let models = [
        MixModel {
            name: "vit".into(),
            source: &a.source,
            inputs: inputs(&a),
            importance: 1.0,
            inferences: 2,
            delays: None,
        },
        MixModel {
            name: "resnet".into(),
            source: &b.source,
            inputs: inputs(&b),
            importance: 1.0,
            inferences: 1,
            delays: None,
        },
    ];
    let mut done = Vec::new();
    let report = edgerun_runtime::mix::run_mix_mapped(&models, &mut |e| {
        if let MixEvent::Done { model, .. } = e {
            done.push(*model);
        }
    })
    .unwrap();
    assert_eq!(done, vec![0, 1, 0]);
    assert_eq!(bits(&report.outputs[0]), a.reference);
    assert_eq!(bits(&report.outputs[1]), b.reference);
}
