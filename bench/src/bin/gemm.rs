//! GEMM throughput on the BERT-base, ViT-B/16 and GPT-2 linear-layer shapes and ResNet-50
//! convolution shapes, against this core's measured FMA peak (a register-resident FMA loop in the widest vectors the CPU has,
//! chosen at run time: AVX-512, AVX2+FMA or NEON).
//!
//! `cargo run --release --bin gemm -- [--runs 21] [--threads 1] [--isa auto|avx2]` (the peak is
//! per core)

use edgerun_bench::{arg, median, time_runs};
use edgerun_tensor::kernels::{gemm, matmul_strided, MatRef};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_avx512(iterations: u64) -> f32 {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(1.000_000_1);
    let b = _mm256_set1_ps(0.999_999_9);
    for _ in 0..iterations {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut total = _mm256_set1_ps(0.0);
    for r in acc {
        total = _mm256_add_ps(total, r);
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds the 8 f32 an unaligned 256-bit store writes.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    lanes.iter().sum()
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
fn fma_loop_neon(iterations: u64) -> f32 {
    use std::arch::aarch64::*;
    // 16 accumulators: up to 4 FMA pipes of 4-cycle latency.
    let mut acc = [vdupq_n_f32(0.0); 16];
    let a = vdupq_n_f32(1.000_000_1);
    let b = vdupq_n_f32(0.999_999_9);
    for _ in 0..iterations {
        for r in acc.iter_mut() {
            *r = vfmaq_f32(b, *r, a);
        }
    }
    acc.iter().map(|&r| vaddvq_f32(r)).sum()
}

/// Peak single-core f32 GFLOP/s with the widest FMA this CPU has: accumulators x lanes x
/// 2 FLOPs per iteration.
fn fma_peak_gflops(runs: usize, isa: &str) -> (f64, &'static str) {
    const ITER: u64 = 50_000_000;
    let (loop_fn, accumulators, lanes, name): (fn(u64) -> f32, u64, u64, &str) = match pick(isa) {
        Some(found) => found,
        None => {
            eprintln!(
                "no {isa} FMA loop for this CPU (AVX-512F, AVX2+FMA, NEON): peak not measured"
            );
            return (f64::NAN, "none");
        }
    };
    let mut sink = 0.0;
    let times = time_runs(1, runs, || sink += loop_fn(ITER));
    std::hint::black_box(sink);
    let flops = ITER * accumulators * lanes * 2;
    (flops as f64 / median(&times) / 1e9, name)
}

/// The FMA loop for this CPU, detected at run time; `isa` may ask for a narrower one
/// (`avx2`), or `auto`.
#[allow(clippy::type_complexity)]
fn pick(isa: &str) -> Option<(fn(u64) -> f32, u64, u64, &'static str)> {
    let _ = isa;
    #[cfg(target_arch = "x86_64")]
    {
        if isa != "avx2" && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: avx512f was detected just above.
            return Some((|n| unsafe { fma_loop_avx512(n) }, 12, 16, "AVX-512"));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: avx2 and fma were detected just above.
            return Some((|n| unsafe { fma_loop_avx2(n) }, 12, 8, "AVX2+FMA"));
        }
        None
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            // SAFETY: neon was detected just above.
            return Some((|n| unsafe { fma_loop_neon(n) }, 16, 4, "NEON"));
        }
        None
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

fn main() {
    let runs: usize = arg("--runs", 21);
    let threads: usize = arg("--threads", 1);
    edgerun_tensor::parallel::set_threads(threads);
    let isa: String = arg("--isa", "auto".to_string());
    let (peak, isa) = fma_peak_gflops(5, &isa);
    println!("FMA peak, one core, {isa}: {peak:.1} GFLOP/s (median of 5)");
    println!(
        "edgerun's kernel: {}; {threads} thread(s); GFLOP/s (% of {threads} x peak)",
        gemm::kernel_name()
    );
    println!("| shape (m x k x n) | where | gemm crate, its own threads | gemm crate, split by edgerun (matmul_strided) | edgerun GEMM, B prepacked | edgerun GEMM / matmul_strided speed-up |");
    println!("|---|---|---:|---:|---:|---:|");
    let shapes = [
        (128, 768, 768, "BERT-base QKV/out, seq 128"),
        (128, 768, 3072, "BERT-base FFN up"),
        (128, 3072, 768, "BERT-base FFN down"),
        (197, 768, 768, "ViT-B/16 QKV/out"),
        (197, 768, 3072, "ViT-B/16 FFN up"),
        (197, 3072, 768, "ViT-B/16 FFN down"),
        (128, 768, 2304, "GPT-2 fused QKV, 128 tokens"),
        (64, 576, 3136, "ResNet-50 3x3 conv, 64 ch, 56x56"),
        (256, 2304, 196, "ResNet-50 3x3 conv, 256 ch, 14x14"),
        (512, 4608, 49, "ResNet-50 3x3 conv, 512 ch, 7x7"),
        (256, 1024, 196, "ResNet-50 1x1 conv 1024 -> 256, 14x14"),
        (128, 512, 784, "ResNet-50 1x1 conv 512 -> 128, 28x28"),
        (64, 256, 3136, "ResNet-50 1x1 conv 256 -> 64, 56x56"),
        (3136, 576, 64, "channels last: 3x3 conv, 64 ch, 56x56"),
        (3136, 64, 256, "channels last: 1x1 conv 64 -> 256, 56x56"),
        (3136, 256, 64, "channels last: 1x1 conv 256 -> 64, 56x56"),
        (784, 1152, 128, "channels last: 3x3 conv, 128 ch, 28x28"),
        (784, 512, 128, "channels last: 1x1 conv 512 -> 128, 28x28"),
        (196, 2304, 256, "channels last: 3x3 conv, 256 ch, 14x14"),
        (196, 1024, 256, "channels last: 1x1 conv 1024 -> 256, 14x14"),
        (196, 256, 1024, "channels last: 1x1 conv 256 -> 1024, 14x14"),
        (49, 4608, 512, "channels last: 3x3 conv, 512 ch, 7x7"),
        (49, 512, 2048, "channels last: 1x1 conv 512 -> 2048, 7x7"),
    ];
    let cores_peak = peak * threads as f64;
    for (m, k, n, label) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut packed = vec![0.0f32; gemm::packed_len(k, n)];
        gemm::pack_into(MatRef::row_major(&b, k, n), &mut packed);
        let mut c = vec![0.0f32; m * n];
        let mut crate_gemm = || unsafe {
            ::gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                if threads > 1 {
                    ::gemm::Parallelism::Rayon(threads)
                } else {
                    ::gemm::Parallelism::None
                },
            )
        };
        let split = |c: &mut [f32]| {
            matmul_strided(
                c,
                n,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                false,
            )
        };
        let prepacked = |c: &mut [f32]| {
            gemm::gemm(
                gemm::Out {
                    data: c,
                    row_stride: n,
                    col_stride: 1,
                },
                MatRef::row_major(&a, m, k),
                gemm::Rhs::Packed {
                    data: &packed,
                    rows: k,
                    cols: n,
                },
                false,
                gemm::Epilogue::NONE,
            )
        };
        // Interleaved: each round times the three once, in rotating order, so drift of the
        // VM's speed moves all three alike; the ratio is the median of the rounds' ratios.
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut c2 = vec![0.0f32; m * n];
        for round in 0..runs + 3 {
            for i in 0..3 {
                let which = (i + round) % 3;
                let t = std::time::Instant::now();
                match which {
                    0 => crate_gemm(),
                    1 => split(&mut c2),
                    _ => prepacked(&mut c2),
                }
                if round >= 3 {
                    times[which].push(t.elapsed().as_secs_f64());
                }
            }
        }
        let ratio: Vec<f64> = {
            let mut r: Vec<f64> = times[1].iter().zip(&times[2]).map(|(x, y)| x / y).collect();
            r.sort_by(f64::total_cmp);
            r
        };
        let rate = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            let gflops = (2 * m * k * n) as f64 / median(&times) / 1e9;
            format!("{gflops:.1} ({:.0}%)", 100.0 * gflops / cores_peak)
        };
        let [t_crate, t_split, t_packed] = times;
        let (crate_gemm, split, prepacked) = (rate(t_crate), rate(t_split), rate(t_packed));
        let speedup = median(&ratio);
        println!(
            "| {m} x {k} x {n} | {label} | {crate_gemm} | {split} | {prepacked} | {speedup:.2} |"
        );
    }
}
