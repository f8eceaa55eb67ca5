//! Quantising an f32 weight matrix into the stored layout, and back (for tests, evaluation
//! and code that reads weights as plain matrices).

use half::f16;
use rayon::prelude::*;

use super::{QuantFormat, QuantMatrix, GROUP, MAX_INNER, Q4_BLOCK, QUAD};
use crate::kernels::matmul::MatRef;
use crate::{Result, TensorError};

/// Byte of int8 code `(step, column)` in a matrix of `quads` quads.
pub(super) fn int8_at(step: usize, column: usize, quads: usize) -> usize {
    let (g, c) = (column / GROUP, column % GROUP);
    (g * quads + step / QUAD) * GROUP * QUAD + c * QUAD + step % QUAD
}

/// Byte of q4 code `(step, column)` in a matrix of `blocks` blocks, and whether it is the
/// high nibble.
pub(super) fn q4_at(step: usize, column: usize, blocks: usize) -> (usize, bool) {
    let (g, c) = (column / GROUP, column % GROUP);
    let (b, r) = (step / Q4_BLOCK, step % Q4_BLOCK / QUAD);
    let panel = c / 16;
    let x = c % 16 * QUAD + step % QUAD;
    let quad = (g * blocks + b) * (Q4_BLOCK / QUAD) + r;
    (quad * 128 + panel / 2 * 64 + x, panel % 2 == 1)
}

/// Index of q4 scale `(block, column)`.
pub(super) fn q4_scale_at(block: usize, column: usize, blocks: usize) -> usize {
    ((column / GROUP) * blocks + block) * GROUP + column % GROUP
}

/// Quantises `b` (`k x n`, any strides) to `format`. Refuses non-finite weights (there is no
/// code for them) and `k` past [`MAX_INNER`].
pub fn quantize(b: MatRef, format: QuantFormat) -> Result<QuantMatrix> {
    let (k, n) = (b.rows, b.cols);
    if k > MAX_INNER {
        return Err(TensorError::Unsupported(format!(
            "cannot quantise a matrix of {k} inputs to {format}: at most {MAX_INNER}"
        )));
    }
    let at = |i: usize, j: usize| b.data[i * b.row_stride + j * b.col_stride];
    for j in 0..n {
        if let Some(i) = (0..k).find(|&i| !at(i, j).is_finite()) {
            return Err(TensorError::Unsupported(format!(
                "cannot quantise to {format}: weight ({i}, {j}) is {}",
                at(i, j)
            )));
        }
    }
    let (matrix, mut buffer) = QuantMatrix::zeroed(format, k, n)?;
    let (codes, scales) = matrix.split_mut(&mut buffer);
    // Each group of 64 columns owns one contiguous run of codes and one of scales, so the
    // groups are quantised in parallel (a 6B-parameter model packs in minutes, not hours).
    let group_codes = format.codes_len(k, GROUP);
    let group_scales = format.scales_len(k, GROUP);
    let groups = codes
        .par_chunks_mut(group_codes.max(1))
        .zip(scales.par_chunks_mut(group_scales.max(1)))
        .enumerate();
    groups.for_each(|(g, (codes, scales))| {
        let columns = g * GROUP..((g + 1) * GROUP).min(n);
        match format {
            QuantFormat::Int8 => {
                let quads = format.padded_inner(k) / QUAD;
                let base = g * quads * GROUP * QUAD;
                for j in columns {
                    let amax = (0..k).fold(0.0f32, |m, i| m.max(at(i, j).abs()));
                    let scale = amax / 127.0;
                    for i in 0..k {
                        let q = if scale > 0.0 {
                            (at(i, j) / scale).round_ties_even().clamp(-127.0, 127.0)
                        } else {
                            0.0
                        };
                        codes[int8_at(i, j, quads) - base] = q as i8 as u8;
                    }
                    let c = (j % GROUP) * 4;
                    scales[c..c + 4].copy_from_slice(&scale.to_le_bytes());
                }
            }
            QuantFormat::Q4 => {
                let blocks = format.padded_inner(k) / Q4_BLOCK;
                let (base, scale_base) = (g * blocks * GROUP * Q4_BLOCK / 2, g * blocks * GROUP);
                for j in columns {
                    for block in 0..blocks {
                        let steps = block * Q4_BLOCK..((block + 1) * Q4_BLOCK).min(k);
                        // The value of largest magnitude, with its sign, maps to code -8
                        // exactly.
                        let extreme = steps.clone().map(|i| at(i, j)).fold(0.0f32, |m, v| {
                            if v.abs() > m.abs() {
                                v
                            } else {
                                m
                            }
                        });
                        let scale = f16::from_f32(extreme / -8.0);
                        let d = scale.to_f32();
                        for i in steps {
                            let q = if d != 0.0 {
                                (at(i, j) / d).round_ties_even().clamp(-8.0, 7.0)
                            } else {
                                0.0
                            };
                            let code = (q as i32 + 8) as u8;
                            let (byte, high) = q4_at(i, j, blocks);
                            codes[byte - base] |= if high { code << 4 } else { code };
                        }
                        let s = (q4_scale_at(block, j, blocks) - scale_base) * 2;
                        scales[s..s + 2].copy_from_slice(&scale.to_le_bytes());
                    }
                }
            }
        }
    });
    matrix.with_buffer(buffer)
}

/// The `k x n` matrix of weights `m` stands for (`code * scale`), row-major.
pub fn dequantize(m: &QuantMatrix) -> Vec<f32> {
    let (k, n) = (m.rows(), m.cols());
    let mut out = vec![0.0f32; k * n];
    let codes = m.codes();
    match m.format() {
        QuantFormat::Int8 => {
            let quads = m.format().padded_inner(k) / QUAD;
            let scales = m.column_scales();
            for i in 0..k {
                for j in 0..n {
                    out[i * n + j] = f32::from(codes[int8_at(i, j, quads)] as i8) * scales[j];
                }
            }
        }
        QuantFormat::Q4 => {
            let blocks = m.format().padded_inner(k) / Q4_BLOCK;
            let scales = m.block_scales();
            for i in 0..k {
                for j in 0..n {
                    out[i * n + j] = f32::from(q4_code(codes, i, j, blocks))
                        * scales[q4_scale_at(i / Q4_BLOCK, j, blocks)].to_f32();
                }
            }
        }
    }
    out
}

/// Appends column `j` of the weights `m` stands for (`code * scale`, as [`dequantize`]).
pub fn dequantize_column(m: &QuantMatrix, j: usize, out: &mut Vec<f32>) {
    let k = m.rows();
    let codes = m.codes();
    match m.format() {
        QuantFormat::Int8 => {
            let quads = m.format().padded_inner(k) / QUAD;
            let scale = m.column_scales()[j];
            out.extend((0..k).map(|i| f32::from(codes[int8_at(i, j, quads)] as i8) * scale));
        }
        QuantFormat::Q4 => {
            let blocks = m.format().padded_inner(k) / Q4_BLOCK;
            let scales = m.block_scales();
            out.extend((0..k).map(|i| {
                f32::from(q4_code(codes, i, j, blocks))
                    * scales[q4_scale_at(i / Q4_BLOCK, j, blocks)].to_f32()
            }));
        }
    }
}

/// The signed q4 code (`-8..=7`) of `(step, column)`.
pub(super) fn q4_code(codes: &[u8], step: usize, column: usize, blocks: usize) -> i8 {
    let (byte, high) = q4_at(step, column, blocks);
    let nibble = if high {
        codes[byte] >> 4
    } else {
        codes[byte] & 15
    };
    nibble as i8 - 8
}
