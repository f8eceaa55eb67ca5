//! The environment's accounting against a case worked by hand, phase by phase, the model
//! resident and streamed under a budget.

mod common;

use edgerun_dvfo::{Action, Offload};

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: got {got}, worked by hand {want}"
    );
}

#[test]
fn the_reference_is_edge_only_at_the_top_levels() {
    let env = common::env(0.99);
    // First stage compute-bound: 10 ms. Second memory-bound: 2e8 B at 5 GB/s = 40 ms (its
    // compute would take 30). Busy power 1 + 2 + 0.3 W.
    close(env.reference.0, 0.050, "latency");
    close(env.reference.1, 0.050 * 3.3, "energy");
}

#[test]
fn a_compressed_split_at_low_levels_is_accounted_phase_by_phase() {
    let env = common::env(0.99);
    let offload = env
        .space
        .offloads
        .iter()
        .position(|&o| {
            o == Offload {
                split: 1,
                compression: 1,
                plan: None,
            }
        })
        .expect("int8 at 0.999 passes a 0.99 floor");
    let o = env.outcome(
        Action {
            cpu: 0,
            memory: 1,
            offload,
        },
        8.0,
    );
    // Board: the first stage at half the host's rate, 20 ms, plus encoding (2 ms here) at
    // half the rate, 4 ms; 1 + 0.5 + 0.3 W.
    close(o.local_s, 0.024, "local s");
    close(o.local_j, 0.024 * 1.8, "local J");
    // 25 kB at 8 Mbit/s = 25 ms, plus half the 10 ms round trip; 1 W + 0.2 W + 0.3 W/Mbit x 8.
    close(o.upload_s, 0.030, "upload s");
    close(o.upload_j, 0.030 * 3.6, "upload J");
    // Decode 3 ms and the second stage 30 ms, on a server twice as fast; the radio awake.
    close(o.server_s, 0.0165, "server s");
    close(o.wait_j, 0.0165 * 1.2, "wait J");
    // 4 kB of outputs at 8 Mbit/s = 4 ms, plus half the round trip; 1 W + 0.2 + 0.1 x 8.
    close(o.download_s, 0.009, "download s");
    close(o.download_j, 0.009 * 2.0, "download J");
    close(o.latency_s(), 0.0795, "latency");
    close(o.energy_j(), 0.189, "energy");
    close(o.cost, 0.5 * 0.189 / 0.165 + 0.5 * 0.0795 / 0.050, "cost");
    assert_eq!((o.bytes_up, o.bytes_down), (25_000, 4000));
    assert_eq!(o.cosine, 0.999);
}

#[test]
fn the_cosine_floor_removes_offloads_that_move_the_outputs_too_far() {
    let loose = common::env(0.99);
    let strict = common::env(0.9995);
    let splits = |env: &edgerun_dvfo::Environment| {
        env.space
            .offloads
            .iter()
            .map(|o| (o.split, o.compression))
            .collect::<Vec<_>>()
    };
    assert_eq!(splits(&loose), vec![(0, 0), (1, 0), (1, 1), (2, 0)]);
    assert_eq!(splits(&strict), vec![(0, 0), (1, 0), (2, 0)]);
    assert_eq!(loose.space.len(), 2 * 2 * 4);
    for i in 0..loose.space.len() {
        assert_eq!(loose.space.index(loose.space.action(i)), i);
    }
}

#[test]
fn bad_options_are_refused() {
    let board = common::board();
    let calibration = common::calibration();
    let space = edgerun_dvfo::ActionSpace::new(&board, &calibration, 0.9).unwrap();
    for (eta, rtt, speedup) in [
        (1.5, 0.0, 1.0),
        (0.5, -1.0, 1.0),
        (0.5, 0.0, 0.0),
        (f64::NAN, 0.0, 1.0),
    ] {
        let options = edgerun_dvfo::EnvOptions {
            eta,
            round_trip_s: rtt,
            server_speedup: speedup,
        };
        assert!(edgerun_dvfo::Environment::new(
            board.clone(),
            calibration.clone(),
            space.clone(),
            options
        )
        .is_err());
    }
    assert!(edgerun_dvfo::ActionSpace::new(&board, &calibration, f64::NAN).is_err());
    let mut broken = calibration.clone();
    broken.boundaries.pop();
    assert!(broken.check().unwrap_err().contains("boundaries"));
}

/// 35 MB holds the first unit with the reserve (11 MB) but not both (41 MB); the largest
/// unit with the reserve (31 MB) fits, so the whole model streams.
const BUDGET: u64 = 35_000_000;

#[test]
fn under_a_budget_only_heads_that_do_not_fit_stream_once_per_shape() {
    let env = common::budgeted_env(0.99, Some(BUDGET));
    let offloads: Vec<_> = env
        .space
        .offloads
        .iter()
        .map(|o| (o.split, o.compression, o.plan))
        .collect();
    let mut expected = vec![(0, 0, None), (1, 0, None), (1, 1, None)];
    expected.extend((0..6).map(|p| (2, 0, Some(p))));
    assert_eq!(offloads, expected);
    let plans = &env.space.budget.as_ref().unwrap().plans;
    assert_eq!(
        plans.len(),
        6,
        "1 and 2 loaders at depths 1, 2 and unbounded"
    );
}

#[test]
fn a_streamed_pass_is_accounted_as_pipeload_runs_it() {
    let env = common::budgeted_env(0.99, Some(BUDGET));
    let edge = env.edge_only();
    // Hermes' shape: every shape takes the same time here (below), so the first: 1 loader,
    // depth 1.
    assert_eq!(env.space.offloads[edge].plan, Some(0));
    let top = env.local(Action {
        cpu: 1,
        memory: 1,
        offload: edge,
    });
    // Unit 0: 10 MB at 100 MB/s, loaded at 0.10 s, computed by 0.11 (10 ms). Unit 1 waits
    // for unit 0 to be freed (10 + 1 + 30 MB > 35), reads 30 MB from 0.11 to 0.41, and
    // computes for 40 ms (memory-bound): 0.45 s.
    close(top.local_s, 0.45, "streamed latency");
    // 50 ms computing at 3.3 W, 400 ms waiting at 1 W idle, 0.4 s of reads at 0.5 W.
    close(
        top.local_j,
        0.05 * 3.3 + 0.40 * 1.0 + 0.40 * 0.5,
        "streamed energy",
    );
    // The reference is that pass.
    close(env.reference.0, 0.45, "reference latency");
    // At the low CPU level the stages take 20 and 60 ms: unit 1 starts at 0.12 and is done
    // at 0.48; the disk hides most of the slower compute, and 80 ms at 1.8 W takes less
    // energy than 50 ms at 3.3 W.
    let low = env.local(Action {
        cpu: 0,
        memory: 1,
        offload: edge,
    });
    close(low.local_s, 0.48, "streamed latency, low level");
    close(
        low.local_j,
        0.08 * 1.8 + 0.40 * 1.0 + 0.40 * 0.5,
        "streamed energy, low level",
    );
    // A head that fits stays resident: the split after stage 1 computes 10 ms, no reads.
    let head = env.offload(1, 0).unwrap();
    assert_eq!(env.space.plan(head), None);
    close(
        env.local(Action {
            cpu: 1,
            memory: 1,
            offload: head,
        })
        .local_s,
        0.010 + 0.001,
        "resident head and its encoding",
    );
}

/// Why a space under `budget` bytes is refused.
fn refusal(
    board: &edgerun_dvfo::Board,
    calibration: &edgerun_dvfo::Calibration,
    budget: u64,
) -> String {
    edgerun_dvfo::ActionSpace::with_budget(
        board,
        calibration,
        0.99,
        Some(edgerun_dvfo::Budget::new(budget, 2)),
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn budgets_that_cannot_stream_are_refused_in_words() {
    let board = common::board();
    let calibration = common::calibration();
    let err = refusal(&board, &calibration, 30_000_000);
    assert!(err.contains("cannot hold the largest unit"), "{err}");
    let mut no_storage = board.clone();
    no_storage.storage = None;
    let err = refusal(&no_storage, &calibration, BUDGET);
    assert!(err.contains("no [storage]"), "{err}");
    let mut old = calibration.clone();
    old.reserve_bytes = None;
    let err = refusal(&board, &old, BUDGET);
    assert!(err.contains("calibrate again"), "{err}");
    // A model too deep to simulate per action.
    let mut deep = calibration.clone();
    let stage = deep.stages[0].clone();
    deep.stages = vec![stage; 600];
    deep.compressions.truncate(1);
    let boundary = deep.boundaries[0].clone();
    deep.boundaries = (1..600)
        .map(|split| edgerun_dvfo::calibrate::BoundaryCost {
            split,
            ..boundary.clone()
        })
        .collect();
    deep.check().unwrap();
    let err = refusal(&board, &deep, BUDGET);
    assert!(err.contains("at most 512 stages"), "{err}");
    // Without a budget, neither matters.
    assert!(edgerun_dvfo::ActionSpace::new(&no_storage, &old, 0.99).is_ok());
}
