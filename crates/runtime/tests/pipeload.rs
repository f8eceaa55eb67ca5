//! PipeLoad against sequential execution: bit-identical outputs for every fixture and loader
//! count, the cap never passed, no deadlock under random per-unit delays, and an injected
//! read error surfacing as an error with every lease returned.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bits, fixtures, forward, FIXTURES};
use edgerun_models::RunOptions;
use edgerun_runtime::{Executor, FullExecutor, Governor, PipeLoadExecutor, RuntimeError};
use edgerun_store::{read_inputs, ModelSource, ReadOptions};
use proptest::prelude::*;

fn packed(root: &Path, name: &str) -> (PathBuf, Arc<ModelSource>) {
    let out = common::pack_fixture(&root.join(name), &format!("pipeload-{name}"));
    let source = Arc::new(ModelSource::open(&out).unwrap());
    (out, source)
}

fn minimum(source: &Arc<ModelSource>, dir: &Path) -> u64 {
    let probe = PipeLoadExecutor::new(
        source.clone(),
        ReadOptions::default(),
        Governor::new(u64::MAX),
        1,
    )
    .unwrap();
    let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
    let state = probe
        .model()
        .start(
            inputs,
            RunOptions {
                hidden_states: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
    probe.minimum_bytes(&state)
}

#[test]
fn bit_identical_to_full_for_every_fixture_and_loader_count() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let (_, source) = packed(&root, name);
        let reference = bits(&forward(&FullExecutor::load(&source).unwrap(), &dir).unwrap());
        let min = minimum(&source, &dir);
        for loaders in 1..=4 {
            for cap in [u64::MAX, min] {
                let governor = Governor::new(cap);
                let executor = PipeLoadExecutor::new(
                    source.clone(),
                    ReadOptions::default(),
                    governor.clone(),
                    loaders,
                )
                .unwrap();
                assert_eq!(
                    bits(&forward(&executor, &dir).unwrap()),
                    reference,
                    "{name}, {loaders} loaders, cap {cap}"
                );
                assert!(
                    governor.peak() <= cap,
                    "{name}: peak {} > cap {cap}",
                    governor.peak()
                );
                assert_eq!(governor.leased(), 0, "{name}: leases leaked");
            }
        }
    }
}

/// Stores packed as f16 and bf16 widen into governed buffers that are recycled from pass to
/// pass: two passes of stream and PipeLoad at the minimum budget, read or mapped, equal the
/// full executor's (which widens into fresh vectors) bit for bit.
#[test]
fn narrow_stores_widen_into_recycled_buffers_bit_identically() {
    use edgerun_runtime::StreamExecutor;
    use edgerun_store::IoMode;
    use edgerun_tensor::DType;
    let Some(root) = fixtures() else { return };
    for name in ["bert-tiny", "gptj-tiny"] {
        let dir = root.join(name);
        for dtype in [DType::F16, DType::BF16] {
            let out = std::env::temp_dir().join(format!(
                "edgerun-narrow-{name}-{}-{}",
                dtype.name(),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&out);
            let folder = edgerun_store::HfFolder::open(&dir).unwrap();
            edgerun_store::packed::pack(&folder, &out, Some(dtype), &mut |_, _| {}).unwrap();
            let source = Arc::new(ModelSource::open(&out).unwrap());
            let reference = bits(&forward(&FullExecutor::load(&source).unwrap(), &dir).unwrap());
            let min = minimum(&source, &dir);
            for io in [IoMode::Direct, IoMode::Mmap] {
                let read = ReadOptions { io, verify: true };
                let label = format!("{name} {} {io:?}", dtype.name());
                let governor = Governor::new(min);
                let stream = StreamExecutor::new(source.clone(), read, governor.clone()).unwrap();
                let pipeload =
                    PipeLoadExecutor::new(source.clone(), read, Governor::new(min), 3).unwrap();
                for executor in [&stream as &dyn Executor, &pipeload] {
                    for pass in 0..2 {
                        let out = bits(&forward(executor, &dir).unwrap());
                        assert_eq!(out, reference, "{label}, pass {pass}");
                        let g = executor.governor();
                        assert!(g.peak() <= min, "{label}: peak {} > {min}", g.peak());
                        assert_eq!(g.leased(), 0, "{label}: leases leaked");
                    }
                }
                assert!(governor.idle_bytes() > 0, "{label}: nothing kept for reuse");
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

/// A read-ahead depth of d bounds what a pass holds by the reserve plus d + 1 of the largest
/// units, whatever the budget allows, with the same outputs.
#[test]
fn a_depth_bounds_the_units_held() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let (_, source) = packed(&root, name);
        let reference = bits(&forward(&FullExecutor::load(&source).unwrap(), &dir).unwrap());
        let model = source.model().unwrap();
        let largest = (0..model.stages().len())
            .map(|i| source.resident_bytes(i, &model.stages()[i], ReadOptions::default()))
            .max()
            .unwrap();
        let reserve = minimum(&source, &dir) - largest;
        for depth in [1, 2] {
            let governor = Governor::new(u64::MAX);
            let executor =
                PipeLoadExecutor::new(source.clone(), ReadOptions::default(), governor.clone(), 4)
                    .unwrap()
                    .with_depth(depth);
            assert_eq!(
                bits(&forward(&executor, &dir).unwrap()),
                reference,
                "{name}"
            );
            let bound = reserve + (depth as u64 + 1) * largest;
            assert!(
                governor.peak() <= bound,
                "{name}, depth {depth}: peak {} > {bound}",
                governor.peak()
            );
        }
    }
}

#[test]
fn an_injected_read_error_surfaces_and_returns_every_lease() {
    let Some(root) = fixtures() else { return };
    let dir = root.join("gpt2-tiny");
    let (_, source) = packed(&root, "gpt2-tiny");
    let min = minimum(&source, &dir);
    let units = source.model().unwrap().stages().len();
    for bad in 0..units {
        for loaders in [1, 3] {
            let governor = Governor::new(min);
            let executor = PipeLoadExecutor::new(
                source.clone(),
                ReadOptions::default(),
                governor.clone(),
                loaders,
            )
            .unwrap()
            .with_fault(move |i| (i == bad).then(|| "disk on fire".to_string()));
            let err = forward(&executor, &dir).expect_err("the injected error must surface");
            assert!(
                matches!(&err, RuntimeError::InjectedFault { why, .. } if why == "disk on fire"),
                "{err}"
            );
            assert_eq!(
                governor.leased(),
                0,
                "unit {bad}, {loaders} loaders: leases leaked"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random per-unit read delays, 1..8 loaders, caps from the minimum up, read-ahead depths
    /// of 1..3 or unbounded: every pass ends before a deadline, the peak stays under the cap,
    /// and outputs equal sequential execution (any reordering of stages would change them).
    #[test]
    fn stress_never_deadlocks_passes_the_cap_or_reorders(
        fixture in 0usize..5, loaders in 1usize..=8, slack in 0u64..3, delays in prop::collection::vec(0u64..3000, 64), depth in prop::option::of(1usize..4),
    ) {
        let Some(root) = fixtures() else { return Ok(()) };
        let name = FIXTURES[fixture];
        let dir = root.join(name);
        let (_, source) = packed(&root, name);
        let reference = bits(&forward(&FullExecutor::load(&source).unwrap(), &dir).unwrap());
        let min = minimum(&source, &dir);
        let cap = min + slack * min / 2;
        let governor = Governor::new(cap);
        let delays = Arc::new(delays);
        let executor = PipeLoadExecutor::new(source.clone(), ReadOptions::default(), governor.clone(), loaders)
            .unwrap()
            .with_fault(move |i| {
                std::thread::sleep(Duration::from_micros(delays[i % delays.len()]));
                None
            });
        let executor = match depth {
            Some(d) => executor.with_depth(d),
            None => executor,
        };
        let started = Instant::now();
        let out = bits(&forward(&executor, &dir).unwrap());
        prop_assert!(started.elapsed() < Duration::from_secs(20), "pass took {:?}", started.elapsed());
        prop_assert_eq!(out, reference);
        prop_assert!(governor.peak() <= cap);
        prop_assert_eq!(governor.leased(), 0);
    }
}

#[test]
fn the_trace_shows_a_correct_pipeline() {
    use edgerun_runtime::{SpanKind, Trace, Track};
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let (_, source) = packed(&root, name);
        let trace = Arc::new(Trace::new());
        let min = minimum(&source, &dir);
        let executor = PipeLoadExecutor::new(
            source.clone(),
            ReadOptions::default(),
            Governor::new(min),
            3,
        )
        .unwrap()
        .with_trace(trace.clone());
        forward(&executor, &dir).unwrap();
        let units = executor.model().stages().len();
        let spans = trace.spans();
        let of = |kind: SpanKind| spans.iter().filter(move |s| s.kind == kind);
        for unit in 0..units {
            let loads: Vec<_> = of(SpanKind::Load).filter(|s| s.unit == unit).collect();
            assert_eq!(
                loads.len(),
                1,
                "{name}: unit {unit} loaded {} times",
                loads.len()
            );
            assert!(
                matches!(loads[0].track, Track::Loader(_)),
                "{name}: unit {unit} loaded off a loader track"
            );
            let compute = of(SpanKind::Compute)
                .find(|s| s.unit == unit)
                .expect("computed");
            assert!(
                loads[0].end_s <= compute.start_s,
                "{name}: unit {unit} computed before its load ended"
            );
            let free = of(SpanKind::Free).find(|s| s.unit == unit).expect("freed");
            assert_eq!(free.track, Track::Daemon);
            assert!(
                compute.end_s <= free.start_s,
                "{name}: unit {unit} freed before its compute ended"
            );
        }
        let computes: Vec<_> = of(SpanKind::Compute).collect();
        assert_eq!(computes.len(), units);
        for pair in computes.windows(2) {
            assert!(
                pair[0].unit < pair[1].unit && pair[0].end_s <= pair[1].start_s,
                "{name}: compute out of order or overlapping"
            );
        }
        assert!(
            trace.counter().iter().all(|&(_, bytes)| bytes <= min),
            "{name}: governed bytes over the cap in the trace"
        );
        let names: Vec<String> = executor
            .model()
            .stages()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let json = trace.to_chrome_json(&names);
        assert!(json["traceEvents"].as_array().unwrap().len() > 3 * units);
    }
}

#[test]
fn generation_keeps_units_resident_across_tokens_and_matches_full() {
    use edgerun_runtime::{generate, GenerateOptions};
    let Some(root) = fixtures() else { return };
    for name in ["gpt2-tiny", "gptj-tiny"] {
        let dir = root.join(name);
        let (_, source) = packed(&root, name);
        let options = GenerateOptions {
            max_new_tokens: 6,
            stop_at_eos: false,
            attention: Default::default(),
        };
        let inputs = || read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let reference =
            generate(&FullExecutor::load(&source).unwrap(), inputs(), &options).unwrap();
        let probe = PipeLoadExecutor::new(
            source.clone(),
            ReadOptions::default(),
            Governor::new(u64::MAX),
            1,
        )
        .unwrap();
        let state = probe
            .model()
            .start(
                inputs(),
                RunOptions {
                    extra_tokens: 6,
                    last_logits_only: true,
                    ..RunOptions::default()
                },
            )
            .unwrap();
        let min = probe.minimum_bytes(&state);
        let total: u64 = probe
            .model()
            .stages()
            .iter()
            .enumerate()
            .map(|(i, s)| source.resident_bytes(i, s, ReadOptions::default()))
            .sum();
        // Room for about half the weights beyond the minimum: some units pin, some stream.
        let cap = min + total / 2;
        let governor = Governor::new(cap);
        let executor =
            PipeLoadExecutor::new(source.clone(), ReadOptions::default(), governor.clone(), 2)
                .unwrap()
                .with_residency();
        let got = generate(&executor, inputs(), &options).unwrap();
        assert_eq!(got, reference, "{name}: sequences differ from full");
        let pinned = executor.pinned_units();
        let units = executor.model().stages().len();
        assert!(
            pinned > 0 && pinned < units,
            "{name}: {pinned} of {units} units pinned"
        );
        assert!(governor.peak() <= cap);
        let passes = 6;
        let read = executor.stats().bytes_read;
        let every_unit_every_pass: u64 = (0..units)
            .map(|i| source.read_bytes(i, &executor.model().stages()[i]))
            .sum::<u64>()
            * passes;
        assert!(
            read < every_unit_every_pass,
            "{name}: pinned units were read again ({read} of {every_unit_every_pass} bytes)"
        );
    }
}
