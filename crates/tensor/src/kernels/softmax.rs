//! Numerically stable softmax over the rows of a dense matrix.

/// Softmax of each `row_len` run of `values`, in place. Rows whose entries are all -inf become
/// zeros rather than NaN (a fully masked query attends to nothing).
pub fn softmax_rows(values: &mut [f32], row_len: usize) {
    for_each_visible_row(values, row_len, |row, max| {
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    });
}

/// Calls `normalise(row, max)` on each `row_len` run of `values` that has a finite maximum;
/// rows whose entries are all -inf (fully masked) become zeros.
pub(crate) fn for_each_visible_row(
    values: &mut [f32],
    row_len: usize,
    mut normalise: impl FnMut(&mut [f32], f32),
) {
    if row_len == 0 {
        return;
    }
    for row in values.chunks_exact_mut(row_len) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
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
}
