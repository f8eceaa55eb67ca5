//! Embedding lookup: rows of a table gathered by token id.

use crate::quant::QuantMatrix;
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
    gather(ids, rows, dim, |row, out| {
        out.extend_from_slice(&values[row * dim..(row + 1) * dim])
    })
}

/// [`embedding`] from a table of `rows` rows held packed for the GEMM as a Linear weight
/// (`[ceil(rows / 64), dim, 64]`, see `kernels::pack_linear`): a tied LM head's table, kept in
/// the one layout both of its uses can read. Row `r` is lane `r % 64` of group `r / 64`.
pub fn embedding_packed(table: &Tensor, rows: usize, ids: &[i64]) -> Result<Tensor> {
    use crate::kernels::gemm::GROUP;
    let [groups, dim, GROUP] = *table.shape() else {
        return Err(TensorError::Shape {
            op: "embedding",
            expected: format!("a packed [groups, dim, {GROUP}] table"),
            got: table.shape().to_vec(),
        });
    };
    if groups != rows.div_ceil(GROUP) {
        return Err(TensorError::Shape {
            op: "embedding",
            expected: format!("{} groups for {rows} rows", rows.div_ceil(GROUP)),
            got: table.shape().to_vec(),
        });
    }
    let table = table.contiguous();
    let values = table.values();
    gather(ids, rows, dim, |row, out| {
        let group = &values[row / GROUP * dim * GROUP..][..dim * GROUP];
        out.extend(group.iter().skip(row % GROUP).step_by(GROUP));
    })
}

/// [`embedding`] from a table held as a quantised matrix `[dim, rows]` (a Linear weight's
/// layout, as [`embedding_packed`]'s): row `r` is column `r`, its codes times their scales.
pub fn embedding_quantised(table: &QuantMatrix, ids: &[i64]) -> Result<Tensor> {
    gather(ids, table.cols(), table.rows(), |row, out| {
        crate::quant::dequantize_column(table, row, out)
    })
}

/// `[ids.len(), dim]`: for each id, checked against `rows`, the `dim` values `push_row` appends.
fn gather(
    ids: &[i64],
    rows: usize,
    dim: usize,
    mut push_row: impl FnMut(usize, &mut Vec<f32>),
) -> Result<Tensor> {
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &id in ids {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < rows)
            .ok_or(TensorError::IndexOutOfRange { id, rows })?;
        push_row(row, &mut out);
    }
    Tensor::from_vec(&[ids.len(), dim], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_tables_give_the_rows_of_the_plain_table() {
        let (rows, dim) = (130, 3);
        let plain =
            Tensor::from_vec(&[rows, dim], (0..rows * dim).map(|i| i as f32).collect()).unwrap();
        let packed = crate::kernels::pack_linear(&plain, true).unwrap();
        let ids = [0, 1, 63, 64, 65, 127, 128, 129, 7];
        assert_eq!(
            embedding_packed(&packed, rows, &ids).unwrap().values(),
            embedding(&plain, &ids).unwrap().values()
        );
        assert!(embedding_packed(&packed, rows, &[130]).is_err());
        assert!(embedding_packed(&packed, rows, &[-1]).is_err());
        assert!(embedding_packed(&packed, 200, &[0]).is_err());
        assert!(embedding_packed(&plain, rows, &[0]).is_err());
    }

    #[test]
    fn gathers_rows_and_rejects_bad_ids() {
        let t = Tensor::from_vec(&[3, 2], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!(embedding(&t, &[2, 0]).unwrap().values(), &[4., 5., 0., 1.]);
        assert!(embedding(&t, &[3]).is_err());
        assert!(embedding(&t, &[-1]).is_err());
    }
}
