//! Embedding lookup: rows of a table gathered by token id.

use crate::{Result, Tensor, TensorError};

/// Gathers `table[id]` for each id; returns `[ids.len(), dim]`.
pub fn embedding(table: &Tensor, ids: &[i64]) -> Result<Tensor> {
    let [rows, dim] = *table.shape() else {
        return Err(TensorError::Shape {
            op: "embedding",
            expected: "a [rows, dim] table".into(),
            got: table.shape().to_vec(),
        });
    };
    let table = table.contiguous();
    let values = table.values();
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &id in ids {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < rows)
            .ok_or(TensorError::IndexOutOfRange { id, rows })?;
        out.extend_from_slice(&values[row * dim..(row + 1) * dim]);
    }
    Tensor::from_vec(&[ids.len(), dim], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_rows_and_rejects_bad_ids() {
        let t = Tensor::from_vec(&[3, 2], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!(embedding(&t, &[2, 0]).unwrap().values(), &[4., 5., 0., 1.]);
        assert!(embedding(&t, &[3]).is_err());
        assert!(embedding(&t, &[-1]).is_err());
    }
}
