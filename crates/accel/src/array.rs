//! The geometry of one GEMM on one systolic array: array shape, dataflow, matrix dimensions.

use std::fmt;
use std::str::FromStr;

use crate::{AccelError, Result};

/// `rows x cols` processing elements (SCALE-Sim's ArrayHeight x ArrayWidth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayShape {
    pub rows: usize,
    pub cols: usize,
}

impl ArrayShape {
    pub fn new(rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(AccelError::Config(format!(
                "array {rows}x{cols}: both sides need at least one PE"
            )));
        }
        Ok(Self { rows, cols })
    }

    pub fn pes(self) -> usize {
        self.rows * self.cols
    }
}

impl FromStr for ArrayShape {
    type Err = AccelError;

    /// `17x32` (rows x columns).
    fn from_str(text: &str) -> Result<Self> {
        let parsed = text
            .split_once(['x', 'X'])
            .and_then(|(r, c)| Some((r.trim().parse().ok()?, c.trim().parse().ok()?)));
        match parsed {
            Some((rows, cols)) => Self::new(rows, cols),
            None => Err(AccelError::Config(format!(
                "`{text}` is not an array shape; write ROWSxCOLS, e.g. 17x32"
            ))),
        }
    }
}

impl fmt::Display for ArrayShape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// Which operand stays in the PEs while the others stream past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataflow {
    /// Outputs accumulate in place; A streams from the left, B from the top.
    OutputStationary,
    /// B is preloaded; A streams from the left, partial sums flow down.
    WeightStationary,
    /// A is preloaded; B streams from the left, partial sums flow down.
    InputStationary,
}

impl Dataflow {
    pub const ALL: [Dataflow; 3] = [
        Dataflow::OutputStationary,
        Dataflow::WeightStationary,
        Dataflow::InputStationary,
    ];

    pub fn short_name(self) -> &'static str {
        match self {
            Self::OutputStationary => "os",
            Self::WeightStationary => "ws",
            Self::InputStationary => "is",
        }
    }
}

impl FromStr for Dataflow {
    type Err = AccelError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "os" => Ok(Self::OutputStationary),
            "ws" => Ok(Self::WeightStationary),
            "is" => Ok(Self::InputStationary),
            other => Err(AccelError::Config(format!(
                "dataflow `{other}`: choose os, ws or is"
            ))),
        }
    }
}

impl fmt::Display for Dataflow {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// `A[m x k] @ B[k x n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl GemmDims {
    pub fn macs(self) -> u64 {
        (self.m * self.k * self.n) as u64
    }
}

impl fmt::Display for GemmDims {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "M={} K={} N={}", self.m, self.k, self.n)
    }
}
