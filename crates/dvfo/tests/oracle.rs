//! The oracle's shortcut (best levels per offload found once) against trying every action,
//! on random boards, models and rates; and the baselines' choices on the hand-worked case.

mod common;

use edgerun_dvfo::board::{Cpu, Level, Memory, Radio, ReadPoint, Storage};
use edgerun_dvfo::calibrate::{BoundaryCost, StageCost, FORMAT, VERSION};
use edgerun_dvfo::policy::{
    brute_force, CloudOnly, EdgeOnly, Knob, Neurosurgeon, OneKnob, Oracle, Policy, Step,
};
use edgerun_dvfo::{ActionSpace, Board, Budget, Calibration, EnvOptions, Environment};
use proptest::prelude::*;

fn levels(raw: Vec<(f64, f64)>) -> Vec<Level> {
    let mut mhz = 0.0;
    raw.into_iter()
        .map(|(step, busy_w)| {
            mhz += step;
            Level { mhz, busy_w }
        })
        .collect()
}

prop_compose! {
    fn board()(
        cpu in prop::collection::vec((50.0..800.0f64, 0.0..6.0f64), 1..5),
        memory in prop::collection::vec((100.0..900.0f64, 0.0..1.0f64), 1..4),
        idle_w in 0.1..5.0f64,
        cores in 1u32..8,
        radio in (0.0..500.0f64, 0.0..200.0f64, 0.0..1500.0f64),
        storage in (10.0..3000.0f64, 1.0..2.0f64, 0.0..2.0f64),
    ) -> Board {
        Board {
            name: "random".into(),
            description: String::new(),
            idle_w,
            cpu: Cpu { cores, flops_per_cycle: 8.0, gemm_efficiency: 0.6, levels: levels(cpu) },
            memory: Memory { peak_gb_per_s: 20.0, efficiency: 0.7, levels: levels(memory) },
            gpu: None,
            radio: Radio { uplink_mw_per_mbit: radio.0, downlink_mw_per_mbit: radio.1, active_mw: radio.2 },
            storage: Some(Storage {
                kind: "random".into(),
                read: vec![
                    ReadPoint { loaders: 1, mb_per_s: storage.0 },
                    ReadPoint { loaders: 2, mb_per_s: storage.0 * storage.1 },
                ],
                busy_w: storage.2,
            }),
        }
    }
}

prop_compose! {
    fn calibration()(
        stages in prop::collection::vec(
            (1e-4..0.05f64, 1e6..1e9f64, 0u64..500_000_000, 1u64..50_000_000),
            1..7,
        ),
        compressions in 1usize..4,
        seed in prop::collection::vec((1u64..5_000_000, 0.0..0.01f64, 0.9..1.0f64), 18),
        input_bytes in 100u64..2_000_000,
        output_bytes in 4u64..1_000_000,
    ) -> Calibration {
        let names = ["none", "int8", "channels=0.5"];
        let n = stages.len();
        let mut boundaries = Vec::new();
        for split in 1..n {
            for (c, name) in names.iter().enumerate().take(compressions) {
                let (bytes, time_s, cosine) = seed[((split - 1) * 3 + c) % seed.len()];
                boundaries.push(BoundaryCost {
                    split,
                    compression: name.to_string(),
                    bytes,
                    encode_s: time_s,
                    decode_s: time_s / 2.0,
                    cosine: if c == 0 { 1.0 } else { cosine },
                });
            }
        }
        Calibration {
            format: FORMAT.into(),
            version: VERSION,
            architecture: "Random".into(),
            host: "random".into(),
            threads: 2,
            stages: stages
                .iter()
                .enumerate()
                .map(|(i, &(compute_s, flops, traffic_bytes, bytes))| StageCost {
                    id: format!("s{i}"),
                    compute_s,
                    flops: flops as u64,
                    traffic_bytes,
                    resident_bytes: Some(bytes),
                    read_bytes: Some(bytes),
                })
                .collect(),
            reserve_bytes: Some(1_000_000),
            input_bytes,
            output_bytes,
            compressions: names[..compressions].iter().map(|s| s.to_string()).collect(),
            boundaries,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_oracle_finds_the_least_cost_of_every_action(
        board in board(),
        calibration in calibration(),
        eta in 0.0..=1.0f64,
        min_cosine in 0.85..1.0f64,
        rates in prop::collection::vec(0.05..200.0f64, 1..6),
        budget_share in prop::option::of(0.3..1.5f64),
    ) {
        calibration.check().unwrap();
        // A budget between a share of the model and more than all of it; one below the
        // largest unit is refused, which is not what this test is about.
        let (units, reserve) = calibration.unit_bytes().unwrap();
        let total: u64 = units.iter().map(|u| u.0).sum::<u64>() + reserve;
        let largest = units.iter().map(|u| u.0).max().unwrap() + reserve;
        let budget = budget_share
            .map(|share| Budget::new(((total as f64 * share) as u64).max(largest), 2));
        let space = ActionSpace::with_budget(&board, &calibration, min_cosine, budget).unwrap();
        let options = EnvOptions { eta, round_trip_s: 0.02, server_speedup: 3.0 };
        let env = Environment::new(board, calibration, space, options).unwrap();
        let oracle = Oracle::new(&env);
        for mbit in rates {
            let (action, cost) = oracle.best(&env, mbit);
            let (_, brute) = brute_force(&env, mbit);
            prop_assert!((cost - brute).abs() <= 1e-9 * brute.abs().max(1.0), "{cost} vs {brute}");
            let actual = env.outcome(action, mbit).cost;
            prop_assert!((actual - brute).abs() <= 1e-9 * brute.abs().max(1.0), "{actual} vs {brute}");
        }
    }
}

#[test]
fn baselines_choose_what_they_are_named_for() {
    let env = common::env(0.99);
    let step = |mbit| Step {
        observed_mbit: mbit,
        actual_mbit: mbit,
        previous: None,
    };
    let edge = EdgeOnly.choose(&env, &step(8.0));
    assert_eq!(env.space.offloads[edge.offload].split, 2);
    assert_eq!((edge.cpu, edge.memory), (1, 1));
    let cloud = CloudOnly.choose(&env, &step(8.0));
    assert_eq!(env.space.offloads[cloud.offload].split, 0);
    // At 1000 Mbit/s sending 1 kB of inputs to a server twice as fast wins on latency; at
    // 0.05 Mbit/s the 4 kB of outputs alone take 640 ms, so everything stays here.
    let fast = Neurosurgeon.choose(&env, &step(1000.0));
    assert_eq!(env.space.offloads[fast.offload].split, 0);
    let slow = Neurosurgeon.choose(&env, &step(0.05));
    assert_eq!(env.space.offloads[slow.offload].split, 2);
    let mut oracle = Oracle::new(&env);
    for mbit in [0.05, 1.0, 8.0, 1000.0] {
        let chosen = oracle.choose(&env, &step(mbit));
        assert_eq!(env.outcome(chosen, mbit).cost, brute_force(&env, mbit).1);
    }
}

#[test]
fn one_knob_oracles_move_only_their_knob_and_never_beat_the_joint_one() {
    // Under a budget the whole model streams (see the env tests), so every knob has a choice.
    let env = common::budgeted_env(0.99, Some(35_000_000));
    let (top_cpu, top_memory) = (env.board.top_cpu(), env.board.top_memory());
    let mut oracle = Oracle::new(&env);
    for mbit in [0.05, 1.0, 8.0, 1000.0] {
        let step = Step {
            observed_mbit: mbit,
            actual_mbit: mbit,
            previous: None,
        };
        let joint = env.outcome(oracle.choose(&env, &step), mbit).cost;
        let levels = OneKnob::new(Knob::Levels).choose(&env, &step);
        assert_eq!(levels.offload, env.edge_only());
        let shape = OneKnob::new(Knob::Shape).choose(&env, &step);
        assert_eq!((shape.cpu, shape.memory), (top_cpu, top_memory));
        assert_eq!(env.space.offloads[shape.offload].split, env.space.stages);
        let offload = OneKnob::new(Knob::Offload).choose(&env, &step);
        assert_eq!((offload.cpu, offload.memory), (top_cpu, top_memory));
        let o = env.space.offloads[offload.offload];
        assert_eq!(env.offload(o.split, o.compression), Some(offload.offload));
        let edge = env.outcome(EdgeOnly.choose(&env, &step), mbit).cost;
        for chosen in [levels, shape, offload] {
            let cost = env.outcome(chosen, mbit).cost;
            assert!(
                cost >= joint - 1e-12,
                "{cost} below the joint oracle's {joint}"
            );
            assert!(cost <= edge + 1e-12, "{cost} above edge only's {edge}");
        }
    }
}
