//! SwapNet's delay models: each delay linear in one size measure and the block's depth,
//! `t = a * x + b * depth + c`, fitted by least squares, with the fit's R^2.
//!
//! - `t_in` (swap-in): x = bytes read;
//! - `t_ex` (execution): x = FLOPs;
//! - `t_out` (swap-out): x = bytes resident.
//!
//! One profile of each model is enough to fit; `edgerun fit-delays` pools several models.
//! `t_in` and `t_out` are fitted on the profiled units: each unit's read is a real read of
//! that size, with its own per-read cost, which is what a block pays once. `t_ex` is fitted on
//! blocks of 1, 2, 4, ... consecutive units (their measured compute summed, since compute adds
//! up across units). The partitioner predicts blocks; single convolutions of different shapes
//! run at different FLOP rates, and fitting on units alone gave R^2 of 0.51-0.57 on CNNs.

use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::{Result, RuntimeError};

/// One observation: the size measure, the depth, the delay in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub x: f64,
    pub depth: f64,
    pub seconds: f64,
}

/// `t = per_x * x + per_depth * depth + constant_s`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearDelay {
    pub per_x: f64,
    pub per_depth: f64,
    pub constant_s: f64,
    /// Coefficient of determination over the samples.
    pub r2: f64,
    pub samples: usize,
}

impl LinearDelay {
    /// The prediction, never negative. The per-block part (`per_depth * depth + constant_s`)
    /// is not charged below zero: a negative fixed cost per block would make the partitioner
    /// split blocks for free.
    pub fn predict(&self, x: f64, depth: f64) -> f64 {
        (self.per_x * x).max(0.0) + (self.per_depth * depth + self.constant_s).max(0.0)
    }
}

/// The three delay models of a platform.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelayModels {
    pub t_in: LinearDelay,
    pub t_ex: LinearDelay,
    pub t_out: LinearDelay,
}

impl DelayModels {
    /// What to plan with before any profile: reads at 1 GB/s plus 2 ms each, compute and
    /// swap-out free. It sizes blocks to minimise reads.
    pub fn read_only() -> Self {
        let line = |per_x, constant_s| LinearDelay {
            per_x,
            per_depth: 0.0,
            constant_s,
            r2: 1.0,
            samples: 0,
        };
        Self {
            t_in: line(1e-9, 2e-3),
            t_ex: line(0.0, 0.0),
            t_out: line(0.0, 0.0),
        }
    }
}

/// Least squares over `[x, depth, 1]`. Columns are centred and scaled before solving (bytes
/// and FLOPs are ~1e9, depths ~10); a column with no spread (every depth equal) gets a zero
/// coefficient instead of a singular system.
pub fn fit(samples: &[Sample]) -> Result<LinearDelay> {
    if samples.len() < 3 {
        return Err(RuntimeError::TooFewSamples { got: samples.len() });
    }
    let n = samples.len() as f64;
    let mean = |f: fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>() / n;
    let (mx, md, mt) = (mean(|s| s.x), mean(|s| s.depth), mean(|s| s.seconds));
    let spread = |f: fn(&Sample) -> f64, m: f64| {
        (samples.iter().map(|s| (f(s) - m).powi(2)).sum::<f64>() / n).sqrt()
    };
    let (sx, sd) = (spread(|s| s.x, mx), spread(|s| s.depth, md));
    // (is the size column, mean, spread) of each column that varies.
    let columns: Vec<(bool, f64, f64)> = [(true, mx, sx), (false, md, sd)]
        .into_iter()
        .filter(|&(_, _, spread)| spread > 1e-300)
        .collect();
    let value = |s: &Sample, size: bool| if size { s.x } else { s.depth };
    // Normal equations on the standardised, centred columns (the intercept drops out).
    let k = columns.len();
    let z = |s: &Sample, j: usize| (value(s, columns[j].0) - columns[j].1) / columns[j].2;
    let mut gram = vec![vec![0.0; k]; k];
    let mut rhs = vec![0.0; k];
    for s in samples {
        for (i, (row, r)) in gram.iter_mut().zip(rhs.iter_mut()).enumerate() {
            *r += z(s, i) * (s.seconds - mt);
            for (j, g) in row.iter_mut().enumerate() {
                *g += z(s, i) * z(s, j);
            }
        }
    }
    let beta = solve(gram, rhs).ok_or(RuntimeError::CollinearSamples)?;
    let (mut per_x, mut per_depth, mut constant) = (0.0, 0.0, mt);
    for (&(size, mean, spread), b) in columns.iter().zip(&beta) {
        let coefficient = b / spread;
        constant -= coefficient * mean;
        if size {
            per_x = coefficient;
        } else {
            per_depth = coefficient;
        }
    }
    let model = LinearDelay {
        per_x,
        per_depth,
        constant_s: constant,
        r2: 0.0,
        samples: samples.len(),
    };
    let raw = |s: &Sample| model.per_x * s.x + model.per_depth * s.depth + model.constant_s;
    let residual: f64 = samples.iter().map(|s| (s.seconds - raw(s)).powi(2)).sum();
    let total: f64 = samples.iter().map(|s| (s.seconds - mt).powi(2)).sum();
    Ok(LinearDelay {
        r2: if total > 0.0 {
            1.0 - residual / total
        } else {
            1.0
        },
        ..model
    })
}

/// Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, &p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

/// Compute samples over blocks: for each length 1, 2, 4, ... the model's units tiled into
/// consecutive blocks of that length (the last one shorter), FLOPs and seconds summed, depth
/// = the block's first unit.
fn block_samples(profiles: &[Profile]) -> Vec<Sample> {
    let mut samples = Vec::new();
    for p in profiles {
        let n = p.units.len();
        let mut length = 1;
        while length <= n.max(1) {
            for start in (0..n).step_by(length) {
                let block = &p.units[start..(start + length).min(n)];
                samples.push(Sample {
                    x: block.iter().map(|u| u.flops as f64).sum(),
                    depth: start as f64,
                    seconds: block.iter().map(|u| u.compute_s).sum(),
                });
            }
            length *= 2;
        }
    }
    samples
}

/// Fits the three models on `profiles` (depth = the first unit's index).
pub fn fit_profiles(profiles: &[Profile]) -> Result<DelayModels> {
    let samples = |f: &dyn Fn(&crate::profile::UnitProfile) -> (f64, f64)| -> Vec<Sample> {
        profiles
            .iter()
            .flat_map(|p| p.units.iter().enumerate())
            .map(|(depth, u)| {
                let (x, seconds) = f(u);
                Sample {
                    x,
                    depth: depth as f64,
                    seconds,
                }
            })
            .collect()
    };
    if profiles
        .iter()
        .any(|p| p.units.iter().all(|u| u.flops == 0))
    {
        return Err(RuntimeError::ProfileWithoutFlops);
    }
    Ok(DelayModels {
        t_in: fit(&samples(&|u| (u.read_bytes as f64, u.load_s)))?,
        t_ex: fit(&block_samples(profiles))?,
        t_out: fit(&samples(&|u| (u.resident_bytes as f64, u.free_s)))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Noise-free timings from known coefficients are recovered, with R^2 = 1.
        #[test]
        fn recovers_known_coefficients(
            a in 1e-10f64..1e-8, b in -1e-3f64..1e-3, c in 0.0f64..0.01,
            sizes in prop::collection::vec(1e5f64..1e9, 6..40),
        ) {
            let samples: Vec<Sample> = sizes.iter().enumerate().map(|(i, &x)| {
                let depth = ((i * 7) % 13) as f64;
                Sample { x, depth, seconds: a * x + b * depth + c }
            }).collect();
            let m = fit(&samples).unwrap();
            prop_assert!((m.per_x - a).abs() <= 1e-6 * a.abs().max(1e-12), "{} vs {}", m.per_x, a);
            prop_assert!((m.per_depth - b).abs() <= 1e-6 * b.abs().max(1e-9), "{} vs {}", m.per_depth, b);
            prop_assert!((m.constant_s - c).abs() <= 1e-6 * c.abs().max(1e-9) + 1e-12, "{} vs {}", m.constant_s, c);
            prop_assert!(m.r2 > 0.999_999);
        }
    }

    #[test]
    fn compute_is_fitted_on_blocks_of_consecutive_units() {
        let units: Vec<crate::profile::UnitProfile> = (0..20u64)
            .map(|i| {
                let flops = 1_000_000 * (1 + (i * 7) % 11);
                let bytes = 4096 * (1 + (i * 5) % 7);
                crate::profile::UnitProfile {
                    id: format!("u{i}"),
                    resident_bytes: bytes,
                    read_bytes: bytes,
                    load_s: 1e-9 * bytes as f64 + 1e-4,
                    flops,
                    compute_s: 2e-11 * flops as f64,
                    free_s: 1e-6,
                    boundary_elements: 0,
                    boundary_channels: 0,
                }
            })
            .collect();
        let profile = Profile {
            architecture: "test".into(),
            threads: 1,
            reserve_bytes: 0,
            units,
            throughput: Vec::new(),
            compute_slowdown: Vec::new(),
            output_elements: 0,
        };
        let m = fit_profiles(std::slice::from_ref(&profile)).unwrap();
        // 20 units tiled at lengths 1, 2, 4, 8, 16: 20 + 10 + 5 + 3 + 2 blocks.
        assert_eq!(m.t_ex.samples, 40);
        assert_eq!(m.t_in.samples, 20);
        assert!((m.t_ex.per_x - 2e-11).abs() < 1e-15, "{}", m.t_ex.per_x);
        assert!(m.t_ex.r2 > 0.999_999);
    }

    #[test]
    fn noisy_timings_give_a_lower_r2_and_constant_depth_is_handled() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| {
                let x = 1e6 * (i + 1) as f64;
                let noise = if i % 2 == 0 { 1e-3 } else { -1e-3 };
                Sample {
                    x,
                    depth: 3.0,
                    seconds: 2e-9 * x + 0.01 + noise,
                }
            })
            .collect();
        let m = fit(&samples).unwrap();
        assert_eq!(m.per_depth, 0.0);
        assert!((m.per_x - 2e-9).abs() < 1e-10);
        assert!(m.r2 < 1.0 && m.r2 > 0.9);
        assert!(fit(&samples[..2]).is_err());
    }
}
