//! What each ARAP operation computes (in `tensor::fixed`'s arithmetic) and how many cycles a
//! 2x2 PE group takes for it. The error bounds of the results are [`super::bound`]'s.

use edgerun_tensor::fixed::softmax::shift_softmax_row;
use edgerun_tensor::fixed::{matmul_acc, FixedPoint};

use super::isa::Opcode;

/// A tensor read from the global buffer: row-major values, its error bound and magnitude.
#[derive(Clone, Debug)]
pub struct Operand {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<i16>,
    /// Per element, a bound on its absolute error against the exact model (real units).
    pub error: Vec<f64>,
}

/// The result of an operation before it is written back.
#[derive(Clone, Debug)]
pub struct Produced {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<i16>,
}

/// GELU as `x * sigmoid(1.702 x)` with the sigmoid by PLAN (Amin, Curtis and Hayes-Gill,
/// IEE Proc. Circuits Devices Syst. 1997): four linear pieces whose slopes are powers of two,
/// so the gate costs a comparison, a shift and an add; one multiply forms 1.702 x, one the
/// product.
pub fn gelu_fixed(fp: &FixedPoint, x: i16) -> i16 {
    let f = fp.frac_bits();
    let one = fp.format.one();
    let at = |v: f64| (v * one as f64).round() as i64;
    let y = fp.narrow(x as i64 * at(1.702), f) as i64;
    let a = y.abs();
    let gate = if a >= at(5.0) {
        one
    } else if a >= at(2.375) {
        (a >> 5) + at(0.84375)
    } else if a >= one {
        (a >> 3) + at(0.625)
    } else {
        (a >> 2) + at(0.5)
    };
    let gate = if y < 0 { one - gate } else { gate };
    fp.narrow(x as i64 * gate, f)
}

/// The same GELU in f64 (no quantisation), for the worst-case scan.
pub fn gelu_plan(x: f64) -> f64 {
    let a = (1.702 * x).abs();
    let gate = if a >= 5.0 {
        1.0
    } else if a >= 2.375 {
        a / 32.0 + 0.84375
    } else if a >= 1.0 {
        a / 8.0 + 0.625
    } else {
        a / 4.0 + 0.5
    };
    x * if x < 0.0 { 1.0 - gate } else { gate }
}

/// Newton's reciprocal square root in Q2.30 integers, as the PEs run it (5 iterations from
/// 0.7, for `m` in [1, 4)).
const RSQRT_FRAC: u32 = 30;
const RSQRT_STEPS: usize = 5;

fn rsqrt_newton_fixed(m_q30: i128) -> i128 {
    let one = 1i128 << RSQRT_FRAC;
    let mut y = (one * 7) / 10;
    for _ in 0..RSQRT_STEPS {
        let y2 = (y * y) >> RSQRT_FRAC;
        let my2 = (m_q30 * y2) >> RSQRT_FRAC;
        y = (y * (3 * one - my2)) >> (RSQRT_FRAC + 1);
    }
    y
}

pub(crate) fn rsqrt_newton_real(m: f64) -> f64 {
    let q = (m * (1u64 << RSQRT_FRAC) as f64) as i128;
    rsqrt_newton_fixed(q) as f64 / (1u64 << RSQRT_FRAC) as f64
}

/// Cycles a 2x2 PE group spends on one operation (reconfiguration not included).
///
/// - `matmul`, `matmul.bt`: the 2x2 output-stationary array, ceil(M/2) ceil(N/2) (K + 2);
/// - elementwise (`add`, `mulc`, `relu`, `copy`): one element per PE per cycle, M N / 4, and
///   `gelu` twice that (two multiplies);
/// - `softmax`: per row, a max pass, an exponent-and-sum pass and a normalise pass of L / 4
///   each, plus 4 for the reduction tree and the logarithm;
/// - `smv`: two PEs run the softmax of row i+1 (3 L / 2 + 4) while the other two multiply row
///   i by V (ceil(D/2) (L + 1)); after the first row's softmax the slower of the two sets the
///   pace;
/// - `layernorm`: per row, sum, variance and two output passes of H / 4, plus 5 Newton steps
///   of 3 cycles and 4 for reductions.
pub fn cycles(op: Opcode, a: (usize, usize), b: (usize, usize)) -> u64 {
    let quarter = |n: usize| n.div_ceil(4) as u64;
    let (m, k) = (a.0 as u64, a.1 as u64);
    match op {
        Opcode::Matmul => m.div_ceil(2) * (b.1 as u64).div_ceil(2) * (k + 2),
        Opcode::MatmulBt => m.div_ceil(2) * (b.0 as u64).div_ceil(2) * (k + 2),
        Opcode::Add | Opcode::MulC | Opcode::Relu | Opcode::Copy => quarter(a.0 * a.1) + 1,
        Opcode::Gelu => 2 * quarter(a.0 * a.1) + 2,
        Opcode::Softmax => m * (3 * quarter(a.1) + 4),
        Opcode::SoftmaxMv => {
            let softmax_row = 3 * (k.div_ceil(2)) + 4;
            let mv_row = (b.1 as u64).div_ceil(2) * (k + 1);
            softmax_row + m * softmax_row.max(mv_row)
        }
        Opcode::LayerNorm => m * (4 * quarter(a.1) + 3 * RSQRT_STEPS as u64 + 4),
        Opcode::Nop | Opcode::Signal | Opcode::Wait => 1,
    }
}

/// Runs one operation. The shapes were checked when the program was loaded.
pub fn execute(op: Opcode, fp: &FixedPoint, a: &Operand, b: Option<&Operand>) -> Produced {
    let f = fp.frac_bits();
    let (rows, cols) = (a.rows, a.cols);
    let done = |rows, cols, values| Produced { rows, cols, values };
    match op {
        Opcode::Matmul | Opcode::MatmulBt => {
            let b = b.expect("matmul has b");
            let (k, n, b_rows) = if op == Opcode::Matmul {
                (b.rows, b.cols, b.values.clone())
            } else {
                (
                    b.cols,
                    b.rows,
                    edgerun_tensor::fixed::transpose(&b.values, b.rows, b.cols),
                )
            };
            let acc = matmul_acc(fp, &a.values, &b_rows, [rows, k, n]).expect("checked shapes");
            done(rows, n, acc.into_iter().map(|x| fp.narrow(x, f)).collect())
        }
        Opcode::Add => {
            let b = b.expect("add has b");
            let values = a
                .values
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let y = if b.rows == 1 {
                        b.values[i % cols]
                    } else {
                        b.values[i]
                    };
                    fp.format.saturate(x as i64 + y as i64)
                })
                .collect();
            done(rows, cols, values)
        }
        Opcode::MulC => {
            let k = b.expect("mulc has b").values[0] as i64;
            done(
                rows,
                cols,
                a.values
                    .iter()
                    .map(|&x| fp.narrow(x as i64 * k, f))
                    .collect(),
            )
        }
        Opcode::Relu => done(rows, cols, a.values.iter().map(|&x| x.max(0)).collect()),
        Opcode::Copy => done(rows, cols, a.values.clone()),
        Opcode::Gelu => done(
            rows,
            cols,
            a.values.iter().map(|&x| gelu_fixed(fp, x)).collect(),
        ),
        Opcode::Softmax | Opcode::SoftmaxMv => {
            let len = cols;
            let mask: Vec<bool> = match (op, b) {
                (Opcode::Softmax, Some(m)) => m.values.iter().map(|&v| v != 0).collect(),
                _ => vec![true; len],
            };
            let mut probabilities = vec![0i16; rows * len];
            for (row, out) in a
                .values
                .chunks_exact(len.max(1))
                .zip(probabilities.chunks_exact_mut(len.max(1)))
            {
                shift_softmax_row(fp, row, &mask, out);
            }
            if op == Opcode::Softmax {
                return done(rows, len, probabilities);
            }
            let v = b.expect("smv has b");
            let acc = matmul_acc(fp, &probabilities, &v.values, [rows, len, v.cols])
                .expect("checked shapes");
            done(
                rows,
                v.cols,
                acc.into_iter().map(|x| fp.narrow(x, f)).collect(),
            )
        }
        Opcode::LayerNorm => layer_norm(fp, a, b.expect("layernorm has b")),
        Opcode::Nop | Opcode::Signal | Opcode::Wait => done(0, 0, Vec::new()),
    }
}

/// Layer norm in integers: mean and variance by multiplying with a 2^32-scaled reciprocal of
/// H (no divider), Newton's reciprocal square root, then gamma and beta.
fn layer_norm(fp: &FixedPoint, a: &Operand, params: &Operand) -> Produced {
    let f = fp.frac_bits() as i64;
    let (rows, h) = (a.rows, a.cols);
    let recip = ((1i128 << 32) + h as i128 / 2) / h.max(1) as i128;
    let eps = ((1e-12f64 * (1u64 << (2 * f)) as f64).round() as i128).max(1);
    let (gamma, beta) = params.values.split_at(h);
    let mut values = vec![0i16; rows * h];
    for (row, out) in a
        .values
        .chunks_exact(h.max(1))
        .zip(values.chunks_exact_mut(h.max(1)))
    {
        let sum: i128 = row.iter().map(|&x| x as i128).sum();
        let mean = fp.shift_round(((sum * recip) >> 16) as i64, 16);
        let centred: Vec<i64> = row.iter().map(|&x| x as i64 - mean).collect();
        let squares: i128 = centred.iter().map(|&c| (c as i128) * (c as i128)).sum();
        let var = ((squares * recip) >> 32) + eps; // scale 2^(2f)
                                                   // var = m * 4^e with m in [1, 4): rsqrt(var) = rsqrt(m) / 2^e.
        let bits = 128 - var.leading_zeros() as i64;
        let e = (bits - 1) / 2;
        let m_q30 = if 2 * e >= RSQRT_FRAC as i64 {
            var >> (2 * e - RSQRT_FRAC as i64)
        } else {
            var << (RSQRT_FRAC as i64 - 2 * e)
        };
        let r = rsqrt_newton_fixed(m_q30);
        // c * 2^f / sqrt(var): c (scale 2^f) times r (Q.30) / 2^e, times 2^f.
        let shift = RSQRT_FRAC as i64 + e - f;
        for (j, (o, &c)) in out.iter_mut().zip(&centred).enumerate() {
            let normalised = if shift >= 0 {
                fp.shift_round((c as i128 * r) as i64, shift as u32)
            } else {
                ((c as i128 * r) << (-shift)) as i64
            };
            let scaled = fp.shift_round(normalised * gamma[j] as i64, f as u32);
            *o = fp.format.saturate(scaled + beta[j] as i64);
        }
    }
    Produced {
        rows,
        cols: h,
        values,
    }
}
