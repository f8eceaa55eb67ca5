//! The branching Q-network (Tavakoli et al., AAAI 2018, as DVFO's action is a tuple): a shared
//! trunk, a state value, and one advantage head per action branch (CPU level, memory level,
//! offload). A branch's Q is `V(s) + A_d(s, a) - mean_a A_d(s, a)`. Branches keep the output
//! small (levels plus offloads, not their product) and give every branch a gradient on every
//! sample.

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
    /// Outputs of the three advantage heads.
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
            (branches[0], hidden),
            (branches[1], hidden),
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

    /// Q of every choice of each branch, `[batch, branch size]` each, for `x` `[batch, obs]`.
    pub fn forward(&self, x: &Tensor) -> Result<[Tensor; 3]> {
        let run = || -> candle_core::Result<[Tensor; 3]> {
            let h = self.layer(0).forward(x)?.relu()?;
            let h = self.layer(1).forward(&h)?.relu()?;
            let value = self.layer(2).forward(&h)?;
            let q = |i: usize| -> candle_core::Result<Tensor> {
                let a = self.layer(i).forward(&h)?;
                let centred = a.broadcast_sub(&a.mean_keepdim(D::Minus1)?)?;
                centred.broadcast_add(&value)
            };
            Ok([q(3)?, q(4)?, q(5)?])
        };
        run().map_err(net)
    }

    /// The greedy choice of each branch for one observation.
    pub fn greedy(&self, observation: &[f32]) -> Result<[usize; 3]> {
        let x = Tensor::from_slice(observation, (1, observation.len()), &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(net)?;
        let q = self.forward(&x)?;
        let mut out = [0; 3];
        for (slot, q) in out.iter_mut().zip(q.iter()) {
            let row: Vec<f32> = q.squeeze(0).and_then(|t| t.to_vec1()).map_err(net)?;
            *slot = argmax(&row);
        }
        Ok(out)
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
