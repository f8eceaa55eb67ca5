use proptest::prelude::*;

use super::*;

fn values(len: usize, seed: u64) -> Vec<f32> {
    // Small integers plus a fraction: sums are exact enough to show any change of order.
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[derive(Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_transposed: bool,
    b_transposed: bool,
    out_transposed: bool,
    packed: bool,
    accumulate: bool,
    bias: bool,
    scale: bool,
    residual: bool,
    activation: Activation,
    threads: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        // Heights past ROW_BLOCK too: a convolution's product has a row per output pixel.
        (
            prop_oneof![4 => 1usize..40, 1 => 230usize..500],
            0usize..600,
            1usize..80,
        ),
        any::<[bool; 8]>(),
        prop_oneof![
            Just(Activation::Identity),
            Just(Activation::GeluTanh),
            Just(Activation::Relu)
        ],
        1usize..=3,
        any::<u64>(),
    )
        .prop_map(|((m, k, n), flags, activation, threads, seed)| Case {
            m,
            k,
            n,
            a_transposed: flags[0],
            b_transposed: flags[1],
            out_transposed: flags[2],
            packed: flags[3],
            accumulate: flags[4],
            bias: flags[5],
            scale: flags[6],
            residual: flags[7],
            activation,
            threads,
            seed,
        })
}

/// A row-major `rows x cols` matrix, or the transposed view of its `cols x rows` storage.
fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> MatRef<'_> {
    if transposed {
        MatRef::row_major(data, cols, rows).t()
    } else {
        MatRef::row_major(data, rows, cols)
    }
}

fn run_case(c: &Case, kernel: micro::Kernel) -> (Vec<f32>, Vec<f32>) {
    let a_data = values(c.m * c.k, c.seed);
    let b_data = values(c.k * c.n, c.seed ^ 1);
    let bias = values(c.n, c.seed ^ 2);
    let start = values(c.m * c.n, c.seed ^ 3);
    let a = view(&a_data, c.m, c.k, c.a_transposed);
    let b = view(&b_data, c.k, c.n, c.b_transposed);
    let scale = values(c.n, c.seed ^ 4);
    // A residual with rows wider than the output's, as a view into a larger map would be.
    let residual = values(c.m * (c.n + 3), c.seed ^ 5);
    let epilogue = Epilogue {
        scale: c.scale.then_some(&scale[..]),
        residual: c.residual.then_some(Residual {
            data: &residual,
            row_stride: c.n + 3,
        }),
        ..Epilogue::columns(c.bias.then_some(&bias[..]), c.activation)
    };
    let (out_rs, out_cs) = if c.out_transposed { (1, c.m) } else { (c.n, 1) };
    let mut expected = start.clone();
    reference(
        Out {
            data: &mut expected,
            row_stride: out_rs,
            col_stride: out_cs,
        },
        a,
        b,
        c.accumulate,
        epilogue,
    );
    let mut packed = vec![0.0; packed_len(c.k, c.n)];
    pack_into(b, &mut packed);
    let rhs = if c.packed {
        Rhs::Packed {
            data: &packed,
            rows: c.k,
            cols: c.n,
        }
    } else {
        Rhs::Plain(b)
    };
    let mut got = start;
    gemm_with(
        kernel,
        Out {
            data: &mut got,
            row_stride: out_rs,
            col_stride: out_cs,
        },
        a,
        rhs,
        c.accumulate,
        epilogue,
        c.threads,
    );
    (got, expected)
}

/// A fused ReLU epilogue meets NaN, infinities and signed zeros as the scalar one does.
#[test]
fn fused_relu_handles_special_values_as_the_reference() {
    let (m, k, n) = (7, 2, 70);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        -1.0,
        1.0,
    ];
    let a: Vec<f32> = (0..m * k).map(|i| specials[i % specials.len()]).collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| specials[(i / 3) % specials.len()])
        .collect();
    let bias: Vec<f32> = (0..n).map(|j| specials[(j / 2) % specials.len()]).collect();
    let residual: Vec<f32> = (0..m * n)
        .map(|i| specials[(i / 5) % specials.len()])
        .collect();
    let epilogue = Epilogue {
        scale: Some(&bias),
        bias: Some(&bias),
        residual: Some(Residual {
            data: &residual,
            row_stride: n,
        }),
        activation: Activation::Relu,
    };
    let (a, b) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
    let mut expected = vec![0.0; m * n];
    fn out(data: &mut [f32], n: usize) -> Out<'_> {
        Out {
            data,
            row_stride: n,
            col_stride: 1,
        }
    }
    reference(out(&mut expected, n), a, b, false, epilogue);
    let mut packed = vec![0.0; packed_len(k, n)];
    pack_into(b, &mut packed);
    let rhs = Rhs::Packed {
        data: &packed,
        rows: k,
        cols: n,
    };
    for kernel in micro::available() {
        let mut got = vec![1.0; m * n];
        gemm_with(kernel, out(&mut got, n), a, rhs, false, epilogue, 1);
        assert!(
            crate::kernels::same_bits(&got, &expected),
            "kernel {}",
            kernel.name
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every kernel this CPU has, packed or not, any strides and thread count: the reference's
    /// bits.
    #[test]
    fn every_kernel_equals_the_reference(c in case()) {
        for kernel in micro::available() {
            let (got, expected) = run_case(&c, kernel);
            let same = crate::kernels::same_bits(&got, &expected);
            prop_assert!(same, "kernel {} differs from the reference", kernel.name);
        }
    }

    #[test]
    fn unpack_inverts_pack(k in 0usize..50, n in 1usize..70, seed in any::<u64>()) {
        let b = values(k * n, seed);
        let mut packed = vec![0.0; packed_len(k, n)];
        pack_into(MatRef::row_major(&b, k, n), &mut packed);
        prop_assert_eq!(unpack(&packed, k, n), b);
    }
}

#[test]
fn reference_is_a_matrix_product() {
    // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] = [[19, 22], [43, 50]], then + bias, relu.
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    let bias = [-20.0, 0.0];
    let mut out = [0.0; 4];
    reference(
        Out {
            data: &mut out,
            row_stride: 2,
            col_stride: 1,
        },
        MatRef::row_major(&a, 2, 2),
        MatRef::row_major(&b, 2, 2),
        false,
        Epilogue::columns(Some(&bias), Activation::Relu),
    );
    assert_eq!(out, [0.0, 22.0, 23.0, 50.0]);
}

#[test]
fn blocks_of_k_longer_than_kc_are_summed_in_order() {
    // Past KC steps the partial sums are added block by block; a large first block and a
    // small second one show whether the kernel and the reference agree on where blocks end.
    let c = Case {
        m: 15,
        k: KC * 2 + 3,
        n: 33,
        a_transposed: false,
        b_transposed: false,
        out_transposed: false,
        packed: true,
        accumulate: true,
        bias: true,
        scale: true,
        residual: false,
        activation: Activation::GeluTanh,
        threads: 2,
        seed: 7,
    };
    for kernel in micro::available() {
        let (got, expected) = run_case(&c, kernel);
        assert_eq!(got, expected, "kernel {}", kernel.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Several products of one left operand, shared out across threads together: each gives
    /// the bits of its own naive product.
    #[test]
    fn many_products_equal_the_naive_twin(
        m in 1usize..48,
        k in 0usize..300,
        widths in prop::collection::vec((1usize..300, any::<bool>(), any::<bool>()), 1..4),
        seed in any::<u64>(),
    ) {
        let a_data = values(m * k, seed);
        let a = MatRef::row_major(&a_data, m, k);
        let bs: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(i, &(n, ..))| values(k * n, seed ^ (i as u64 + 1)))
            .collect();
        let biases: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(i, &(n, ..))| values(n, seed ^ (i as u64 + 100)))
            .collect();
        let packed: Vec<Vec<f32>> = widths
            .iter()
            .zip(&bs)
            .map(|(&(n, ..), b)| {
                let mut out = vec![0.0; packed_len(k, n)];
                pack_into(MatRef::row_major(b, k, n), &mut out);
                out
            })
            .collect();
        let mut outs: Vec<Vec<f32>> = widths.iter().map(|&(n, ..)| vec![f32::NAN; m * n]).collect();
        let products = outs
            .iter_mut()
            .enumerate()
            .map(|(i, out)| {
                let (n, is_packed, bias) = widths[i];
                Product {
                    out: Out { data: out, row_stride: n, col_stride: 1 },
                    b: if is_packed {
                        Rhs::Packed { data: &packed[i], rows: k, cols: n }
                    } else {
                        Rhs::Plain(MatRef::row_major(&bs[i], k, n))
                    },
                    epilogue: Epilogue::columns(bias.then_some(&biases[i][..]), Activation::GeluTanh),
                }
            })
            .collect();
        gemm_many(a, products);
        for (i, &(n, _, bias)) in widths.iter().enumerate() {
            let mut want = vec![0.0; m * n];
            let epilogue = Epilogue::columns(bias.then_some(&biases[i][..]), Activation::GeluTanh);
            reference(
                Out { data: &mut want, row_stride: n, col_stride: 1 },
                a,
                MatRef::row_major(&bs[i], k, n),
                false,
                epilogue,
            );
            let same = crate::kernels::same_bits(&outs[i], &want);
            prop_assert!(same, "product {} of {:?}", i, widths);
        }
    }

    /// The shares cover every panel of every product once, each piece starting on a group,
    /// and no share is longer than an even split rounded up to a group.
    #[test]
    fn shares_cover_every_panel_once(
        panels in prop::collection::vec(0usize..200, 1..6),
        threads in 1usize..5,
    ) {
        let shares = share_panels(&panels, threads);
        let total: usize = panels.iter().sum();
        let even = total.div_ceil(threads).next_multiple_of(PANELS_PER_GROUP).max(PANELS_PER_GROUP);
        let mut covered: Vec<Vec<bool>> = panels.iter().map(|&p| vec![false; p]).collect();
        for share in &shares {
            let len: usize = share.iter().map(|(_, r)| r.len()).sum();
            prop_assert!(len <= even, "share of {} panels, even split {}", len, even);
            for (product, range) in share {
                prop_assert!(range.start.is_multiple_of(PANELS_PER_GROUP));
                prop_assert!(!range.is_empty());
                for p in range.clone() {
                    prop_assert!(!covered[*product][p], "panel {} of {} twice", p, product);
                    covered[*product][p] = true;
                }
            }
        }
        prop_assert!(covered.iter().flatten().all(|&c| c));
        prop_assert!(shares.len() <= threads + panels.len());
    }
}

#[test]
fn packing_by_groups_equals_packing_at_once() {
    for (k, n) in [(5usize, 1usize), (7, 64), (3, 65), (9, 200), (0, 70)] {
        let b = values(k * n, (k * 1000 + n) as u64);
        let view = MatRef::row_major(&b, k, n);
        let mut whole = vec![1.0; packed_len(k, n)];
        pack_into(view, &mut whole);
        let mut grouped = vec![2.0; packed_len(k, n)];
        let mut seen = Vec::new();
        pack_groups_into(view, &mut grouped, |g| seen.push(g));
        assert_eq!(whole, grouped, "{k} x {n}");
        let groups = if k == 0 { 0 } else { n.div_ceil(GROUP) };
        assert_eq!(seen, (0..groups).collect::<Vec<_>>(), "{k} x {n}");
    }
}
