//! Warm forward latency of a model folder, weights in memory, batch 1: prints one JSON line.
//!
//! `forward --model DIR --task bert|vit|gpt2|resnet [--runs 20] [--threads 2] [--seq 128]
//! [--attention softmax|taylor|sima|shift-softmax] [--fixed Q8.8]`
//! For gpt2 it also times decoding: `--decode 32` new tokens after the prompt, per token.
//! `peak_rss_bytes` is the process's VmHWM at the end.

use edgerun_bench::{arg, median, time_runs};
use edgerun_models::{IdTensor, Inputs, RunOptions};
use edgerun_runtime::{Executor, FullExecutor, MemorySample};
use edgerun_store::ModelSource;
use edgerun_tensor::fixed::{FixedPoint, QFormat};
use edgerun_tensor::kernels::{AttentionAlgorithm, AttentionVariant};
use edgerun_tensor::Tensor;

fn main() {
    let model: String = arg("--model", String::new());
    let task: String = arg("--task", String::new());
    let runs: usize = arg("--runs", 20);
    let threads: usize = arg("--threads", 2);
    let seq: usize = arg("--seq", 128);
    let decode: usize = arg("--decode", 32);
    let attention: String = arg("--attention", "softmax".to_string());
    let fixed: String = arg("--fixed", String::new());
    let fixed_point = (!fixed.is_empty()).then(|| FixedPoint {
        format: QFormat::parse(&fixed).expect("--fixed Q-format"),
        ..FixedPoint::q8_8()
    });
    let algorithm = AttentionAlgorithm::new(
        AttentionVariant::parse(&attention).expect("--attention"),
        fixed_point,
    )
    .expect("attention and fixed point");
    let run_options = RunOptions {
        attention: algorithm,
        ..RunOptions::default()
    };
    edgerun_tensor::parallel::set_threads(threads);
    let folder = ModelSource::open(std::path::Path::new(&model)).expect("model folder");
    let executor = FullExecutor::load(&folder).expect("load");
    let ids = |n: usize| {
        IdTensor::new(
            vec![1, n],
            (0..n as i64).map(|i| 100 + (i * 7919) % 20000).collect(),
        )
        .unwrap()
    };
    let inputs = match task.as_str() {
        "bert" | "gpt2" => Inputs {
            input_ids: Some(ids(seq)),
            ..Inputs::default()
        },
        "vit" | "resnet" => {
            let pixels: Vec<f32> = (0..3 * 224 * 224)
                .map(|i| ((i % 255) as f32 / 127.5) - 1.0)
                .collect();
            Inputs {
                pixel_values: Some(Tensor::from_vec(&[1, 3, 224, 224], pixels).unwrap()),
                ..Inputs::default()
            }
        }
        other => panic!("unknown --task {other:?}"),
    };
    let times = time_runs(3, runs, || {
        executor
            .forward(inputs.clone(), run_options.clone())
            .expect("forward");
    });
    let mut report = serde_json::json!({
        "engine": "edgerun", "task": task, "threads": threads, "runs": runs, "seq": seq,
        "attention": attention, "fixed_point": fixed,
        "forward_ms": median(&times) * 1e3,
    });
    if task == "gpt2" {
        // Per-token decode: a prompt of `seq` tokens in the cache, then one token per step.
        let per_token = time_runs(1, runs.min(5), || {
            let options = RunOptions {
                extra_tokens: decode,
                last_logits_only: true,
                ..run_options.clone()
            };
            let mut state = executor.model().start(inputs.clone(), options).unwrap();
            executor.run_stages(&mut state).unwrap();
            let t = std::time::Instant::now();
            for step in 0..decode {
                state.advance(vec![(500 + step) as i64]).unwrap();
                executor.run_stages(&mut state).unwrap();
            }
            let per = t.elapsed().as_secs_f64() / decode as f64;
            std::hint::black_box(per);
            PER_TOKEN.with(|p| p.borrow_mut().push(per));
        });
        let _ = per_token;
        let mut per = PER_TOKEN.with(|p| p.borrow().clone());
        per.sort_by(f64::total_cmp);
        report["decode_ms_per_token"] = serde_json::json!(median(&per) * 1e3);
    }
    // The high-water mark of the whole warm run (load, forwards, decoding), as ru_maxrss is
    // for the peers.
    report["peak_rss_bytes"] = serde_json::json!(MemorySample::now().vm_hwm_bytes);
    println!("{report}");
}

thread_local! {
    static PER_TOKEN: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}
