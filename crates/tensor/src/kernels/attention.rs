//! Scaled dot-product multi-head attention with padding and causal masks.
//!
//! Q is dense `[batch, queries, heads * head_dim]`; K and V are [`KvRef`]s, rows of the same
//! width whose batches may sit further apart (a KV cache read in place). Each (batch, head) pair
//! is one job: two gemm calls over per-head views, no transposes or copies of K and V.

use rayon::prelude::*;

use crate::kernels::matmul::{matmul_strided, MatRef};
use crate::kernels::softmax::softmax_rows;
use crate::{Result, Tensor, TensorError};

#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    pub heads: usize,
    pub head_dim: usize,
}

/// What a query may not see.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// Additive bias per `[batch, key]` (0 for visible keys, a large negative for padding).
    pub key_bias: Option<&'a [f32]>,
    /// Query `i` sees keys up to its own absolute position `kv_len - queries + i`.
    pub causal: bool,
}

/// Keys or values: `len` rows of `heads * head_dim` per batch, batch `b` starting at
/// `b * batch_stride` (a cache allocated for more rows than are filled).
#[derive(Clone, Copy, Debug)]
pub struct KvRef<'a> {
    pub data: &'a [f32],
    pub len: usize,
    pub batch_stride: usize,
}

impl<'a> KvRef<'a> {
    /// Dense `[batch, len, width]` rows.
    pub fn dense(data: &'a [f32], len: usize, width: usize) -> Self {
        Self {
            data,
            len,
            batch_stride: len * width,
        }
    }

    fn check(&self, op: &'static str, batch: usize, width: usize) -> Result<()> {
        let needed = batch.saturating_sub(1) * self.batch_stride + self.len * width;
        if self.batch_stride < self.len * width || self.data.len() < needed {
            return Err(TensorError::Shape {
                op,
                expected: format!("{batch} batches of {} rows of {width}", self.len),
                got: vec![self.data.len()],
            });
        }
        Ok(())
    }
}

/// `softmax(Q K^T * scale + mask) V` per head; returns `[batch, queries, heads * head_dim]`.
pub fn attention(
    q: &Tensor,
    k: KvRef,
    v: KvRef,
    layout: HeadLayout,
    mask: AttentionMask,
    scale: f32,
) -> Result<Tensor> {
    let HeadLayout { heads, head_dim } = layout;
    let width = heads * head_dim;
    let q = q.contiguous();
    let [batch, queries, q_width] = *q.shape() else {
        return Err(TensorError::Shape {
            op: "attention q",
            expected: format!("[batch, queries, {width}]"),
            got: q.shape().to_vec(),
        });
    };
    if q_width != width {
        return Err(TensorError::Shape {
            op: "attention q",
            expected: format!("[batch, queries, {width}]"),
            got: q.shape().to_vec(),
        });
    }
    k.check("attention k", batch, width)?;
    v.check("attention v", batch, width)?;
    let kv_len = k.len;
    if v.len != kv_len || kv_len < queries && mask.causal {
        return Err(TensorError::Shape {
            op: "attention kv",
            expected: format!("{kv_len} keys and values, at least {queries}"),
            got: vec![v.len],
        });
    }
    if let Some(bias) = mask.key_bias {
        if bias.len() != batch * kv_len {
            return Err(TensorError::Shape {
                op: "attention mask",
                expected: format!("[{batch}, {kv_len}]"),
                got: vec![bias.len()],
            });
        }
    }
    let past = kv_len - queries.min(kv_len);
    let (qv, kv, vv) = (q.values(), k.data, v.data);
    let (k_bs, k_rs) = (k.batch_stride, width);
    let (v_bs, v_rs) = (v.batch_stride, width);

    let mut per_head = vec![0.0f32; batch * heads * queries * head_dim];
    per_head
        .par_chunks_mut((queries * head_dim).max(1))
        .enumerate()
        .for_each(|(job, out)| {
            let (b, h) = (job / heads, job % heads);
            let q_view = MatRef {
                data: &qv[b * queries * width + h * head_dim..],
                rows: queries,
                cols: head_dim,
                row_stride: width,
                col_stride: 1,
            };
            let k_view = MatRef {
                data: &kv[b * k_bs + h * head_dim..],
                rows: kv_len,
                cols: head_dim,
                row_stride: k_rs,
                col_stride: 1,
            };
            let mut scores = vec![0.0f32; queries * kv_len];
            matmul_strided(&mut scores, kv_len, q_view, k_view.t(), false);
            for (i, row) in scores.chunks_exact_mut(kv_len.max(1)).enumerate() {
                let bias = mask.key_bias.map(|m| &m[b * kv_len..(b + 1) * kv_len]);
                for (j, s) in row.iter_mut().enumerate() {
                    *s *= scale;
                    if let Some(bias) = bias {
                        *s += bias[j];
                    }
                    if mask.causal && j > past + i {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            softmax_rows(&mut scores, kv_len);
            let v_view = MatRef {
                data: &vv[b * v_bs + h * head_dim..],
                rows: kv_len,
                cols: head_dim,
                row_stride: v_rs,
                col_stride: 1,
            };
            matmul_strided(
                out,
                head_dim,
                MatRef::row_major(&scores, queries, kv_len),
                v_view,
                false,
            );
        });

    let mut out = vec![0.0f32; batch * queries * width];
    for b in 0..batch {
        for h in 0..heads {
            let src = &per_head[(b * heads + h) * queries * head_dim..][..queries * head_dim];
            for (i, row) in src.chunks_exact(head_dim.max(1)).enumerate() {
                let at = (b * queries + i) * width + h * head_dim;
                out[at..at + head_dim].copy_from_slice(row);
            }
        }
    }
    Tensor::from_vec(&[batch, queries, width], out)
}
