//! The environment's accounting against a case worked by hand, phase by phase.

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
