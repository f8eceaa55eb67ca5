//! Every fast kernel against a naive twin written for clarity (f64 accumulation), on random
//! shapes and values.

mod common;

use common::close;

use edgerun_tensor::kernels::{
    adaptive_avg_pool2d, attention, conv2d, linear, max_pool2d, AttentionMask, Conv2dParams,
    HeadLayout, KvRef,
};
use edgerun_tensor::Tensor;
use proptest::prelude::*;

fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, n)
}

fn linear_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (1usize..40, 1usize..70, 1usize..50).prop_flat_map(|(m, k, n)| {
        (
            Just(m),
            Just(k),
            Just(n),
            values(m * k),
            values(k * n),
            values(n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn linear_matches_naive((m, k, n, x, w, b) in linear_case()) {
        let got = linear(
            &Tensor::from_vec(&[m, k], x.clone()).unwrap(),
            &Tensor::from_vec(&[k, n], w.clone()).unwrap(),
            Some(&Tensor::from_vec(&[n], b.clone()).unwrap()),
        ).unwrap();
        let mut want = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = b[j] as f64 + (0..k).map(|p| x[i * k + p] as f64 * w[p * n + j] as f64).sum::<f64>();
            }
        }
        close(got.values(), &want, 1e-5)?;
    }

    #[test]
    fn attention_matches_naive(
        batch in 1usize..3, heads in 1usize..4, head_dim in 1usize..9, queries in 1usize..7, extra in 0usize..5,
        causal in any::<bool>(), masked in any::<bool>(), slack in 0usize..3, seed in values(4096),
    ) {
        let width = heads * head_dim;
        let kv_len = queries + extra;
        // K and V live in a cache with `slack` unused rows per batch.
        let capacity = kv_len + slack;
        let take = |offset: usize, n: usize| -> Vec<f32> { (0..n).map(|i| seed[(offset + i * 7) % seed.len()]).collect() };
        let q = take(0, batch * queries * width);
        let k = take(1, batch * capacity * width);
        let v = take(2, batch * capacity * width);
        let bias: Vec<f32> = (0..batch * kv_len).map(|i| if masked && i % kv_len == 0 && kv_len > 1 { f32::MIN } else { 0.0 }).collect();
        let mask = AttentionMask { key_bias: masked.then_some(bias.as_slice()), causal };
        let scale = 1.0 / (head_dim as f32).sqrt();
        let kr = KvRef { data: &k, len: kv_len, batch_stride: capacity * width };
        let vr = KvRef { data: &v, len: kv_len, batch_stride: capacity * width };
        let got = attention(&Tensor::from_vec(&[batch, queries, width], q.clone()).unwrap(), kr, vr, HeadLayout { heads, head_dim }, mask, scale).unwrap();

        let past = kv_len - queries;
        let mut want = vec![0.0f64; batch * queries * width];
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..queries {
                    let allowed: Vec<usize> = (0..kv_len).filter(|&j| !(causal && j > past + i)).collect();
                    let visible: Vec<usize> = allowed.iter().copied().filter(|&j| !(masked && bias[b * kv_len + j] != 0.0)).collect();
                    if visible.is_empty() {
                        // Every allowed key is padding: f32::MIN swamps the scores, so the
                        // softmax is uniform over them (transformers' additive mask does the same).
                        for d in 0..head_dim {
                            want[(b * queries + i) * width + h * head_dim + d] = allowed.iter()
                                .map(|&j| v[(b * capacity + j) * width + h * head_dim + d] as f64).sum::<f64>() / allowed.len() as f64;
                        }
                        continue;
                    }
                    let scores: Vec<f64> = visible.iter().map(|&j| {
                        (0..head_dim).map(|d| q[(b * queries + i) * width + h * head_dim + d] as f64 * k[(b * capacity + j) * width + h * head_dim + d] as f64).sum::<f64>() * scale as f64
                    }).collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    for d in 0..head_dim {
                        want[(b * queries + i) * width + h * head_dim + d] = visible.iter().zip(&exps)
                            .map(|(&j, e)| e / sum * v[(b * capacity + j) * width + h * head_dim + d] as f64).sum();
                    }
                }
            }
        }
        close(got.values(), &want, 1e-5)?;
    }

    #[test]
    fn conv2d_matches_naive(
        n in 1usize..3, groups in 1usize..3, cg in 1usize..4, ocg in 1usize..4, kernel in 1usize..4,
        h in 1usize..9, w in 1usize..9, stride in 1usize..3, padding in 0usize..2, dilation in 1usize..3,
        seed in values(4096),
    ) {
        let (c, oc) = (groups * cg, groups * ocg);
        let span = dilation * (kernel - 1) + 1;
        prop_assume!(h + 2 * padding >= span && w + 2 * padding >= span);
        let x: Vec<f32> = (0..n * c * h * w).map(|i| seed[i % seed.len()]).collect();
        let wt: Vec<f32> = (0..oc * cg * kernel * kernel).map(|i| seed[(i * 3 + 1) % seed.len()]).collect();
        let bias: Vec<f32> = (0..oc).map(|i| seed[(i * 5 + 2) % seed.len()]).collect();
        let p = Conv2dParams { stride, padding, dilation, groups };
        let got = conv2d(
            &Tensor::from_vec(&[n, c, h, w], x.clone()).unwrap(),
            &Tensor::from_vec(&[oc, cg, kernel, kernel], wt.clone()).unwrap(),
            Some(&Tensor::from_vec(&[oc], bias.clone()).unwrap()),
            p,
        ).unwrap();
        let oh = (h + 2 * padding - span) / stride + 1;
        let ow = (w + 2 * padding - span) / stride + 1;
        prop_assert_eq!(got.shape(), &[n, oc, oh, ow]);
        let want = naive_conv(&x, &wt, &bias, (n, c, h, w), (oc, kernel), p);
        close(got.values(), &want, 1e-5)?;
    }

    #[test]
    fn pooling_matches_naive(h in 1usize..12, w in 1usize..12, out in 1usize..5, seed in values(512)) {
        let x: Vec<f32> = (0..2 * h * w).map(|i| seed[i % seed.len()]).collect();
        let t = Tensor::from_vec(&[1, 2, h, w], x.clone()).unwrap();
        let got = adaptive_avg_pool2d(&t, out, out).unwrap();
        let mut want = Vec::new();
        for c in 0..2 {
            for oy in 0..out {
                for ox in 0..out {
                    let (y0, y1) = (oy * h / out, ((oy + 1) * h).div_ceil(out));
                    let (x0, x1) = (ox * w / out, ((ox + 1) * w).div_ceil(out));
                    let mut s = 0.0f64;
                    for y in y0..y1 { for xx in x0..x1 { s += x[(c * h + y) * w + xx] as f64; } }
                    want.push(s / ((y1 - y0) * (x1 - x0)) as f64);
                }
            }
        }
        close(got.values(), &want, 1e-5)?;
        if h >= 2 && w >= 2 {
            let pooled = max_pool2d(&t, 2, 2, 0).unwrap();
            let (oh, ow) = (h / 2, w / 2);
            let mut want = Vec::new();
            for c in 0..2 { for y in 0..oh { for xx in 0..ow {
                let m = [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(a, b)| x[(c * h + 2 * y + a) * w + 2 * xx + b]).fold(f32::MIN, f32::max);
                want.push(m as f64);
            }}}
            close(pooled.values(), &want, 0.0)?;
        }
    }
}

/// Direct convolution in f64: the reference for `conv2d`.
fn naive_conv(
    x: &[f32],
    wt: &[f32],
    bias: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (oc, kernel): (usize, usize),
    p: Conv2dParams,
) -> Vec<f64> {
    let Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    } = p;
    let (cg, ocg) = (c / groups, oc / groups);
    let span = dilation * (kernel - 1) + 1;
    let oh = (h + 2 * padding - span) / stride + 1;
    let ow = (w + 2 * padding - span) / stride + 1;
    let mut want = vec![0.0f64; n * oc * oh * ow];
    for img in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias[o] as f64;
                    for ci in 0..cg {
                        for ky in 0..kernel {
                            for kx in 0..kernel {
                                let iy = (y * stride + ky * dilation) as isize - padding as isize;
                                let ix = (xo * stride + kx * dilation) as isize - padding as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xi = ((img * c + g * cg + ci) * h + iy as usize) * w
                                        + ix as usize;
                                    acc += x[xi] as f64
                                        * wt[((o * cg + ci) * kernel + ky) * kernel + kx] as f64;
                                }
                            }
                        }
                    }
                    want[((img * oc + o) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    want
}

/// Outputs large enough that im2col runs in several bands of rows (see `COLUMN_BUDGET`).
#[test]
fn conv2d_in_bands_matches_naive() {
    for (h, stride, dilation) in [(430usize, 1usize, 1usize), (1300, 2, 2)] {
        let (c, oc, kernel) = (3, 2, 3);
        let k = c * kernel * kernel;
        let p = Conv2dParams {
            stride,
            padding: 1,
            dilation,
            groups: 1,
        };
        let span = dilation * (kernel - 1) + 1;
        let out = (h + 2 - span) / stride + 1;
        assert!(
            k * out * out > edgerun_tensor::kernels::COLUMN_BUDGET,
            "one band only"
        );
        let x: Vec<f32> = (0..c * h * h)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let wt: Vec<f32> = (0..oc * k)
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let bias = vec![0.25f32, -0.5];
        let got = conv2d(
            &Tensor::from_vec(&[1, c, h, h], x.clone()).unwrap(),
            &Tensor::from_vec(&[oc, c, kernel, kernel], wt.clone()).unwrap(),
            Some(&Tensor::from_vec(&[oc], bias.clone()).unwrap()),
            p,
        )
        .unwrap();
        let want = naive_conv(&x, &wt, &bias, (1, c, h, h), (oc, kernel), p);
        close(got.values(), &want, 1e-5).unwrap();
    }
}
