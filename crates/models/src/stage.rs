//! Stage skeletons: which tensors a stage needs, and the weights bound to it for one run.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use edgerun_tensor::Tensor;

use crate::{ModelError, Result};

/// How a tensor in the checkpoint becomes the tensor a kernel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Used as stored.
    Plain,
    /// A `torch.nn.Linear` weight stored `[out, in]`, bound (and held in packed stores)
    /// packed for the GEMM as `[ceil(out / 64), in, 64]` (`kernels::pack_linear`).
    Linear,
    /// GPT-2's `Conv1D` weight, stored `[in, out]`, bound packed like [`Layout::Linear`].
    Conv1d,
    /// A `torch.nn.Conv2d` weight stored `[out, in, kh, kw]`, bound packed for the channels-last
    /// convolution as `[ceil(out / 64), kh * kw * in, 64]` (`kernels::pack_conv`).
    Conv2d,
}

/// One checkpoint tensor a stage needs, with the shape its config implies (as stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: Layout,
}

impl TensorSpec {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The shape of the bound tensor, as a packed store holds it: matrix and convolution
    /// weights packed for the GEMM, `[ceil(out / 64), in, 64]`.
    pub fn bound_shape(&self) -> Vec<usize> {
        let group = edgerun_tensor::kernels::gemm::GROUP;
        match (self.layout, self.shape.as_slice()) {
            (Layout::Linear, [out, inp]) | (Layout::Conv1d, [inp, out]) => {
                vec![out.div_ceil(group), *inp, group]
            }
            (Layout::Conv2d, &[out, inp, kh, kw]) => {
                edgerun_tensor::kernels::packed_conv_shape(&[out, inp, kh, kw])
            }
            _ => self.shape.clone(),
        }
    }
}

/// A named step of the forward pass and the tensors it reads. It owns no bytes.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// A stable id such as `encoder.layer.3`, shared by profiles, traces and tests.
    pub id: String,
    pub tensors: Vec<TensorSpec>,
}

impl StageSpec {
    pub fn parameters(&self) -> usize {
        self.tensors.iter().map(TensorSpec::elements).sum()
    }
}

/// The tensors bound to one stage for a run, keyed by checkpoint name.
#[derive(Clone, Debug, Default)]
pub struct UnitWeights {
    tensors: HashMap<String, Tensor>,
    reads: Option<ReadLog>,
}

/// The names a stage's code asked for, recorded by [`UnitWeights::recording`]: tests check it
/// equals the stage's spec, so a spec list cannot drift from what the forward reads.
#[derive(Clone, Debug, Default)]
pub struct ReadLog(Arc<Mutex<BTreeSet<String>>>);

impl ReadLog {
    pub fn names(&self) -> BTreeSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl UnitWeights {
    /// A handle on the same tensors that records every name asked for.
    pub fn recording(&self) -> (Self, ReadLog) {
        let log = ReadLog::default();
        let copy = Self {
            tensors: self.tensors.clone(),
            reads: Some(log.clone()),
        };
        (copy, log)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        if let Some(ReadLog(reads)) = &self.reads {
            reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string());
        }
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }
}
