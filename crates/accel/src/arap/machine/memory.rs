//! The activation memory: every word's value, the cycle it became valid, the instruction
//! that wrote it, the last cycle an operation in flight reads it, and its error scale. These
//! per-word records turn a read of an unfinished result, or an overwrite of a word still being
//! read, into a [`AccelError::Hazard`].

use super::{Descriptor, Program, Space};
use crate::arap::ops::Operand;
use crate::{AccelError, HazardKind, Result};

/// `writer` of a word the host wrote.
const HOST: u32 = u32::MAX;
/// `valid_at` of a word an operation in flight will write.
const PENDING: u64 = u64::MAX - 1;

pub(super) struct ActivationMemory {
    values: Vec<i16>,
    valid_at: Vec<u64>,
    writer: Vec<u32>,
    read_until: Vec<u64>,
    error: Vec<f64>,
}

/// One operand as read at an operation's start.
pub(super) struct Read {
    pub operand: Operand,
    /// Instructions whose results it read.
    pub sources: Vec<usize>,
    /// Activation words it read.
    pub words: Vec<usize>,
}

/// Who accesses memory, and when (for hazard reports).
#[derive(Clone, Copy)]
pub(super) struct Access<'a> {
    pub index: usize,
    pub instruction: &'a dyn std::fmt::Display,
    pub cycle: u64,
}

impl Access<'_> {
    fn hazard(&self, kind: HazardKind, word: usize, writer: Option<usize>) -> AccelError {
        AccelError::Hazard {
            kind,
            index: self.index,
            instruction: self.instruction.to_string(),
            word,
            cycle: self.cycle,
            writer,
        }
    }
}

impl ActivationMemory {
    /// The program's activation image, with the host's inputs valid from cycle 0.
    pub fn new(program: &Program) -> Self {
        let words = program.activations.len();
        let mut memory = Self {
            values: program.activations.clone(),
            valid_at: vec![u64::MAX; words],
            writer: vec![HOST; words],
            read_until: vec![0; words],
            error: vec![0.0; words],
        };
        for (desc, errors) in &program.inputs {
            for (w, e) in desc.words().zip(errors) {
                memory.valid_at[w] = 0;
                memory.error[w] = *e;
            }
        }
        memory
    }

    /// Reads `d` (weights or activations) at `at.cycle`; an activation word not yet valid is
    /// a hazard.
    pub fn read(&self, program: &Program, d: Descriptor, at: Access) -> Result<Read> {
        let mut read = Read {
            operand: Operand {
                rows: d.rows,
                cols: d.cols,
                values: Vec::with_capacity(d.rows * d.cols),
                error: Vec::new(),
            },
            sources: Vec::new(),
            words: Vec::new(),
        };
        if d.space == Space::Weights {
            read.operand.values = d.words().map(|w| program.weights[w]).collect();
            read.operand.error = vec![program.weight_error; d.rows * d.cols];
            return Ok(read);
        }
        read.operand.values = d.words().map(|w| self.values[w]).collect();
        read.operand.error = Vec::with_capacity(d.rows * d.cols);
        for w in d.words() {
            if self.valid_at[w] > at.cycle {
                let writer = (self.writer[w] != HOST).then_some(self.writer[w] as usize);
                return Err(at.hazard(HazardKind::ReadBeforeValid, w, writer));
            }
            if self.writer[w] != HOST {
                read.sources.push(self.writer[w] as usize);
            }
            read.words.push(w);
            read.operand.error.push(self.error[w]);
        }
        Ok(read)
    }

    /// Books an operation running from `at.cycle` to `end`: the words it read stay in use
    /// until `end`, and its target becomes pending, written by it (a read before `end` is a
    /// hazard naming it). A target word still read by, or about to
    /// be written by, another operation is a hazard. An operation may write what it reads
    /// (elementwise, in place).
    pub fn claim(
        &mut self,
        target: Descriptor,
        read: &[usize],
        at: Access,
        end: u64,
    ) -> Result<()> {
        for w in target.words() {
            if self.read_until[w] > at.cycle || self.valid_at[w] == PENDING {
                return Err(at.hazard(HazardKind::OverwriteInUse, w, None));
            }
        }
        for &w in read {
            self.read_until[w] = self.read_until[w].max(end);
        }
        for w in target.words() {
            self.valid_at[w] = PENDING;
            self.writer[w] = at.index as u32;
        }
        Ok(())
    }

    /// Writes a finished operation's result, valid from `end`.
    pub fn commit(
        &mut self,
        target: Descriptor,
        values: &[i16],
        error: &[f64],
        index: usize,
        end: u64,
    ) {
        for ((w, v), e) in target.words().zip(values).zip(error) {
            self.values[w] = *v;
            self.valid_at[w] = end;
            self.writer[w] = index as u32;
            self.error[w] = *e;
        }
    }

    /// The final values and error scales.
    pub fn into_parts(self) -> (Vec<i16>, Vec<f64>) {
        (self.values, self.error)
    }
}
