//! The branching Q-network (after Tavakoli et al., AAAI 2018, as DVFO's action is a tuple): a
//! shared trunk, a state value `V`, and advantage heads. The offload head scores every
//! offload; the CPU and memory heads score every level *for each offload*, because the best
//! levels depend on how much of the model stays on the board (none of it when everything is
//! sent). A joint action's Q is the sum `V(s) + A_o(s, o) + A_c(s, o, c) + A_m(s, o, m)`, each
//! advantage centred within its row, so one target per sample trains every head it touches
//! and no head regresses on another's estimate: a target built from a max over noisy level
//! heads would overvalue the offloads seen least. The output is
//! `offloads * (1 + cpu levels + memory levels)` wide, not their product.

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::Linear;
use rand::{Rng, SeedableRng};

use crate::{DvfoError, Result};

pub(crate) fn net(e: candle_core::Error) -> DvfoError {
    DvfoError::Network(e.to_string())
}

/// The layers by name, in the order of the policy file.
pub const LAYERS: [&str; 6] = ["trunk.0", "trunk.1", "value", "cpu", "memory", "offload"];

pub struct Network {
    /// `(weight [out, in], bias [out])` per layer of [`LAYERS`].
    pub vars: Vec<(Var, Var)>,
    pub observation: usize,
    pub hidden: usize,
    /// CPU levels, memory levels, offloads.
    pub branches: [usize; 3],
}

impl Network {
    /// Fresh weights, uniform in `±1/sqrt(fan_in)` (PyTorch's default for Linear), from `seed`.
    pub fn new(observation: usize, hidden: usize, branches: [usize; 3], seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let vars = Self::shapes(observation, hidden, branches)
            .into_iter()
            .map(|(out, inp)| {
                let bound = 1.0 / (inp as f32).sqrt();
                let mut draw = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                };
                let w = Var::from_vec(draw(out * inp), (out, inp), &Device::Cpu).map_err(net)?;
                let b = Var::from_vec(draw(out), out, &Device::Cpu).map_err(net)?;
                Ok((w, b))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            observation,
            hidden,
            branches,
        })
    }

    /// `(out, in)` of each layer of [`LAYERS`].
    pub fn shapes(observation: usize, hidden: usize, branches: [usize; 3]) -> Vec<(usize, usize)> {
        vec![
            (hidden, observation),
            (hidden, hidden),
            (1, hidden),
            (branches[2] * branches[0], hidden),
            (branches[2] * branches[1], hidden),
            (branches[2], hidden),
        ]
    }

    /// A network with these weights (shapes checked by the caller).
    pub fn from_values(
        observation: usize,
        hidden: usize,
        branches: [usize; 3],
        values: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self> {
        let shapes = Self::shapes(observation, hidden, branches);
        let vars = shapes
            .into_iter()
            .zip(values)
            .map(|((out, inp), (w, b))| {
                Ok((
                    Var::from_vec(w, (out, inp), &Device::Cpu).map_err(net)?,
                    Var::from_vec(b, out, &Device::Cpu).map_err(net)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            observation,
            hidden,
            branches,
        })
    }

    pub fn all_vars(&self) -> Vec<Var> {
        self.vars
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// Copies `other`'s weights into this network (the target network's sync).
    pub fn copy_from(&self, other: &Network) -> Result<()> {
        for ((w, b), (ow, ob)) in self.vars.iter().zip(&other.vars) {
            w.set(&ow.as_tensor().detach()).map_err(net)?;
            b.set(&ob.as_tensor().detach()).map_err(net)?;
        }
        Ok(())
    }

    /// Weights as flat f32, per layer.
    pub fn values(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.vars
            .iter()
            .map(|(w, b)| {
                Ok((
                    w.as_tensor()
                        .flatten_all()
                        .and_then(|t| t.to_vec1())
                        .map_err(net)?,
                    b.as_tensor().to_vec1().map_err(net)?,
                ))
            })
            .collect()
    }

    fn layer(&self, i: usize) -> Linear {
        let (w, b) = &self.vars[i];
        Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
    }

    /// Trunk features and state value, for `x` `[batch, obs]`.
    fn trunk(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let h = self.layer(0).forward(x)?.relu()?;
        let h = self.layer(1).forward(&h)?.relu()?;
        let value = self.layer(2).forward(&h)?;
        Ok((h, value))
    }

    /// `A - mean A` over the last dimension.
    fn centred(advantage: &Tensor) -> candle_core::Result<Tensor> {
        advantage.broadcast_sub(&advantage.mean_keepdim(D::Minus1)?)
    }

    /// Every head for `x` `[batch, obs]`, advantages centred within their rows.
    fn heads(&self, x: &Tensor) -> Result<Heads> {
        let run = || -> candle_core::Result<Heads> {
            let (h, value) = self.trunk(x)?;
            let batch = x.dim(0)?;
            let [cpu_levels, memory_levels, offloads] = self.branches;
            let levels = |layer: usize, n: usize| -> candle_core::Result<Tensor> {
                Self::centred(
                    &self
                        .layer(layer)
                        .forward(&h)?
                        .reshape((batch, offloads, n))?,
                )
            };
            Ok(Heads {
                value,
                offload: Self::centred(&self.layer(5).forward(&h)?)?,
                cpu: levels(3, cpu_levels)?,
                memory: levels(4, memory_levels)?,
            })
        };
        run().map_err(net)
    }

    /// Q of every offload taken at its best levels, `[batch, offloads]`.
    pub fn best_per_offload(&self, x: &Tensor) -> Result<Tensor> {
        Self::best_of(&self.heads(x)?)
    }

    fn best_of(heads: &Heads) -> Result<Tensor> {
        let run = || -> candle_core::Result<Tensor> {
            (&heads.offload + heads.cpu.max(D::Minus1)?)?
                .add(&heads.memory.max(D::Minus1)?)?
                .broadcast_add(&heads.value)
        };
        run().map_err(net)
    }

    /// Q of each joint action (CPU level, memory level, offload), `[batch]`.
    pub fn q(&self, x: &Tensor, actions: &[[u32; 3]]) -> Result<Tensor> {
        let heads = self.heads(x)?;
        let run = || -> candle_core::Result<Tensor> {
            let batch = actions.len();
            let dev = x.device();
            let column = |branch: usize| -> candle_core::Result<Tensor> {
                let taken: Vec<u32> = actions.iter().map(|a| a[branch]).collect();
                Tensor::from_vec(taken, (batch, 1), dev)
            };
            let offload = column(2)?;
            // The taken offload's row of a level head, then the taken level in it.
            let level = |all: &Tensor, taken: Tensor| -> candle_core::Result<Tensor> {
                let n = all.dim(2)?;
                let index = offload
                    .reshape((batch, 1, 1))?
                    .broadcast_as((batch, 1, n))?
                    .contiguous()?;
                all.gather(&index, 1)?
                    .squeeze(1)?
                    .gather(&taken, 1)?
                    .squeeze(1)
            };
            let sum =
                (heads.offload.gather(&offload, 1)?.squeeze(1)? + level(&heads.cpu, column(0)?)?)?;
            (sum + level(&heads.memory, column(1)?)?)? + heads.value.squeeze(1)?
        };
        run().map_err(net)
    }

    /// The greedy action for one observation: the offload whose best levels score highest,
    /// with those levels.
    pub fn greedy(&self, observation: &[f32]) -> Result<[usize; 3]> {
        let x = Tensor::from_slice(observation, (1, observation.len()), &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(net)?;
        let heads = self.heads(&x)?;
        let offload = argmax(&row(&Self::best_of(&heads)?)?);
        let level = |all: &Tensor| -> Result<usize> {
            let values = all.get(0).and_then(|t| t.get(offload)).map_err(net)?;
            Ok(argmax(&values.to_vec1::<f32>().map_err(net)?))
        };
        Ok([level(&heads.cpu)?, level(&heads.memory)?, offload])
    }
}

/// The heads' outputs for a batch: the state value `[batch, 1]`, the offload advantages
/// `[batch, offloads]`, and per offload the CPU and memory advantages
/// `[batch, offloads, levels]`.
struct Heads {
    value: Tensor,
    offload: Tensor,
    cpu: Tensor,
    memory: Tensor,
}

fn row(q: &Tensor) -> Result<Vec<f32>> {
    q.squeeze(0).and_then(|t| t.to_vec1()).map_err(net)
}

/// The first index of the largest value (NaN never wins).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}
