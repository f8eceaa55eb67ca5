//! ViTALiTy's first-order Taylor attention in fixed point, split into the stages of the SAMM
//! datapath so its simulator can swap the three products for systolic arrays and keep the rest.
//!
//! With `n` keys, `c = sqrt(d)` and `p = ceil(log2 n)`:
//! - column accumulator: `mu` = column means of K (a rounding division by `n`), `K^ = K - mu`,
//!   and the column sums of `K^` and V shifted right by `p` (`k_sum'`, `v_sum'`), which keeps
//!   them in 16 bits whatever `n` is;
//! - array 16x32: `G' = K^^T V`, narrowed by `f + p` (so `G' = G / 2^p`);
//! - array 17x32: `Q G'` and array 17x1: `Q k_sum'`, both left as accumulators;
//! - divider: `t_D = n c / 2^p + Q k_sum'`, `T_N = c v_sum' + Q G'` (accumulator scale, the
//!   common `2^-p` cancels), `Z = T_N * 2^f / t_D`.
//!
//! Dividing numerator and denominator by the same `2^p` is what keeps every 16-bit operand in
//! range; the f32 formula of `kernels::linear_attention` is the same expression without it.

use super::{matmul_acc, transpose, FixedPoint};
use crate::kernels::Centre;
use crate::Result;

/// One head's operands, row-major: Q is `queries x dim`, K and V are `keys x dim`.
#[derive(Clone, Copy, Debug)]
pub struct HeadOperands<'a> {
    pub q: &'a [i16],
    pub k: &'a [i16],
    pub v: &'a [i16],
    pub queries: usize,
    pub keys: usize,
    pub dim: usize,
}

/// What the column accumulator hands the arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSums {
    /// Centred keys, `keys x dim`.
    pub k_hat: Vec<i16>,
    /// `sum_t K^[t, :] >> p`.
    pub k_sum: Vec<i16>,
    /// `sum_t V[t, :] >> p`.
    pub v_sum: Vec<i16>,
    /// `p = ceil(log2 keys)`.
    pub shift: u32,
}

/// The column accumulator: mean-centring of K and the column sums of K^ and V.
pub fn column_accumulate(fp: &FixedPoint, head: &HeadOperands, centre: Centre) -> ColumnSums {
    let (n, d) = (head.keys, head.dim);
    let shift = usize::BITS - n.saturating_sub(1).leading_zeros();
    let column_sum =
        |x: &[i16], col: usize| (0..n).fold(0i64, |acc, t| fp.acc_add(acc, x[t * d + col] as i64));
    let k_hat: Vec<i16> = match centre {
        Centre::Tokens => {
            let mean: Vec<i64> = (0..d)
                .map(|col| fp.div_round(column_sum(head.k, col), n.max(1) as i64))
                .collect();
            (0..n * d)
                .map(|i| fp.format.saturate(head.k[i] as i64 - mean[i % d]))
                .collect()
        }
        Centre::Features => head
            .k
            .chunks_exact(d.max(1))
            .flat_map(|row| {
                let sum = row.iter().fold(0i64, |acc, &x| fp.acc_add(acc, x as i64));
                let mean = fp.div_round(sum, d.max(1) as i64);
                row.iter()
                    .map(move |&x| fp.format.saturate(x as i64 - mean))
            })
            .collect(),
    };
    let k_sum = (0..d)
        .map(|col| fp.narrow(column_sum(&k_hat, col), shift))
        .collect();
    let v_sum = (0..d)
        .map(|col| fp.narrow(column_sum(head.v, col), shift))
        .collect();
    ColumnSums {
        k_hat,
        k_sum,
        v_sum,
        shift,
    }
}

/// `G' = K^^T V >> (f + p)`, `dim x dim` (the 16x32 array's product).
pub fn key_value_product(
    fp: &FixedPoint,
    sums: &ColumnSums,
    head: &HeadOperands,
) -> Result<Vec<i16>> {
    let k_hat_t = transpose(&sums.k_hat, head.keys, head.dim);
    let acc = matmul_acc(fp, &k_hat_t, head.v, [head.dim, head.keys, head.dim])?;
    Ok(narrow_key_value(fp, sums, &acc))
}

/// `K^^T V` accumulators narrowed to `G'`: shifted by `f + p`, the `2^-p` that keeps G' in
/// 16 bits. The SAMM simulator narrows its array's accumulators with this too.
pub fn narrow_key_value(fp: &FixedPoint, sums: &ColumnSums, acc: &[i64]) -> Vec<i16> {
    acc.iter()
        .map(|&a| fp.narrow(a, fp.frac_bits() + sums.shift))
        .collect()
}

/// The divider stage: `Z = (c v_sum' + Q G') * 2^f / (n c / 2^p + Q k_sum')`.
///
/// `qg` is `queries x dim` and `qk` `queries` accumulators; `c` is `sqrt(d)` (`1 / scale`).
/// A denominator that is not positive (possible with feature centring) is taken as one LSB.
pub fn divide(
    fp: &FixedPoint,
    sums: &ColumnSums,
    [qg, qk]: [&[i64]; 2],
    keys: usize,
    c: f32,
) -> Vec<i16> {
    let f = fp.frac_bits();
    let c_q = fp.quantize(c) as i64;
    let dim = sums.v_sum.len();
    let base = fp.acc_saturate(fp.shift_round((keys as i64 * c_q) << f, sums.shift));
    let mut out = vec![0i16; qg.len()];
    for (i, (row, &qk)) in out.chunks_exact_mut(dim.max(1)).zip(qk).enumerate() {
        let denominator = fp.acc_add(base, qk).max(1);
        for (j, o) in row.iter_mut().enumerate() {
            let numerator = fp.acc_add(c_q * sums.v_sum[j] as i64, qg[i * dim + j]);
            *o = fp
                .format
                .saturate(fp.div_round(numerator << f, denominator));
        }
    }
    out
}

/// Something that computes whole fixed-point Taylor heads: the kernel below, or an accelerator
/// simulator that must return the same values.
pub trait TaylorEngine: Send + Sync + std::fmt::Debug {
    fn taylor_head(
        &self,
        fp: &FixedPoint,
        head: &HeadOperands,
        centre: Centre,
        c: f32,
    ) -> Result<Vec<i16>>;
}

/// The whole head: column accumulator, the three products, the divider.
pub fn taylor_head(
    fp: &FixedPoint,
    head: &HeadOperands,
    centre: Centre,
    c: f32,
) -> Result<Vec<i16>> {
    let sums = column_accumulate(fp, head, centre);
    let g = key_value_product(fp, &sums, head)?;
    let dims = [head.queries, head.dim, head.dim];
    let qg = matmul_acc(fp, head.q, &g, dims)?;
    let qk = matmul_acc(fp, head.q, &sums.k_sum, [head.queries, head.dim, 1])?;
    Ok(divide(fp, &sums, [&qg, &qk], head.keys, c))
}
