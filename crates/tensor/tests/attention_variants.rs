//! The attention variants against their definitions: Taylor's linear form against the
//! O(n^2) form it rewrites, softmax's invariance to centring the keys, SimA against its naive
//! formula, shift-softmax and the fixed-point kernels against their f32 twins, and masks.

mod common;

use common::close;

use edgerun_tensor::fixed::{self, FixedPoint};
use edgerun_tensor::kernels::{
    attention_with, AttentionAlgorithm, AttentionMask, AttentionVariant, Centre, HeadLayout, KvRef,
};
use edgerun_tensor::Tensor;
use proptest::prelude::*;

/// One batch of `heads` heads: Q is `queries x heads*dim`, K and V `keys x heads*dim`.
#[derive(Clone, Debug)]
struct Case {
    heads: usize,
    dim: usize,
    queries: usize,
    keys: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    visible: Vec<bool>,
}

fn case(max_tokens: usize, max_dim: usize, amplitude: f32) -> impl Strategy<Value = Case> {
    (1usize..3, 1..max_dim, 1..max_tokens, 0..max_tokens).prop_flat_map(
        move |(heads, dim, queries, extra)| {
            let keys = queries + extra;
            let w = heads * dim;
            let vals = |n| prop::collection::vec(-amplitude..amplitude, n);
            (
                vals(queries * w),
                vals(keys * w),
                vals(keys * w),
                prop::collection::vec(prop::bool::weighted(0.8), keys),
            )
                .prop_map(move |(q, k, v, mut visible)| {
                    visible[0] = true;
                    Case {
                        heads,
                        dim,
                        queries,
                        keys,
                        q,
                        k,
                        v,
                        visible,
                    }
                })
        },
    )
}

fn run(c: &Case, algorithm: AttentionAlgorithm, causal: bool) -> Vec<f32> {
    let w = c.heads * c.dim;
    let q = Tensor::from_vec(&[1, c.queries, w], c.q.clone()).unwrap();
    let bias: Vec<f32> = c
        .visible
        .iter()
        .map(|&v| if v { 0.0 } else { f32::MIN })
        .collect();
    let mask = AttentionMask {
        key_bias: Some(&bias),
        causal,
    };
    let layout = HeadLayout {
        heads: c.heads,
        head_dim: c.dim,
    };
    let scale = 1.0 / (c.dim as f32).sqrt();
    let (k, v) = (KvRef::dense(&c.k, c.keys, w), KvRef::dense(&c.v, c.keys, w));
    attention_with(&q, k, v, layout, mask, scale, &algorithm, None)
        .unwrap()
        .values()
        .to_vec()
}

fn f32_variant(variant: AttentionVariant) -> AttentionAlgorithm {
    AttentionAlgorithm::new(variant, None).unwrap()
}

/// Per query `i`, per head: the visible keys it may see (a prefix when causal).
fn seen(c: &Case, i: usize, causal: bool) -> Vec<usize> {
    let limit = if causal {
        c.keys - c.queries + i + 1
    } else {
        c.keys
    };
    (0..limit).filter(|&j| c.visible[j]).collect()
}

fn row(x: &[f32], r: usize, h: usize, c: &Case) -> Vec<f64> {
    let w = c.heads * c.dim;
    x[r * w + h * c.dim..r * w + (h + 1) * c.dim]
        .iter()
        .map(|&v| v as f64)
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `sum_j weight(j) v_j / sum_j weight(j)` per query and head, in f64.
fn weighted_reference(
    c: &Case,
    causal: bool,
    weight: impl Fn(&[f64], &[Vec<f64>], usize) -> f64,
    centre_keys: impl Fn(&[Vec<f64>]) -> Vec<Vec<f64>>,
) -> Vec<f64> {
    let w = c.heads * c.dim;
    let mut out = vec![0.0; c.queries * w];
    for i in 0..c.queries {
        for h in 0..c.heads {
            let keys = seen(c, i, causal);
            let k: Vec<Vec<f64>> = keys.iter().map(|&j| row(&c.k, j, h, c)).collect();
            let k = centre_keys(&k);
            let q = row(&c.q, i, h, c);
            let weights: Vec<f64> = (0..k.len()).map(|j| weight(&q, &k, j)).collect();
            let total: f64 = weights.iter().sum();
            for (jj, &j) in keys.iter().enumerate() {
                let v = row(&c.v, j, h, c);
                for f in 0..c.dim {
                    out[i * w + h * c.dim + f] += weights[jj] * v[f] / total;
                }
            }
        }
    }
    out
}

type CentreFn = fn(&[Vec<f64>]) -> Vec<Vec<f64>>;

fn centre_tokens(k: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let d = k.first().map_or(0, Vec::len);
    let mu: Vec<f64> = (0..d)
        .map(|f| k.iter().map(|r| r[f]).sum::<f64>() / k.len() as f64)
        .collect();
    k.iter()
        .map(|r| r.iter().zip(&mu).map(|(x, m)| x - m).collect())
        .collect()
}

fn centre_features(k: &[Vec<f64>]) -> Vec<Vec<f64>> {
    k.iter()
        .map(|r| {
            let m = r.iter().sum::<f64>() / r.len() as f64;
            r.iter().map(|x| x - m).collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The linear form equals `row_normalise(1 1^T + Q K^^T / sqrt(d)) V`, with padding, with
    /// and without a causal mask (prefix sums), for both centring axes.
    #[test]
    fn taylor_equals_its_quadratic_form(c in case(24, 9, 0.3), causal in any::<bool>(), tokens in any::<bool>()) {
        let (centre, centre_fn): (Centre, CentreFn) = if tokens {
            (Centre::Tokens, centre_tokens)
        } else {
            (Centre::Features, centre_features)
        };
        let root_d = (c.dim as f64).sqrt();
        let got = run(&c, f32_variant(AttentionVariant::Taylor(centre)), causal);
        let want = weighted_reference(&c, causal, |q, k, j| 1.0 + dot(q, &k[j]) / root_d, centre_fn);
        close(&got, &want, 1e-4)?;
    }

    /// Softmax does not change when every visible key is shifted by the same vector.
    #[test]
    fn softmax_is_invariant_to_centring_the_keys(c in case(24, 9, 1.0)) {
        let base = run(&c, f32_variant(AttentionVariant::Softmax), false);
        let w = c.heads * c.dim;
        let mut centred = c.clone();
        for f in 0..w {
            let visible: Vec<usize> = (0..c.keys).filter(|&j| c.visible[j]).collect();
            let mean = visible.iter().map(|&j| c.k[j * w + f]).sum::<f32>() / visible.len() as f32;
            for j in 0..c.keys {
                centred.k[j * w + f] -= mean;
            }
        }
        let shifted = run(&centred, f32_variant(AttentionVariant::Softmax), false);
        let want: Vec<f64> = base.iter().map(|&x| x as f64).collect();
        close(&shifted, &want, 2e-5)?;
    }

    /// SimA against its definition, through whichever association the kernel picks.
    #[test]
    fn sima_matches_its_definition(c in case(40, 17, 1.0)) {
        let got = run(&c, f32_variant(AttentionVariant::Sima), false);
        let w = c.heads * c.dim;
        let self_attention = c.queries == c.keys;
        let mut want = vec![0.0f64; c.queries * w];
        for h in 0..c.heads {
            let keys: Vec<usize> = (0..c.keys).filter(|&j| c.visible[j]).collect();
            let queries: Vec<usize> = (0..c.queries).filter(|&i| !self_attention || c.visible[i]).collect();
            let norm = |x: &[f32], rows: &[usize], f: usize| {
                rows.iter().map(|&r| (x[r * w + h * c.dim + f] as f64).abs()).sum::<f64>().max(1e-12)
            };
            for i in 0..c.queries {
                for &j in &keys {
                    let score: f64 = (0..c.dim).map(|f| {
                        c.q[i * w + h * c.dim + f] as f64 / norm(&c.q, &queries, f)
                            * c.k[j * w + h * c.dim + f] as f64 / norm(&c.k, &keys, f)
                    }).sum();
                    for f in 0..c.dim {
                        want[i * w + h * c.dim + f] += score * c.v[j * w + h * c.dim + f] as f64;
                    }
                }
            }
        }
        close(&got, &want, 1e-4)?;
    }

    /// The f32 shift-softmax stays within Mitchell's error of softmax and sums near one.
    #[test]
    fn shift_softmax_is_close_to_softmax(c in case(24, 9, 1.0), causal in any::<bool>()) {
        let exact = run(&c, f32_variant(AttentionVariant::Softmax), causal);
        let approx = run(&c, f32_variant(AttentionVariant::ShiftSoftmax), causal);
        for (a, e) in approx.iter().zip(&exact) {
            prop_assert!((a - e).abs() <= 0.15, "{} vs {}", a, e);
        }
    }

    /// Fixed-point shift-softmax attention tracks its f32 twin to within a few LSBs per term.
    #[test]
    fn fixed_shift_softmax_tracks_f32(c in case(16, 9, 1.0), causal in any::<bool>()) {
        let fixed = AttentionAlgorithm::new(AttentionVariant::ShiftSoftmax, Some(FixedPoint::q8_8())).unwrap();
        let got = run(&c, fixed, causal);
        let want = run(&c, f32_variant(AttentionVariant::ShiftSoftmax), causal);
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 0.06, "{} vs {}", g, w);
        }
    }

    /// Fixed-point Taylor (the SAMM datapath's arithmetic) tracks the f32 Taylor kernel.
    #[test]
    fn fixed_taylor_tracks_f32(c in case(32, 17, 1.0)) {
        let fixed = AttentionAlgorithm::new(AttentionVariant::Taylor(Centre::Tokens), Some(FixedPoint::q8_8())).unwrap();
        let got = run(&c, fixed, false);
        let want = run(&c, f32_variant(AttentionVariant::Taylor(Centre::Tokens)), false);
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 0.03, "{} vs {}", g, w);
        }
    }

    /// Hidden keys do not reach the output of any variant.
    #[test]
    fn padding_hides_keys_in_every_variant(c in case(16, 9, 1.0), variant in 0usize..4) {
        let variant = [
            AttentionVariant::Taylor(Centre::Tokens),
            AttentionVariant::Taylor(Centre::Features),
            AttentionVariant::Sima,
            AttentionVariant::ShiftSoftmax,
        ][variant];
        let before = run(&c, f32_variant(variant), false);
        let mut changed = c.clone();
        let w = c.heads * c.dim;
        for j in (0..c.keys).filter(|&j| !c.visible[j]) {
            for f in 0..w {
                changed.k[j * w + f] += 3.0;
                changed.v[j * w + f] -= 5.0;
            }
        }
        // SimA over self-attention also drops hidden query rows from its query norm, and the
        // queries do not change here.
        let after = run(&changed, f32_variant(variant), false);
        prop_assert_eq!(before, after);
    }
}

#[test]
fn taylor_with_token_centring_has_a_constant_denominator() {
    // k_sum = 0 after token centring, so each output row is mean(V) + Q G / (n sqrt(d)): with Q
    // = 0 every query gets exactly the mean of the values.
    let c = Case {
        heads: 1,
        dim: 2,
        queries: 2,
        keys: 3,
        q: vec![0.0; 4],
        k: vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.25],
        v: vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0],
        visible: vec![true; 3],
    };
    let out = run(
        &c,
        f32_variant(AttentionVariant::Taylor(Centre::Tokens)),
        false,
    );
    for (got, want) in out.iter().zip([3.0, 5.0, 3.0, 5.0]) {
        assert!((got - want).abs() < 1e-6, "{out:?}");
    }
}

#[test]
fn unsupported_combinations_are_refused_in_words() {
    let fp = Some(FixedPoint::q8_8());
    assert!(AttentionAlgorithm::new(AttentionVariant::Softmax, fp).is_err());
    assert!(AttentionAlgorithm::new(AttentionVariant::Sima, fp).is_err());
    let sima = f32_variant(AttentionVariant::Sima);
    let err = sima.check_causal(true).unwrap_err().to_string();
    assert!(err.contains("causal"), "{err}");
    let taylor_fixed =
        AttentionAlgorithm::new(AttentionVariant::Taylor(Centre::Tokens), fp).unwrap();
    assert!(taylor_fixed.check_causal(true).is_err());
    assert!(f32_variant(AttentionVariant::Taylor(Centre::Tokens))
        .check_causal(true)
        .is_ok());
    assert!(AttentionVariant::parse("linear").is_err());
}

#[test]
fn fixed_taylor_stages_compose_to_the_whole_head() {
    let fp = FixedPoint::q8_8();
    let (n, d) = (5, 3);
    let raw = |seed: i16, len: usize| -> Vec<i16> {
        (0..len as i16)
            .map(|i| (i * 37 + seed) % 300 - 150)
            .collect()
    };
    let (q, k, v) = (raw(1, n * d), raw(7, n * d), raw(11, n * d));
    let head = fixed::HeadOperands {
        q: &q,
        k: &k,
        v: &v,
        queries: n,
        keys: n,
        dim: d,
    };
    let sums = fixed::taylor::column_accumulate(&fp, &head, Centre::Tokens);
    // Token centring: the centred columns sum to (almost) zero, within the rounding of the mean.
    assert!(sums.k_sum.iter().all(|&s| s.abs() <= 1), "{:?}", sums.k_sum);
    assert_eq!(sums.shift, 3);
    let whole = fixed::taylor_head(&fp, &head, Centre::Tokens, (d as f32).sqrt()).unwrap();
    assert_eq!(whole.len(), n * d);
}
