//! The branching Q-network (after Tavakoli et al., AAAI 2018, as DVFO's action is a tuple): a
//! shared trunk, a state value `V`, and advantage heads. The offload head scores every
//! offload; the CPU and memory heads score every level *for each offload*, because the best
//! levels depend on how much of the model stays on the board (none of it when everything is
//! sent). A branch's Q is `V(s) + A(s, a) - mean A(s, .)`, the levels' means taken within the
//! offload's row. The output is `offloads * (1 + cpu levels + memory levels)` wide, not their
//! product, and every branch learns from every sample.

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

    /// `V + A - mean A` over the last dimension.
    fn dueling(advantage: &Tensor, value: &Tensor) -> candle_core::Result<Tensor> {
        advantage
            .broadcast_sub(&advantage.mean_keepdim(D::Minus1)?)?
            .broadcast_add(value)
    }

    /// Q of every offload, `[batch, offloads]`.
    pub fn offload_q(&self, x: &Tensor) -> Result<Tensor> {
        let run = || {
            let (h, value) = self.trunk(x)?;
            Self::dueling(&self.layer(5).forward(&h)?, &value)
        };
        run().map_err(net)
    }

    /// Q of each branch for the given offloads (`[batch]`, u32): `[batch, cpu levels]`,
    /// `[batch, memory levels]`, `[batch, offloads]`.
    pub fn forward(&self, x: &Tensor, offloads: &Tensor) -> Result<[Tensor; 3]> {
        let run = || -> candle_core::Result<[Tensor; 3]> {
            let (h, value) = self.trunk(x)?;
            let batch = x.dim(0)?;
            let offload = Self::dueling(&self.layer(5).forward(&h)?, &value)?;
            let levels = |layer: usize, n: usize| -> candle_core::Result<Tensor> {
                let all = self
                    .layer(layer)
                    .forward(&h)?
                    .reshape((batch, self.branches[2], n))?;
                let index = offloads
                    .reshape((batch, 1, 1))?
                    .broadcast_as((batch, 1, n))?
                    .contiguous()?;
                let row = all.gather(&index, 1)?.squeeze(1)?;
                Self::dueling(&row, &value)
            };
            Ok([
                levels(3, self.branches[0])?,
                levels(4, self.branches[1])?,
                offload,
            ])
        };
        run().map_err(net)
    }

    /// The greedy action for one observation: the best offload, then its best levels.
    pub fn greedy(&self, observation: &[f32]) -> Result<[usize; 3]> {
        let x = Tensor::from_slice(observation, (1, observation.len()), &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(net)?;
        let row = |q: &Tensor| -> Result<Vec<f32>> {
            q.squeeze(0).and_then(|t| t.to_vec1()).map_err(net)
        };
        let offload = argmax(&row(&self.offload_q(&x)?)?);
        let chosen = Tensor::from_slice(&[offload as u32], 1, &Device::Cpu).map_err(net)?;
        let q = self.forward(&x, &chosen)?;
        Ok([argmax(&row(&q[0])?), argmax(&row(&q[1])?), offload])
    }
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
