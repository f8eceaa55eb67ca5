//! Spatial pooling over NCHW: max pooling and PyTorch's adaptive average pooling.

use rayon::prelude::*;

use crate::{Result, Tensor, TensorError};

fn nchw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.shape() {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => Err(TensorError::Shape {
            op,
            expected: "[n, c, h, w]".into(),
            got: x.shape().to_vec(),
        }),
    }
}

/// Max pooling with implicit -inf padding (PyTorch's `MaxPool2d`, floor mode).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = nchw("max_pool2d", x)?;
    if h + 2 * padding < kernel || w + 2 * padding < kernel || stride == 0 {
        return Err(TensorError::Shape {
            op: "max_pool2d",
            expected: format!("a plane of at least {kernel}x{kernel}"),
            got: x.shape().to_vec(),
        });
    }
    let oh = (h + 2 * padding - kernel) / stride + 1;
    let ow = (w + 2 * padding - kernel) / stride + 1;
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
    let (n, c, h, w) = nchw("adaptive_avg_pool2d", x)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
