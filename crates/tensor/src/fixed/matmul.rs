//! Fixed-point matrix products: the reference every systolic dataflow must equal bit for bit.

use super::FixedPoint;
use crate::{Result, TensorError};

/// Row-major `a[m x k] @ b[k x n]`, each output a saturating accumulator summed in ascending
/// `k` (the order a systolic PE, or a column of them, adds in).
pub fn matmul_acc(
    fp: &FixedPoint,
    a: &[i16],
    b: &[i16],
    [m, k, n]: [usize; 3],
) -> Result<Vec<i64>> {
    check(a, b, [m, k, n])?;
    let mut out = vec![0i64; m * n];
    for (i, row) in out.chunks_exact_mut(n.max(1)).enumerate().take(m) {
        let a_row = &a[i * k..(i + 1) * k];
        for (kk, &x) in a_row.iter().enumerate() {
            let b_row = &b[kk * n..(kk + 1) * n];
            for (acc, &w) in row.iter_mut().zip(b_row) {
                *acc = fp.mac(*acc, x, w);
            }
        }
    }
    Ok(out)
}

/// [`matmul_acc`] narrowed to 16 bits by `shift` (the data format's fraction bits brings a
/// product back to the data scale).
pub fn matmul(
    fp: &FixedPoint,
    a: &[i16],
    b: &[i16],
    dims: [usize; 3],
    shift: u32,
) -> Result<Vec<i16>> {
    Ok(matmul_acc(fp, a, b, dims)?
        .into_iter()
        .map(|acc| fp.narrow(acc, shift))
        .collect())
}

/// Row-major transpose of `rows x cols`.
pub fn transpose(x: &[i16], rows: usize, cols: usize) -> Vec<i16> {
    let mut out = vec![0i16; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

fn check(a: &[i16], b: &[i16], [m, k, n]: [usize; 3]) -> Result<()> {
    if a.len() != m * k || b.len() != k * n {
        return Err(TensorError::Shape {
            op: "fixed matmul",
            expected: format!("[{m}, {k}] @ [{k}, {n}]"),
            got: vec![a.len(), b.len()],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_hand_values() {
        let fp = FixedPoint::q8_8();
        let a = fp.quantize_all(&[1.0, 2.0, -0.5, 0.25]);
        let b = fp.quantize_all(&[0.5, 1.0, 1.5, -2.0]);
        let c = matmul(&fp, &a, &b, [2, 2, 2], 8).unwrap();
        // [[1,2],[-.5,.25]] @ [[.5,1],[1.5,-2]] = [[3.5,-3],[.125,-1]]
        assert_eq!(fp.dequantize_all(&c), vec![3.5, -3.0, 0.125, -1.0]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let fp = FixedPoint::q8_8();
        assert!(matmul(&fp, &[0; 3], &[0; 4], [2, 2, 2], 8).is_err());
    }
}
