//! 2-D convolution over channels-last (NHWC) activations with the weight packed once for
//! edgerun's GEMM, the layout convolutional networks run in.
//!
//! Channels last, one output pixel is one row of a plain product: `out[pixels, oc] =
//! col[pixels, taps * c] @ w[taps * c, oc]`. A 1x1 convolution at stride 1 multiplies the input
//! itself (no im2col); any other gathers each pixel's taps as whole runs of `c` channels. The
//! weight is the GEMM's right operand, packed when bound like a Linear layer's
//! ([`pack_conv`]), and a batch norm and an activation run in the GEMM's epilogue while each
//! tile is in registers' reach. Batch is folded into the pixels of a 1x1 convolution.
//!
//! Packed weight: `[ceil(oc / 64), kh * kw * c, 64]` over the rows `(ky, kx, channel)`
//! ([`gemm::packed_len`]).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::kernels::conv::{band_rows, out_extent};
use crate::kernels::gemm::{self, Epilogue, Out, Rhs};
use crate::kernels::matmul::{MatRef, Weight};
use crate::kernels::Conv2dParams;
use crate::{Result, Tensor, TensorError};

/// The bound shape of a convolution weight `[oc, c, kh, kw]` packed by [`pack_conv`].
pub fn packed_conv_shape(&[oc, c, kh, kw]: &[usize; 4]) -> Vec<usize> {
    vec![oc.div_ceil(gemm::GROUP), kh * kw * c, gemm::GROUP]
}

/// Packs `weight [oc, c, kh, kw]` (PyTorch's layout) for [`conv2d_nhwc`].
pub fn pack_conv(weight: &Tensor) -> Result<Tensor> {
    let [oc, c, kh, kw] = weight.dims4("pack_conv", "a weight [out, in, kh, kw]")?;
    let weight = weight.contiguous();
    let w = weight.values();
    let taps = kh * kw;
    let k = taps * c;
    // Gathered straight into the packed layout, rows ordered (ky, kx, channel) as the NHWC
    // gather reads them: one allocation, the one kept (a reordered copy first, freed after,
    // stayed in the allocator's heap and added a tenth to ResNet-50's peak RSS).
    let mut packed = vec![0.0f32; gemm::packed_len(k, oc)];
    for (g, group) in packed
        .chunks_exact_mut((k * gemm::GROUP).max(1))
        .enumerate()
    {
        let outs = g * gemm::GROUP..((g + 1) * gemm::GROUP).min(oc);
        for (row, lanes) in group.chunks_exact_mut(gemm::GROUP).enumerate() {
            let (tap, ch) = (row / c, row % c);
            for (lane, o) in lanes.iter_mut().zip(outs.clone()) {
                *lane = w[o * k + ch * taps + tap];
            }
        }
    }
    Tensor::from_vec(&packed_conv_shape(&[oc, c, kh, kw]), packed)
}

/// A weight packed by [`pack_conv`] (or quantised from one, `[kh * kw * c, oc]`) with the
/// shape it was packed from.
#[derive(Clone, Copy)]
pub struct PackedConv<'a> {
    pub weight: Weight<'a>,
    /// `[oc, c, kh, kw]` as stored in the checkpoint.
    pub shape: [usize; 4],
}

thread_local! {
    /// Per-thread im2col rows, kept between calls: a network's convolutions reuse one buffer
    /// of the largest band (models reserve it as scratch).
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `x [n, h, w, c]` convolved with a packed weight, each output `epilogue(conv)` per output
/// channel: `[n, oh, ow, oc]`. One group only.
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: PackedConv,
    p: Conv2dParams,
    epilogue: Epilogue,
) -> Result<Tensor> {
    let [oc, c, kh, kw] = weight.shape;
    let shape_error = |expected: String| TensorError::Shape {
        op: "conv2d_nhwc",
        expected,
        got: x.shape().to_vec(),
    };
    if p.groups != 1 || p.stride == 0 || p.dilation == 0 {
        return Err(shape_error(format!(
            "one group and a positive stride and dilation, not {p:?}"
        )));
    }
    let &[n, h, w, xc] = x.shape() else {
        return Err(shape_error(format!("NHWC input with {c} channels")));
    };
    if xc != c || c == 0 || oc == 0 {
        return Err(shape_error(format!(
            "NHWC input with {c} channels, for {oc} output channels (both positive)"
        )));
    }
    let k = kh * kw * c;
    let rhs = match weight.weight {
        Weight::F32(w) => {
            w.expect_shape(
                "packed convolution weight",
                &packed_conv_shape(&weight.shape),
            )?;
            Rhs::Packed {
                data: w.values(),
                rows: k,
                cols: oc,
            }
        }
        Weight::Quant(m) if m.rows() == k && m.cols() == oc => Rhs::Quant(m),
        Weight::Quant(m) => {
            return Err(TensorError::Shape {
                op: "conv2d_nhwc",
                expected: format!("a quantised weight [{k}, {oc}]"),
                got: vec![m.rows(), m.cols()],
            })
        }
    };
    for (name, v) in [("scale", epilogue.scale), ("bias", epilogue.bias)] {
        if v.is_some_and(|v| v.len() != oc) {
            return Err(shape_error(format!("a {name} per output channel ({oc})")));
        }
    }
    let (Some(oh), Some(ow)) = (out_extent(h, kh, &p), out_extent(w, kw, &p)) else {
        return Err(shape_error(format!("an input at least {kh}x{kw}")));
    };
    let pixels = n * oh * ow;
    if let Some(r) = epilogue.residual {
        if r.row_stride != oc || r.data.len() != pixels * oc {
            return Err(shape_error(format!(
                "a residual of the output's shape [{n}, {oh}, {ow}, {oc}]"
            )));
        }
    }
    let x = x.contiguous();
    let mut out = vec![0.0f32; pixels * oc];
    // The product of output pixels `first..`.
    let product = |dst: &mut [f32], first: usize, a: MatRef| {
        let out = Out {
            data: dst,
            row_stride: oc,
            col_stride: 1,
        };
        gemm::gemm(out, a, rhs, false, epilogue.from_row(first));
    };
    if p.is_pointwise(kh, kw) {
        product(&mut out, 0, MatRef::row_major(x.values(), n * h * w, c));
        return Tensor::from_vec(&[n, oh, ow, oc], out);
    }
    let band = band_rows(k, ow).min(oh);
    COLUMNS.with_borrow_mut(|columns| {
        let len = band * ow * k;
        if columns.len() < len {
            columns.resize(len, 0.0);
        }
        for img in 0..n {
            let input = &x.values()[img * h * w * c..][..h * w * c];
            let image_out = &mut out[img * oh * ow * oc..][..oh * ow * oc];
            for first in (0..oh).step_by(band) {
                let rows = band.min(oh - first);
                let col = &mut columns[..rows * ow * k];
                gather_taps(input, col, (h, w, c), (kh, kw), (first, ow), &p);
                product(
                    &mut image_out[first * ow * oc..][..rows * ow * oc],
                    (img * oh + first) * ow,
                    MatRef::row_major(col, rows * ow, k),
                );
            }
        }
    });
    Tensor::from_vec(&[n, oh, ow, oc], out)
}

/// Fills `col` (one row of `kh * kw * c` per output pixel, for output rows from `first`) with
/// each pixel's taps, zero where a tap falls in the padding. Undilated, one kernel row's taps
/// are one run of `kw * c` input values, copied at once (the stem's 3 channels would be a copy
/// of 12 bytes per tap).
fn gather_taps(
    input: &[f32],
    col: &mut [f32],
    (h, w, c): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (first, ow): (usize, usize),
    p: &Conv2dParams,
) {
    let k = kh * kw * c;
    col.par_chunks_mut(ow * k)
        .enumerate()
        .for_each(|(row, line)| {
            let oy = first + row;
            for (ox, pixel) in line.chunks_exact_mut(k).enumerate() {
                for (ky, taps) in pixel.chunks_exact_mut(kw * c).enumerate() {
                    let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                    if iy < 0 || iy >= h as isize {
                        taps.fill(0.0);
                        continue;
                    }
                    let image_row = &input[iy as usize * w * c..][..w * c];
                    let x0 = (ox * p.stride) as isize - p.padding as isize;
                    if p.dilation == 1 {
                        // Taps `lo..hi` of this kernel row fall inside the image.
                        let lo = (-x0).clamp(0, kw as isize) as usize;
                        let hi = (w as isize - x0).clamp(lo as isize, kw as isize) as usize;
                        taps[..lo * c].fill(0.0);
                        taps[hi * c..].fill(0.0);
                        if lo < hi {
                            let start = (x0 + lo as isize) as usize * c;
                            taps[lo * c..hi * c]
                                .copy_from_slice(&image_row[start..start + (hi - lo) * c]);
                        }
                        continue;
                    }
                    for (kx, run) in taps.chunks_exact_mut(c).enumerate() {
                        let ix = x0 + (kx * p.dilation) as isize;
                        if ix < 0 || ix >= w as isize {
                            run.fill(0.0);
                        } else {
                            run.copy_from_slice(&image_row[ix as usize * c..][..c]);
                        }
                    }
                }
            }
        });
}

/// `x [n, c, h, w]` as `[n, h, w, c]`.
pub fn nchw_to_nhwc(x: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("nchw_to_nhwc", "[n, c, h, w]")?;
    let x = x.contiguous();
    Tensor::from_vec(&[n, h, w, c], transpose_planes(x.values(), c, h * w))
}

/// `x [n, h, w, c]` as `[n, c, h, w]`.
pub fn nhwc_to_nchw(x: &Tensor) -> Result<Tensor> {
    let [n, h, w, c] = x.dims4("nhwc_to_nchw", "[n, h, w, c]")?;
    let x = x.contiguous();
    Tensor::from_vec(&[n, c, h, w], transpose_planes(x.values(), h * w, c))
}

/// Each `rows x cols` matrix of `src` transposed, in tiles that stay in cache.
fn transpose_planes(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0f32; src.len()];
    let plane = (rows * cols).max(1);
    out.par_chunks_mut(plane)
        .zip(src.par_chunks(plane))
        .for_each(|(dst, src)| {
            for r0 in (0..rows).step_by(TILE) {
                for c0 in (0..cols).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(rows) {
                        for j in c0..(c0 + TILE).min(cols) {
                            dst[j * rows + r] = src[r * cols + j];
                        }
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::Residual;
    use crate::kernels::{add_then, conv2d_then, Activation, ChannelAffine};
    use proptest::prelude::*;

    fn tensor(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0)
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    proptest! {
        /// The packed NHWC convolution against the NCHW one (im2col + the gemm crate), batch
        /// norm and activation included: two different orders of summation, so within a
        /// rounding tolerance.
        #[test]
        fn nhwc_equals_the_nchw_convolution(
            n in 1usize..3, c in 1usize..9, oc in 1usize..70, h in 1usize..9, w in 1usize..9,
            kernel in 1usize..4, stride in 1usize..3, padding in 0usize..3, dilation in 1usize..3,
            relu in any::<bool>(), seed in any::<u8>(),
        ) {
            let p = Conv2dParams { stride, padding, dilation, groups: 1 };
            prop_assume!(out_extent(h, kernel, &p).is_some() && out_extent(w, kernel, &p).is_some());
            let seed = seed as usize;
            let x = tensor(&[n, c, h, w], seed);
            let weight = tensor(&[oc, c, kernel, kernel], seed + 1);
            let (mean, gamma, beta) = (tensor(&[oc], seed + 2), tensor(&[oc], seed + 3), tensor(&[oc], seed + 4));
            let var = Tensor::from_vec(&[oc], (0..oc).map(|i| 0.5 + i as f32 / 10.0).collect()).unwrap();
            let act = if relu { Activation::Relu } else { Activation::Identity };
            let affine = ChannelAffine::batch_norm(oc, (&mean, &var, &gamma, &beta), 1e-5, act).unwrap();
            let want = conv2d_then(&x, &weight, None, p, Some(&affine)).unwrap();
            // And with a residual added before the activation, as a ResNet block's last
            // convolution does.
            let plain = ChannelAffine::batch_norm(oc, (&mean, &var, &gamma, &beta), 1e-5, Activation::Identity).unwrap();
            let skip = tensor(want.shape(), seed + 5);
            let added = add_then(conv2d_then(&x, &weight, None, p, Some(&plain)).unwrap(), &skip, act).unwrap();
            let packed = pack_conv(&weight).unwrap();
            let got = conv2d_nhwc(
                &nchw_to_nhwc(&x).unwrap(),
                PackedConv { weight: (&packed).into(), shape: [oc, c, kernel, kernel] },
                p,
                Epilogue::affine(affine.scale(), affine.shift(), act),
            ).unwrap();
            let got = nhwc_to_nchw(&got).unwrap();
            let close = |got: &Tensor, want: &Tensor| {
                got.shape() == want.shape()
                    && got.values().iter().zip(want.values()).all(|(g, e)| (g - e).abs() <= 1e-4 * (1.0 + e.abs()))
            };
            prop_assert!(close(&got, &want));
            let skip_nhwc = nchw_to_nhwc(&skip).unwrap();
            let residual = Residual { data: skip_nhwc.values(), row_stride: oc };
            let with_skip = conv2d_nhwc(
                &nchw_to_nhwc(&x).unwrap(),
                PackedConv { weight: (&packed).into(), shape: [oc, c, kernel, kernel] },
                p,
                Epilogue { residual: Some(residual), ..Epilogue::affine(plain.scale(), plain.shift(), act) },
            ).unwrap();
            prop_assert!(close(&nhwc_to_nchw(&with_skip).unwrap(), &added));
        }

        #[test]
        fn layout_round_trip(n in 1usize..3, c in 1usize..40, h in 1usize..40, w in 1usize..9) {
            let x = tensor(&[n, c, h, w], 3);
            let nhwc = nchw_to_nhwc(&x).unwrap();
            prop_assert_eq!(nhwc.shape(), &[n, h, w, c][..]);
            prop_assert_eq!(nhwc.values()[c.min(2) - 1], x.values()[(c.min(2) - 1) * h * w]);
            let back = nhwc_to_nchw(&nhwc).unwrap();
            prop_assert_eq!(back.values(), x.values());
        }
    }

    /// The packed weight is the `[kh * kw * c, oc]` matrix of rows `(ky, kx, channel)` in the
    /// GEMM's packed layout.
    #[test]
    fn packing_gathers_taps_then_channels() {
        let (oc, c, kh, kw) = (70, 3, 2, 3);
        let weight = tensor(&[oc, c, kh, kw], 9);
        let k = kh * kw * c;
        let mut matrix = vec![0.0f32; k * oc];
        for o in 0..oc {
            for ch in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = (ky * kw + kx) * c + ch;
                        matrix[row * oc + o] = weight.values()[((o * c + ch) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        let packed = pack_conv(&weight).unwrap();
        assert_eq!(gemm::unpack(packed.values(), k, oc), matrix);
    }

    #[test]
    fn wrong_inputs_are_errors() {
        let weight = tensor(&[4, 3, 3, 3], 0);
        let packed = pack_conv(&weight).unwrap();
        let conv = PackedConv {
            weight: (&packed).into(),
            shape: [4, 3, 3, 3],
        };
        let p = Conv2dParams::default();
        let channels = conv2d_nhwc(&tensor(&[1, 5, 5, 2], 0), conv, p, Epilogue::NONE);
        assert!(channels.is_err());
        let small = conv2d_nhwc(&tensor(&[1, 2, 2, 3], 0), conv, p, Epilogue::NONE);
        assert!(small.is_err());
        let grouped = Conv2dParams { groups: 3, ..p };
        assert!(conv2d_nhwc(&tensor(&[1, 5, 5, 3], 0), conv, grouped, Epilogue::NONE).is_err());
        let short = [1.0f32; 3];
        let bias = Epilogue::columns(Some(&short), Activation::Identity);
        assert!(conv2d_nhwc(&tensor(&[1, 5, 5, 3], 0), conv, p, bias).is_err());
        let skip = [0.0f32; 7];
        let residual = Epilogue {
            residual: Some(crate::kernels::gemm::Residual {
                data: &skip,
                row_stride: 4,
            }),
            ..Epilogue::NONE
        };
        assert!(conv2d_nhwc(&tensor(&[1, 5, 5, 3], 0), conv, p, residual).is_err());
        let empty = Tensor::from_vec(&[4, 3, 0, 0], vec![]).unwrap();
        let no_taps = pack_conv(&empty).unwrap();
        let no_taps = PackedConv {
            weight: (&no_taps).into(),
            shape: [4, 3, 0, 0],
        };
        assert!(conv2d_nhwc(&tensor(&[1, 5, 5, 3], 0), no_taps, p, Epilogue::NONE).is_err());
        let wrong = PackedConv {
            weight: (&weight).into(),
            shape: [4, 3, 3, 3],
        };
        assert!(conv2d_nhwc(&tensor(&[1, 5, 5, 3], 0), wrong, p, Epilogue::NONE).is_err());
    }
}
