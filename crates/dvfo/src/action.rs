//! The controller's choices: a CPU level, a memory level, and an offload (where to split and
//! how the boundary travels). The offloads are the splits `0..=stages` with, between the
//! first and last stage, every compression whose least cosine reaches the floor asked for: a
//! split at 0 sends the inputs as they are, a split at `stages` sends nothing.

use crate::board::Board;
use crate::calibrate::Calibration;
use crate::{DvfoError, Result};

/// Where the model is cut and how the boundary travels (`compression` indexes the
/// calibration's list; 0 is `none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Offload {
    pub split: usize,
    pub compression: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Action {
    pub cpu: usize,
    pub memory: usize,
    /// Index into [`ActionSpace::offloads`].
    pub offload: usize,
}

/// Every action, and the three branches it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionSpace {
    pub cpu_levels: usize,
    pub memory_levels: usize,
    pub offloads: Vec<Offload>,
    pub stages: usize,
}

impl ActionSpace {
    pub fn new(board: &Board, calibration: &Calibration, min_cosine: f64) -> Result<Self> {
        if !(min_cosine.is_finite() && min_cosine <= 1.0) {
            return Err(DvfoError::invalid(format!(
                "the cosine floor {min_cosine} is not a number at most 1"
            )));
        }
        let stages = calibration.stages.len();
        let mut offloads = vec![Offload {
            split: 0,
            compression: 0,
        }];
        for split in 1..stages {
            for compression in 0..calibration.compressions.len() {
                if calibration.boundary(split, compression).cosine >= min_cosine {
                    offloads.push(Offload { split, compression });
                }
            }
        }
        offloads.push(Offload {
            split: stages,
            compression: 0,
        });
        Ok(Self {
            cpu_levels: board.cpu.levels.len(),
            memory_levels: board.memory.levels.len(),
            offloads,
            stages,
        })
    }

    pub fn len(&self) -> usize {
        self.cpu_levels * self.memory_levels * self.offloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The action at `index` (CPU level slowest, offload fastest).
    pub fn action(&self, index: usize) -> Action {
        let offload = index % self.offloads.len();
        let rest = index / self.offloads.len();
        Action {
            cpu: rest / self.memory_levels,
            memory: rest % self.memory_levels,
            offload,
        }
    }

    pub fn index(&self, action: Action) -> usize {
        (action.cpu * self.memory_levels + action.memory) * self.offloads.len() + action.offload
    }

    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        (0..self.len()).map(|i| self.action(i))
    }

    /// The offload that runs everything on the board.
    pub fn edge_only(&self) -> usize {
        self.offloads.len() - 1
    }

    /// The offload that sends the inputs.
    pub fn cloud_only(&self) -> usize {
        0
    }

    /// The offload splitting at `split` without compression.
    pub fn uncompressed(&self, split: usize) -> Option<usize> {
        self.offloads
            .iter()
            .position(|o| o.split == split && o.compression == 0)
    }

    /// A one-line description, for reports and policy files.
    pub fn describe(&self, calibration: &Calibration, action: Action) -> String {
        let o = self.offloads[action.offload];
        let how = if o.split == 0 || o.split == self.stages {
            String::new()
        } else {
            format!(" {}", calibration.compressions[o.compression])
        };
        format!(
            "cpu {} mem {} split {}/{}{how}",
            action.cpu, action.memory, o.split, self.stages
        )
    }
}
