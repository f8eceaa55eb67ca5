//! The session API from outside the crate, as a program other than the CLI uses it: every
//! strategy opened by path gives outputs bit-identical to the load-all baseline, options that
//! contradict the model are refused with their variant before anything runs, a budget below
//! the minimum names a minimum that is accepted when given back, a pass split into
//! contiguous ranges over one state equals the whole pass, and a head and a tail session of
//! any strategy joined by a boundary equal it too.

mod common;

use std::sync::Arc;

use common::{bits, fixtures, FIXTURES};
use edgerun_models::RunOptions;
use edgerun_runtime::{
    human_bytes_up, run_pass, run_range, Executor, FullExecutor, Io, Resident, RuntimeError,
    Session, SessionOptions, Strategy,
};
use edgerun_store::{read_inputs, ModelSource};

fn options(strategy: Strategy) -> SessionOptions {
    SessionOptions {
        strategy,
        ..SessionOptions::default()
    }
}

#[test]
fn every_strategy_opened_by_path_matches_the_baseline() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let store = common::pack_fixture(&dir, &format!("session-{name}"));
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let baseline = Session::open(&dir, SessionOptions::default()).unwrap();
        let reference = bits(&baseline.run(inputs.clone(), true).unwrap());
        for strategy in common::STRATEGIES {
            for io in [Io::Pread, Io::Direct] {
                let session = Session::open(
                    &store,
                    SessionOptions {
                        io,
                        ..options(strategy)
                    },
                )
                .unwrap();
                let outputs = session.run(inputs.clone(), true).unwrap();
                assert_eq!(bits(&outputs), reference, "{name} {strategy:?} {io:?}");
                assert!(session.stats().compute_s > 0.0, "{name} {strategy:?}");
            }
        }
    }
}

#[test]
fn contradicting_options_are_refused_before_anything_runs() {
    let Some(root) = fixtures() else { return };
    let dir = root.join("bert-tiny");
    let store = common::pack_fixture(&dir, "session-refusals");
    let refused = |path: &std::path::Path, options: SessionOptions| {
        Session::open(path, options).err().expect("refused")
    };
    let budget = Some(1 << 30);
    assert!(matches!(
        refused(
            &dir,
            SessionOptions {
                budget,
                ..options(Strategy::Stream)
            }
        ),
        RuntimeError::Options { .. }
    ));
    assert!(matches!(
        refused(
            &store,
            SessionOptions {
                budget,
                ..options(Strategy::Mmap)
            }
        ),
        RuntimeError::Options { .. }
    ));
    assert!(matches!(
        refused(
            &store,
            SessionOptions {
                trace: true,
                ..options(Strategy::Stream)
            }
        ),
        RuntimeError::Options { .. }
    ));
    assert!(matches!(
        refused(
            &store,
            SessionOptions {
                loaders: Some(0),
                ..options(Strategy::Pipeload)
            }
        ),
        RuntimeError::NoLoaders
    ));
    assert!(matches!(
        refused(&dir, options(Strategy::Swap)),
        RuntimeError::NeedsPackedStore { .. }
    ));
    let other = common::pack_fixture(&root.join("gpt2-tiny"), "session-other");
    let inputs = read_inputs(&root.join("gpt2-tiny").join("inputs.safetensors")).unwrap();
    let profile = Session::open(&other, options(Strategy::Stream))
        .unwrap()
        .profile(inputs, 1)
        .unwrap();
    assert!(matches!(
        refused(
            &store,
            SessionOptions {
                profile: Some(profile),
                ..options(Strategy::Pipeload)
            }
        ),
        RuntimeError::InvalidProfile { .. }
    ));
}

#[test]
fn a_refused_budget_names_a_minimum_that_is_accepted_back() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let store = common::pack_fixture(&dir, &format!("session-min-{name}"));
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        for strategy in [Strategy::Stream, Strategy::Pipeload, Strategy::Swap] {
            let tiny = Session::open(
                &store,
                SessionOptions {
                    budget: Some(4096),
                    ..options(strategy)
                },
            )
            .unwrap();
            let minimum = match tiny.run(inputs.clone(), false).unwrap_err() {
                RuntimeError::BelowMinimum { budget, minimum } => {
                    assert_eq!(budget, 4096);
                    minimum
                }
                other => panic!("{name} {strategy:?}: {other}"),
            };
            // What a user would paste from the message.
            let pasted = edgerun_runtime::size::parse_size(&human_bytes_up(minimum)).unwrap();
            let session = Session::open(
                &store,
                SessionOptions {
                    budget: Some(pasted),
                    ..options(strategy)
                },
            )
            .unwrap();
            session.run(inputs.clone(), false).unwrap();
            assert!(session.governor().peak() <= pasted, "{name} {strategy:?}");
        }
    }
}

#[test]
fn a_pass_split_into_ranges_equals_the_whole_pass() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let source = Arc::new(ModelSource::open(&dir).unwrap());
        let full = FullExecutor::load(&source).unwrap();
        let model = full.model();
        let stages = model.stages().len();
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let start = |inputs| model.start(inputs, RunOptions::default()).unwrap();
        let mut whole = start(inputs.clone());
        let mut feed = Resident {
            first: 0,
            units: full.weights(),
        };
        run_pass(model, &mut whole, &mut feed).unwrap();
        let outputs =
            |s: &mut edgerun_models::State| bits(&edgerun_runtime::Outputs::from_state(s));
        let reference = outputs(&mut whole);
        for cut in [1, stages / 2, stages - 1] {
            let mut split = start(inputs.clone());
            run_range(model, &mut split, 0..cut, &mut feed).unwrap();
            let mut tail = Resident {
                first: cut,
                units: &full.weights()[cut..],
            };
            run_range(model, &mut split, cut..stages, &mut tail).unwrap();
            assert_eq!(outputs(&mut split), reference, "{name} cut {cut}");
        }
        let mut state = start(inputs.clone());
        assert!(matches!(
            run_range(model, &mut state, 0..stages + 1, &mut feed),
            Err(RuntimeError::StageRange { .. })
        ));
        let mut tail = Resident {
            first: 1,
            units: &full.weights()[1..],
        };
        assert!(matches!(
            run_range(model, &mut state, 0..1, &mut tail),
            Err(RuntimeError::NotDelivered { unit: 0 })
        ));
    }
}

#[test]
fn every_strategy_runs_a_split_head_and_tail_through_a_boundary() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let store = common::pack_fixture(&dir, &format!("session-{name}"));
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let baseline = Session::open(&dir, SessionOptions::default()).unwrap();
        let reference = bits(&baseline.run(inputs.clone(), true).unwrap());
        let stages = baseline.model().stages().len();
        for strategy in common::STRATEGIES {
            for cut in [1, stages / 2, stages - 1] {
                let part = |range| SessionOptions {
                    part: Some(range),
                    ..options(strategy)
                };
                let head = Session::open(&store, part(0..cut)).unwrap();
                let tail = Session::open(&store, part(cut..stages)).unwrap();
                let mut state = head.start(inputs.clone(), true).unwrap();
                head.run_part(&mut state).unwrap();
                let boundary = state.take_boundary(cut);
                let mut resumed = tail.resume(boundary, true).unwrap();
                tail.run_part(&mut resumed).unwrap();
                let mut outputs = edgerun_runtime::Outputs::from_state(&mut resumed);
                // Hidden states recorded by the head come first, as one pass numbers them.
                let head_hidden = edgerun_runtime::Outputs::from_state(&mut state).tensors;
                let (out, tail_hidden): (Vec<_>, Vec<_>) = outputs
                    .tensors
                    .drain(..)
                    .partition(|(n, _)| !n.starts_with("hidden_states."));
                let mut head_outputs: Vec<_> = head_hidden
                    .iter()
                    .filter(|(n, _)| !n.starts_with("hidden_states."))
                    .cloned()
                    .collect();
                head_outputs.extend(out);
                let order: Vec<String> = baseline
                    .model()
                    .outputs()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                head_outputs.sort_by_key(|(n, _)| order.iter().position(|o| o == n));
                let hidden = head_hidden
                    .into_iter()
                    .filter(|(n, _)| n.starts_with("hidden_states."))
                    .chain(tail_hidden)
                    .enumerate()
                    .map(|(i, (_, t))| (format!("hidden_states.{i}"), t));
                head_outputs.extend(hidden);
                let got = bits(&edgerun_runtime::Outputs {
                    tensors: head_outputs,
                });
                assert_eq!(got, reference, "{name} {strategy:?} cut {cut}");
                assert!(
                    matches!(
                        head.run(inputs.clone(), false),
                        Err(RuntimeError::PartOnly { .. })
                    ),
                    "{name} {strategy:?}: a head ran a whole pass"
                );
            }
        }
    }
}
