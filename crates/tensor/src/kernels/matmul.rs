//! Matrix products and Linear layers.
//!
//! Linear layers run on edgerun's GEMM ([`super::gemm`]) over weights packed once when they
//! are bound. Products of activations (attention's per-head views, convolutions over im2col
//! columns, tied heads) run on the `gemm` crate (AVX-512 micro-kernels via its `x86-v4`
//! feature), which packs both sides per call and is measured faster than ours there
//! (bench/src/bin/gemm.rs). [`matmul_strided`] exposes strides so attention can multiply
//! per-head views in place.

use rayon::prelude::*;

use super::{gemm, Activation};
use crate::parallel::gemm_threads;
use crate::quant::QuantMatrix;
use crate::{Result, Tensor, TensorError};

/// A read-only matrix view: `rows x cols` starting at `data[0]`, with element strides.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn max_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// `out[m x n] (row stride out_rs) = a @ b`, or `+=` when `accumulate`.
///
/// Panics when the views disagree or run past their slices: callers derive them from checked
/// tensor shapes, so a mismatch here is a bug.
pub fn matmul_strided(out: &mut [f32], out_rs: usize, a: MatRef, b: MatRef, accumulate: bool) {
    matmul_into(out, (out_rs, 1), a, b, accumulate);
}

/// `out = a @ b` (or `+=`) with the output's row and column strides both free, so a product
/// can be written transposed (`out^T = b^T a^T`).
pub fn matmul_into(
    out: &mut [f32],
    (out_rs, out_cs): (usize, usize),
    a: MatRef,
    b: MatRef,
    accumulate: bool,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    gemm::count_flops(m, k, n);
    assert!(
        a.max_index() < a.data.len() || k == 0,
        "lhs view out of bounds"
    );
    assert!(
        b.max_index() < b.data.len() || k == 0,
        "rhs view out of bounds"
    );
    assert!(
        (m - 1) * out_rs + (n - 1) * out_cs < out.len(),
        "dst view out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    out[i * out_rs + j * out_cs] = 0.0;
                }
            }
        }
        return;
    }
    let threads = gemm_threads(m * n * k);
    // Split the larger output dimension across threads: each job packs only its own slice of
    // the operand on that side (usually the weight), where gemm's own split repacks and
    // scales poorly at m ~ 128.
    let (along_rows, extent) = if m > n { (true, m) } else { (false, n) };
    let chunk = extent.div_ceil(threads).next_multiple_of(16);
    let dst = SendPtr(out.as_mut_ptr());
    let job = |start: usize, len: usize| {
        let (rows, cols) = if along_rows { (len, n) } else { (m, len) };
        // SAFETY: the asserts above keep every index inside the three slices; jobs cover
        // disjoint row (or column) ranges, so no two write the same element of `out`.
        unsafe {
            let (dst, a_ptr, b_ptr) = if along_rows {
                (
                    dst.get().add(start * out_rs),
                    a.data.as_ptr().add(start * a.row_stride),
                    b.data.as_ptr(),
                )
            } else {
                (
                    dst.get().add(start * out_cs),
                    a.data.as_ptr(),
                    b.data.as_ptr().add(start * b.col_stride),
                )
            };
            ::gemm::gemm(
                rows,
                cols,
                k,
                dst,
                out_cs as isize,
                out_rs as isize,
                accumulate,
                a_ptr,
                a.col_stride as isize,
                a.row_stride as isize,
                b_ptr,
                b.col_stride as isize,
                b.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                ::gemm::Parallelism::None,
            );
        }
    };
    if threads <= 1 || chunk >= extent {
        job(0, extent);
        return;
    }
    let starts: Vec<usize> = (0..extent).step_by(chunk).collect();
    starts
        .into_par_iter()
        .for_each(|start| job(start, chunk.min(extent - start)));
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint ranges of one buffer to rayon jobs.
unsafe impl Send for SendPtr {}
// SAFETY: see above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `a [.., k] @ b [k, n] -> [.., n]`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    linear(a, b, None)
}

/// `x [.., in] @ w [in, out] + bias -> [.., out]`: a Linear layer with pre-transposed weights.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let out_dim = if w.rank() == 2 { w.shape()[1] } else { 0 };
    linear_fused(x, w.into(), out_dim, bias, Activation::Identity)
}

/// A matrix weight as bound: f32 (row-major `[in, out]`, or packed for the GEMM) or quantised.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    F32(&'a Tensor),
    Quant(&'a QuantMatrix),
}

impl<'a> From<&'a Tensor> for Weight<'a> {
    fn from(t: &'a Tensor) -> Self {
        Weight::F32(t)
    }
}

impl<'a> From<&'a QuantMatrix> for Weight<'a> {
    fn from(m: &'a QuantMatrix) -> Self {
        Weight::Quant(m)
    }
}

/// `activation(x [.., in] @ w + bias) -> [.., out_dim]`, the bias and the activation applied
/// to each tile of the product while it is in cache. `w` is a Linear weight as bound: `[in,
/// out_dim]` row-major, or packed for the GEMM as `[ceil(out_dim / 64), in, 64]` groups
/// ([`pack_linear`]; both give the same bits), or a quantised `[in, out_dim]` matrix.
pub fn linear_fused(
    x: &Tensor,
    w: Weight,
    out_dim: usize,
    bias: Option<&Tensor>,
    activation: Activation,
) -> Result<Tensor> {
    let layer = LinearLayer {
        weight: w,
        out_dim,
        bias,
        activation,
    };
    let k = x.last_dim();
    let weight = checked_weight(x, &layer)?;
    let bias = bias.map(Tensor::contiguous);
    let x = x.contiguous();
    let m = x.len() / k.max(1);
    let mut out = vec![0.0; m * out_dim];
    gemm::gemm(
        gemm::Out {
            data: &mut out,
            row_stride: out_dim,
            col_stride: 1,
        },
        MatRef::row_major(x.values(), m, k),
        rhs(&weight, k, out_dim),
        false,
        gemm::Epilogue::columns(bias.as_ref().map(|b| b.values()), activation),
    );
    Tensor::from_vec(&out_shape(&x, out_dim), out)
}

/// One Linear layer's weight (as [`linear_fused`] takes it), width, bias and activation.
#[derive(Clone, Copy)]
pub struct LinearLayer<'a> {
    pub weight: Weight<'a>,
    pub out_dim: usize,
    pub bias: Option<&'a Tensor>,
    pub activation: Activation,
}

/// Several Linear layers of the same input (a query, key and value projection) as one
/// parallel product ([`gemm::gemm_many`]): each output has the bits [`linear_fused`] gives.
pub fn linear_many(x: &Tensor, layers: &[LinearLayer]) -> Result<Vec<Tensor>> {
    let k = x.last_dim();
    let weights = layers
        .iter()
        .map(|layer| checked_weight(x, layer))
        .collect::<Result<Vec<_>>>()?;
    let biases: Vec<Option<Tensor>> = layers
        .iter()
        .map(|l| l.bias.map(Tensor::contiguous))
        .collect();
    let x = x.contiguous();
    let m = x.len() / k.max(1);
    let mut outs: Vec<Vec<f32>> = layers.iter().map(|l| vec![0.0; m * l.out_dim]).collect();
    let products = outs
        .iter_mut()
        .zip(layers.iter().zip(weights.iter().zip(&biases)))
        .map(|(out, (layer, (weight, bias)))| gemm::Product {
            out: gemm::Out {
                data: out,
                row_stride: layer.out_dim,
                col_stride: 1,
            },
            b: rhs(weight, k, layer.out_dim),
            epilogue: gemm::Epilogue::columns(bias.as_ref().map(|b| b.values()), layer.activation),
        })
        .collect();
    gemm::gemm_many(MatRef::row_major(x.values(), m, k), products);
    outs.into_iter()
        .zip(layers)
        .map(|(out, layer)| Tensor::from_vec(&out_shape(&x, layer.out_dim), out))
        .collect()
}

/// `x`'s shape with its last dimension `out_dim`.
fn out_shape(x: &Tensor, out_dim: usize) -> Vec<usize> {
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_dim;
    shape
}

/// A Linear weight checked against `x` and the layer's width, ready for the GEMM.
enum Checked<'a> {
    F32 { weight: Tensor, packed: bool },
    Quant(&'a QuantMatrix),
}

/// A Linear weight whose shape fits `x` and the layer's width (plain, packed or quantised),
/// and its bias's.
fn checked_weight<'a>(x: &Tensor, layer: &LinearLayer<'a>) -> Result<Checked<'a>> {
    let (k, out_dim) = (x.last_dim(), layer.out_dim);
    let groups = out_dim.div_ceil(gemm::GROUP);
    if let Some(b) = layer.bias {
        b.expect_shape("linear bias", &[out_dim])?;
    }
    let expected = || {
        format!(
            "a weight [{k}, {out_dim}] or packed [{groups}, {k}, {}] for x {:?}",
            gemm::GROUP,
            x.shape()
        )
    };
    let weight = match layer.weight {
        Weight::Quant(m) if m.rows() == k && m.cols() == out_dim => return Ok(Checked::Quant(m)),
        Weight::Quant(m) => {
            return Err(TensorError::Shape {
                op: "linear",
                expected: expected(),
                got: vec![m.rows(), m.cols()],
            })
        }
        Weight::F32(w) => w,
    };
    let packed = match *weight.shape() {
        [rows, cols] if rows == k && cols == out_dim => false,
        [g, rows, gemm::GROUP] if g == groups && rows == k => true,
        _ => {
            return Err(TensorError::Shape {
                op: "linear",
                expected: expected(),
                got: weight.shape().to_vec(),
            })
        }
    };
    Ok(Checked::F32 {
        weight: weight.contiguous(),
        packed,
    })
}

/// The GEMM's right operand for a weight checked by [`checked_weight`].
fn rhs<'a>(checked: &'a Checked, k: usize, out_dim: usize) -> gemm::Rhs<'a> {
    match checked {
        Checked::F32 {
            weight,
            packed: true,
        } => gemm::Rhs::Packed {
            data: weight.values(),
            rows: k,
            cols: out_dim,
        },
        Checked::F32 { weight, .. } => {
            gemm::Rhs::Plain(MatRef::row_major(weight.values(), k, out_dim))
        }
        Checked::Quant(m) => gemm::Rhs::Quant(m),
    }
}

/// A Linear weight `[in, out]` (or, with `transposed`, the checkpoint's `[out, in]`) packed
/// into the GEMM's groups of columns, `[ceil(out / 64), in, 64]`: done once when a weight is bound, so
/// no product packs it again.
pub fn pack_linear(w: &Tensor, transposed: bool) -> Result<Tensor> {
    pack_linear_reporting(w, transposed, |_| {})
}

/// [`pack_linear`], calling `done(rows)` each time the first `rows` rows of `w` will not be
/// read again (only when `transposed`, where each group of 64 output columns is 64 rows of
/// `w`), so a caller can drop them from memory while the rest is packed.
pub fn pack_linear_reporting(
    w: &Tensor,
    transposed: bool,
    mut done: impl FnMut(usize),
) -> Result<Tensor> {
    let &[rows, cols] = w.shape() else {
        return Err(TensorError::Shape {
            op: "pack_linear",
            expected: "a matrix".into(),
            got: w.shape().to_vec(),
        });
    };
    let w = w.contiguous();
    let view = MatRef::row_major(w.values(), rows, cols);
    let view = if transposed { view.t() } else { view };
    let mut packed = vec![0.0; gemm::packed_len(view.rows, view.cols)];
    if transposed {
        gemm::pack_groups_into(view, &mut packed, |g| {
            done(((g + 1) * gemm::GROUP).min(rows))
        });
    } else {
        gemm::pack_into(view, &mut packed);
    }
    Tensor::from_vec(
        &[view.cols.div_ceil(gemm::GROUP), view.rows, gemm::GROUP],
        packed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_with_bias() {
        let x = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let w = Tensor::from_vec(&[3, 2], vec![1., 0., 0., 1., 1., 1.]).unwrap();
        let b = Tensor::from_vec(&[2], vec![10., 20.]).unwrap();
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.values(), &[14., 25., 20., 31.]);
    }

    #[test]
    fn packed_and_plain_weights_give_the_same_bits() {
        let x =
            Tensor::from_vec(&[3, 5], (0..15).map(|i| i as f32 * 0.37 - 2.0).collect()).unwrap();
        let w_out_in = Tensor::from_vec(
            &[18, 5],
            (0..90).map(|i| (i % 11) as f32 * 0.21 - 1.0).collect(),
        )
        .unwrap();
        let w_in_out = w_out_in.transpose(0, 1).unwrap().contiguous();
        let b = Tensor::from_vec(&[18], (0..18).map(|i| i as f32 * 0.1).collect()).unwrap();
        let plain =
            linear_fused(&x, (&w_in_out).into(), 18, Some(&b), Activation::GeluTanh).unwrap();
        for packed in [
            pack_linear(&w_out_in, true).unwrap(),
            pack_linear(&w_in_out, false).unwrap(),
        ] {
            assert_eq!(packed.shape(), &[1, 5, 64]);
            let y = linear_fused(&x, (&packed).into(), 18, Some(&b), Activation::GeluTanh).unwrap();
            assert_eq!(y.values(), plain.values());
        }
        let unfused = linear(&x, &w_in_out, Some(&b)).unwrap();
        let mut activated = unfused.values().to_vec();
        Activation::GeluTanh.apply_in_place(&mut activated);
        assert_eq!(plain.values(), &activated[..]);
        assert!(linear_fused(&x, (&w_in_out).into(), 17, None, Activation::Relu).is_err());
    }

    #[test]
    fn rejects_mismatched_inner_dimension() {
        let x = Tensor::zeros(&[2, 4]);
        let w = Tensor::zeros(&[3, 2]);
        assert!(linear(&x, &w, None).is_err());
    }
}
