//! Resizing NCHW planes as PyTorch's `F.interpolate` does: bilinear with
//! `align_corners=False` (FCN upsamples its logits to the input size with it), and nearest
//! by an integer factor (YOLOv3's feature-pyramid upsampling), plus joining maps along
//! channels; the last two also over channels-last (NHWC) maps.

use rayon::prelude::*;

use crate::{Result, Tensor, TensorError};

/// Source index and weight pairs for one axis: output `o` reads `(i0, 1 - l)` and `(i1, l)`.
fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// `[n, c, h, w]` -> `[n, c, out_h, out_w]`.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("resize_bilinear", "[batch, channels, height, width]")?;
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(TensorError::Shape {
            op: "resize_bilinear",
            expected: "non-empty planes".into(),
            got: vec![n, c, h, w, out_h, out_w],
        });
    }
    let x = x.contiguous();
    let (rows, cols) = (axis(h, out_h), axis(w, out_w));
    let mut out = vec![0.0f32; n * c * out_h * out_w];
    out.par_chunks_mut(out_h * out_w)
        .zip(x.values().par_chunks(h * w))
        .for_each(|(dst, src)| {
            for (oy, &(y0, y1, ly)) in rows.iter().enumerate() {
                for (ox, &(x0, x1, lx)) in cols.iter().enumerate() {
                    let top = src[y0 * w + x0] * (1.0 - lx) + src[y0 * w + x1] * lx;
                    let bottom = src[y1 * w + x0] * (1.0 - lx) + src[y1 * w + x1] * lx;
                    dst[oy * out_w + ox] = top * (1.0 - ly) + bottom * ly;
                }
            }
        });
    Tensor::from_vec(&[n, c, out_h, out_w], out)
}

/// `[n, c, h, w]` -> `[n, c, h * factor, w * factor]`, each value repeated (`mode="nearest"`
/// with an integer `scale_factor`).
pub fn upsample_nearest(x: &Tensor, factor: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.dims4("upsample_nearest", "[batch, channels, height, width]")?;
    let x = x.contiguous();
    let (oh, ow) = (h * factor, w * factor);
    let mut out = vec![0.0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(x.values().par_chunks(h * w))
        .for_each(|(dst, src)| {
            for (o, row) in dst.chunks_exact_mut(ow).enumerate() {
                let from = &src[(o / factor) * w..][..w];
                for (v, chunk) in from.iter().zip(row.chunks_exact_mut(factor)) {
                    chunk.fill(*v);
                }
            }
        });
    Tensor::from_vec(&[n, c, oh, ow], out)
}

/// `[n, ca, h, w]` and `[n, cb, h, w]` -> `[n, ca + cb, h, w]` (`torch.cat(dim=1)`).
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 4 || sb.len() != 4 || sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(TensorError::Shape {
            op: "concat_channels",
            expected: format!(
                "[{}, _, {}, {}]",
                sa.first().copied().unwrap_or(0),
                sa.get(2).copied().unwrap_or(0),
                sa.get(3).copied().unwrap_or(0)
            ),
            got: sb.to_vec(),
        });
    }
    let (a, b) = (a.contiguous(), b.contiguous());
    let (plane_a, plane_b) = (a.len() / sa[0], b.len() / sb[0]);
    let mut out = Vec::with_capacity(a.len() + b.len());
    for i in 0..sa[0] {
        out.extend_from_slice(&a.values()[i * plane_a..][..plane_a]);
        out.extend_from_slice(&b.values()[i * plane_b..][..plane_b]);
    }
    Tensor::from_vec(&[sa[0], sa[1] + sb[1], sa[2], sa[3]], out)
}

/// [`upsample_nearest`] over `[n, h, w, c]`: each pixel's run of channels repeated.
pub fn upsample_nearest_nhwc(x: &Tensor, factor: usize) -> Result<Tensor> {
    let [n, h, w, c] = x.dims4("upsample_nearest_nhwc", "[batch, height, width, channels]")?;
    let x = x.contiguous();
    let (oh, ow) = (h * factor, w * factor);
    let mut out = vec![0.0f32; n * oh * ow * c];
    out.par_chunks_mut((ow * c).max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, oy) = (row / oh, row % oh);
            let src = &x.values()[(img * h + oy / factor) * w * c..][..w * c];
            for (ox, pixel) in dst.chunks_exact_mut(c.max(1)).enumerate() {
                pixel.copy_from_slice(&src[(ox / factor) * c..][..c]);
            }
        });
    Tensor::from_vec(&[n, oh, ow, c], out)
}

/// `[n, h, w, ca]` and `[n, h, w, cb]` -> `[n, h, w, ca + cb]`: [`concat_channels`] channels
/// last.
pub fn concat_channels_nhwc(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 4 || sb.len() != 4 || sa[..3] != sb[..3] {
        return Err(TensorError::Shape {
            op: "concat_channels_nhwc",
            expected: format!("[{:?}, _]", sa.get(..3).unwrap_or(sa)),
            got: sb.to_vec(),
        });
    }
    let (a, b) = (a.contiguous(), b.contiguous());
    let (ca, cb) = (sa[3], sb[3]);
    let pixels = sa[0] * sa[1] * sa[2];
    let mut out = Vec::with_capacity(a.len() + b.len());
    for p in 0..pixels {
        out.extend_from_slice(&a.values()[p * ca..][..ca]);
        out.extend_from_slice(&b.values()[p * cb..][..cb]);
    }
    Tensor::from_vec(&[sa[0], sa[1], sa[2], ca + cb], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{nchw_to_nhwc, nhwc_to_nchw};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn nhwc_upsample_and_concat_equal_the_nchw_ones(
            n in 1usize..3, ca in 1usize..5, cb in 1usize..5, h in 1usize..6, w in 1usize..6,
            factor in 1usize..4,
        ) {
            let map = |c: usize, h: usize, w: usize, seed: usize| {
                let v = (0..n * c * h * w).map(|i| (i * 7 + seed) as f32).collect();
                Tensor::from_vec(&[n, c, h, w], v).unwrap()
            };
            let x = map(ca, h, w, 0);
            let feature = map(cb, h * factor, w * factor, 1000);
            let want = concat_channels(&upsample_nearest(&x, factor).unwrap(), &feature).unwrap();
            let up = upsample_nearest_nhwc(&nchw_to_nhwc(&x).unwrap(), factor).unwrap();
            let got = concat_channels_nhwc(&up, &nchw_to_nhwc(&feature).unwrap()).unwrap();
            let got = nhwc_to_nchw(&got).unwrap();
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert_eq!(got.values(), want.values());
        }
    }

    #[test]
    fn nhwc_concat_refuses_other_pixels() {
        let a = Tensor::from_vec(&[1, 2, 1, 1], vec![0.0; 2]).unwrap();
        let b = Tensor::from_vec(&[1, 1, 2, 1], vec![0.0; 2]).unwrap();
        assert!(concat_channels_nhwc(&a, &b).is_err());
        assert!(upsample_nearest_nhwc(&a.reshape(&[2]).unwrap(), 2).is_err());
    }

    #[test]
    fn same_size_is_identity_and_doubling_interpolates() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(resize_bilinear(&x, 2, 2).unwrap().values(), x.values());
        let y = resize_bilinear(&x, 4, 4).unwrap();
        // PyTorch: first row [0, 0.25, 0.75, 1], last row [2, 2.25, 2.75, 3].
        assert_eq!(&y.values()[..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&y.values()[12..], &[2.0, 2.25, 2.75, 3.0]);
        assert!(resize_bilinear(&x, 0, 3).is_err());
    }

    #[test]
    fn nearest_repeats_and_concat_joins_channels() {
        let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let up = upsample_nearest(&x, 2).unwrap();
        assert_eq!(up.shape(), &[1, 1, 4, 4]);
        assert_eq!(
            up.values(),
            &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]
        );
        let a = Tensor::from_vec(&[2, 1, 1, 2], vec![1.0, 2.0, 5.0, 6.0]).unwrap();
        let b =
            Tensor::from_vec(&[2, 2, 1, 2], vec![3.0, 4.0, 3.5, 4.5, 7.0, 8.0, 7.5, 8.5]).unwrap();
        let joined = concat_channels(&a, &b).unwrap();
        assert_eq!(joined.shape(), &[2, 3, 1, 2]);
        assert_eq!(
            joined.values(),
            &[1.0, 2.0, 3.0, 4.0, 3.5, 4.5, 5.0, 6.0, 7.0, 8.0, 7.5, 8.5]
        );
        let wrong = Tensor::from_vec(&[2, 1, 2, 1], vec![0.0; 4]).unwrap();
        assert!(concat_channels(&a, &wrong).is_err());
        assert!(upsample_nearest(&a.reshape(&[4]).unwrap(), 2).is_err());
    }
}
