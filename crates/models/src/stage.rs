//! Stage skeletons: which tensors a stage needs, and the weights bound to it for one run.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use edgerun_tensor::kernels::Weight;
use edgerun_tensor::quant::QuantMatrix;
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
    /// A `[rows, dim]` table read only by gathering rows (token and position embeddings),
    /// bound as stored; a quantised store holds it as the `[dim, rows]` quantised matrix (row
    /// `r` is column `r`: one scale per row, or per 32 values of it).
    Table,
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

impl TensorSpec {
    /// `(k, n)` of the product a matrix weight (Linear, Conv1D, convolution) takes part in:
    /// inputs and outputs. `None` for other tensors.
    pub fn matrix(&self) -> Option<(usize, usize)> {
        match (self.layout, self.shape.as_slice()) {
            (Layout::Linear, &[out, inp]) | (Layout::Conv1d, &[inp, out]) => Some((inp, out)),
            (Layout::Conv2d, &[out, inp, kh, kw]) => Some((kh * kw * inp, out)),
            (Layout::Table, &[rows, dim]) => Some((dim, rows)),
            _ => None,
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

/// The tensors bound to one stage for a run, keyed by checkpoint name: f32 tensors, and
/// matrix weights a quantised store holds as [`QuantMatrix`]es.
#[derive(Clone, Debug, Default)]
pub struct UnitWeights {
    tensors: HashMap<String, Tensor>,
    quantised: HashMap<String, QuantMatrix>,
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
            quantised: self.quantised.clone(),
            reads: Some(log.clone()),
        };
        (copy, log)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn insert_quantised(&mut self, name: impl Into<String>, matrix: QuantMatrix) {
        self.quantised.insert(name.into(), matrix);
    }

    fn record(&self, name: &str) {
        if let Some(ReadLog(reads)) = &self.reads {
            reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string());
        }
    }

    /// An f32 tensor. A quantised one is an error: only matrix products read those
    /// ([`UnitWeights::matrix`]).
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.record(name);
        if let Some(m) = self.quantised.get(name) {
            return Err(ModelError::QuantisedTensor {
                name: name.to_string(),
                format: m.format().to_string(),
            });
        }
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// A matrix weight (Linear, Conv1D, convolution) as bound: f32 or quantised.
    pub fn matrix(&self, name: &str) -> Result<Weight<'_>> {
        self.record(name);
        if let Some(m) = self.quantised.get(name) {
            return Ok(Weight::Quant(m));
        }
        self.tensors
            .get(name)
            .map(Weight::F32)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn len(&self) -> usize {
        self.tensors.len() + self.quantised.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 tensors.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// The quantised matrices.
    pub fn iter_quantised(&self) -> impl Iterator<Item = (&String, &QuantMatrix)> {
        self.quantised.iter()
    }
}
