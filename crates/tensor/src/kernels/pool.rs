//! Spatial pooling: max pooling and PyTorch's adaptive average pooling over NCHW, and max
//! pooling and the global average over channels-last (NHWC) maps.

use rayon::prelude::*;

use crate::{Result, Tensor, TensorError};

/// The output plane of a `kernel` x `kernel` pool over an `h` x `w` plane (floor mode), or an
/// error for `op` when the padded plane is smaller than the kernel or the kernel or stride is 0.
fn pooled_extent(
    op: &'static str,
    x: &Tensor,
    (h, w): (usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize)> {
    if h + 2 * padding < kernel || w + 2 * padding < kernel || stride == 0 || kernel == 0 {
        return Err(TensorError::Shape {
            op,
            expected: format!("a plane of at least {kernel}x{kernel} and a positive stride"),
            got: x.shape().to_vec(),
        });
    }
    Ok((
        (h + 2 * padding - kernel) / stride + 1,
        (w + 2 * padding - kernel) / stride + 1,
    ))
}

/// Max pooling with implicit -inf padding (PyTorch's `MaxPool2d`, floor mode).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("max_pool2d", "[n, c, h, w]")?;
    let (oh, ow) = pooled_extent("max_pool2d", x, (h, w), kernel, stride, padding)?;
    let x = x.contiguous();
    let xv = x.values();
    let mut out = vec![0.0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &xv[i * h * w..][..h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = f32::NEG_INFINITY;
                    for ky in 0..kernel {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kernel {
                            let ix = (ox * stride + kx) as isize - padding as isize;
                            if ix >= 0 && ix < w as isize {
                                best = best.max(src[iy as usize * w + ix as usize]);
                            }
                        }
                    }
                    dst[oy * ow + ox] = best;
                }
            }
        });
    Tensor::from_vec(&[n, c, oh, ow], out)
}

/// PyTorch's `AdaptiveAvgPool2d((oh, ow))`: bin i spans `floor(i*H/oh) .. ceil((i+1)*H/oh)`.
pub fn adaptive_avg_pool2d(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("adaptive_avg_pool2d", "[n, c, h, w]")?;
    let x = x.contiguous();
    let xv = x.values();
    let mut out = vec![0.0f32; n * c * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &xv[i * h * w..][..h * w];
            for oy in 0..oh {
                let (y0, y1) = (oy * h / oh, ((oy + 1) * h).div_ceil(oh));
                for ox in 0..ow {
                    let (x0, x1) = (ox * w / ow, ((ox + 1) * w).div_ceil(ow));
                    let mut sum = 0.0f32;
                    for y in y0..y1 {
                        sum += src[y * w + x0..y * w + x1].iter().sum::<f32>();
                    }
                    dst[oy * ow + ox] = sum / ((y1 - y0) * (x1 - x0)) as f32;
                }
            }
        });
    Tensor::from_vec(&[n, c, oh, ow], out)
}

/// [`max_pool2d`] over `x [n, h, w, c]`: each output pixel the channel-wise max of its taps'
/// runs of channels (the same values as the NCHW pool).
pub fn max_pool2d_nhwc(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let [n, h, w, c] = x.dims4("max_pool2d_nhwc", "[n, h, w, c]")?;
    let (oh, ow) = pooled_extent("max_pool2d_nhwc", x, (h, w), kernel, stride, padding)?;
    let x = x.contiguous();
    let xv = x.values();
    let mut out = vec![f32::NEG_INFINITY; n * oh * ow * c];
    out.par_chunks_mut((ow * c).max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, oy) = (row / oh, row % oh);
            let src = &xv[img * h * w * c..][..h * w * c];
            let ys = (oy * stride).saturating_sub(padding)
                ..(oy * stride + kernel).saturating_sub(padding).min(h);
            for (ox, best) in dst.chunks_exact_mut(c).enumerate() {
                let xs = (ox * stride).saturating_sub(padding)
                    ..(ox * stride + kernel).saturating_sub(padding).min(w);
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let run = &src[(iy * w + ix) * c..][..c];
                        for (b, &v) in best.iter_mut().zip(run) {
                            *b = b.max(v);
                        }
                    }
                }
            }
        });
    Tensor::from_vec(&[n, oh, ow, c], out)
}

/// The mean over all pixels of `x [n, h, w, c]`: `[n, c]` (adaptive average pooling to 1x1,
/// summed pixel by pixel rather than channel by channel, so within rounding of it).
pub fn global_avg_pool_nhwc(x: &Tensor) -> Result<Tensor> {
    let [n, h, w, c] = x.dims4("global_avg_pool_nhwc", "[n, h, w, c]")?;
    let x = x.contiguous();
    let pixels = h * w;
    let mut out = vec![0.0f32; n * c];
    for (img, sums) in out.chunks_exact_mut(c.max(1)).enumerate() {
        for run in x.values()[img * pixels * c..][..pixels * c].chunks_exact(c) {
            for (s, &v) in sums.iter_mut().zip(run) {
                *s += v;
            }
        }
        for s in sums.iter_mut() {
            *s /= pixels as f32;
        }
    }
    Tensor::from_vec(&[n, c], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{nchw_to_nhwc, nhwc_to_nchw};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn nhwc_pools_equal_the_nchw_ones(
            n in 1usize..3, c in 1usize..6, h in 1usize..12, w in 1usize..12,
            kernel in 1usize..4, stride in 1usize..3, padding in 0usize..4, seed in any::<u16>(),
        ) {
            prop_assume!(h + 2 * padding >= kernel && w + 2 * padding >= kernel);
            let len = n * c * h * w;
            let values = (0..len).map(|i| ((i * 31 + seed as usize) % 97) as f32 - 48.0).collect();
            let x = Tensor::from_vec(&[n, c, h, w], values).unwrap();
            let nhwc = nchw_to_nhwc(&x).unwrap();
            let want = max_pool2d(&x, kernel, stride, padding).unwrap();
            let got = nhwc_to_nchw(&max_pool2d_nhwc(&nhwc, kernel, stride, padding).unwrap()).unwrap();
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert_eq!(got.values(), want.values());
            let mean = adaptive_avg_pool2d(&x, 1, 1).unwrap();
            let got = global_avg_pool_nhwc(&nhwc).unwrap();
            for (g, e) in got.values().iter().zip(mean.values()) {
                prop_assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()));
            }
        }
    }

    #[test]
    fn a_zero_kernel_or_stride_is_refused_in_both_layouts() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
        for (kernel, stride) in [(0, 1), (2, 0)] {
            assert!(max_pool2d(&x, kernel, stride, 0).is_err());
            assert!(max_pool2d_nhwc(&x, kernel, stride, 0).is_err());
        }
    }

    #[test]
    fn max_pool_with_padding() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
        let y = max_pool2d(&x, 3, 2, 1).unwrap();
        assert_eq!(y.shape(), &[1, 1, 1, 1]);
        assert_eq!(y.values(), &[4.]);
    }

    #[test]
    fn adaptive_average_to_one() {
        let x = Tensor::from_vec(&[1, 2, 2, 2], vec![1., 2., 3., 4., 0., 0., 0., 8.]).unwrap();
        let y = adaptive_avg_pool2d(&x, 1, 1).unwrap();
        assert_eq!(y.values(), &[2.5, 2.0]);
    }
}
