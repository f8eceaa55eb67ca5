//! The learned controller: trained briefly on the hand-worked environment it comes within a
//! stated margin of the oracle; its file round-trips; files that are not its, or were trained
//! for something else, are refused in words.

#![cfg(feature = "dqn")]

mod common;

use edgerun_dvfo::dqn::{file, train, DqnOptions};
use edgerun_dvfo::episode;
use edgerun_dvfo::policy::{EdgeOnly, Oracle};
use edgerun_dvfo::Trace;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerun-dvfo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quick() -> DqnOptions {
    DqnOptions {
        steps: 10_000,
        hidden: 64,
        warmup: 200,
        seed: 1,
        ..DqnOptions::default()
    }
}

/// The margin a briefly trained policy is held to: its mean cost at most 3% above the
/// oracle's, on a random walk of another seed over the range it was trained on (0.5 to 20
/// Mbit/s) and on steps that sit at the range's edges for 50 inferences each. Seeds 1 to 3
/// measured 0.6 to 1.3% on the walk and 0.7% on the steps when this was written; the
/// oracle's edge is knowing the coming rate, where the policy sees the last one.
const MARGIN: f64 = 0.03;

#[test]
fn a_briefly_trained_policy_comes_within_the_margin_of_the_oracle() {
    let env = common::env(0.99);
    let training = Trace::parse("walk:11", 10_000).unwrap();
    let (mut policy, report) = train(&env, &training, &quick(), |_, _| {}).unwrap();
    assert_eq!(report.steps, 10_000);
    for spec in ["walk:99", "steps:20,2,0.5,8@50"] {
        let test = Trace::parse(spec, 300).unwrap();
        let (_, learned) = episode::run(&env, &mut policy, &test);
        let (_, best) = episode::run(&env, &mut Oracle::new(&env), &test);
        let (_, edge) = episode::run(&env, &mut EdgeOnly, &test);
        assert!(
            learned.cost <= best.cost * (1.0 + MARGIN),
            "{spec}: dqn {} vs oracle {} (edge only {})",
            learned.cost,
            best.cost,
            edge.cost
        );
        assert!(
            learned.cost < edge.cost,
            "{spec}: {} vs edge only {}",
            learned.cost,
            edge.cost
        );
    }
}

#[test]
fn a_policy_file_round_trips_and_is_refused_elsewhere() {
    let dir = scratch("policy");
    let env = common::env(0.99);
    let training = Trace::parse("walk:3", 600).unwrap();
    let options = DqnOptions {
        steps: 600,
        hidden: 16,
        warmup: 100,
        ..DqnOptions::default()
    };
    let (mut policy, _) = train(&env, &training, &options, |_, _| {}).unwrap();
    let path = dir.join("policy.safetensors");
    file::save(&policy, &env, &path).unwrap();
    let mut loaded = file::load(&path, &env).unwrap();
    assert_eq!(
        loaded.network.values().unwrap(),
        policy.network.values().unwrap()
    );
    let trace = Trace::parse("walk:5", 100).unwrap();
    let (a, _) = episode::run(&env, &mut policy, &trace);
    let (b, _) = episode::run(&env, &mut loaded, &trace);
    assert!(a.iter().zip(&b).all(|(x, y)| x.action == y.action));

    // Another cosine floor is another action set.
    let strict = common::env(0.9995);
    let err = file::load(&path, &strict).unwrap_err().to_string();
    assert!(err.contains("another action set"), "{err}");
    // Another eta.
    let mut other = common::env(0.99);
    other.options.eta = 0.9;
    let err = file::load(&path, &other).unwrap_err().to_string();
    assert!(err.contains("eta"), "{err}");

    // Another budget: the streamed offloads differ from the resident ones.
    let budgeted = common::budgeted_env(0.99, Some(35_000_000));
    let err = file::load(&path, &budgeted).unwrap_err().to_string();
    assert!(err.contains("another action set"), "{err}");
    // The same offloads under another budget.
    let (mut streamed, _) = train(&budgeted, &training, &options, |_, _| {}).unwrap();
    let streamed_path = dir.join("streamed.safetensors");
    file::save(&streamed, &budgeted, &streamed_path).unwrap();
    let mut reloaded = file::load(&streamed_path, &budgeted).unwrap();
    let (a, _) = episode::run(&budgeted, &mut streamed, &trace);
    let (b, _) = episode::run(&budgeted, &mut reloaded, &trace);
    assert!(a.iter().zip(&b).all(|(x, y)| x.action == y.action));
    let roomier = common::budgeted_env(0.99, Some(36_000_000));
    let err = file::load(&streamed_path, &roomier)
        .unwrap_err()
        .to_string();
    assert!(err.contains("trained for a budget of 35000000"), "{err}");

    // Not a policy: garbage, a truncated file, safetensors without our metadata.
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a file").unwrap();
    let err = file::load(&garbage, &env).unwrap_err().to_string();
    assert!(err.contains("not safetensors"), "{err}");
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    assert!(file::load(&truncated, &env).is_err());
    let bare = dir.join("bare.safetensors");
    let data = [0u8; 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    std::fs::write(&bare, safetensors::serialize([("x", view)], None).unwrap()).unwrap();
    let err = file::load(&bare, &env).unwrap_err().to_string();
    assert!(err.contains("no metadata"), "{err}");
    let err = file::load(&dir.join("absent"), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bootstrapped_training_keeps_the_network_finite() {
    let env = common::env(0.99);
    let training = Trace::parse("walk:4", 800).unwrap();
    let options = DqnOptions {
        steps: 800,
        hidden: 16,
        warmup: 100,
        gamma: 0.9,
        ..DqnOptions::default()
    };
    let (mut policy, _) = train(&env, &training, &options, |_, _| {}).unwrap();
    let values = policy.network.values().unwrap();
    assert!(values
        .iter()
        .all(|(w, b)| w.iter().chain(b).all(|v| v.is_finite())));
    let trace = Trace::parse("walk:5", 50).unwrap();
    let (steps, _) = episode::run(&env, &mut policy, &trace);
    assert!(steps
        .iter()
        .all(|s| s.action.offload < env.space.offloads.len()));
}
