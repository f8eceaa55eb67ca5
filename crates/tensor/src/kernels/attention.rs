//! Multi-head attention with padding and causal masks, in any [`AttentionAlgorithm`].
//!
//! Q is dense `[batch, queries, heads * head_dim]`; K and V are [`KvRef`]s, rows of the same
//! width whose batches may sit further apart (a KV cache read in place). Each (batch, head) pair
//! is one job. Softmax and shift-softmax in f32 run two gemm calls over per-head views with no
//! copies of K and V; the linear and fixed-point variants copy the head into dense rows first.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::attention_variant::{AttentionAlgorithm, AttentionVariant};
use super::linear_attention::{sima_head, taylor_head, Head};
use super::matmul::{matmul_strided, MatRef};
use super::shift_softmax::shift_softmax_rows;
use super::softmax::softmax_rows;
use super::wide::widest;
use crate::fixed::{self, FixedPoint, HeadOperands, TaylorEngine};
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

/// Arithmetic operations of every attention call in this process so far, by the variant's own
/// count ([`AttentionVariant::flops`]): an instrument for comparing variants, read as a
/// difference around a pass.
pub fn attention_flops() -> u64 {
    ATTENTION_FLOPS.load(Ordering::Relaxed)
}

static ATTENTION_FLOPS: AtomicU64 = AtomicU64::new(0);

/// `softmax(Q K^T * scale + mask) V` per head; returns `[batch, queries, heads * head_dim]`.
pub fn attention(
    q: &Tensor,
    k: KvRef,
    v: KvRef,
    layout: HeadLayout,
    mask: AttentionMask,
    scale: f32,
) -> Result<Tensor> {
    attention_with(
        q,
        k,
        v,
        layout,
        mask,
        scale,
        &AttentionAlgorithm::default(),
        None,
    )
}

/// Attention of any variant. Linear variants read the padding mask as binary (a key whose bias
/// is below -1e4 is hidden); SimA and fixed-point Taylor refuse causal masks
/// ([`AttentionAlgorithm::check_causal`]). `engine`, if given, computes the fixed-point Taylor
/// heads in place of [`fixed::taylor_head`] (an accelerator simulator, for one).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    q: &Tensor,
    k: KvRef,
    v: KvRef,
    layout: HeadLayout,
    mask: AttentionMask,
    scale: f32,
    algorithm: &AttentionAlgorithm,
    engine: Option<&dyn TaylorEngine>,
) -> Result<Tensor> {
    let HeadLayout { heads, head_dim } = layout;
    let width = heads * head_dim;
    let q = q.contiguous();
    let (batch, queries) = match *q.shape() {
        [batch, queries, w] if w == width => (batch, queries),
        _ => {
            return Err(TensorError::Shape {
                op: "attention q",
                expected: format!("[batch, queries, {width}]"),
                got: q.shape().to_vec(),
            })
        }
    };
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
    algorithm.check_causal(mask.causal)?;
    let flops = algorithm.variant.flops(queries, kv_len, head_dim);
    ATTENTION_FLOPS.fetch_add((batch * heads) as u64 * flops, Ordering::Relaxed);
    let job = Job {
        q: q.values(),
        k,
        v,
        layout,
        mask,
        scale,
        queries,
        kv_len,
        past: kv_len - queries.min(kv_len),
    };

    let mut per_head = vec![0.0f32; batch * heads * queries * head_dim];
    per_head
        .par_chunks_mut((queries * head_dim).max(1))
        .enumerate()
        .try_for_each(|(index, out)| {
            let (b, h) = (index / heads, index % heads);
            match (algorithm.variant, &algorithm.fixed_point) {
                (AttentionVariant::Softmax, None) => job.scored(b, h, out, softmax_rows),
                (AttentionVariant::ShiftSoftmax, None) => job.scored(b, h, out, shift_softmax_rows),
                (variant, fixed_point) => {
                    return job.dense(b, h, variant, fixed_point.as_ref(), engine, out)
                }
            }
            Ok(())
        })?;

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

thread_local! {
    /// One head's score matrix, per thread, kept between heads and calls.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Everything one (batch, head) job reads.
struct Job<'a> {
    q: &'a [f32],
    k: KvRef<'a>,
    v: KvRef<'a>,
    layout: HeadLayout,
    mask: AttentionMask<'a>,
    scale: f32,
    queries: usize,
    kv_len: usize,
    /// Keys before the first query's own position.
    past: usize,
}

impl Job<'_> {
    fn view<'d>(&self, data: &'d [f32], offset: usize, rows: usize) -> MatRef<'d> {
        let width = self.layout.heads * self.layout.head_dim;
        MatRef {
            data: &data[offset..],
            rows,
            cols: self.layout.head_dim,
            row_stride: width,
            col_stride: 1,
        }
    }

    fn q_view(&self, b: usize, h: usize) -> MatRef<'_> {
        let width = self.layout.heads * self.layout.head_dim;
        let offset = b * self.queries * width + h * self.layout.head_dim;
        self.view(self.q, offset, self.queries)
    }

    fn kv_view<'d>(&self, kv: &KvRef<'d>, b: usize, h: usize) -> MatRef<'d> {
        let offset = b * kv.batch_stride + h * self.layout.head_dim;
        let width = self.layout.heads * self.layout.head_dim;
        MatRef {
            data: &kv.data[offset..],
            rows: self.kv_len,
            cols: self.layout.head_dim,
            row_stride: width,
            col_stride: 1,
        }
    }

    /// Score-matrix variants: `normalise(Q K^T * scale + mask) V` with a row normaliser.
    fn scored(&self, b: usize, h: usize, out: &mut [f32], normalise: fn(&mut [f32], usize)) {
        let (queries, kv_len) = (self.queries, self.kv_len);
        SCORES.with_borrow_mut(|scores| {
            // Every element is overwritten by the product, so a longer buffer from an earlier
            // head is reused as it is.
            if scores.len() < queries * kv_len {
                scores.resize(queries * kv_len, 0.0);
            }
            let scores = &mut scores[..queries * kv_len];
            let k_view = self.kv_view(&self.k, b, h);
            matmul_strided(scores, kv_len, self.q_view(b, h), k_view.t(), false);
            let bias = self.mask.key_bias.map(|m| &m[b * kv_len..(b + 1) * kv_len]);
            let scale = self.scale;
            for (i, row) in scores.chunks_exact_mut(kv_len.max(1)).enumerate() {
                widest(
                    #[inline(always)]
                    || match bias {
                        Some(bias) => row
                            .iter_mut()
                            .zip(bias)
                            .for_each(|(s, bias)| *s = *s * scale + bias),
                        None => row.iter_mut().for_each(|s| *s *= scale),
                    },
                );
                if self.mask.causal {
                    row[(self.past + i + 1).min(kv_len)..].fill(f32::NEG_INFINITY);
                }
            }
            normalise(scores, kv_len);
            let probabilities = MatRef::row_major(scores, queries, kv_len);
            let v_view = self.kv_view(&self.v, b, h);
            matmul_strided(out, self.layout.head_dim, probabilities, v_view, false);
        })
    }

    /// Variants that work on dense copies of the head: Taylor, SimA, and all of fixed point.
    fn dense(
        &self,
        b: usize,
        h: usize,
        variant: AttentionVariant,
        fixed_point: Option<&FixedPoint>,
        engine: Option<&dyn TaylorEngine>,
        out: &mut [f32],
    ) -> Result<()> {
        let gather = |m: MatRef| -> Vec<f32> {
            (0..m.rows)
                .flat_map(|r| (0..m.cols).map(move |c| m.data[r * m.row_stride + c]))
                .collect()
        };
        let (q, k, v) = (
            gather(self.q_view(b, h)),
            gather(self.kv_view(&self.k, b, h)),
            gather(self.kv_view(&self.v, b, h)),
        );
        let visible: Vec<bool> = match self.mask.key_bias {
            Some(bias) => bias[b * self.kv_len..(b + 1) * self.kv_len]
                .iter()
                .map(|&x| x > -1e4)
                .collect(),
            None => vec![true; self.kv_len],
        };
        let head = Head {
            q: &q,
            k: &k,
            v: &v,
            queries: self.queries,
            keys: self.kv_len,
            dim: self.layout.head_dim,
            visible: &visible,
        };
        let causal_past = self.mask.causal.then_some(self.past);
        match fixed_point {
            None => match variant {
                AttentionVariant::Taylor(centre) => {
                    taylor_head(&head, centre, 1.0 / self.scale, causal_past, out)
                }
                AttentionVariant::Sima => sima_head(&head, out),
                AttentionVariant::Softmax | AttentionVariant::ShiftSoftmax => {
                    unreachable!("scored variants run in Job::scored")
                }
            },
            Some(fp) => {
                return fixed_head(fp, &head, variant, self.scale, causal_past, engine, out)
            }
        }
        Ok(())
    }
}

/// A head in fixed point: quantise, run the integer kernel, dequantise into `out`.
fn fixed_head(
    fp: &FixedPoint,
    head: &Head,
    variant: AttentionVariant,
    scale: f32,
    causal_past: Option<usize>,
    engine: Option<&dyn TaylorEngine>,
    out: &mut [f32],
) -> Result<()> {
    let (nq, d) = (head.queries, head.dim);
    let q = fp.quantize_all(head.q);
    let result = match variant {
        AttentionVariant::Taylor(centre) => {
            let mut k = Vec::new();
            let mut v = Vec::new();
            for j in (0..head.keys).filter(|&j| head.visible[j]) {
                k.extend(fp.quantize_all(&head.k[j * d..(j + 1) * d]));
                v.extend(fp.quantize_all(&head.v[j * d..(j + 1) * d]));
            }
            let operands = HeadOperands {
                q: &q,
                k: &k,
                v: &v,
                queries: nq,
                keys: k.len() / d.max(1),
                dim: d,
            };
            match engine {
                Some(engine) => engine.taylor_head(fp, &operands, centre, 1.0 / scale),
                None => fixed::taylor_head(fp, &operands, centre, 1.0 / scale),
            }
        }
        _ => fixed_shift_softmax_head(fp, head, &q, scale, causal_past),
    };
    let z = result?;
    if z.len() != out.len() {
        return Err(TensorError::Shape {
            op: "fixed-point attention head",
            expected: format!("{} values", out.len()),
            got: vec![z.len()],
        });
    }
    out.iter_mut()
        .zip(&z)
        .for_each(|(o, &r)| *o = fp.format.to_f32(r));
    Ok(())
}

/// `shift_softmax(Q K^T * scale) V` in fixed point: scores narrowed to the data format, scaled
/// by the quantised `scale`, normalised by shift-and-add, multiplied by V.
fn fixed_shift_softmax_head(
    fp: &FixedPoint,
    head: &Head,
    q: &[i16],
    scale: f32,
    causal_past: Option<usize>,
) -> Result<Vec<i16>> {
    let (nq, nk, d) = (head.queries, head.keys, head.dim);
    let f = fp.frac_bits();
    let k_t = fixed::transpose(&fp.quantize_all(head.k), nk, d);
    let v = fp.quantize_all(head.v);
    let scale_q = fp.quantize(scale) as i64;
    let scores = fixed::matmul(fp, q, &k_t, [nq, d, nk], f)?;
    let mut probabilities = vec![0i16; nq * nk];
    let mut visible = vec![false; nk];
    for (i, row) in probabilities.chunks_exact_mut(nk.max(1)).enumerate() {
        let scaled: Vec<i16> = scores[i * nk..(i + 1) * nk]
            .iter()
            .map(|&s| fp.narrow(s as i64 * scale_q, f))
            .collect();
        for (j, seen) in visible.iter_mut().enumerate() {
            *seen = head.visible[j] && !matches!(causal_past, Some(past) if j > past + i);
        }
        fixed::shift_softmax_row(fp, &scaled, &visible, row);
    }
    fixed::matmul(fp, &probabilities, &v, [nq, nk, d], f)
}
