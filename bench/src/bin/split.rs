//! Split inference against a running `edgerun serve`, warm, median of `--reps`: edge only,
//! cloud only, and the split Neurosurgeon's rule picks for each compression, with bytes sent
//! and received and the least cosine of the outputs to a local run; `--sweep` also measures
//! every split uncompressed beside its prediction; `--load N,...` measures the server's
//! throughput and p50/p99 with N clients sending whole-model requests. One JSON line a row.
//!
//! `cargo run --release --bin split -- --store S --input IN --name NAME --url URL
//!  --profile P --rate-mbit 8 [--reps 5] [--compress none,f16,int8,channels=0.25] [--sweep]
//!  [--emulate-link] [--threads 1 --server-speedup 1.8] [--load 1,4,16 --load-requests 64]`
//!
//! `--threads` is the edge's compute threads (rayon's pool is fixed at the first setting, so
//! one process measures one edge); `--server-speedup` is how much faster the server computes
//! than the profile given (bench/split.sh takes it from two profiles).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgerun_bench::median;
use edgerun_runtime::profile::Profile;
use edgerun_runtime::{Session, SessionOptions};
use edgerun_serve::boundary::inputs_to_wire;
use edgerun_serve::client::{Client, LinkModel};
use edgerun_serve::split::{best_split, predict_splits, run_split, LinkEstimate};
use edgerun_serve::Compression;
use edgerun_tensor::Tensor;
use serde_json::json;

fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn has(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn required(name: &str) -> String {
    flag(name).unwrap_or_else(|| panic!("{name} is required"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

fn least_cosine(got: &[(String, Tensor)], want: &[(String, Tensor)]) -> f64 {
    want.iter()
        .map(|(n, w)| {
            let g = got.iter().find(|(m, _)| m == n).expect("every output").1.contiguous();
            cosine(g.values(), w.contiguous().values())
        })
        .fold(1.0, f64::min)
}

fn main() {
    let store = PathBuf::from(required("--store"));
    let input = PathBuf::from(required("--input"));
    let name = required("--name");
    let url = required("--url");
    let rate_mbit: f64 = required("--rate-mbit").parse().expect("--rate-mbit");
    let reps: usize = flag("--reps").map_or(5, |r| r.parse().expect("--reps"));
    let compressions: Vec<Compression> = flag("--compress")
        .unwrap_or_else(|| "none,f16,int8,channels=0.25".into())
        .split(',')
        .map(|c| c.parse().expect("--compress"))
        .collect();
    if let Some(threads) = flag("--threads") {
        edgerun_tensor::parallel::set_threads(threads.parse().expect("--threads"));
    }
    let inputs = edgerun_store::read_inputs(&input).expect("inputs");
    let mut client = Client::new(&url, Duration::from_secs(600)).expect("client");
    let link = if has("--emulate-link") { "client-model" } else { "tc-tbf" };
    if has("--emulate-link") {
        client = client.with_link(LinkModel {
            bits_per_s: rate_mbit * 1e6,
            delay: Duration::ZERO,
        });
    }
    let row = |mut v: serde_json::Value| {
        v["model"] = json!(name);
        v["rate_mbit"] = json!(rate_mbit);
        v["link"] = json!(link);
        v["edge_threads"] = json!(edgerun_tensor::parallel::threads());
        println!("{v}");
    };

    if let Some(clients) = flag("--load") {
        let requests: usize = flag("--load-requests").map_or(64, |r| r.parse().expect("n"));
        let tensors = inputs_to_wire(&inputs).expect("inputs");
        for n in clients.split(',').map(|c| c.parse::<usize>().expect("clients")) {
            let started = Instant::now();
            let mut latencies: Vec<f64> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..n)
                    .map(|_| {
                        scope.spawn(|| {
                            let client = Client::new(&url, Duration::from_secs(600)).unwrap();
                            (0..requests / n)
                                .map(|_| {
                                    let t = Instant::now();
                                    client.infer(&name, &tensors, Default::default()).unwrap();
                                    t.elapsed().as_secs_f64()
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
            });
            let wall = started.elapsed().as_secs_f64();
            latencies.sort_by(f64::total_cmp);
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
            row(json!({
                "mode": "load", "clients": n, "requests": latencies.len(),
                "throughput_per_s": latencies.len() as f64 / wall,
                "p50_ms": pct(0.5) * 1e3, "p99_ms": pct(0.99) * 1e3,
            }));
        }
        return;
    }

    let profile: Profile = serde_json::from_str(
        &std::fs::read_to_string(required("--profile")).expect("profile"),
    )
    .expect("profile json");
    let whole = Session::open(&store, SessionOptions::default()).expect("store");
    let stages = whole.model().stages().len();
    let server_speedup: f64 = flag("--server-speedup").map_or(1.0, |s| s.parse().expect("x"));
    let reference = whole.run(inputs.clone(), false).expect("local run").tensors;
    let mut heads: HashMap<usize, Session> = HashMap::new();
    let mut measure = |split: usize, how: Compression| {
        let head = heads.entry(split).or_insert_with(|| {
            let options = SessionOptions {
                part: Some(0..split),
                ..SessionOptions::default()
            };
            Session::open(&store, options).expect("head")
        });
        let mut times = Vec::new();
        let mut last = None;
        for rep in 0..=reps {
            let t = Instant::now();
            let result = run_split(head, &client, &name, inputs.clone(), split, how, false)
                .expect("split run");
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
            last = Some(result);
        }
        times.sort_by(f64::total_cmp);
        let (outputs, report) = last.expect("a run");
        json!({
            "split": split, "stages": stages, "compress": how.to_string(),
            "median_ms": median(&times) * 1e3,
            "min_ms": times[0] * 1e3, "max_ms": times[times.len() - 1] * 1e3,
            "sent_bytes": report.sent_bytes, "received_bytes": report.received_bytes,
            "least_cosine": least_cosine(&outputs, &reference),
        })
    };
    let round_trip_s = client.round_trip(9).expect("server reachable");
    let link_estimate = LinkEstimate {
        bits_per_s: rate_mbit * 1e6,
        round_trip_s,
        server_speedup,
    };
    let input_bytes = inputs_to_wire(&inputs)
        .expect("inputs")
        .iter()
        .map(|t| t.bytes.len() as u64)
        .sum();
    let mut edge = measure(stages, Compression::None);
    edge["mode"] = json!("edge-only");
    edge["server_speedup"] = json!(server_speedup);
    row(edge);
    let mut cloud = measure(0, Compression::None);
    cloud["mode"] = json!("cloud-only");
    row(cloud);
    for &how in &compressions {
        let choices = predict_splits(&profile, input_bytes, how, link_estimate).expect("predict");
        let best = best_split(&choices).expect("a split").clone();
        let mut m = measure(best.split, how);
        m["mode"] = json!("auto");
        m["predicted_ms"] = json!(best.latency_s() * 1e3);
        row(m);
    }
    if has("--sweep") {
        let choices = predict_splits(&profile, input_bytes, Compression::None, link_estimate)
            .expect("predict");
        for c in choices {
            let mut m = measure(c.split, Compression::None);
            m["mode"] = json!("sweep");
            m["predicted_ms"] = json!(c.latency_s() * 1e3);
            row(m);
        }
    }
}
