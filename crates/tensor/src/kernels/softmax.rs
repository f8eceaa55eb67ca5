//! Numerically stable softmax over the rows of a dense matrix.

use super::activation::exp;
use super::wide::widest;

/// Lanes of the partial sums and maxima: the reductions vectorize only when each lane keeps
/// its own running value.
const LANES: usize = 16;

/// The sum of `values`, lane by lane then across lanes.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l += v);
    }
    lanes.iter().sum::<f32>() + rest
}

/// The largest of `values` (-inf when empty or all -inf), lane by lane then across lanes.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        lanes
            .iter_mut()
            .zip(chunk)
            .for_each(|(l, &v)| *l = l.max(v));
    }
    lanes.iter().copied().fold(rest, f32::max)
}

/// Softmax of each `row_len` run of `values`, in place. Rows whose entries are all -inf become
/// zeros rather than NaN (a fully masked query attends to nothing).
pub fn softmax_rows(values: &mut [f32], row_len: usize) {
    widest(
        #[inline(always)]
        || softmax_rows_here(values, row_len),
    )
}

/// [`softmax_rows`] compiled for the caller's vector unit.
#[inline(always)]
fn softmax_rows_here(values: &mut [f32], row_len: usize) {
    for_each_visible_row(
        values,
        row_len,
        #[inline(always)]
        |row, max| {
            row.iter_mut().for_each(|v| *v = exp(*v - max));
            let inv = 1.0 / lane_sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        },
    );
}

/// Calls `normalise(row, max)` on each `row_len` run of `values` that has a finite maximum;
/// rows whose entries are all -inf (fully masked) become zeros.
#[inline(always)]
pub(crate) fn for_each_visible_row(
    values: &mut [f32],
    row_len: usize,
    mut normalise: impl FnMut(&mut [f32], f32),
) {
    if row_len == 0 {
        return;
    }
    for row in values.chunks_exact_mut(row_len) {
        let max = lane_max(row);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
        } else {
            normalise(row, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_masked_rows_are_zero() {
        let mut v = vec![
            1.0,
            2.0,
            3.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ];
        softmax_rows(&mut v, 3);
        assert!((v[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
        assert_eq!(&v[3..], &[0.0, 0.0, 0.0]);
    }

    /// The naive twin: libm's exp, sequential sums.
    fn softmax_naive(row: &[f32]) -> Vec<f32> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|&v| (v / sum) as f32).collect()
    }

    #[test]
    fn every_vector_width_gives_the_same_bits() {
        let len = 197;
        let mut rows: Vec<f32> = (0..len * 5)
            .map(|i| ((i * 7919) % 1001) as f32 / 40.0 - 12.0)
            .collect();
        rows[len..2 * len].fill(f32::NEG_INFINITY);
        rows[3 * len + 7] = f32::NEG_INFINITY;
        let mut want = rows.clone();
        softmax_rows_here(&mut want, len);
        for width in crate::kernels::wide::available() {
            let mut got = rows.clone();
            crate::kernels::wide::on(
                width,
                #[inline(always)]
                || softmax_rows_here(&mut got, len),
            );
            let same = crate::kernels::same_bits(&got, &want);
            assert!(same, "{width:?}");
        }
    }

    #[test]
    fn long_rows_match_the_naive_twin() {
        for len in [1usize, 15, 16, 17, 197, 1000] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1001) as f32 / 50.0 - 10.0)
                .collect();
            let mut got = row.clone();
            softmax_rows(&mut got, len);
            for (g, w) in got.iter().zip(softmax_naive(&row)) {
                assert!((g - w).abs() <= 1e-6 * w.max(1e-3), "len {len}: {g} vs {w}");
            }
        }
    }
}
