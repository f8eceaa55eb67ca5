//! What the environment knows of a model, measured once on this machine: each stage's compute
//! time and FLOPs (the profiler's), the bytes it streams, and for every split and boundary
//! compression the bytes sent, the time to encode and decode them, and how far the outputs
//! move (least cosine over the model's outputs, the tail run on this machine from the decoded
//! boundary, against a whole local pass).
//!
//! Saved as JSON so that training and evaluation need not measure again.

use std::path::Path;
use std::time::Instant;

use edgerun_models::Inputs;
use edgerun_runtime::profile::Profile;
use edgerun_runtime::{Outputs, Session};
use edgerun_serve::boundary::{boundary_from_wire, boundary_to_wire, inputs_to_wire};
use edgerun_serve::Compression;
use edgerun_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{DvfoError, Result};

pub const FORMAT: &str = "edgerun-dvfo-calibration";
/// Version 2 added the units' bytes and the reserve, which a budgeted environment needs;
/// version 1 files still load for everything else.
pub const VERSION: u32 = 2;

/// One stage as this machine ran it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageCost {
    pub id: String,
    pub compute_s: f64,
    pub flops: u64,
    /// Bytes the stage streams through memory: its weights when it multiplies with them
    /// (a lookup table reads only its rows), and its activation in and out.
    pub traffic_bytes: u64,
    /// Bytes the stage's unit holds while resident, and reads from storage (PipeLoad's
    /// planner counts both). Absent from version 1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
}

/// A split after stage `split - 1`, its boundary sent as `compression`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BoundaryCost {
    pub split: usize,
    pub compression: String,
    pub bytes: u64,
    pub encode_s: f64,
    pub decode_s: f64,
    /// Least cosine similarity of an output to a whole local pass.
    pub cosine: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    pub format: String,
    pub version: u32,
    pub architecture: String,
    /// The machine that measured it (`lscpu`'s model name where known).
    pub host: String,
    pub threads: usize,
    pub stages: Vec<StageCost>,
    /// The activations a streamed pass holds beside its units (the profiler's reserve).
    /// Absent from version 1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_bytes: Option<u64>,
    /// What a split at 0 sends: the inputs.
    pub input_bytes: u64,
    /// What the server sends back: the outputs in f32.
    pub output_bytes: u64,
    /// The compressions measured, `none` first.
    pub compressions: Vec<String>,
    /// For every split `1..stages` and compression, in that order.
    pub boundaries: Vec<BoundaryCost>,
}

impl Calibration {
    /// Measures `session` (a whole model, packed) on `inputs`: `runs` profiling passes, then one
    /// head per split and one tail per split and compression. `progress(done, total)` is
    /// called after each tail.
    pub fn measure(
        session: &Session,
        inputs: &Inputs,
        compressions: &[Compression],
        runs: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        if compressions.first() != Some(&Compression::None) {
            return Err(DvfoError::invalid(
                "the compressions measured start with none",
            ));
        }
        let stages = session.model().stages().len();
        if session.part() != (0..stages) {
            return Err(DvfoError::invalid("calibration needs the whole model"));
        }
        let profile = session.profile(inputs.clone(), runs)?;
        let reference = session.run(inputs.clone(), false)?.tensors;
        let output_bytes = reference.iter().map(|(_, t)| 4 * t.len() as u64).sum();
        let input_bytes = inputs_to_wire(inputs)?
            .iter()
            .map(|t| t.bytes.len() as u64)
            .sum();
        let total = stages.saturating_sub(1) * compressions.len();
        let mut boundaries = Vec::with_capacity(total);
        for split in 1..stages {
            let mut state = session.start(inputs.clone(), false)?;
            session.run_stages(&mut state, 0..split)?;
            let boundary = state.take_boundary(split);
            let head = Outputs::from_state(&mut state).tensors;
            for &how in compressions {
                let started = Instant::now();
                let wire = boundary_to_wire(&boundary, how)?;
                let encode_s = started.elapsed().as_secs_f64();
                let bytes = wire.iter().map(|t| t.bytes.len() as u64).sum();
                let started = Instant::now();
                let received = boundary_from_wire(split, &wire)?;
                let decode_s = started.elapsed().as_secs_f64();
                let mut tail = session.resume(received, false)?;
                session.run_stages(&mut tail, split..stages)?;
                let mut outputs = head.clone();
                outputs.extend(Outputs::from_state(&mut tail).tensors);
                boundaries.push(BoundaryCost {
                    split,
                    compression: how.to_string(),
                    bytes,
                    encode_s,
                    decode_s,
                    cosine: least_cosine(&reference, &outputs)?,
                });
                progress(boundaries.len(), total);
            }
        }
        let calibration = Self {
            format: FORMAT.into(),
            version: VERSION,
            architecture: profile.architecture.clone(),
            host: host_cpu(),
            threads: profile.threads,
            stages: stage_costs(&profile),
            reserve_bytes: Some(profile.reserve_bytes),
            input_bytes,
            output_bytes,
            compressions: compressions.iter().map(ToString::to_string).collect(),
            boundaries,
        };
        calibration.check().map_err(DvfoError::invalid)?;
        Ok(calibration)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| DvfoError::Calibration {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|source| DvfoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let calibration: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if calibration.format != FORMAT || !(1..=VERSION).contains(&calibration.version) {
            return Err(bad(format!(
                "not an {FORMAT} file of version 1 to {VERSION} (format {:?}, version {})",
                calibration.format, calibration.version
            )));
        }
        calibration.check().map_err(bad)?;
        Ok(calibration)
    }

    /// Writes to `path` through a temporary file beside it, so a failed write leaves no
    /// half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| DvfoError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        crate::write_atomically(path, text.as_bytes())
    }

    /// Checks what the environment takes on trust.
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.stages.len();
        if n == 0 || n > 100_000 {
            return Err(format!("{n} stages"));
        }
        for s in &self.stages {
            if !(s.compute_s.is_finite() && s.compute_s >= 0.0) {
                return Err(format!("stage {}: compute_s {}", s.id, s.compute_s));
            }
        }
        if self.stages.iter().map(|s| s.compute_s).sum::<f64>() <= 0.0 {
            return Err("the stages took no time".into());
        }
        if self.compressions.first().map(String::as_str) != Some("none") {
            return Err("the compressions do not start with none".into());
        }
        for name in &self.compressions {
            name.parse::<Compression>()
                .map_err(|e| format!("compression {name:?}: {e}"))?;
        }
        let expected = (n - 1) * self.compressions.len();
        if self.boundaries.len() != expected {
            return Err(format!(
                "{} boundaries for {n} stages and {} compressions (expected {expected})",
                self.boundaries.len(),
                self.compressions.len()
            ));
        }
        for (i, b) in self.boundaries.iter().enumerate() {
            let split = 1 + i / self.compressions.len();
            let how = &self.compressions[i % self.compressions.len()];
            if b.split != split || &b.compression != how {
                return Err(format!(
                    "boundary {i} is split {} {:?}, expected split {split} {how:?}",
                    b.split, b.compression
                ));
            }
            let times_ok = [b.encode_s, b.decode_s]
                .iter()
                .all(|t| t.is_finite() && *t >= 0.0);
            if !(times_ok && b.cosine.is_finite() && (-1.0..=1.0 + 1e-9).contains(&b.cosine)) {
                return Err(format!("boundary {i}: times or cosine out of range"));
            }
        }
        Ok(())
    }

    /// The boundary of a split `1..stages` with compression `index`.
    pub fn boundary(&self, split: usize, compression: usize) -> &BoundaryCost {
        &self.boundaries[(split - 1) * self.compressions.len() + compression]
    }

    /// Per stage `(resident, read)` bytes, and the reserve, where the file has them.
    pub fn unit_bytes(&self) -> Option<(Vec<(u64, u64)>, u64)> {
        let units = self
            .stages
            .iter()
            .map(|s| Some((s.resident_bytes?, s.read_bytes?)))
            .collect::<Option<Vec<_>>>()?;
        Some((units, self.reserve_bytes?))
    }

    /// FLOP/s this machine sustained over the whole pass.
    pub fn host_flops_per_s(&self) -> f64 {
        let flops: u64 = self.stages.iter().map(|s| s.flops).sum();
        let seconds: f64 = self.stages.iter().map(|s| s.compute_s).sum();
        flops as f64 / seconds
    }
}

fn stage_costs(profile: &Profile) -> Vec<StageCost> {
    profile
        .units
        .iter()
        .map(|u| StageCost {
            id: u.id.clone(),
            compute_s: u.compute_s,
            flops: u.flops,
            traffic_bytes: if u.flops > 0 { u.resident_bytes } else { 0 } + 8 * u.boundary_elements,
            resident_bytes: Some(u.resident_bytes),
            read_bytes: Some(u.read_bytes),
        })
        .collect()
}

/// The least cosine similarity over `reference`'s tensors, each against the one of the same
/// name in `got`.
pub fn least_cosine(reference: &[(String, Tensor)], got: &[(String, Tensor)]) -> Result<f64> {
    let mut least = 1.0f64;
    for (name, want) in reference {
        let have = got
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| DvfoError::invalid(format!("the split run lost output {name}")))?;
        let (a, b) = (want.contiguous(), have.contiguous());
        if a.shape() != b.shape() {
            return Err(DvfoError::invalid(format!(
                "output {name}: shape {:?} split, {:?} whole",
                b.shape(),
                a.shape()
            )));
        }
        least = least.min(cosine(a.values(), b.values()));
    }
    Ok(least)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    dot / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
