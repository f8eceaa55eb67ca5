//! The running error bound: for every value the array computes, a bound on its distance from
//! what the exact f32 model (exact softmax, exact GELU, exact layer norm) computes.
//!
//! The analysis is probabilistic, in the model of Higham and Mary (SIAM J. Sci. Comput.
//! 41(5), 2019): errors of different elements are independent and zero-mean. What is tracked
//! per element is a sub-Gaussian scale `S` of its error; the bound reported is `LAMBDA * S`,
//! which an element exceeds with probability at most 2 exp(-LAMBDA^2 / 2) = 5.5e-7 (Hoeffding).
//! Each operation adds:
//! - **local**: its own error, computed exactly in f64 from the values it actually read --
//!   the rounding of every narrowing and the whole error of the approximations
//!   (shift-and-add softmax, the hard-sigmoid GELU, Newton's reciprocal square root) on those
//!   inputs. A known magnitude is a valid scale for itself.
//! - **propagated**: the inputs' scales through the operation -- root-sum-square through dot
//!   products (independent terms), first-order sensitivities through softmax and layer norm
//!   (1/sigma of each token).
//!
//! The model's assumption is that rounding and approximation errors do not conspire across
//! elements; the approximations' errors are deterministic, so this is an assumption, checked
//! by the tests against an exact encoder rather than proved. Weights carry half an LSB (their
//! quantisation) and the input its exact quantisation error.

use edgerun_tensor::fixed::{FixedPoint, Rounding};

use super::isa::Opcode;
use super::ops::{gelu_plan, rsqrt_newton_real, Operand, Produced};

/// Hoeffding's multiplier turning a scale into a bound.
pub const LAMBDA: f64 = 5.5;
/// The largest slope of the exact GELU, Phi(x) + x phi(x) at x = sqrt(2).
pub const GELU_MAX_SLOPE: f64 = 1.1289;

/// Half an LSB (round half up) or one LSB (floor): one narrowing's error.
pub fn rho(fp: &FixedPoint) -> f64 {
    let lsb = 1.0 / fp.format.one() as f64;
    match fp.rounding {
        Rounding::HalfUp => lsb / 2.0,
        Rounding::Floor => lsb,
    }
}

/// Per element of `out`, the scale of its error against the exact operation on exact inputs.
pub fn propagate(
    op: Opcode,
    fp: &FixedPoint,
    a: &Operand,
    b: Option<&Operand>,
    out: &Produced,
) -> Vec<f64> {
    let one = fp.format.one() as f64;
    let real = |v: i16| v as f64 / one;
    let (rows, cols) = (a.rows, a.cols);
    match op {
        Opcode::Matmul | Opcode::MatmulBt => {
            let b = b.expect("matmul has b");
            let (k, n) = (cols, out.cols);
            // b as multiplied: element (kk, j).
            let b_at = |kk: usize, j: usize| {
                if op == Opcode::Matmul {
                    kk * b.cols + j
                } else {
                    j * b.cols + kk
                }
            };
            let mut error = vec![0.0; rows * n];
            for i in 0..rows {
                for j in 0..n {
                    let (mut exact, mut spread, mut second) = (0.0, 0.0, 0.0);
                    for kk in 0..k {
                        let (ai, bi) = (i * k + kk, b_at(kk, j));
                        let (av, bv) = (real(a.values[ai]), real(b.values[bi]));
                        exact += av * bv;
                        spread += (a.error[ai] * bv).powi(2) + (av * b.error[bi]).powi(2);
                        second += a.error[ai] * b.error[bi];
                    }
                    let local = (real(out.values[i * n + j]) - exact).abs();
                    error[i * n + j] = local + spread.sqrt() + second;
                }
            }
            error
        }
        Opcode::Add => {
            let b = b.expect("add has b");
            (0..rows * cols)
                .map(|i| {
                    let bi = if b.rows == 1 { i % cols } else { i };
                    let exact = real(a.values[i]) + real(b.values[bi]);
                    (real(out.values[i]) - exact).abs() + a.error[i].hypot(b.error[bi])
                })
                .collect()
        }
        Opcode::MulC => {
            let b = b.expect("mulc has b");
            let c = real(b.values[0]);
            (0..rows * cols)
                .map(|i| {
                    let x = real(a.values[i]);
                    (real(out.values[i]) - x * c).abs() + (a.error[i] * c).hypot(x * b.error[0])
                })
                .collect()
        }
        Opcode::Relu | Opcode::Copy => a.error.clone(),
        Opcode::Gelu => (0..rows * cols)
            .map(|i| {
                (real(out.values[i]) - gelu(real(a.values[i]))).abs() + GELU_MAX_SLOPE * a.error[i]
            })
            .collect(),
        Opcode::Softmax | Opcode::SoftmaxMv => softmax(op, fp, a, b, out),
        Opcode::LayerNorm => layer_norm(fp, a, b.expect("layernorm has b"), out),
        Opcode::Nop | Opcode::Signal | Opcode::Wait => Vec::new(),
    }
}

/// The exact softmax of each row of `a` (as computed), and per row the scale of
/// `sum_l p_il e_il` (the shift every probability's exponent shares).
fn exact_softmax(fp: &FixedPoint, a: &Operand, mask: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let one = fp.format.one() as f64;
    let len = a.cols;
    let mut p = vec![0.0; a.rows * len];
    let mut shared = vec![0.0; a.rows];
    for i in 0..a.rows {
        let row = &a.values[i * len..(i + 1) * len];
        let visible = || (0..len).filter(|&j| mask[j]);
        let max = visible()
            .map(|j| row[j] as f64 / one)
            .fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            continue;
        }
        let sum: f64 = visible().map(|j| (row[j] as f64 / one - max).exp()).sum();
        for j in visible() {
            p[i * len + j] = (row[j] as f64 / one - max).exp() / sum;
        }
        shared[i] = (0..len)
            .map(|j| (p[i * len + j] * a.error[i * len + j]).powi(2))
            .sum::<f64>()
            .sqrt();
    }
    (p, shared)
}

/// First order, `dp_ij = p_ij (ds_ij - sum_l p_il ds_il)`; through V,
/// `sum_j dp_ij v_j = sum_j p_ij ds_ij (v_j - o_i)` with `o_i = sum_j p_ij v_j`.
fn softmax(
    op: Opcode,
    fp: &FixedPoint,
    a: &Operand,
    b: Option<&Operand>,
    out: &Produced,
) -> Vec<f64> {
    let one = fp.format.one() as f64;
    let len = a.cols;
    if op == Opcode::Softmax {
        let mask: Vec<bool> = match b {
            Some(m) => m.values.iter().map(|&v| v != 0).collect(),
            None => vec![true; len],
        };
        let (p, shared) = exact_softmax(fp, a, &mask);
        return (0..out.values.len())
            .map(|i| {
                (out.values[i] as f64 / one - p[i]).abs()
                    + p[i] * a.error[i].hypot(shared[i / len.max(1)])
            })
            .collect();
    }
    let v = b.expect("smv has b");
    let (p, _) = exact_softmax(fp, a, &vec![true; len]);
    let d = v.cols;
    let mut error = vec![0.0; a.rows * d];
    for i in 0..a.rows {
        for c in 0..d {
            let value = |j: usize| v.values[j * d + c] as f64 / one;
            let exact: f64 = (0..len).map(|j| p[i * len + j] * value(j)).sum();
            let (mut through_scores, mut through_values) = (0.0, 0.0);
            for j in 0..len {
                let pj = p[i * len + j];
                through_scores += (pj * a.error[i * len + j] * (value(j) - exact)).powi(2);
                through_values += (pj * v.error[j * d + c]).powi(2);
            }
            let local = (out.values[i * d + c] as f64 / one - exact).abs();
            error[i * d + c] = local + through_scores.sqrt() + through_values.sqrt();
        }
    }
    error
}

fn layer_norm(fp: &FixedPoint, a: &Operand, params: &Operand, out: &Produced) -> Vec<f64> {
    let one = fp.format.one() as f64;
    let h = a.cols;
    let mut error = vec![0.0; a.rows * h];
    for i in 0..a.rows {
        let x: Vec<f64> = a.values[i * h..(i + 1) * h]
            .iter()
            .map(|&v| v as f64 / one)
            .collect();
        let e = &a.error[i * h..(i + 1) * h];
        let mean = x.iter().sum::<f64>() / h as f64;
        let sigma = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64 + 1e-12).sqrt();
        // y_j moves by (e_j - mean e) / sigma - y_j <y, e> / (H sigma): scales
        // hypot(E_j, |E|_2 / H) / sigma and |y_j| |y o E|_2 / (H sigma).
        let mean_scale = e.iter().map(|v| v * v).sum::<f64>().sqrt() / h as f64;
        let ys: Vec<f64> = x.iter().map(|v| (v - mean) / sigma).collect();
        let along = ys
            .iter()
            .zip(e)
            .map(|(y, v)| (y * v).powi(2))
            .sum::<f64>()
            .sqrt()
            / (h as f64 * sigma);
        for j in 0..h {
            let (gamma, beta) = (
                params.values[j] as f64 / one,
                params.values[h + j] as f64 / one,
            );
            let y = ys[j];
            let exact = y * gamma + beta;
            let local = (out.values[i * h + j] as f64 / one - exact).abs();
            let moved = e[j].hypot(mean_scale) / sigma + y.abs() * along;
            error[i * h + j] =
                local + gamma.abs() * moved + y.abs() * params.error[j] + params.error[h + j];
        }
    }
    error
}

/// How far the shift-and-add probabilities of `scores` are from the exact softmax of the
/// same scores: (largest absolute difference, sum of absolute differences, count).
pub fn softmax_deviation(fp: &FixedPoint, scores: &Operand) -> (f64, f64, usize) {
    let len = scores.cols;
    let mask = vec![true; len];
    let (exact, _) = exact_softmax(fp, scores, &mask);
    let mut approx = vec![0i16; len];
    let (mut max, mut sum) = (0.0f64, 0.0);
    for (i, row) in scores.values.chunks_exact(len.max(1)).enumerate() {
        edgerun_tensor::fixed::shift_softmax_row(fp, row, &mask, &mut approx);
        for j in 0..len {
            let d = (fp.format.to_f32(approx[j]) as f64 - exact[i * len + j]).abs();
            max = max.max(d);
            sum += d;
        }
    }
    (max, sum, scores.values.len())
}

/// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf to double precision: its Maclaurin series below 2.5, the continued fraction of erfc
/// above.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let value = if a < 2.5 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = k as f64 / 2.0 / (a + f);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
    };
    value.copysign(x)
}

/// Worst cases of the approximations over their whole input range, for the report:
/// |gelu_plan - gelu| over x in [-12, 12] and Newton's rsqrt relative error over [1, 4).
pub fn approximation_worst_cases() -> (f64, f64) {
    let mut gelu_error: f64 = 0.0;
    let mut x = -12.0;
    while x <= 12.0 {
        gelu_error = gelu_error.max((gelu_plan(x) - gelu(x)).abs());
        x += 1e-3;
    }
    let rsqrt_error = (0..30_000)
        .map(|i| 1.0 + 3.0 * i as f64 / 30_000.0)
        .map(|m: f64| (rsqrt_newton_real(m) * m.sqrt() - 1.0).abs())
        .fold(0.0, f64::max);
    (gelu_error, rsqrt_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn approximations_are_as_documented() {
        let (gelu_error, rsqrt_error) = approximation_worst_cases();
        assert!(gelu_error < 0.06, "{gelu_error}");
        assert!(rsqrt_error < 1e-6, "{rsqrt_error}");
    }
}
