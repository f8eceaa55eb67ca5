//! Convolution throughput on every distinct convolution of ResNet-50 at 224x224 (batch 1), in
//! GFLOP/s, in both layouts side by side: NCHW (`conv2d`: im2col and the `gemm` crate) and
//! channels last (`conv2d_nhwc`: edgerun's GEMM over a weight packed beforehand, as models
//! run), with how much of the model's convolution work each shape is. The layout the CNN
//! families use is chosen on this measurement.
//!
//! `cargo run --release --bin conv -- [--runs 11] [--threads 2]`

use edgerun_bench::{arg, median, time_runs};
use edgerun_tensor::kernels::gemm::Epilogue;
use edgerun_tensor::kernels::{
    conv2d, conv2d_nhwc, nchw_to_nhwc, pack_conv, Conv2dParams, PackedConv,
};
use edgerun_tensor::Tensor;

/// (input channels, output channels, kernel, stride, input side, times in the model).
const RESNET50: &[(usize, usize, usize, usize, usize, usize)] = &[
    (3, 64, 7, 2, 224, 1),
    (64, 64, 1, 1, 56, 1),
    (64, 64, 3, 1, 56, 3),
    (64, 256, 1, 1, 56, 4),
    (256, 64, 1, 1, 56, 2),
    (256, 128, 1, 1, 56, 1),
    (128, 128, 3, 2, 56, 1),
    (128, 512, 1, 1, 28, 4),
    (256, 512, 1, 2, 56, 1),
    (512, 128, 1, 1, 28, 3),
    (128, 128, 3, 1, 28, 3),
    (512, 256, 1, 1, 28, 1),
    (256, 256, 3, 2, 28, 1),
    (256, 1024, 1, 1, 14, 6),
    (512, 1024, 1, 2, 28, 1),
    (1024, 256, 1, 1, 14, 5),
    (256, 256, 3, 1, 14, 5),
    (1024, 512, 1, 1, 14, 1),
    (512, 512, 3, 2, 14, 1),
    (512, 2048, 1, 1, 7, 3),
    (1024, 2048, 1, 2, 14, 1),
    (2048, 512, 1, 1, 7, 2),
    (512, 512, 3, 1, 7, 2),
];

fn main() {
    let runs: usize = arg("--runs", 11);
    let threads: usize = arg("--threads", 2);
    edgerun_tensor::parallel::set_threads(threads);
    println!("{threads} thread(s); GFLOP/s, ms per call, share of the model's convolution time");
    println!(
        "| in -> out, kernel, stride, side | NCHW GFLOP/s | NHWC GFLOP/s | NCHW ms | NHWC ms | x in model | NHWC share |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &(c, oc, k, stride, side, count) in RESNET50 {
        let x = Tensor::from_vec(
            &[1, c, side, side],
            (0..c * side * side)
                .map(|i| (i % 17) as f32 * 0.1)
                .collect(),
        )
        .expect("input");
        let w = Tensor::from_vec(
            &[oc, c, k, k],
            (0..oc * c * k * k)
                .map(|i| (i % 11) as f32 * 0.01)
                .collect(),
        )
        .expect("weight");
        let p = Conv2dParams {
            stride,
            padding: k / 2,
            ..Conv2dParams::default()
        };
        let out_side = (side + 2 * (k / 2) - k) / stride + 1;
        let flops = 2.0 * (oc * c * k * k * out_side * out_side) as f64;
        let nchw = time_runs(2, runs, || {
            std::hint::black_box(conv2d(&x, &w, None, p).expect("conv"));
        });
        let (x_last, packed) = (
            nchw_to_nhwc(&x).expect("nhwc"),
            pack_conv(&w).expect("pack"),
        );
        let weight = PackedConv {
            weight: (&packed).into(),
            shape: [oc, c, k, k],
        };
        let nhwc = time_runs(2, runs, || {
            std::hint::black_box(conv2d_nhwc(&x_last, weight, p, Epilogue::NONE).expect("conv"));
        });
        rows.push((
            c,
            oc,
            k,
            stride,
            side,
            count,
            flops,
            median(&nchw),
            median(&nhwc),
        ));
    }
    let total_nchw: f64 = rows.iter().map(|r| r.7 * r.5 as f64).sum();
    let total_nhwc: f64 = rows.iter().map(|r| r.8 * r.5 as f64).sum();
    for &(c, oc, k, stride, side, count, flops, t_nchw, t_nhwc) in &rows {
        println!(
            "| {c} -> {oc}, {k}x{k}, s{stride}, {side} | {:.1} | {:.1} | {:.3} | {:.3} | {count} | {:.1}% |",
            flops / t_nchw / 1e9,
            flops / t_nhwc / 1e9,
            t_nchw * 1e3,
            t_nhwc * 1e3,
            100.0 * t_nhwc * count as f64 / total_nhwc
        );
    }
    println!(
        "total convolution time per forward: NCHW {:.1} ms, NHWC {:.1} ms",
        total_nchw * 1e3,
        total_nhwc * 1e3
    );
}
