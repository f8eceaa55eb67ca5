//! The ARAP instruction set: 44-bit words the global controller (GC) issues to one PE group.
//!
//! ```text
//!  43      38 37  36 35        24 23        12 11         0
//! +----------+------+------------+------------+------------+
//! |  opcode  | PEG  |     a      |     b      |     c      |
//! |  6 bits  | 2 b  |  12 bits   |  12 bits   |  12 bits   |
//! +----------+------+------------+------------+------------+
//! ```
//!
//! `PEG` selects PEG00, PEG01, PEG10 or PEG11 (row bit, column bit). `a`, `b` and `c` name
//! tensor descriptors (base address, rows, columns, row stride in the global buffer, written
//! by the host interface before the run); 4095 ([`NONE`]) means "no operand". For `signal`
//! and `wait`, `a` is a semaphore number. Each instruction reconfigures its PEG for one
//! operation over whole tensors:
//!
//! | opcode | mnemonic | semantics |
//! |---|---|---|
//! | 0x00 | `nop` | nothing |
//! | 0x01 | `matmul` | c = a @ b (2x2 output-stationary tiles) |
//! | 0x02 | `matmul.bt` | c = a @ b^T (Q K^T) |
//! | 0x03 | `add` | c = a + b, b broadcast over rows if it has one row (bias, residual) |
//! | 0x04 | `mulc` | c = a * b[0,0] (a constant, e.g. 1/sqrt(d)) |
//! | 0x05 | `softmax` | c = shift-and-add softmax of each row of a; b is a key mask row or none |
//! | 0x06 | `smv` | c = softmax(a) @ b, the softmax of row i+1 overlapping row i's product |
//! | 0x07 | `gelu` | c = a * sigmoid(1.702 a), the sigmoid by PLAN (shift-and-add pieces) |
//! | 0x08 | `relu` | c = max(a, 0) |
//! | 0x09 | `layernorm` | c = layer norm of each row of a; b holds gamma (row 0) and beta (row 1) |
//! | 0x0a | `copy` | c = a |
//! | 0x10 | `signal` | semaphore a += 1 once every earlier instruction of this PEG is done |
//! | 0x11 | `wait` | block this PEG until semaphore a > 0, then a -= 1 |
//!
//! Text form, one instruction per line (`#` starts a comment):
//! `matmul p00 d3, d7 -> d12`, `softmax p01 d4, - -> d5`, `signal p10 s2`, `wait p00 s2`.

use std::fmt;
use std::str::FromStr;

use crate::{AccelError, Result};

/// The "no operand" field value.
pub const NONE: u16 = 0xfff;

/// The largest field value (descriptor or semaphore number).
pub const FIELD_MAX: u16 = 0xfff;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Nop = 0x00,
    Matmul = 0x01,
    MatmulBt = 0x02,
    Add = 0x03,
    MulC = 0x04,
    Softmax = 0x05,
    SoftmaxMv = 0x06,
    Gelu = 0x07,
    Relu = 0x08,
    LayerNorm = 0x09,
    Copy = 0x0a,
    Signal = 0x10,
    Wait = 0x11,
}

impl Opcode {
    pub const ALL: [Opcode; 13] = [
        Opcode::Nop,
        Opcode::Matmul,
        Opcode::MatmulBt,
        Opcode::Add,
        Opcode::MulC,
        Opcode::Softmax,
        Opcode::SoftmaxMv,
        Opcode::Gelu,
        Opcode::Relu,
        Opcode::LayerNorm,
        Opcode::Copy,
        Opcode::Signal,
        Opcode::Wait,
    ];

    pub fn mnemonic(self) -> &'static str {
        match self {
            Opcode::Nop => "nop",
            Opcode::Matmul => "matmul",
            Opcode::MatmulBt => "matmul.bt",
            Opcode::Add => "add",
            Opcode::MulC => "mulc",
            Opcode::Softmax => "softmax",
            Opcode::SoftmaxMv => "smv",
            Opcode::Gelu => "gelu",
            Opcode::Relu => "relu",
            Opcode::LayerNorm => "layernorm",
            Opcode::Copy => "copy",
            Opcode::Signal => "signal",
            Opcode::Wait => "wait",
        }
    }

    fn from_bits(bits: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|op| *op as u8 == bits)
    }

    fn from_mnemonic(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.mnemonic() == text)
    }

    /// Handshake instructions carry a semaphore in `a` and no tensors.
    pub fn is_handshake(self) -> bool {
        matches!(self, Opcode::Signal | Opcode::Wait)
    }
}

/// One of the four 2x2 PE groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peg(pub u8);

impl Peg {
    pub const ALL: [Peg; 4] = [Peg(0), Peg(1), Peg(2), Peg(3)];

    /// `PEG00`, `PEG01`, `PEG10`, `PEG11`.
    pub fn name(self) -> String {
        format!("PEG{}{}", self.0 >> 1, self.0 & 1)
    }
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub op: Opcode,
    pub peg: Peg,
    pub a: u16,
    pub b: u16,
    pub c: u16,
}

impl Instruction {
    pub fn new(op: Opcode, peg: Peg, a: u16, b: u16, c: u16) -> Self {
        Self { op, peg, a, b, c }
    }

    pub fn handshake(op: Opcode, peg: Peg, semaphore: u16) -> Self {
        Self::new(op, peg, semaphore, NONE, NONE)
    }

    /// The 44-bit word, in the low bits of a `u64`.
    pub fn encode(&self) -> u64 {
        ((self.op as u64) << 38)
            | ((self.peg.0 as u64 & 0b11) << 36)
            | ((self.a as u64 & 0xfff) << 24)
            | ((self.b as u64 & 0xfff) << 12)
            | (self.c as u64 & 0xfff)
    }

    pub fn decode(word: u64) -> Result<Self> {
        if word >> 44 != 0 {
            return Err(AccelError::Config(format!(
                "instruction word {word:#x} has bits above bit 43"
            )));
        }
        let opcode = ((word >> 38) & 0x3f) as u8;
        let op = Opcode::from_bits(opcode).ok_or_else(|| {
            AccelError::Config(format!(
                "instruction word {word:#013x}: unknown opcode {opcode:#04x}"
            ))
        })?;
        Ok(Self {
            op,
            peg: Peg(((word >> 36) & 0b11) as u8),
            a: ((word >> 24) & 0xfff) as u16,
            b: ((word >> 12) & 0xfff) as u16,
            c: (word & 0xfff) as u16,
        })
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let peg = format!("p{}{}", self.peg.0 >> 1, self.peg.0 & 1);
        let operand = |v: u16| {
            if v == NONE {
                "-".to_string()
            } else {
                format!("d{v}")
            }
        };
        if self.op.is_handshake() {
            return write!(f, "{} {peg} s{}", self.op.mnemonic(), self.a);
        }
        if self.op == Opcode::Nop {
            return write!(f, "nop {peg}");
        }
        write!(
            f,
            "{} {peg} {}, {} -> {}",
            self.op.mnemonic(),
            operand(self.a),
            operand(self.b),
            operand(self.c)
        )
    }
}

impl FromStr for Instruction {
    type Err = AccelError;

    fn from_str(line: &str) -> Result<Self> {
        let bad = |why: &str| AccelError::Config(format!("`{line}`: {why}"));
        let text = line.split('#').next().unwrap_or("").trim();
        let (mnemonic, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let op = Opcode::from_mnemonic(mnemonic).ok_or_else(|| bad("unknown mnemonic"))?;
        let rest = rest.trim();
        let (peg_text, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let peg = match peg_text {
            "p00" => Peg(0),
            "p01" => Peg(1),
            "p10" => Peg(2),
            "p11" => Peg(3),
            _ => return Err(bad("the PEG is p00, p01, p10 or p11")),
        };
        let field = |token: &str, prefix: char| -> Result<u16> {
            let token = token.trim();
            if token == "-" {
                return Ok(NONE);
            }
            let value = token
                .strip_prefix(prefix)
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|&n| n < FIELD_MAX)
                .ok_or_else(|| bad(&format!("`{token}` is not {prefix}0..{prefix}4094 or -")))?;
            Ok(value)
        };
        if op.is_handshake() {
            return Ok(Self::handshake(op, peg, field(rest, 's')?));
        }
        if op == Opcode::Nop {
            return Ok(Self::new(op, peg, NONE, NONE, NONE));
        }
        let (sources, target) = rest
            .split_once("->")
            .ok_or_else(|| bad("expected `a, b -> c`"))?;
        let (a, b) = sources
            .split_once(',')
            .ok_or_else(|| bad("expected `a, b -> c`"))?;
        Ok(Self::new(
            op,
            peg,
            field(a, 'd')?,
            field(b, 'd')?,
            field(target, 'd')?,
        ))
    }
}

/// Assembles a program text into instructions (errors name the line).
pub fn assemble(text: &str) -> Result<Vec<Instruction>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.split('#').next().unwrap_or("").trim().is_empty())
        .map(|(i, l)| {
            l.parse()
                .map_err(|e: AccelError| AccelError::Config(format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// One instruction per line.
pub fn disassemble(program: &[Instruction]) -> String {
    program.iter().map(|i| format!("{i}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_docs_say() {
        let i = Instruction::new(Opcode::Matmul, Peg(2), 0xabc, 0x123, 0x456);
        assert_eq!(
            i.encode(),
            (0x01 << 38) | (2 << 36) | (0xabc << 24) | (0x123 << 12) | 0x456
        );
        assert!(i.encode() < 1 << 44);
    }

    #[test]
    fn bad_words_and_lines_are_errors() {
        assert!(Instruction::decode(1 << 44).is_err());
        assert!(Instruction::decode(0x3f << 38).is_err());
        assert!("fma p00 d1, d2 -> d3".parse::<Instruction>().is_err());
        assert!("matmul p22 d1, d2 -> d3".parse::<Instruction>().is_err());
        assert!("matmul p00 d1 d2 d3".parse::<Instruction>().is_err());
        assert!("matmul p00 d1, d9999 -> d3".parse::<Instruction>().is_err());
        let err = assemble("nop p00\nbogus p00").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
