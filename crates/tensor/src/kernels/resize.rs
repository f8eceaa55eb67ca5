//! Bilinear resizing of NCHW planes, as PyTorch's `F.interpolate(mode="bilinear",
//! align_corners=False)` computes it (FCN upsamples its logits to the input size with it).

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
    let [n, c, h, w] = *x.shape() else {
        return Err(TensorError::Shape {
            op: "resize_bilinear",
            expected: "[batch, channels, height, width]".into(),
            got: x.shape().to_vec(),
        });
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
