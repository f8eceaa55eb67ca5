//! The controller's choices: a CPU level, a memory level, and an offload (where to split, how
//! the boundary travels and, for a head beyond the memory budget, how it streams). The
//! offloads are the splits `0..=stages` with, between the first and last stage, every
//! compression whose least cosine reaches the floor asked for: a split at 0 sends the inputs
//! as they are, a split at `stages` sends nothing. Under a budget, a split whose head (its
//! units and the activation reserve) does not fit streams: it is offered once per PipeLoad
//! shape (loaders and read-ahead depth) if its largest unit fits beside the reserve, and not
//! at all otherwise. That is the survey's one loop over memory, frequency and offloading.

/// The most actions a space may hold: the environment tabulates every action's board phase,
/// and the network scores `offloads * (1 + levels)` outputs.
pub const MAX_ACTIONS: usize = 2_000_000;
/// The most stages a streamed model may have: each streamed action is one simulation of
/// PipeLoad, quadratic in the stages.
pub const MAX_STREAMED_STAGES: usize = 512;

use crate::board::Board;
use crate::calibrate::Calibration;
use crate::{DvfoError, Result};

/// Where the model is cut and how the boundary travels (`compression` indexes the
/// calibration's list; 0 is `none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Offload {
    pub split: usize,
    pub compression: usize,
    /// How the head streams (an index into [`Budget::plans`]); `None`: it is resident.
    pub plan: Option<usize>,
}

/// A PipeLoad shape: loading agents and units read ahead of the one computing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoadPlan {
    pub loaders: usize,
    /// `None`: as far ahead as the budget allows.
    pub depth: Option<usize>,
}

impl std::fmt::Display for LoadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.loaders == 1 { "" } else { "s" };
        write!(f, "{} loader{plural}", self.loaders)?;
        match self.depth {
            Some(d) => write!(f, ", depth {d}"),
            None => Ok(()),
        }
    }
}

/// The memory budget a head must fit in, and the PipeLoad shapes offered when it does not.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub bytes: u64,
    pub plans: Vec<LoadPlan>,
}

impl Budget {
    /// `bytes` with loaders 1 to `max_loaders` at depths 1, 2 and unbounded.
    pub fn new(bytes: u64, max_loaders: usize) -> Self {
        let plans = (1..=max_loaders.max(1))
            .flat_map(|loaders| {
                [Some(1), Some(2), None]
                    .into_iter()
                    .map(move |depth| LoadPlan { loaders, depth })
            })
            .collect();
        Self { bytes, plans }
    }
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
    /// The budget heads are held to, if any, with its shapes.
    pub budget: Option<Budget>,
}

impl ActionSpace {
    /// Every level and offload, the model resident in memory.
    pub fn new(board: &Board, calibration: &Calibration, min_cosine: f64) -> Result<Self> {
        Self::with_budget(board, calibration, min_cosine, None)
    }

    /// The same with heads held to `budget`: a head that does not fit is offered once per
    /// shape of the budget where its largest unit fits beside the reserve.
    pub fn with_budget(
        board: &Board,
        calibration: &Calibration,
        min_cosine: f64,
        budget: Option<Budget>,
    ) -> Result<Self> {
        if !(min_cosine.is_finite() && min_cosine <= 1.0) {
            return Err(DvfoError::invalid(format!(
                "the cosine floor {min_cosine} is not a number at most 1"
            )));
        }
        let stages = calibration.stages.len();
        if budget.is_some() && stages > MAX_STREAMED_STAGES {
            return Err(DvfoError::invalid(format!(
                "a budget streams models of at most {MAX_STREAMED_STAGES} stages; this one has {stages}"
            )));
        }
        let streamed = match &budget {
            Some(b) => Some(HeadBytes::new(board, calibration, b)?),
            None => None,
        };
        let mut offloads = vec![Offload {
            split: 0,
            compression: 0,
            plan: None,
        }];
        let mut add = |split: usize, compression: usize| match &streamed {
            Some(heads) if !heads.fits(split) => {
                if heads.streams(split) {
                    let plans = budget.as_ref().map_or(0, |b| b.plans.len());
                    offloads.extend((0..plans).map(|p| Offload {
                        split,
                        compression,
                        plan: Some(p),
                    }));
                }
            }
            _ => offloads.push(Offload {
                split,
                compression,
                plan: None,
            }),
        };
        for split in 1..stages {
            for compression in 0..calibration.compressions.len() {
                if calibration.boundary(split, compression).cosine >= min_cosine {
                    add(split, compression);
                }
            }
        }
        add(stages, 0);
        if offloads.last().is_none_or(|o| o.split != stages) {
            let heads = streamed
                .as_ref()
                .expect("only a budget drops the edge-only offload");
            return Err(DvfoError::invalid(format!(
                "a budget of {} bytes cannot hold the largest unit ({} bytes) beside the \
                 activation reserve ({} bytes)",
                heads.budget, heads.largest, heads.reserve
            )));
        }
        let space = Self {
            cpu_levels: board.cpu.levels.len(),
            memory_levels: board.memory.levels.len(),
            offloads,
            stages,
            budget,
        };
        if space.len() > MAX_ACTIONS {
            return Err(DvfoError::invalid(format!(
                "{} actions ({} CPU x {} memory levels x {} offloads) are more than the {MAX_ACTIONS} \
                 this controller takes: offer fewer compressions, loaders or levels",
                space.len(),
                space.cpu_levels,
                space.memory_levels,
                space.offloads.len()
            )));
        }
        Ok(space)
    }

    /// The PipeLoad shape of `offload`, if its head streams.
    pub fn plan(&self, offload: usize) -> Option<LoadPlan> {
        let plan = self.offloads[offload].plan?;
        self.budget.as_ref().map(|b| b.plans[plan])
    }

    /// Every offload splitting at `split` with `compression`: one, or one per shape.
    pub fn variants(&self, split: usize, compression: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.offloads.len()).filter(move |&i| {
            let o = self.offloads[i];
            o.split == split && o.compression == compression
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

    /// The offload that sends the inputs.
    pub fn cloud_only(&self) -> usize {
        0
    }

    /// A one-line description, for reports and policy files.
    pub fn describe(&self, calibration: &Calibration, action: Action) -> String {
        let o = self.offloads[action.offload];
        let mut how = if o.split == 0 || o.split == self.stages {
            String::new()
        } else {
            format!(" {}", calibration.compressions[o.compression])
        };
        if let Some(plan) = self.plan(action.offload) {
            how.push_str(&format!(" streamed ({plan})"));
        }
        format!(
            "cpu {} mem {} split {}/{}{how}",
            action.cpu, action.memory, o.split, self.stages
        )
    }
}

/// What heads of a model hold under a budget: a split's units plus the reserve.
struct HeadBytes {
    budget: u64,
    reserve: u64,
    /// Resident bytes of units `0..k`, for every `k` (`prefix[0]` = 0).
    prefix: Vec<u64>,
    /// The largest unit of `0..k`, for every `k`.
    largest_upto: Vec<u64>,
    largest: u64,
}

impl HeadBytes {
    fn new(board: &Board, calibration: &Calibration, budget: &Budget) -> Result<Self> {
        if board.storage.is_none() {
            return Err(DvfoError::invalid(format!(
                "board {} has no [storage] to stream a model beyond its budget from",
                board.name
            )));
        }
        if budget.plans.is_empty() {
            return Err(DvfoError::invalid(
                "a budget needs at least one PipeLoad shape",
            ));
        }
        let (units, reserve) = calibration.unit_bytes().ok_or_else(|| {
            DvfoError::invalid(
                "this calibration has no unit sizes (version 1): calibrate again for a budget",
            )
        })?;
        let mut prefix = vec![0u64];
        let mut largest_upto = vec![0u64];
        for &(resident, _) in &units {
            prefix.push(prefix.last().copied().unwrap_or(0).saturating_add(resident));
            largest_upto.push(largest_upto.last().copied().unwrap_or(0).max(resident));
        }
        Ok(Self {
            budget: budget.bytes,
            reserve,
            largest: largest_upto.last().copied().unwrap_or(0),
            prefix,
            largest_upto,
        })
    }

    /// The head `0..split` held whole.
    fn fits(&self, split: usize) -> bool {
        self.prefix[split].saturating_add(self.reserve) <= self.budget
    }

    /// The head `0..split` streamed a unit at a time.
    fn streams(&self, split: usize) -> bool {
        self.largest_upto[split].saturating_add(self.reserve) <= self.budget
    }
}
