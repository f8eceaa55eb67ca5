//! [`QuantMatrix`]: a quantised `k x n` weight over bytes it owns or borrows (a unit buffer
//! read from a packed store, bound without a copy).

use std::sync::Arc;

use half::f16;

use super::QuantFormat;
use crate::buffer::ByteBuffer;
use crate::{AlignedBuf, FillBuffer, Result, TensorError};

/// A quantised weight matrix in the layout the module doc describes.
#[derive(Clone)]
pub struct QuantMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    buffer: Arc<dyn ByteBuffer>,
    byte_offset: usize,
}

impl QuantMatrix {
    /// Borrows a stored `rows x cols` matrix at `byte_offset` of `buffer`. Checks that its
    /// bytes are inside the buffer, aligned for the scales, and that every scale is finite and
    /// (int8's) not negative (a damaged scale would otherwise turn into wrong outputs silently).
    pub fn from_buffer(
        format: QuantFormat,
        rows: usize,
        cols: usize,
        buffer: Arc<dyn ByteBuffer>,
        byte_offset: usize,
    ) -> Result<Self> {
        if rows > super::MAX_INNER {
            return Err(TensorError::Unsupported(format!(
                "a {} matrix of {rows} rows: at most {} are summed exactly",
                format,
                super::MAX_INNER
            )));
        }
        let needed = format.stored_len(rows, cols);
        let available = buffer.bytes().len();
        if byte_offset
            .checked_add(needed)
            .is_none_or(|end| end > available)
        {
            return Err(TensorError::OutOfBounds {
                shape: vec![rows, cols],
                offset: byte_offset,
                needed,
                available,
            });
        }
        if !(buffer.bytes().as_ptr() as usize + byte_offset).is_multiple_of(4) {
            return Err(TensorError::Misaligned {
                offset: byte_offset,
                align: 4,
            });
        }
        let matrix = Self {
            format,
            rows,
            cols,
            buffer,
            byte_offset,
        };
        matrix.check_scales()?;
        Ok(matrix)
    }

    /// A zeroed matrix in a buffer of its own, for [`super::quantize`] to fill.
    pub(super) fn zeroed(
        format: QuantFormat,
        rows: usize,
        cols: usize,
    ) -> Result<(Self, AlignedBuf)> {
        let buffer = AlignedBuf::zeroed(format.stored_len(rows, cols).max(1))?;
        let placeholder = Self {
            format,
            rows,
            cols,
            buffer: Arc::new(AlignedBuf::zeroed(1)?),
            byte_offset: 0,
        };
        Ok((placeholder, buffer))
    }

    /// Finishes [`QuantMatrix::zeroed`] once `buffer` is filled.
    pub(super) fn with_buffer(self, buffer: AlignedBuf) -> Result<Self> {
        Self::from_buffer(self.format, self.rows, self.cols, Arc::new(buffer), 0)
    }

    pub fn format(&self) -> QuantFormat {
        self.format
    }

    /// `k`: the inputs.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `n`: the outputs.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes it occupies (codes and scales).
    pub fn stored_len(&self) -> usize {
        self.format.stored_len(self.rows, self.cols)
    }

    /// Its bytes: codes, then scales.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer.bytes()[self.byte_offset..][..self.stored_len()]
    }

    pub fn codes(&self) -> &[u8] {
        &self.bytes()[..self.format.codes_len(self.rows, self.cols)]
    }

    fn scale_bytes(&self) -> &[u8] {
        &self.bytes()[self.format.codes_len(self.rows, self.cols)..]
    }

    /// int8's scales, one per column of every group (zero past `n`).
    pub fn column_scales(&self) -> &[f32] {
        assert_eq!(self.format, QuantFormat::Int8, "column scales are int8's");
        let bytes = self.scale_bytes();
        // SAFETY: `from_buffer` checked the start is 4-byte aligned; the codes' length is a
        // multiple of 64, so the scales are too; every bit pattern is an f32.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }

    /// q4's scales: per group, per block, 64 columns.
    pub fn block_scales(&self) -> &[f16] {
        assert_eq!(self.format, QuantFormat::Q4, "block scales are q4's");
        let bytes = self.scale_bytes();
        // SAFETY: aligned as above for 2 bytes; every bit pattern is an f16.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f16>(), bytes.len() / 2) }
    }

    fn check_scales(&self) -> Result<()> {
        let bad = match self.format {
            QuantFormat::Int8 => self
                .column_scales()
                .iter()
                .position(|s| !s.is_finite() || *s < 0.0),
            // A q4 scale carries the sign of its block's extreme value (as Q4_0's does).
            QuantFormat::Q4 => self.block_scales().iter().position(|s| !s.is_finite()),
        };
        match bad {
            Some(i) => Err(TensorError::Unsupported(format!(
                "{} matrix {}x{}: scale {i} is not a valid number (damaged?)",
                self.format, self.rows, self.cols
            ))),
            None => Ok(()),
        }
    }

    /// The mutable bytes of a buffer being filled for a matrix of this shape.
    pub(super) fn split_mut<'b>(&self, buffer: &'b mut AlignedBuf) -> (&'b mut [u8], &'b mut [u8]) {
        let codes = self.format.codes_len(self.rows, self.cols);
        let len = self.stored_len();
        buffer.as_mut_slice()[..len].split_at_mut(codes)
    }
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantMatrix({} {}x{})",
            self.format, self.rows, self.cols
        )
    }
}
