//! The ARAP machine: a global buffer, descriptors, the global controller issuing one 44-bit
//! instruction per cycle into four PE groups' queues, and the PE groups running them.
//!
//! Time advances cycle by cycle; cycles in which nothing can change (every PEG busy or
//! blocked, nothing to issue) are skipped in one step and still counted. An operation reads
//! its operands when it starts and writes its result when it ends; every activation word
//! carries the cycle it became valid and the instruction that wrote it, so reading a word
//! that is still being produced (or overwriting one still being read) is caught as a hazard.

use std::collections::VecDeque;

use edgerun_tensor::fixed::FixedPoint;
use serde::Serialize;

use super::bound;
use super::isa::{Instruction, Opcode, Peg, NONE};
use super::ops::{cycles, execute, Operand};
use crate::{AccelError, Result};

/// Instructions a PEG can hold ahead of the one it runs.
pub const QUEUE_DEPTH: usize = 4;
/// Cycles to reconfigure a PEG for a different operation.
pub const RECONFIGURE_CYCLES: u64 = 2;

/// Which memory a descriptor points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Space {
    /// Weights and constants, written by the host before the run, read-only.
    Weights,
    /// Activations: read and written by the PEGs.
    Activations,
}

/// A matrix in the global buffer: `rows x cols`, row `r` starting at `base + r * stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub space: Space,
    pub base: usize,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Descriptor {
    fn words(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows)
            .flat_map(move |r| (0..self.cols).map(move |c| self.base + r * self.stride + c))
    }
}

/// A loaded program: descriptors, the two memory images, the instruction stream.
#[derive(Clone, Debug)]
pub struct Program {
    pub descriptors: Vec<Descriptor>,
    pub weights: Vec<i16>,
    /// Error bound of every weight (quantisation of the host's values).
    pub weight_error: f64,
    pub activations: Vec<i16>,
    /// Activation words the host wrote before the run, with each word's error bound.
    pub inputs: Vec<(Descriptor, Vec<f64>)>,
    pub instructions: Vec<Instruction>,
}

/// What one instruction did, for the trace and its checker.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub index: usize,
    pub peg: u8,
    pub op: &'static str,
    pub issued: u64,
    pub start: u64,
    pub end: u64,
    pub reconfigure_cycles: u64,
    /// Instructions whose results this one read (deduplicated).
    pub reads_from: Vec<usize>,
    /// For a `wait`: the `signal` it consumed.
    pub consumed_signal: Option<usize>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PegStats {
    pub name: String,
    pub busy_cycles: u64,
    pub reconfigure_cycles: u64,
    pub handshake_stall_cycles: u64,
    pub instructions: u64,
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub cycles: u64,
    pub pegs: Vec<PegStats>,
    /// Cycles the controller could not issue because the target PEG's queue was full.
    pub issue_stall_cycles: u64,
    pub records: Vec<Record>,
    pub activations: Vec<i16>,
    /// Sub-Gaussian scale of each activation word's error (real units); times
    /// [`super::bound::LAMBDA`] it is the bound (see [`super::bound`]).
    pub activation_error: Vec<f64>,
    /// The shift-and-add softmax against the exact softmax of the same scores, over every
    /// probability the run computed: largest and mean absolute difference.
    pub softmax_max_abs_error: f64,
    pub softmax_mean_abs_error: f64,
}

struct Running {
    index: usize,
    end: u64,
    target: Descriptor,
    values: Vec<i16>,
    error: Vec<f64>,
}

#[derive(Default)]
struct PegState {
    queue: VecDeque<usize>,
    running: Option<Running>,
    last_op: Option<Opcode>,
    stats: PegStats,
}

const HOST: u32 = u32::MAX;
/// `valid_at` of a word an operation in flight will write.
const PENDING: u64 = u64::MAX - 1;

/// Checks every descriptor and instruction before the run: operands exist, lie inside their
/// memory, and have the shapes their operation needs.
pub fn validate(program: &Program) -> Result<()> {
    let bad = |i: usize, why: String| {
        AccelError::Config(format!(
            "instruction {i} ({}): {why}",
            program.instructions[i]
        ))
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
            return Err(AccelError::Config(format!(
                "descriptor d{d} {desc:?} leaves its memory of {len} words"
            )));
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

/// Runs `program` to completion.
pub fn run(program: &Program, fp: &FixedPoint) -> Result<RunResult> {
    validate(program)?;
    let words = program.activations.len();
    let mut memory = program.activations.clone();
    let mut valid_at = vec![u64::MAX; words];
    let mut writer = vec![HOST; words];
    let mut read_until = vec![0u64; words];
    let mut word_error = vec![0f64; words];
    for (desc, errors) in &program.inputs {
        for (w, e) in desc.words().zip(errors) {
            valid_at[w] = 0;
            word_error[w] = *e;
        }
    }
    let mut pegs: Vec<PegState> = Peg::ALL
        .iter()
        .map(|p| PegState {
            stats: PegStats {
                name: p.name(),
                ..PegStats::default()
            },
            ..PegState::default()
        })
        .collect();
    let mut semaphores: Vec<VecDeque<usize>> = vec![VecDeque::new(); 4096];
    let mut records: Vec<Option<Record>> = vec![None; program.instructions.len()];
    let mut issued_at = vec![0u64; program.instructions.len()];
    let mut pc = 0;
    let mut cycle = 0u64;
    let mut issue_stalls = 0u64;
    let (mut softmax_max, mut softmax_sum, mut softmax_count) = (0.0f64, 0.0, 0usize);

    loop {
        let mut changed = false;
        // Completions first: a result written at the end of cycle t is readable at t.
        for peg in pegs.iter_mut() {
            if peg.running.as_ref().is_some_and(|r| r.end <= cycle) {
                let done = peg.running.take().expect("checked");
                for ((w, v), e) in done.target.words().zip(&done.values).zip(&done.error) {
                    memory[w] = *v;
                    valid_at[w] = done.end;
                    writer[w] = done.index as u32;
                    word_error[w] = *e;
                }
                changed = true;
            }
        }
        // The controller issues one instruction per cycle, in program order.
        if pc < program.instructions.len() {
            let ins = program.instructions[pc];
            let peg = &mut pegs[ins.peg.0 as usize];
            if peg.queue.len() < QUEUE_DEPTH {
                peg.queue.push_back(pc);
                issued_at[pc] = cycle;
                pc += 1;
                changed = true;
            } else {
                issue_stalls += 1;
            }
        }
        // Each idle PEG starts its next instruction.
        for (p, peg) in pegs.iter_mut().enumerate() {
            if peg.running.is_some() {
                peg.stats.busy_cycles += 1;
                continue;
            }
            let Some(&index) = peg.queue.front() else {
                continue;
            };
            let ins = program.instructions[index];
            let mut record = Record {
                index,
                peg: p as u8,
                op: ins.op.mnemonic(),
                issued: issued_at[index],
                start: cycle,
                end: cycle + 1,
                reconfigure_cycles: 0,
                reads_from: Vec::new(),
                consumed_signal: None,
            };
            match ins.op {
                Opcode::Wait => {
                    match semaphores[ins.a as usize].pop_front() {
                        Some(signal) => {
                            record.consumed_signal = Some(signal);
                            peg.queue.pop_front();
                            peg.stats.instructions += 1;
                            records[index] = Some(record);
                            changed = true;
                        }
                        None => peg.stats.handshake_stall_cycles += 1,
                    }
                    continue;
                }
                Opcode::Signal | Opcode::Nop => {
                    if ins.op == Opcode::Signal {
                        semaphores[ins.a as usize].push_back(index);
                    }
                    peg.queue.pop_front();
                    peg.stats.instructions += 1;
                    peg.stats.busy_cycles += 1;
                    records[index] = Some(record);
                    changed = true;
                    continue;
                }
                _ => {}
            }
            peg.queue.pop_front();
            let desc = |field: u16| (field != NONE).then(|| program.descriptors[field as usize]);
            let (a, b, c) = (
                desc(ins.a).expect("validated"),
                desc(ins.b),
                desc(ins.c).expect("validated"),
            );
            let mut sources = Vec::new();
            let mut read_words = Vec::new();
            let mut read = |d: Descriptor| -> Result<Operand> {
                let values: Vec<i16> = match d.space {
                    Space::Weights => d.words().map(|w| program.weights[w]).collect(),
                    Space::Activations => d.words().map(|w| memory[w]).collect(),
                };
                let mut error = vec![
                    if d.space == Space::Weights {
                        program.weight_error
                    } else {
                        0.0
                    };
                    d.rows * d.cols
                ];
                if d.space == Space::Activations {
                    for (n, w) in d.words().enumerate() {
                        if valid_at[w] > cycle {
                            return Err(AccelError::Config(format!(
                                "hazard: instruction {index} ({ins}) reads word {w} at cycle {cycle} before it is valid{}",
                                if writer[w] == HOST { String::new() } else { format!(" (written by instruction {})", writer[w]) }
                            )));
                        }
                        if writer[w] != HOST {
                            sources.push(writer[w] as usize);
                        }
                        read_words.push(w);
                        error[n] = word_error[w];
                    }
                }
                Ok(Operand {
                    rows: d.rows,
                    cols: d.cols,
                    values,
                    error,
                })
            };
            let a_op = read(a)?;
            let b_op = b.map(&mut read).transpose()?;
            let reconfigure = if peg.last_op == Some(ins.op) {
                0
            } else {
                RECONFIGURE_CYCLES
            };
            let busy = cycles(
                ins.op,
                (a.rows, a.cols),
                b.map_or((0, 0), |b| (b.rows, b.cols)),
            );
            let end = cycle + reconfigure + busy;
            // An operation may write what it reads (elementwise, in place); others may not.
            for w in c.words() {
                if read_until[w] > cycle || valid_at[w] == PENDING {
                    return Err(AccelError::Config(format!(
                        "hazard: instruction {index} ({ins}) overwrites word {w} at cycle {cycle} while another instruction still uses it"
                    )));
                }
            }
            for &w in &read_words {
                read_until[w] = read_until[w].max(end);
            }
            for w in c.words() {
                valid_at[w] = PENDING;
            }
            let produced = execute(ins.op, fp, &a_op, b_op.as_ref());
            // Past 1e30 a first-order scale says nothing; capping keeps it finite (and NaN out).
            let error: Vec<f64> = bound::propagate(ins.op, fp, &a_op, b_op.as_ref(), &produced)
                .into_iter()
                .map(|e| e.min(1e30))
                .collect();
            if matches!(ins.op, Opcode::Softmax | Opcode::SoftmaxMv) {
                let (max, sum, count) = bound::softmax_deviation(fp, &a_op);
                softmax_max = softmax_max.max(max);
                softmax_sum += sum;
                softmax_count += count;
            }
            sources.sort_unstable();
            sources.dedup();
            record.reads_from = sources;
            record.end = end;
            record.reconfigure_cycles = reconfigure;
            records[index] = Some(record);
            peg.last_op = Some(ins.op);
            peg.stats.instructions += 1;
            peg.stats.reconfigure_cycles += reconfigure;
            peg.stats.busy_cycles += 1;
            peg.running = Some(Running {
                index,
                end,
                target: c,
                values: produced.values,
                error,
            });
            changed = true;
        }
        let finished = pc == program.instructions.len()
            && pegs
                .iter()
                .all(|p| p.running.is_none() && p.queue.is_empty());
        if finished {
            break;
        }
        if !changed {
            // Nothing can happen before the next completion: jump there.
            let Some(next) = pegs
                .iter()
                .filter_map(|p| p.running.as_ref().map(|r| r.end))
                .min()
            else {
                return Err(AccelError::Config(format!(
                    "deadlock at cycle {cycle}: every PEG waits on a semaphore nobody will signal"
                )));
            };
            let skipped = next.saturating_sub(cycle + 1);
            for peg in pegs.iter_mut() {
                if peg.running.is_some() {
                    peg.stats.busy_cycles += skipped;
                } else if !peg.queue.is_empty() {
                    peg.stats.handshake_stall_cycles += skipped;
                }
            }
            if pc < program.instructions.len() {
                issue_stalls += skipped;
            }
            cycle = next;
            continue;
        }
        cycle += 1;
    }
    let total = cycle.max(1);
    let stats = pegs
        .into_iter()
        .map(|p| PegStats {
            utilization: p.stats.busy_cycles as f64 / total as f64,
            ..p.stats
        })
        .collect();
    Ok(RunResult {
        cycles: cycle,
        pegs: stats,
        issue_stall_cycles: issue_stalls,
        records: records.into_iter().flatten().collect(),
        activations: memory,
        activation_error: word_error,
        softmax_max_abs_error: softmax_max,
        softmax_mean_abs_error: softmax_sum / softmax_count.max(1) as f64,
    })
}
