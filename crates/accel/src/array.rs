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

/// The longest side of an array, in PEs.
pub const MAX_SIDE: usize = 1 << 12;
/// The most PEs of an array: the simulator keeps registers for each.
pub const MAX_PES: usize = 1 << 20;
/// The most elements of one GEMM operand or output the simulator holds.
pub const MAX_OPERAND_ELEMENTS: usize = 1 << 26;
/// The most PE-cycles one simulated GEMM may take (about 400 s at 2.5e8 a second).
pub const MAX_PE_CYCLES: u128 = 100_000_000_000;

impl ArrayShape {
    pub fn new(rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(AccelError::Config(format!(
                "array {rows}x{cols}: both sides need at least one PE"
            )));
        }
        let side = rows.max(cols);
        if side > MAX_SIDE {
            return Err(AccelError::TooLarge {
                what: "an array side",
                value: side as u128,
                limit: MAX_SIDE as u128,
            });
        }
        if rows * cols > MAX_PES {
            return Err(AccelError::TooLarge {
                what: "an array's PEs",
                value: (rows * cols) as u128,
                limit: MAX_PES as u128,
            });
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
    /// Checks a GEMM can be simulated on `shape`: every dimension at least 1, each operand and
    /// the output at most [`MAX_OPERAND_ELEMENTS`], the cycle-by-cycle work at most
    /// [`MAX_PE_CYCLES`]. Larger GEMMs still have closed forms.
    pub fn check_simulation(self, shape: ArrayShape, dataflow: Dataflow) -> Result<()> {
        let GemmDims { m, k, n } = self;
        if m == 0 || k == 0 || n == 0 {
            return Err(AccelError::Config(format!(
                "GEMM {m}x{k}x{n}: every dimension needs at least 1"
            )));
        }
        for (what, a, b) in [
            ("the elements of A (m x k)", m, k),
            ("the elements of B (k x n)", k, n),
            ("the elements of the output (m x n)", m, n),
        ] {
            let elements = a as u128 * b as u128;
            if elements > MAX_OPERAND_ELEMENTS as u128 {
                return Err(AccelError::TooLarge {
                    what,
                    value: elements,
                    limit: MAX_OPERAND_ELEMENTS as u128,
                });
            }
        }
        let (r, c) = (shape.rows as u128, shape.cols as u128);
        let ceil = |a: usize, b: u128| (a as u128).div_ceil(b);
        let cycles = match dataflow {
            Dataflow::OutputStationary => ceil(m, r) * ceil(n, c) * (k as u128 + r + c),
            Dataflow::WeightStationary => ceil(k, r) * ceil(n, c) * (m as u128 + 2 * r + c),
            Dataflow::InputStationary => ceil(k, r) * ceil(m, c) * (n as u128 + 2 * r + c),
        };
        let pe_cycles = cycles * r * c;
        if pe_cycles > MAX_PE_CYCLES {
            return Err(AccelError::TooLarge {
                what: "the simulated PE-cycles",
                value: pe_cycles,
                limit: MAX_PE_CYCLES,
            });
        }
        Ok(())
    }

    pub fn macs(self) -> u64 {
        (self.m * self.k * self.n) as u64
    }
}

impl fmt::Display for GemmDims {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "M={} K={} N={}", self.m, self.k, self.n)
    }
}
