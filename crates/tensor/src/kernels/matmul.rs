//! Matrix products on the `gemm` crate (AVX-512 microkernels via its `x86-v4` feature).
//!
//! Weights are stored [in, out] so `x @ W` reads both operands row-major; gemm packs panels
//! itself. [`matmul_strided`] exposes strides so attention can multiply per-head views in place.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::parallel::gemm_threads;
use crate::{Result, Tensor, TensorError};

static MATMUL_FLOPS: AtomicU64 = AtomicU64::new(0);

/// Floating-point operations of every matrix product in this process so far (a multiply-add
/// counts 2; convolutions and attention run on these products too). An instrument read as a
/// difference around a stage, as the profiler does.
pub fn matmul_flops() -> u64 {
    MATMUL_FLOPS.load(Ordering::Relaxed)
}

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

    fn max_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
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
    MATMUL_FLOPS.fetch_add(2 * (m * k * n) as u64, Ordering::Relaxed);
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
            gemm::gemm(
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
                gemm::Parallelism::None,
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
    if w.rank() != 2 || x.last_dim() != w.shape()[0] {
        return Err(TensorError::Shape {
            op: "linear",
            expected: format!("x [.., {}] for weight {:?}", w.shape()[0], w.shape()),
            got: x.shape().to_vec(),
        });
    }
    let (k, n) = (w.shape()[0], w.shape()[1]);
    if let Some(b) = bias {
        b.expect_shape("linear bias", &[n])?;
    }
    let x = x.contiguous();
    let w = w.contiguous();
    let m = x.len() / k.max(1);
    let mut out = match bias {
        Some(b) => b.values().repeat(m),
        None => vec![0.0; m * n],
    };
    matmul_strided(
        &mut out,
        n,
        MatRef::row_major(x.values(), m, k),
        MatRef::row_major(w.values(), k, n),
        bias.is_some(),
    );
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = n;
    Tensor::from_vec(&shape, out)
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
    fn rejects_mismatched_inner_dimension() {
        let x = Tensor::zeros(&[2, 4]);
        let w = Tensor::zeros(&[3, 2]);
        assert!(linear(&x, &w, None).is_err());
    }
}
