//! The quantised product against the f32 GEMM on transformer shapes, prompt (many rows) and
//! decode (one row), interleaved round by round so the VM's drift moves all three alike.
//!
//! `cargo run --release --bin qgemm -- [--runs 21] [--threads 1]`

use edgerun_bench::{arg, median};
use edgerun_tensor::kernels::{gemm, MatRef};
use edgerun_tensor::quant::{self, QuantFormat};

fn main() {
    let runs: usize = arg("--runs", 21);
    let threads: usize = arg("--threads", 1);
    edgerun_tensor::parallel::set_threads(threads);
    println!(
        "f32 kernel: {}; int8 kernel: {}; q4 kernel: {}; {threads} thread(s); median of {runs}, ms",
        gemm::kernel_name(),
        quant::qgemm::kernel_name(QuantFormat::Int8),
        quant::qgemm::kernel_name(QuantFormat::Q4)
    );
    println!("| shape (m x k x n) | where | f32 | int8 | q4 | f32 / int8 | f32 / q4 | of which quantising rows (int8) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let shapes = [
        (128, 768, 768, "BERT-base QKV/out, seq 128"),
        (128, 768, 3072, "BERT-base FFN up"),
        (128, 3072, 768, "BERT-base FFN down"),
        (197, 768, 3072, "ViT-B/16 FFN up"),
        (1, 768, 2304, "GPT-2 fused QKV, one token"),
        (1, 3072, 768, "GPT-2 MLP down, one token"),
        (1, 4096, 16384, "GPT-J MLP up, one token"),
        (784, 1152, 128, "channels last: 3x3 conv, 128 ch, 28x28"),
    ];
    for (m, k, n, label) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 997) as f32 * 1e-4 - 0.05)
            .collect();
        let mut packed = vec![0.0f32; gemm::packed_len(k, n)];
        gemm::pack_into(MatRef::row_major(&b, k, n), &mut packed);
        let int8 = quant::quantize(MatRef::row_major(&b, k, n), QuantFormat::Int8).expect("finite");
        let q4 = quant::quantize(MatRef::row_major(&b, k, n), QuantFormat::Q4).expect("finite");
        let mut c = vec![0.0f32; m * n];
        let out = |c: &mut [f32]| gemm::Out {
            data: unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr(), c.len()) },
            row_stride: n,
            col_stride: 1,
        };
        let lhs = MatRef::row_major(&a, m, k);
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..runs + 3 {
            for i in 0..3 {
                let which = (i + round) % 3;
                let t = std::time::Instant::now();
                match which {
                    0 => gemm::gemm(
                        out(&mut c),
                        lhs,
                        gemm::Rhs::Packed {
                            data: &packed,
                            rows: k,
                            cols: n,
                        },
                        false,
                        gemm::Epilogue::NONE,
                    ),
                    1 => quant::qgemm(out(&mut c), lhs, &int8, gemm::Epilogue::NONE),
                    _ => quant::qgemm(out(&mut c), lhs, &q4, gemm::Epilogue::NONE),
                }
                if round >= 3 {
                    times[which].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let [f, i8t, q4t] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            median(&t)
        });
        let mut quantising: Vec<f64> = (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(quant::rows::quantize_rows(lhs, QuantFormat::Int8));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        quantising.sort_by(f64::total_cmp);
        println!(
            "| {m} x {k} x {n} | {label} | {f:.3} | {i8t:.3} | {q4t:.3} | {:.2} | {:.2} | {:.3} |",
            f / i8t,
            f / q4t,
            median(&quantising)
        );
    }
}
