use std::sync::Arc;

use proptest::prelude::*;

use super::micro;
use super::qgemm::{qgemm_with, reference};
use super::rows::quantize_rows;
use super::*;
use crate::kernels::gemm::{Epilogue, Out, Residual};
use crate::kernels::matmul::MatRef;
use crate::kernels::Activation;
use crate::{AlignedBuf, ByteBuffer, FillBuffer};

/// `data` as a dense `rows x n` output.
fn dense(data: &mut [f32], n: usize) -> Out<'_> {
    Out {
        data,
        row_stride: n,
        col_stride: 1,
    }
}

/// Whether two outputs hold the same bits.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn values(len: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * spread
        })
        .collect()
}

#[derive(Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    format: QuantFormat,
    a_transposed: bool,
    bias: bool,
    residual: bool,
    relu: bool,
    threads: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop_oneof![4 => 1usize..20, 1 => 60usize..140],
            0usize..300,
            1usize..150,
        ),
        prop_oneof![Just(QuantFormat::Int8), Just(QuantFormat::Q4)],
        any::<[bool; 4]>(),
        1usize..=3,
        any::<u64>(),
    )
        .prop_map(|((m, k, n), format, flags, threads, seed)| Case {
            m,
            k,
            n,
            format,
            a_transposed: flags[0],
            bias: flags[1],
            residual: flags[2],
            relu: flags[3],
            threads,
            seed,
        })
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let a = values(c.m * c.k, c.seed, 3.0);
    let w = values(c.k * c.n, c.seed ^ 0x9e37, 0.5);
    let bias = values(c.n, c.seed ^ 7, 1.0);
    let residual = values(c.m * c.n, c.seed ^ 11, 1.0);
    let b = quantize(MatRef::row_major(&w, c.k, c.n), c.format).expect("finite weights");
    let a_view = if c.a_transposed {
        MatRef::row_major(&a, c.k, c.m).t()
    } else {
        MatRef::row_major(&a, c.m, c.k)
    };
    let epilogue = Epilogue {
        scale: None,
        bias: c.bias.then_some(&bias[..]),
        residual: c.residual.then_some(Residual {
            data: &residual,
            row_stride: c.n,
        }),
        activation: if c.relu {
            Activation::Relu
        } else {
            Activation::Identity
        },
    };
    let mut expected = vec![0.0f32; c.m * c.n];
    reference(dense(&mut expected, c.n), a_view, &b, epilogue);
    for kernel in micro::available(c.format) {
        let mut got = vec![f32::NAN; c.m * c.n];
        let rows = quantize_rows(a_view, c.format);
        qgemm_with(
            kernel,
            dense(&mut got, c.n),
            a_view,
            &rows,
            &b,
            epilogue,
            Some(c.threads),
        );
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            prop_assert!(
                g.to_bits() == e.to_bits(),
                "kernel {} element {i}: {g} vs {e}",
                kernel.name
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn every_kernel_gives_the_reference_bits(c in case()) {
        run_case(&c)?;
    }

    /// Quantised weights stay within half a step of the originals.
    #[test]
    fn codes_round_to_the_nearest_step(
        k in 1usize..100, n in 1usize..100, seed in any::<u64>(), q4 in any::<bool>()
    ) {
        let format = if q4 { QuantFormat::Q4 } else { QuantFormat::Int8 };
        let w = values(k * n, seed, 2.0);
        let m = quantize(MatRef::row_major(&w, k, n), format).expect("finite");
        let back = dequantize(&m);
        for j in 0..n {
            for block in 0..k.div_ceil(format.group_size(k)) {
                let size = format.group_size(k);
                let steps = block * size..((block + 1) * size).min(k);
                let amax = steps.clone().map(|i| w[i * n + j].abs()).fold(0.0f32, f32::max);
                // int8: 127 steps each side; q4: 8 to the extreme's side and 7 to the other
                // (a value past 7.5 steps there is clamped to 7), the scale rounded to f16.
                let step = if q4 { amax / 8.0 } else { amax / 127.0 };
                for i in steps {
                    let v = w[i * n + j];
                    let err = (back[i * n + j] - v).abs();
                    let clamped = q4 && v.abs() > 7.49 * step;
                    // The f16 scale is within 2^-11 of the exact one; 7 of them at the clamp.
                    let bound = if clamped { step } else { step * 0.5 } * 1.004;
                    prop_assert!(err <= bound + 1e-6, "({i}, {j}): {err} > {bound}");
                }
            }
        }
    }
}

#[test]
fn known_product_in_integers() {
    // Weights that are exact multiples of their scale and activations at their extremes:
    // the result is exact.
    let (k, n) = (8, 3);
    let mut w = vec![0.0f32; k * n];
    for i in 0..k {
        for j in 0..n {
            w[i * n + j] = ((i as f32) - 3.0) * (j as f32 + 1.0) / 4.0;
        }
    }
    let a: Vec<f32> = (0..k)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let b = quantize(MatRef::row_major(&w, k, n), QuantFormat::Int8).expect("finite");
    let mut out = vec![0.0f32; n];
    qgemm(
        dense(&mut out, n),
        MatRef::row_major(&a, 1, k),
        &b,
        Epilogue::NONE,
    );
    for j in 0..n {
        let exact: f32 = (0..k).map(|i| a[i] * w[i * n + j]).sum();
        assert!(
            (out[j] - exact).abs() <= 1e-5 * exact.abs().max(1.0),
            "{j}: {} vs {exact}",
            out[j]
        );
    }
}

#[test]
fn a_row_with_a_nan_gives_nan_outputs() {
    let (k, n) = (40, 70);
    let w = values(k * n, 3, 1.0);
    for format in [QuantFormat::Int8, QuantFormat::Q4] {
        let b = quantize(MatRef::row_major(&w, k, n), format).expect("finite");
        let mut a = values(2 * k, 5, 1.0);
        a[3] = f32::NAN;
        a[k + 5] = f32::INFINITY;
        let rows = quantize_rows(MatRef::row_major(&a, 2, k), format);
        assert!(rows.scales[0].is_nan());
        for kernel in micro::available(format) {
            let mut out = vec![0.0f32; 2 * n];
            qgemm_with(
                kernel,
                dense(&mut out, n),
                MatRef::row_major(&a, 2, k),
                &rows,
                &b,
                Epilogue::NONE,
                Some(1),
            );
            // q4: the NaN is in the first block of row 0 and the infinity in the first block
            // of row 1; both poison their row.
            assert!(out.iter().all(|v| v.is_nan()), "{} {format}", kernel.name);
        }
    }
}

#[test]
fn non_finite_weights_are_refused() {
    let mut w = vec![0.5f32; 16];
    w[5] = f32::INFINITY;
    let err = quantize(MatRef::row_major(&w, 4, 4), QuantFormat::Int8).unwrap_err();
    assert!(err.to_string().contains("weight (1, 1) is inf"), "{err}");
}

#[test]
fn damaged_scales_and_short_buffers_are_refused() {
    let w = values(64 * 64, 1, 1.0);
    for format in [QuantFormat::Int8, QuantFormat::Q4] {
        let m = quantize(MatRef::row_major(&w, 64, 64), format).expect("finite");
        let mut bytes = AlignedBuf::zeroed(m.stored_len()).expect("alloc");
        bytes.as_mut_slice().copy_from_slice(m.bytes());
        let scales_at = format.codes_len(64, 64);
        // An f32 NaN, or an f16 infinity, in the first scale.
        let poison: &[u8] = match format {
            QuantFormat::Int8 => &f32::NAN.to_le_bytes(),
            QuantFormat::Q4 => &[0x00, 0x7c],
        };
        bytes.as_mut_slice()[scales_at..scales_at + poison.len()].copy_from_slice(poison);
        let buffer: Arc<dyn ByteBuffer> = Arc::new(bytes);
        let err = QuantMatrix::from_buffer(format, 64, 64, buffer.clone(), 0).unwrap_err();
        assert!(err.to_string().contains("scale 0"), "{err}");
        let err = QuantMatrix::from_buffer(format, 64, 65, buffer, 0).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
    }
    let err = quantize(
        MatRef::row_major(&vec![0.0; MAX_INNER + 1], MAX_INNER + 1, 1),
        QuantFormat::Int8,
    )
    .unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn extreme_codes_are_exact_on_every_kernel() {
    // -128 never comes out of `quantize`, but a store could hold it: every kernel still
    // multiplies it exactly (the AVX2 kernel's sign trick puts the sign on the activation).
    let (k, n) = (8, 64);
    let w = values(k * n, 9, 1.0);
    let m = quantize(MatRef::row_major(&w, k, n), QuantFormat::Int8).expect("finite");
    let mut bytes = AlignedBuf::zeroed(m.stored_len()).expect("alloc");
    bytes.as_mut_slice().copy_from_slice(m.bytes());
    for code in &mut bytes.as_mut_slice()[..QuantFormat::Int8.codes_len(k, n)] {
        *code = 0x80;
    }
    let m = QuantMatrix::from_buffer(QuantFormat::Int8, k, n, Arc::new(bytes), 0).expect("valid");
    let a = values(3 * k, 4, 1.0);
    let mut expected = vec![0.0f32; 3 * n];
    reference(
        dense(&mut expected, n),
        MatRef::row_major(&a, 3, k),
        &m,
        Epilogue::NONE,
    );
    for kernel in micro::available(QuantFormat::Int8) {
        let mut got = vec![0.0f32; 3 * n];
        let lhs = MatRef::row_major(&a, 3, k);
        let rows = quantize_rows(lhs, QuantFormat::Int8);
        qgemm_with(
            kernel,
            dense(&mut got, n),
            lhs,
            &rows,
            &m,
            Epilogue::NONE,
            Some(1),
        );
        assert!(same_bits(&got, &expected), "{}", kernel.name);
    }
}

proptest! {
    /// Every vector quantizer of this CPU gives the scalar one's codes, scale and sum, ties and
    /// non-finite values included.
    #[test]
    fn row_quantizers_agree(
        raw in proptest::collection::vec(
            prop_oneof![
                8 => -100.0f32..100.0,
                1 => Just(0.5f32),
                1 => Just(-2.5f32),
                1 => Just(0.0f32),
            ],
            0..300,
        ),
        poison in proptest::option::of((0usize..300, prop_oneof![
            Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)
        ])),
    ) {
        let mut values = raw;
        if let (Some((at, v)), false) = (poison, values.is_empty()) {
            let at = at % values.len();
            values[at] = v;
        }
        let mut expected = vec![0i8; values.len()];
        let want = super::rows::quantize_run_scalar(&values, &mut expected);
        for quantizer in super::rows::vector_quantizers() {
            let mut got = vec![0i8; values.len()];
            // SAFETY: `vector_quantizers` lists only quantizers this CPU runs.
            let have = unsafe { quantizer(&values, &mut got) };
            prop_assert_eq!(want.0.to_bits(), have.0.to_bits());
            prop_assert_eq!(want.1, have.1);
            prop_assert_eq!(&expected, &got);
        }
    }
}

#[test]
fn a_tall_product_in_bands_gives_the_reference_bits() {
    // More rows than one band of quantised codes holds: the product runs band by band.
    let (k, n) = (600, 70);
    let m = qgemm::BAND_BYTES / k + 37;
    let a = values(m * k, 21, 2.0);
    let w = values(k * n, 22, 0.5);
    let residual = values(m * n, 23, 1.0);
    for format in [QuantFormat::Int8, QuantFormat::Q4] {
        let b = quantize(MatRef::row_major(&w, k, n), format).expect("finite");
        let epilogue = Epilogue {
            residual: Some(Residual {
                data: &residual,
                row_stride: n,
            }),
            ..Epilogue::NONE
        };
        let mut expected = vec![0.0f32; m * n];
        let mut got = vec![0.0f32; m * n];
        let lhs = MatRef::row_major(&a, m, k);
        reference(dense(&mut expected, n), lhs, &b, epilogue);
        qgemm(dense(&mut got, n), lhs, &b, epilogue);
        assert!(same_bits(&got, &expected), "{format}");
    }
}

/// Shapes the AMX kernel takes (32-row tiles, steps a multiple of 64) and their edges: every
/// int8 kernel, AMX included where the CPU has it, gives the reference's bits.
#[test]
fn tile_shaped_int8_products_give_the_reference_bits() {
    for format in [QuantFormat::Int8, QuantFormat::Q4] {
        let names: Vec<&str> = micro::available(format).iter().map(|k| k.name).collect();
        eprintln!("{format} kernels on this CPU: {names:?}");
    }
    for (m, k, n) in [
        (32, 64, 64),
        (64, 128, 70),
        (101, 768, 130),
        (32, 192, 1),
        (35, 64, 200),
    ] {
        let a = values(m * k, (m * k) as u64, 3.0);
        let w = values(k * n, (k + n) as u64, 0.5);
        let b = quantize(MatRef::row_major(&w, k, n), QuantFormat::Int8).expect("finite");
        let lhs = MatRef::row_major(&a, m, k);
        let mut expected = vec![0.0f32; m * n];
        reference(dense(&mut expected, n), lhs, &b, Epilogue::NONE);
        let rows = quantize_rows(lhs, QuantFormat::Int8);
        for kernel in micro::available(QuantFormat::Int8) {
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; m * n];
                qgemm_with(
                    kernel,
                    dense(&mut got, n),
                    lhs,
                    &rows,
                    &b,
                    Epilogue::NONE,
                    Some(threads),
                );
                let same = same_bits(&got, &expected);
                assert!(same, "{} {m}x{k}x{n} on {threads} threads", kernel.name);
            }
        }
    }
}
