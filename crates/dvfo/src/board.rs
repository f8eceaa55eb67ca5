//! An edge board as a TOML file: CPU and memory frequency levels with the power drawn at each,
//! the board's idle power and its radio. This machine has no cpufreq and no power sensors, so
//! a board is a model: every number in a shipped board file carries its source, or says it is
//! an assumption.
//!
//! How the numbers are used (one place, [`crate::env`]):
//! - a CPU level computes at `cores * mhz * flops_per_cycle * gemm_efficiency` FLOP/s;
//! - a memory level moves `peak_gb_per_s * mhz / top mhz * efficiency` bytes/s;
//! - computing draws `idle_w + cpu busy_w + memory busy_w`; waiting draws `idle_w`;
//! - the radio adds `active_mw + uplink_mw_per_mbit * rate` while sending and
//!   `active_mw + downlink_mw_per_mbit * rate` while receiving or waiting for an answer at
//!   rate 0 (the linear model of Huang et al., MobiSys 2012), and nothing when unused.
//!
//! - with `[storage]`, a pass over a model beyond its memory budget streams its weights (see
//!   [`crate::env`]): `k` loaders read `read` at the point for `k` (or the nearest below it),
//!   drawing `busy_w` above idle while any read is in flight.
//!
//! GPU levels may be listed for completeness; edgerun computes on the CPU, so the GPU is
//! taken as rail-gated and its floor is part of `idle_w`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{DvfoError, Result};

/// One frequency level and the power drawn above idle while the unit works at it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub mhz: f64,
    pub busy_w: f64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    pub cores: u32,
    /// f32 FLOPs per cycle per core at full vector width (FMA counted as two).
    pub flops_per_cycle: f64,
    /// The share of that peak a GEMM-heavy pass sustains.
    pub gemm_efficiency: f64,
    pub levels: Vec<Level>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Peak DRAM bandwidth at the top level.
    pub peak_gb_per_s: f64,
    /// The share of that peak a streaming pass sustains.
    pub efficiency: f64,
    pub levels: Vec<Level>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub levels: Vec<Level>,
}

/// The radio's power while it works (Huang et al.'s `P = alpha * rate + beta`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Radio {
    pub uplink_mw_per_mbit: f64,
    pub downlink_mw_per_mbit: f64,
    pub active_mw: f64,
}

/// Aggregate read throughput with `loaders` reads in flight.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadPoint {
    pub loaders: usize,
    pub mb_per_s: f64,
}

/// Where the weights live when they do not fit in memory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default)]
    pub kind: String,
    pub read: Vec<ReadPoint>,
    /// Power above idle while reading.
    pub busy_w: f64,
}

impl Storage {
    /// The read curve as PipeLoad's planner takes it.
    pub fn throughputs(&self) -> Vec<edgerun_runtime::planner::Throughput> {
        self.read
            .iter()
            .map(|p| edgerun_runtime::planner::Throughput {
                loaders: p.loaders,
                bytes_per_s: p.mb_per_s * 1e6,
            })
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The board with its CPU idle, memory idle and GPU rail-gated.
    pub idle_w: f64,
    pub cpu: Cpu,
    pub memory: Memory,
    #[serde(default)]
    pub gpu: Option<Gpu>,
    pub radio: Radio,
    #[serde(default)]
    pub storage: Option<Storage>,
}

const MAX_LEVELS: usize = 64;

impl Board {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DvfoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a board (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |why: String| DvfoError::Board {
            path: PathBuf::from(path),
            why,
        };
        let board: Board = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        board.check().map_err(bad)?;
        Ok(board)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        watts("idle_w", self.idle_w)?;
        if !(1..=4096).contains(&self.cpu.cores) {
            return Err(format!(
                "cpu.cores {} is not from 1 to 4096",
                self.cpu.cores
            ));
        }
        positive("cpu.flops_per_cycle", self.cpu.flops_per_cycle, 4096.0)?;
        share("cpu.gemm_efficiency", self.cpu.gemm_efficiency)?;
        levels("cpu.levels", &self.cpu.levels)?;
        positive("memory.peak_gb_per_s", self.memory.peak_gb_per_s, 1e5)?;
        share("memory.efficiency", self.memory.efficiency)?;
        levels("memory.levels", &self.memory.levels)?;
        if let Some(gpu) = &self.gpu {
            levels("gpu.levels", &gpu.levels)?;
        }
        watts(
            "radio.uplink_mw_per_mbit",
            self.radio.uplink_mw_per_mbit / 1e3,
        )?;
        watts(
            "radio.downlink_mw_per_mbit",
            self.radio.downlink_mw_per_mbit / 1e3,
        )?;
        watts("radio.active_mw", self.radio.active_mw / 1e3)?;
        if let Some(storage) = &self.storage {
            check_storage(storage)?;
        }
        Ok(())
    }

    /// FLOP/s the CPU sustains at `level`.
    pub fn cpu_flops_per_s(&self, level: usize) -> f64 {
        f64::from(self.cpu.cores)
            * self.cpu.levels[level].mhz
            * 1e6
            * self.cpu.flops_per_cycle
            * self.cpu.gemm_efficiency
    }

    /// Bytes/s the memory sustains at `level`.
    pub fn memory_bytes_per_s(&self, level: usize) -> f64 {
        let top = self.memory.levels.last().map_or(1.0, |l| l.mhz);
        self.memory.peak_gb_per_s
            * 1e9
            * (self.memory.levels[level].mhz / top)
            * self.memory.efficiency
    }

    /// Watts while computing at these levels.
    pub fn busy_w(&self, cpu: usize, memory: usize) -> f64 {
        self.idle_w + self.cpu.levels[cpu].busy_w + self.memory.levels[memory].busy_w
    }

    /// Watts of the radio sending at `mbit_per_s`.
    pub fn uplink_w(&self, mbit_per_s: f64) -> f64 {
        (self.radio.active_mw + self.radio.uplink_mw_per_mbit * mbit_per_s) / 1e3
    }

    /// Watts of the radio receiving at `mbit_per_s` (0: awake, waiting for the answer).
    pub fn downlink_w(&self, mbit_per_s: f64) -> f64 {
        (self.radio.active_mw + self.radio.downlink_mw_per_mbit * mbit_per_s) / 1e3
    }

    pub fn top_cpu(&self) -> usize {
        self.cpu.levels.len() - 1
    }

    pub fn top_memory(&self) -> usize {
        self.memory.levels.len() - 1
    }
}

fn positive(what: &str, value: f64, max: f64) -> std::result::Result<(), String> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(())
    } else {
        Err(format!("{what} = {value} is not in (0, {max}]"))
    }
}

fn share(what: &str, value: f64) -> std::result::Result<(), String> {
    positive(what, value, 1.0)
}

fn watts(what: &str, value: f64) -> std::result::Result<(), String> {
    if value.is_finite() && (0.0..=10_000.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("{what} = {value} is not a power from 0 to 10 kW"))
    }
}

fn check_storage(storage: &Storage) -> std::result::Result<(), String> {
    watts("storage.busy_w", storage.busy_w)?;
    if storage.read.is_empty() || storage.read.len() > MAX_LEVELS {
        return Err(format!(
            "storage.read has {} points (1 to {MAX_LEVELS})",
            storage.read.len()
        ));
    }
    for (i, point) in storage.read.iter().enumerate() {
        if !(1..=64).contains(&point.loaders) {
            return Err(format!(
                "storage.read[{i}].loaders = {} is not from 1 to 64",
                point.loaders
            ));
        }
        positive(&format!("storage.read[{i}].mb_per_s"), point.mb_per_s, 1e6)?;
        if i > 0 && point.loaders <= storage.read[i - 1].loaders {
            return Err(format!(
                "storage.read must list loaders in rising order: {} after {}",
                point.loaders,
                storage.read[i - 1].loaders
            ));
        }
    }
    Ok(())
}

fn levels(what: &str, levels: &[Level]) -> std::result::Result<(), String> {
    if levels.is_empty() || levels.len() > MAX_LEVELS {
        return Err(format!(
            "{what} has {} levels (1 to {MAX_LEVELS})",
            levels.len()
        ));
    }
    for (i, level) in levels.iter().enumerate() {
        positive(&format!("{what}[{i}].mhz"), level.mhz, 1e6)?;
        watts(&format!("{what}[{i}].busy_w"), level.busy_w)?;
        if i > 0 && level.mhz <= levels[i - 1].mhz {
            return Err(format!(
                "{what} must rise: {} MHz after {} MHz",
                level.mhz,
                levels[i - 1].mhz
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SMALL: &str = r#"
name = "small"
idle_w = 1.0
[cpu]
cores = 2
flops_per_cycle = 8
gemm_efficiency = 0.5
levels = [{ mhz = 500, busy_w = 0.5 }, { mhz = 1000, busy_w = 2.0 }]
[memory]
peak_gb_per_s = 10
efficiency = 0.5
levels = [{ mhz = 800, busy_w = 0.1 }, { mhz = 1600, busy_w = 0.3 }]
[radio]
uplink_mw_per_mbit = 300
downlink_mw_per_mbit = 100
active_mw = 200
"#;

    #[test]
    fn rates_and_powers_follow_the_file() {
        let b = Board::parse(SMALL, Path::new("small.toml")).unwrap();
        assert_eq!(b.cpu_flops_per_s(1), 2.0 * 1000e6 * 8.0 * 0.5);
        assert_eq!(b.memory_bytes_per_s(0), 10e9 * 0.5 * 0.5);
        assert_eq!(b.busy_w(1, 0), 1.0 + 2.0 + 0.1);
        assert!((b.uplink_w(10.0) - 3.2).abs() < 1e-12);
        assert!((b.downlink_w(0.0) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn impossible_boards_are_refused_in_words() {
        let cases = [
            ("cores = 2", "cores = 0", "cpu.cores"),
            (
                "gemm_efficiency = 0.5",
                "gemm_efficiency = 1.5",
                "gemm_efficiency",
            ),
            (
                "{ mhz = 1000, busy_w = 2.0 }",
                "{ mhz = 400, busy_w = 2.0 }",
                "must rise",
            ),
            ("idle_w = 1.0", "idle_w = -1.0", "idle_w"),
            ("idle_w = 1.0", "idle_w = nan", "idle_w"),
            (
                "name = \"small\"",
                "name = \"small\"\nturbo = true",
                "unknown field",
            ),
            ("active_mw = 200", "", "active_mw"),
        ];
        for (from, to, expected) in cases {
            let text = SMALL.replace(from, to);
            let err = Board::parse(&text, Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{to}: {err}");
            assert!(err.starts_with("board b.toml"), "{err}");
        }
        let storage = |read: &str, busy_w: &str| {
            format!("{SMALL}[storage]\nread = [{read}]\nbusy_w = {busy_w}\n")
        };
        let good = "{ loaders = 1, mb_per_s = 80 }, { loaders = 2, mb_per_s = 90 }";
        let b = Board::parse(&storage(good, "0.4"), Path::new("b.toml")).unwrap();
        let s = b.storage.unwrap();
        assert_eq!(
            {
                let curve = s.throughputs();
                let at = |k| edgerun_runtime::planner::aggregate(&curve, k);
                (at(1), at(2), at(5))
            },
            (80e6, 90e6, 90e6)
        );
        for (read, busy_w, expected) in [
            ("", "0.4", "storage.read has 0 points"),
            ("{ loaders = 0, mb_per_s = 80 }", "0.4", "loaders = 0"),
            ("{ loaders = 1, mb_per_s = -80 }", "0.4", "mb_per_s"),
            (
                "{ loaders = 2, mb_per_s = 80 }, { loaders = 1, mb_per_s = 90 }",
                "0.4",
                "rising order",
            ),
            (good, "-1", "storage.busy_w"),
        ] {
            let err = Board::parse(&storage(read, busy_w), Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{read} {busy_w}: {err}");
        }
        let empty = SMALL.replace(
            "levels = [{ mhz = 800, busy_w = 0.1 }, { mhz = 1600, busy_w = 0.3 }]",
            "levels = []",
        );
        let err = Board::parse(&empty, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory.levels has 0 levels"), "{err}");
    }
}
