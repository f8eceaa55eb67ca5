//! A board and a model small enough to account for by hand.

#![allow(dead_code)]

use std::path::Path;

use edgerun_dvfo::calibrate::{BoundaryCost, StageCost, FORMAT, VERSION};
use edgerun_dvfo::{ActionSpace, Board, Budget, Calibration, EnvOptions, Environment};

pub const BOARD: &str = r#"
name = "hand"
idle_w = 1.0
[cpu]
cores = 2
flops_per_cycle = 8
gemm_efficiency = 0.5
levels = [{ mhz = 500, busy_w = 0.5 }, { mhz = 1000, busy_w = 2.0 }]
[memory]
peak_gb_per_s = 10
efficiency = 0.5
levels = [{ mhz = 800, busy_w = 0.1 }, { mhz = 1600, busy_w = 0.3 }]
[radio]
uplink_mw_per_mbit = 300
downlink_mw_per_mbit = 100
active_mw = 200
[storage]
kind = "hand"
read = [{ loaders = 1, mb_per_s = 100 }, { loaders = 2, mb_per_s = 150 }]
busy_w = 0.5
"#;

pub fn board() -> Board {
    Board::parse(BOARD, Path::new("hand.toml")).unwrap()
}

/// Two stages (10 ms and 30 ms here, the second memory-bound on the board; 10 and 30 MB of
/// weights, 1 MB of reserve), a split between them sent as none or int8.
pub fn calibration() -> Calibration {
    let boundary = |compression: &str, bytes, encode_s, decode_s, cosine| BoundaryCost {
        split: 1,
        compression: compression.into(),
        bytes,
        encode_s,
        decode_s,
        cosine,
    };
    Calibration {
        format: FORMAT.into(),
        version: VERSION,
        architecture: "HandModel".into(),
        host: "hand".into(),
        threads: 2,
        stages: vec![
            StageCost {
                id: "first".into(),
                compute_s: 0.010,
                flops: 80_000_000,
                traffic_bytes: 1_000_000,
                resident_bytes: Some(10_000_000),
                read_bytes: Some(10_000_000),
            },
            StageCost {
                id: "second".into(),
                compute_s: 0.030,
                flops: 240_000_000,
                traffic_bytes: 200_000_000,
                resident_bytes: Some(30_000_000),
                read_bytes: Some(30_000_000),
            },
        ],
        reserve_bytes: Some(1_000_000),
        input_bytes: 1000,
        output_bytes: 4000,
        compressions: vec!["none".into(), "int8".into()],
        boundaries: vec![
            boundary("none", 100_000, 0.001, 0.002, 1.0),
            boundary("int8", 25_000, 0.002, 0.003, 0.999),
        ],
    }
}

pub fn env(min_cosine: f64) -> Environment {
    budgeted_env(min_cosine, None)
}

/// The same, heads held to `budget` (PipeLoad shapes of 1 or 2 loaders).
pub fn budgeted_env(min_cosine: f64, budget: Option<u64>) -> Environment {
    let board = board();
    let calibration = calibration();
    let budget = budget.map(|bytes| Budget::new(bytes, 2));
    let space = ActionSpace::with_budget(&board, &calibration, min_cosine, budget).unwrap();
    let options = EnvOptions {
        eta: 0.5,
        round_trip_s: 0.010,
        server_speedup: 2.0,
    };
    Environment::new(board, calibration, space, options).unwrap()
}
