//! The f32 [`Tensor`]: shape and strides over owned or borrowed storage.
//!
//! Activations own their values; weights usually borrow them from a unit buffer or mapped file
//! (assembly by reference). Views (`narrow`, `transpose`) share storage and change strides only;
//! kernels that need dense rows call [`Tensor::contiguous`], which copies only when it must.

use std::fmt;
use std::sync::Arc;

use crate::buffer::ByteBuffer;
use crate::{Result, TensorError};

#[derive(Clone)]
enum Storage {
    Owned(Arc<Vec<f32>>),
    Borrowed {
        buffer: Arc<dyn ByteBuffer>,
        byte_offset: usize,
        len: usize,
    },
}

impl Storage {
    fn values(&self) -> &[f32] {
        match self {
            Storage::Owned(values) => values,
            Storage::Borrowed {
                buffer,
                byte_offset,
                len,
            } => {
                let bytes = &buffer.bytes()[*byte_offset..*byte_offset + len * 4];
                // SAFETY: from_buffer checked bounds and 4-byte alignment; every bit pattern is
                // a valid f32, and the Arc keeps the bytes alive and unmodified.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }
}

#[derive(Clone)]
pub struct Tensor {
    storage: Storage,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

fn dense_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

impl Tensor {
    /// Whether the values live in a buffer this tensor borrows (no copy was made to bind it).
    pub fn borrows_buffer(&self) -> bool {
        matches!(self.storage, Storage::Borrowed { .. })
    }

    /// Wraps `values` as a dense row-major tensor. The element count must match the shape.
    pub fn from_vec(shape: &[usize], values: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(TensorError::Shape {
                op: "from_vec",
                expected: format!("{n} values"),
                got: vec![values.len()],
            });
        }
        Ok(Self {
            storage: Storage::Owned(Arc::new(values)),
            strides: dense_strides(shape),
            shape: shape.to_vec(),
            offset: 0,
        })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        let n = shape.iter().product();
        Self {
            storage: Storage::Owned(Arc::new(vec![0.0; n])),
            strides: dense_strides(shape),
            shape: shape.to_vec(),
            offset: 0,
        }
    }

    /// Borrows little-endian f32 values at `byte_offset` of `buffer` without copying them.
    pub fn from_buffer(
        buffer: Arc<dyn ByteBuffer>,
        byte_offset: usize,
        shape: &[usize],
    ) -> Result<Self> {
        let len: usize = shape.iter().product();
        let available = buffer.bytes().len();
        let needed = len * 4;
        if byte_offset
            .checked_add(needed)
            .is_none_or(|end| end > available)
        {
            return Err(TensorError::OutOfBounds {
                shape: shape.to_vec(),
                offset: byte_offset,
                needed,
                available,
            });
        }
        let address = buffer.bytes().as_ptr() as usize + byte_offset;
        if !address.is_multiple_of(std::mem::align_of::<f32>()) {
            return Err(TensorError::Misaligned {
                offset: byte_offset,
                align: 4,
            });
        }
        Ok(Self {
            storage: Storage::Borrowed {
                buffer,
                byte_offset,
                len,
            },
            strides: dense_strides(shape),
            shape: shape.to_vec(),
            offset: 0,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// True when the tensor borrows its bytes from an external buffer.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.storage, Storage::Borrowed { .. })
    }

    pub fn is_contiguous(&self) -> bool {
        self.strides == dense_strides(&self.shape)
    }

    /// The dense values of a contiguous tensor.
    ///
    /// Panics if the tensor is a strided view: call [`Tensor::contiguous`] first. That is a
    /// caller bug, not an input error.
    pub fn values(&self) -> &[f32] {
        assert!(self.is_contiguous(), "values() on a strided view");
        &self.storage.values()[self.offset..self.offset + self.len()]
    }

    /// All storage from the view's first element on, for kernels that walk strides themselves.
    pub fn strided_values(&self) -> &[f32] {
        &self.storage.values()[self.offset..]
    }

    /// The values as an owned vector, copying only if the storage is shared or borrowed.
    pub fn into_values(self) -> Vec<f32> {
        let whole = self.is_contiguous() && self.offset == 0;
        match self.storage {
            Storage::Owned(values) if whole && values.len() == self.len() => {
                Arc::try_unwrap(values).unwrap_or_else(|shared| (*shared).clone())
            }
            _ => self.contiguous().values().to_vec(),
        }
    }

    /// A dense copy of a strided view, or a cheap clone of an already dense tensor.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.len());
        let base = self.storage.values();
        let mut index = vec![0usize; self.rank()];
        for _ in 0..self.len() {
            let at: usize = self.offset
                + index
                    .iter()
                    .zip(&self.strides)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            out.push(base[at]);
            for d in (0..self.rank()).rev() {
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Tensor::from_vec(&self.shape, out).expect("element count matches shape")
    }

    /// Same values, new shape; the tensor must be dense.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(TensorError::Shape {
                op: "reshape",
                expected: format!("{shape:?}"),
                got: self.shape.clone(),
            });
        }
        let dense = self.contiguous();
        Ok(Tensor {
            strides: dense_strides(shape),
            shape: shape.to_vec(),
            ..dense
        })
    }

    /// The view `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        if dim >= self.rank() || start + len > self.shape[dim] {
            return Err(TensorError::Shape {
                op: "narrow",
                expected: format!("dim {dim} range {start}..{}", start + len),
                got: self.shape.clone(),
            });
        }
        let mut view = self.clone();
        view.offset += start * self.strides[dim];
        view.shape[dim] = len;
        Ok(view)
    }

    /// The view with dimensions `a` and `b` swapped.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        if a >= self.rank() || b >= self.rank() {
            return Err(TensorError::Shape {
                op: "transpose",
                expected: format!("dims {a} and {b}"),
                got: self.shape.clone(),
            });
        }
        let mut view = self.clone();
        view.shape.swap(a, b);
        view.strides.swap(a, b);
        Ok(view)
    }

    /// Checks the shape, returning a described error for `op` otherwise.
    /// The four dimensions of a rank-4 tensor (a feature map), or an error for `op` saying it
    /// expected `layout` (such as `"[n, c, h, w]"`).
    pub fn dims4(&self, op: &'static str, layout: &str) -> Result<[usize; 4]> {
        match *self.shape.as_slice() {
            [a, b, c, d] => Ok([a, b, c, d]),
            _ => Err(TensorError::Shape {
                op,
                expected: layout.into(),
                got: self.shape.clone(),
            }),
        }
    }

    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(TensorError::Shape {
                op,
                expected: format!("{shape:?}"),
                got: self.shape.clone(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("strides", &self.strides)
            .field("borrowed", &self.is_borrowed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlignedBuf, FillBuffer};

    #[test]
    fn views_share_storage_and_copy_on_contiguous() {
        let t = Tensor::from_vec(&[2, 3], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        let tt = t.transpose(0, 1).unwrap();
        assert!(!tt.is_contiguous());
        assert_eq!(tt.contiguous().values(), &[0., 3., 1., 4., 2., 5.]);
        let row = t.narrow(0, 1, 1).unwrap();
        assert_eq!(row.values(), &[3., 4., 5.]);
        let col = t.narrow(1, 2, 1).unwrap();
        assert_eq!(col.contiguous().values(), &[2., 5.]);
    }

    #[test]
    fn borrows_without_copy_and_checks_bounds() {
        let mut buf = AlignedBuf::zeroed(64).unwrap();
        buf.as_mut_slice()[16..20].copy_from_slice(&1.5f32.to_le_bytes());
        let buf: Arc<dyn ByteBuffer> = Arc::new(buf);
        let t = Tensor::from_buffer(buf.clone(), 16, &[2, 2]).unwrap();
        assert!(t.is_borrowed());
        assert_eq!(t.values()[0], 1.5);
        assert_eq!(
            t.values().as_ptr() as usize,
            buf.bytes().as_ptr() as usize + 16
        );
        assert!(Tensor::from_buffer(buf.clone(), 56, &[4]).is_err());
        assert!(Tensor::from_buffer(buf, 2, &[1]).is_err());
    }

    #[test]
    fn into_values_reuses_unique_storage() {
        let t = Tensor::from_vec(&[3], vec![1., 2., 3.]).unwrap();
        let ptr = t.values().as_ptr();
        let v = t.into_values();
        assert_eq!(v.as_ptr(), ptr);
    }
}
