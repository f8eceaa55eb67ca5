//! Bandwidth over time: one rate (Mbit/s) per inference. A trace is named by a spec:
//!
//! - `constant:R` holds R;
//! - `steps:R1,R2,...@N` holds each rate for N inferences in turn;
//! - `walk:SEED` is a random walk in log space between 0.5 and 20 Mbit/s (a step's log-ratio is
//!   normal with sigma 0.25, reflected at the bounds), the same for the same seed;
//! - `uniform:SEED` draws each rate independently, log-uniform between the same bounds (a
//!   training trace that visits the whole range evenly, where a walk lingers);
//! - `file:PATH` reads one rate per line (`#` starts a comment).
//!
//! `constant`, `walk` and `uniform` are `len` inferences long; the others are as long as they say.

use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::{DvfoError, Result};

/// The walk's bounds, Mbit/s (DVFO's evaluation spans a Wi-Fi link's usual range).
pub const WALK_MIN_MBIT: f64 = 0.5;
pub const WALK_MAX_MBIT: f64 = 20.0;
const WALK_SIGMA: f64 = 0.25;
const MAX_LEN: usize = 1_000_000;
const MIN_MBIT: f64 = 0.001;
const MAX_MBIT: f64 = 1e6;

#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The spec it was made from.
    pub name: String,
    pub mbit_per_s: Vec<f64>,
}

impl Trace {
    pub fn parse(spec: &str, len: usize) -> Result<Self> {
        let bad = |why: String| DvfoError::Trace {
            spec: spec.to_string(),
            why,
        };
        if len == 0 || len > MAX_LEN {
            return Err(bad(format!(
                "a trace is 1 to {MAX_LEN} inferences long, not {len}"
            )));
        }
        let (kind, rest) = spec.split_once(':').ok_or_else(|| {
            bad("expected constant:R, steps:R1,R2,...@N, walk:SEED or file:PATH".into())
        })?;
        let mbit_per_s = match kind {
            "constant" => vec![rate(rest).map_err(bad)?; len],
            "steps" => {
                let (rates, hold) = rest
                    .rsplit_once('@')
                    .ok_or_else(|| bad("steps needs @N, the inferences each rate holds".into()))?;
                let hold: usize = hold
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{hold:?} is not a count")))?;
                let rates = rates
                    .split(',')
                    .map(rate)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(bad)?;
                let total = rates
                    .len()
                    .checked_mul(hold)
                    .filter(|&n| n > 0 && n <= MAX_LEN);
                if total.is_none() {
                    return Err(bad(format!(
                        "{} rates held {hold} times each is not 1 to {MAX_LEN} inferences",
                        rates.len()
                    )));
                }
                rates
                    .iter()
                    .flat_map(|&r| std::iter::repeat_n(r, hold))
                    .collect()
            }
            "walk" => {
                let seed: u64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{rest:?} is not a seed")))?;
                walk(seed, len)
            }
            "uniform" => {
                let seed: u64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{rest:?} is not a seed")))?;
                uniform(seed, len)
            }
            "file" => read_file(Path::new(rest)).map_err(bad)?,
            _ => return Err(bad(format!("unknown kind {kind:?}"))),
        };
        Ok(Self {
            name: spec.to_string(),
            mbit_per_s,
        })
    }

    pub fn len(&self) -> usize {
        self.mbit_per_s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mbit_per_s.is_empty()
    }
}

fn rate(text: &str) -> std::result::Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate in Mbit/s"))?;
    if value.is_finite() && (MIN_MBIT..=MAX_MBIT).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} Mbit/s is not from {MIN_MBIT} to {MAX_MBIT}"
        ))
    }
}

fn walk(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (low, high) = (WALK_MIN_MBIT.ln(), WALK_MAX_MBIT.ln());
    let mut x = (low + high) / 2.0;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(x.exp());
        // Box-Muller: one standard normal from two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let step = WALK_SIGMA * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        x += step;
        if x > high {
            x = 2.0 * high - x;
        }
        if x < low {
            x = 2.0 * low - x;
        }
        x = x.clamp(low, high);
    }
    out
}

fn uniform(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (low, high) = (WALK_MIN_MBIT.ln(), WALK_MAX_MBIT.ln());
    (0..len)
        .map(|_| (low + (high - low) * rng.random::<f64>()).exp())
        .collect()
}

fn read_file(path: &Path) -> std::result::Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if out.len() == MAX_LEN {
            return Err(format!("more than {MAX_LEN} rates"));
        }
        out.push(rate(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    if out.is_empty() {
        return Err(format!("{} holds no rate", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_make_the_rates_they_say() {
        assert_eq!(
            Trace::parse("constant:8", 3).unwrap().mbit_per_s,
            vec![8.0; 3]
        );
        assert_eq!(
            Trace::parse("steps:20,0.5@2", 99).unwrap().mbit_per_s,
            vec![20.0, 20.0, 0.5, 0.5]
        );
        let a = Trace::parse("walk:7", 500).unwrap();
        assert_eq!(a, Trace::parse("walk:7", 500).unwrap());
        assert_ne!(
            a.mbit_per_s,
            Trace::parse("walk:8", 500).unwrap().mbit_per_s
        );
        assert!(a
            .mbit_per_s
            .iter()
            .all(|&r| (WALK_MIN_MBIT - 1e-9..=WALK_MAX_MBIT + 1e-9).contains(&r)));
        let (min, max) = a
            .mbit_per_s
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        assert!(
            min < 1.5 && max > 10.0,
            "the walk spans its range: {min}..{max}"
        );
    }

    #[test]
    fn bad_specs_are_refused_in_words() {
        for (spec, expected) in [
            ("8", "expected constant"),
            ("constant:-1", "not from"),
            ("constant:fast", "not a rate"),
            ("steps:1,2", "@N"),
            ("steps:1,2@0", "not 1 to"),
            ("walk:x", "not a seed"),
            ("noise:3", "unknown kind"),
            ("file:/nonexistent/trace", "cannot read"),
        ] {
            let err = Trace::parse(spec, 10).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
        assert!(Trace::parse("constant:1", 0).is_err());
    }
}
