//! GEMM throughput on the BERT-base and ViT-B/16 linear-layer shapes, one thread, against this
//! core's measured FMA peak (a register-resident AVX-512 FMA loop).
//!
//! `cargo run --release --bin gemm -- [--runs 21] [--threads 1]` (the peak is per core)

use edgerun_bench::{arg, median, time_runs};
use edgerun_tensor::kernels::{matmul_strided, MatRef};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    // 12 independent accumulators cover the FMA latency (4 cycles x 2 ports + slack).
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let a = _mm512_set1_ps(1.000_000_1);
    let b = _mm512_set1_ps(0.999_999_9);
    for _ in 0..iterations {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut total = _mm512_set1_ps(0.0);
    for r in acc {
        total = _mm512_add_ps(total, r);
    }
    _mm512_reduce_add_ps(total)
}

/// Peak single-core f32 GFLOP/s: 12 vector FMAs of 16 lanes, 2 FLOPs each, per iteration.
fn fma_peak_gflops(runs: usize) -> f64 {
    const ITER: u64 = 50_000_000;
    if !std::arch::is_x86_feature_detected!("avx512f") {
        eprintln!("no AVX-512F on this CPU: peak not measured");
        return f64::NAN;
    }
    let mut sink = 0.0;
    let times = time_runs(1, runs, || {
        // SAFETY: avx512f was detected above.
        sink += unsafe { fma_loop(ITER) };
    });
    std::hint::black_box(sink);
    (ITER * 12 * 16 * 2) as f64 / median(&times) / 1e9
}

fn main() {
    let runs: usize = arg("--runs", 21);
    let threads: usize = arg("--threads", 1);
    edgerun_tensor::parallel::set_threads(threads);
    let peak = fma_peak_gflops(5);
    println!("FMA peak, one core: {peak:.1} GFLOP/s (median of 5)");
    println!("| shape (m x k x n) | where | GFLOP/s | % of peak |");
    println!("|---|---|---:|---:|");
    let shapes = [
        (128, 768, 768, "BERT-base QKV/out, seq 128"),
        (128, 768, 3072, "BERT-base FFN up"),
        (128, 3072, 768, "BERT-base FFN down"),
        (197, 768, 768, "ViT-B/16 QKV/out"),
        (197, 768, 3072, "ViT-B/16 FFN up"),
        (197, 3072, 768, "ViT-B/16 FFN down"),
    ];
    for (m, k, n, label) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let times = time_runs(3, runs, || {
            matmul_strided(&mut c, n, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), false);
        });
        let gflops = (2 * m * k * n) as f64 / median(&times) / 1e9;
        println!("| {m} x {k} x {n} | {label} | {gflops:.1} | {:.0}% |", 100.0 * gflops / peak);
    }
}
