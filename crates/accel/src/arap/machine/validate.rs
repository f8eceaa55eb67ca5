//! Checks a program before it runs: every descriptor inside its memory, every instruction's
//! operands present, in the right memory and of the shapes its operation needs.

use super::{Descriptor, Program, Space};
use crate::arap::isa::{Opcode, NONE};
use crate::{AccelError, Result};

/// Checks every descriptor and instruction before the run: operands exist, lie inside their
/// memory, and have the shapes their operation needs.
pub fn validate(program: &Program) -> Result<()> {
    let bad = |i: usize, why: String| AccelError::InvalidInstruction {
        index: i,
        instruction: program.instructions[i].to_string(),
        why,
    };
    for (d, desc) in program.descriptors.iter().enumerate() {
        let len = match desc.space {
            Space::Weights => program.weights.len(),
            Space::Activations => program.activations.len(),
        };
        let last = if desc.rows == 0 || desc.cols == 0 {
            0
        } else {
            desc.base + (desc.rows - 1) * desc.stride + desc.cols
        };
        if last > len || desc.cols > desc.stride && desc.rows > 1 {
            return Err(AccelError::InvalidDescriptor {
                index: d,
                descriptor: format!("{desc:?}"),
                words: len,
            });
        }
    }
    for (i, ins) in program.instructions.iter().enumerate() {
        if ins.op.is_handshake() || ins.op == Opcode::Nop {
            continue;
        }
        let get = |field: u16, what: &str| -> Result<Option<Descriptor>> {
            if field == NONE {
                return Ok(None);
            }
            program
                .descriptors
                .get(field as usize)
                .copied()
                .map(Some)
                .ok_or_else(|| bad(i, format!("{what} d{field} is not a descriptor")))
        };
        let (a, b, c) = (get(ins.a, "a")?, get(ins.b, "b")?, get(ins.c, "c")?);
        let a = a.ok_or_else(|| bad(i, "needs operand a".into()))?;
        let c = c.ok_or_else(|| bad(i, "needs a target c".into()))?;
        if c.space != Space::Activations {
            return Err(bad(i, "writes into the read-only weights".into()));
        }
        let need_b = !matches!(
            ins.op,
            Opcode::Gelu | Opcode::Relu | Opcode::Copy | Opcode::Softmax
        );
        if need_b && b.is_none() {
            return Err(bad(i, "needs operand b".into()));
        }
        let expected = match (ins.op, b) {
            (Opcode::Matmul, Some(b)) if b.rows == a.cols => (a.rows, b.cols),
            (Opcode::MatmulBt, Some(b)) if b.cols == a.cols => (a.rows, b.rows),
            (Opcode::Add, Some(b)) if b.cols == a.cols && (b.rows == a.rows || b.rows == 1) => {
                (a.rows, a.cols)
            }
            (Opcode::MulC, Some(b)) if b.rows * b.cols >= 1 => (a.rows, a.cols),
            (Opcode::SoftmaxMv, Some(b)) if b.rows == a.cols => (a.rows, b.cols),
            (Opcode::Softmax, Some(b)) if b.rows == 1 && b.cols == a.cols => (a.rows, a.cols),
            (Opcode::LayerNorm, Some(b)) if b.rows == 2 && b.cols == a.cols => (a.rows, a.cols),
            (Opcode::Softmax | Opcode::Gelu | Opcode::Relu | Opcode::Copy, None) => {
                (a.rows, a.cols)
            }
            (op, b) => {
                return Err(bad(
                    i,
                    format!(
                        "shapes do not fit {}: a {}x{}, b {:?}",
                        op.mnemonic(),
                        a.rows,
                        a.cols,
                        b.map(|b| (b.rows, b.cols))
                    ),
                ))
            }
        };
        if (c.rows, c.cols) != expected {
            return Err(bad(
                i,
                format!(
                    "target is {}x{}, the result {}x{}",
                    c.rows, c.cols, expected.0, expected.1
                ),
            ));
        }
    }
    Ok(())
}
