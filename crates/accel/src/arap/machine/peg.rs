//! The global controller and the PE groups. The controller issues one instruction per cycle,
//! in program order, into the target group's queue. A group runs the instruction at the head
//! of its queue when idle: handshakes (`signal`, `wait`) take a cycle or stall, operations read
//! their operands at their start, reconfigure the group when the operation changes, and write
//! their result when they end.

use std::collections::VecDeque;

use edgerun_tensor::fixed::FixedPoint;

use super::memory::{Access, ActivationMemory};
use super::{Descriptor, PegStats, Program, Record, QUEUE_DEPTH, RECONFIGURE_CYCLES};
use crate::arap::bound;
use crate::arap::isa::{Opcode, NONE};
use crate::arap::ops::{cycles, execute};
use crate::Result;

/// Semaphores a `signal`/`wait` can name.
const SEMAPHORES: usize = 4096;

/// What every group shares: the program, the arithmetic, memory, the semaphores, and what
/// the run records.
pub(super) struct Shared<'p> {
    pub program: &'p Program,
    pub fp: &'p FixedPoint,
    pub memory: ActivationMemory,
    /// Per semaphore, the `signal`s not yet consumed, oldest first.
    semaphores: Vec<VecDeque<usize>>,
    pub records: Vec<Option<Record>>,
    issued_at: Vec<u64>,
    pub softmax: SoftmaxDeviation,
}

/// The shift-and-add softmax against the exact one, over every probability computed.
#[derive(Default)]
pub(super) struct SoftmaxDeviation {
    pub max: f64,
    pub sum: f64,
    pub count: usize,
}

impl<'p> Shared<'p> {
    pub fn new(program: &'p Program, fp: &'p FixedPoint, memory: ActivationMemory) -> Self {
        let n = program.instructions.len();
        Self {
            program,
            fp,
            memory,
            semaphores: vec![VecDeque::new(); SEMAPHORES],
            records: vec![None; n],
            issued_at: vec![0; n],
            softmax: SoftmaxDeviation::default(),
        }
    }
}

/// The global controller: the next instruction to issue and the cycles it could not.
#[derive(Default)]
pub(super) struct Controller {
    pc: usize,
    pub issue_stalls: u64,
}

impl Controller {
    /// Issues the next instruction if its group's queue has room; true if it did.
    pub fn issue(
        &mut self,
        program: &Program,
        pegs: &mut [PegGroup],
        cycle: u64,
        shared: &mut Shared,
    ) -> bool {
        let Some(ins) = program.instructions.get(self.pc) else {
            return false;
        };
        let peg = &mut pegs[ins.peg.0 as usize];
        if peg.queue.len() >= QUEUE_DEPTH {
            self.issue_stalls += 1;
            return false;
        }
        peg.queue.push_back(self.pc);
        shared.issued_at[self.pc] = cycle;
        self.pc += 1;
        true
    }

    pub fn done(&self, program: &Program) -> bool {
        self.pc == program.instructions.len()
    }

    /// Skipped cycles in which an instruction was left to issue count as issue stalls.
    pub fn skip(&mut self, program: &Program, cycles: u64) {
        if !self.done(program) {
            self.issue_stalls += cycles;
        }
    }
}

/// An operation in flight: what it will write, and when.
struct Running {
    index: usize,
    end: u64,
    target: Descriptor,
    values: Vec<i16>,
    error: Vec<f64>,
}

/// One 2x2 PE group: its instruction queue, the operation it runs, the operation it is
/// configured for.
pub(super) struct PegGroup {
    queue: VecDeque<usize>,
    running: Option<Running>,
    last_op: Option<Opcode>,
    stats: PegStats,
}

impl PegGroup {
    pub fn new(name: String) -> Self {
        Self {
            queue: VecDeque::new(),
            running: None,
            last_op: None,
            stats: PegStats {
                name,
                ..PegStats::default()
            },
        }
    }

    pub fn idle(&self) -> bool {
        self.running.is_none() && self.queue.is_empty()
    }

    /// The cycle the running operation ends, if one runs.
    pub fn running_until(&self) -> Option<u64> {
        self.running.as_ref().map(|r| r.end)
    }

    /// Writes back an operation that has ended by `cycle`; true if one did.
    pub fn complete(&mut self, cycle: u64, memory: &mut ActivationMemory) -> bool {
        let Some(done) = self.running.take_if(|r| r.end <= cycle) else {
            return false;
        };
        memory.commit(done.target, &done.values, &done.error, done.index, done.end);
        true
    }

    /// Counts `cycles` skipped: busy while an operation runs, stalled on a handshake while
    /// something waits in the queue.
    pub fn skip(&mut self, cycles: u64) {
        if self.running.is_some() {
            self.stats.busy_cycles += cycles;
        } else if !self.queue.is_empty() {
            self.stats.handshake_stall_cycles += cycles;
        }
    }

    /// The group's figures over a run of `total` cycles.
    pub fn stats(self, total: u64) -> PegStats {
        PegStats {
            utilization: self.stats.busy_cycles as f64 / total as f64,
            ..self.stats
        }
    }

    /// One cycle of group `p`: busy if an operation runs, else the head of the queue starts
    /// (or stalls on its semaphore). True if anything changed.
    pub fn advance(&mut self, p: usize, cycle: u64, shared: &mut Shared) -> Result<bool> {
        if self.running.is_some() {
            self.stats.busy_cycles += 1;
            return Ok(false);
        }
        let Some(&index) = self.queue.front() else {
            return Ok(false);
        };
        let ins = shared.program.instructions[index];
        let mut record = Record {
            index,
            peg: p as u8,
            op: ins.op.mnemonic(),
            issued: shared.issued_at[index],
            start: cycle,
            end: cycle + 1,
            reconfigure_cycles: 0,
            reads_from: Vec::new(),
            consumed_signal: None,
        };
        match ins.op {
            Opcode::Wait => {
                let Some(signal) = shared.semaphores[ins.a as usize].pop_front() else {
                    self.stats.handshake_stall_cycles += 1;
                    return Ok(false);
                };
                record.consumed_signal = Some(signal);
                self.queue.pop_front();
                self.stats.instructions += 1;
                shared.records[index] = Some(record);
                return Ok(true);
            }
            Opcode::Signal | Opcode::Nop => {
                if ins.op == Opcode::Signal {
                    shared.semaphores[ins.a as usize].push_back(index);
                }
                self.queue.pop_front();
                self.stats.instructions += 1;
                self.stats.busy_cycles += 1;
                shared.records[index] = Some(record);
                return Ok(true);
            }
            _ => {}
        }
        self.queue.pop_front();
        let program = shared.program;
        // Validated before the run: operations name an a and a c that exist.
        let desc = |field: u16| (field != NONE).then(|| program.descriptors[field as usize]);
        let (Some(a), b, Some(c)) = (desc(ins.a), desc(ins.b), desc(ins.c)) else {
            unreachable!("validate() requires operands a and c")
        };
        let at = Access {
            index,
            instruction: &ins,
            cycle,
        };
        let a_read = shared.memory.read(program, a, at)?;
        let b_read = b.map(|b| shared.memory.read(program, b, at)).transpose()?;
        let reconfigure = if self.last_op == Some(ins.op) {
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
        let mut words = a_read.words;
        let mut sources = a_read.sources;
        if let Some(b_read) = &b_read {
            words.extend(&b_read.words);
            sources.extend(&b_read.sources);
        }
        shared.memory.claim(c, &words, at, end)?;
        let (a_op, b_op) = (a_read.operand, b_read.map(|r| r.operand));
        let produced = execute(ins.op, shared.fp, &a_op, b_op.as_ref());
        // Past 1e30 a first-order scale says nothing; capping keeps it finite (and NaN out).
        let error: Vec<f64> = bound::propagate(ins.op, shared.fp, &a_op, b_op.as_ref(), &produced)
            .into_iter()
            .map(|e| e.min(1e30))
            .collect();
        if matches!(ins.op, Opcode::Softmax | Opcode::SoftmaxMv) {
            let (max, sum, count) = bound::softmax_deviation(shared.fp, &a_op);
            let softmax = &mut shared.softmax;
            softmax.max = softmax.max.max(max);
            softmax.sum += sum;
            softmax.count += count;
        }
        sources.sort_unstable();
        sources.dedup();
        record.reads_from = sources;
        record.end = end;
        record.reconfigure_cycles = reconfigure;
        shared.records[index] = Some(record);
        self.last_op = Some(ins.op);
        self.stats.instructions += 1;
        self.stats.reconfigure_cycles += reconfigure;
        self.stats.busy_cycles += 1;
        self.running = Some(Running {
            index,
            end,
            target: c,
            values: produced.values,
            error,
        });
        Ok(true)
    }
}
