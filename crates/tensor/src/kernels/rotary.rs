//! Rotary position embeddings in GPT-J's interleaved form (pairs `(2i, 2i+1)` rotate together).

use rayon::prelude::*;

/// Per-pair inverse frequencies `1 / base^(2i / rotary_dim)`, as transformers computes them.
#[derive(Clone, Debug)]
pub struct RotaryTable {
    inv_freq: Vec<f32>,
}

impl RotaryTable {
    pub fn new(rotary_dim: usize, base: f32) -> Self {
        let inv_freq = (0..rotary_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / rotary_dim as f32))
            .collect();
        Self { inv_freq }
    }

    pub fn rotary_dim(&self) -> usize {
        self.inv_freq.len() * 2
    }
}

/// Rotates the first `rotary_dim` features of every head of `x [rows, heads * head_dim]`;
/// `positions[r]` is row r's absolute position.
pub fn rotary_interleaved(
    x: &mut [f32],
    positions: &[usize],
    heads: usize,
    head_dim: usize,
    table: &RotaryTable,
) {
    let width = heads * head_dim;
    assert_eq!(
        x.len(),
        positions.len() * width,
        "rotary: rows and positions differ"
    );
    assert!(
        table.rotary_dim() <= head_dim,
        "rotary_dim exceeds head_dim"
    );
    x.par_chunks_mut(width.max(1))
        .zip(positions)
        .for_each(|(row, &pos)| {
            let angles: Vec<(f32, f32)> = table
                .inv_freq
                .iter()
                .map(|&f| (pos as f32 * f).sin_cos())
                .collect();
            for head in row.chunks_exact_mut(head_dim) {
                for (i, &(sin, cos)) in angles.iter().enumerate() {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos - b * sin;
                    head[2 * i + 1] = b * cos + a * sin;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let table = RotaryTable::new(4, 10000.0);
        let mut x = vec![1., 2., 3., 4., 5., 6., 1., 2., 3., 4., 5., 6.];
        rotary_interleaved(&mut x, &[0, 7], 1, 6, &table);
        assert_eq!(&x[..6], &[1., 2., 3., 4., 5., 6.]);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x[6..10]) - norm(&[1., 2., 3., 4.])).abs() < 1e-4);
        assert_eq!(&x[10..], &[5., 6.]);
    }
}
