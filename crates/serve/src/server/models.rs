//! The models a server holds and the names it answers to: `NAME` runs a whole model, and
//! `NAME/from/K` runs stages `K..` of it from a boundary (a split's tail). A session opened
//! on a tail only (`part` `K0..n`) answers `NAME/from/K` for `K >= K0` only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgerun_models::{Model, ModelKind};
use edgerun_runtime::{Outputs, Session};
use edgerun_tensor::Tensor;

use crate::boundary::{boundary_from_wire, inputs_from_wire};
use crate::protocol::{InferRequest, ModelMetadata, TensorMetadata};
use crate::{Result, ServeError};

/// A session served under a name.
pub struct ServedModel {
    pub name: String,
    pub session: Arc<Session>,
    pub counters: Counters,
}

/// What a model has served (the statistics extension).
#[derive(Default)]
pub struct Counters {
    pub success: AtomicU64,
    pub success_ns: AtomicU64,
    pub fail: AtomicU64,
    pub fail_ns: AtomicU64,
}

impl Counters {
    pub fn record(&self, ok: bool, ns: u64) {
        let (count, total) = if ok {
            (&self.success, &self.success_ns)
        } else {
            (&self.fail, &self.fail_ns)
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(ns, Ordering::Relaxed);
    }
}

/// A served model and the stage a request to it starts from.
pub struct Route<'m> {
    pub model: &'m ServedModel,
    pub from: usize,
}

/// Finds `name` (`NAME` or `NAME/from/K`) among `models`.
pub fn route<'m>(models: &'m [ServedModel], name: &str) -> Result<Route<'m>> {
    let (base, from) = match name.split_once("/from/") {
        Some((base, k)) => {
            let k = k.parse::<usize>().map_err(|_| {
                ServeError::NotFound(format!("{name}: the stage after /from/ is not a number"))
            })?;
            (base, Some(k))
        }
        None => (name, None),
    };
    let model = models
        .iter()
        .find(|m| m.name == base)
        .ok_or_else(|| ServeError::NotFound(format!("no model named {base:?}")))?;
    let part = model.session.part();
    let from = from.unwrap_or(0);
    if from < part.start || from >= part.end {
        return Err(ServeError::NotFound(format!(
            "{name}: {base} serves splits from stage {} to {} (it holds stages {}..{})",
            part.start,
            part.end.saturating_sub(1),
            part.start,
            part.end
        )));
    }
    Ok(Route { model, from })
}

impl Route<'_> {
    /// Runs the request: a whole pass from stage 0, a tail from a boundary otherwise.
    pub fn infer(&self, request: &InferRequest) -> Result<Vec<(String, Tensor)>> {
        let session = &self.model.session;
        let hidden_states = request.flag("hidden_states")?;
        let mut state = if self.from == 0 {
            session.start(inputs_from_wire(&request.inputs)?, hidden_states)?
        } else {
            let boundary = boundary_from_wire(self.from, &request.inputs)?;
            session.resume(boundary, hidden_states)?
        };
        session.run_stages(&mut state, self.from..session.part().end)?;
        Ok(Outputs::from_state(&mut state).tensors)
    }

    pub fn metadata(&self, name: &str) -> ModelMetadata {
        let model = self.model.session.model();
        let any = |rank: usize| vec![-1i64; rank];
        let meta = |name: &str, datatype: &str, shape: Vec<i64>| TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape,
        };
        let mut inputs = Vec::new();
        match model.kind() {
            ModelKind::TextEncoder | ModelKind::CausalLm => {
                inputs.push(meta("input_ids", "INT64", any(2)));
                inputs.push(meta("attention_mask", "INT64", any(2)));
                if model.architecture().starts_with("Bert") {
                    inputs.push(meta("token_type_ids", "INT64", any(2)));
                }
            }
            ModelKind::Vision if self.from == 0 => {
                inputs.push(meta("pixel_values", "FP32", any(4)));
            }
            ModelKind::Vision => inputs.push(meta("pixel_shape", "INT64", vec![4])),
        }
        if self.from > 0 {
            inputs.push(meta("hidden", "FP32", any(activation_rank(model))));
        }
        ModelMetadata {
            name: name.into(),
            versions: vec!["1".into()],
            platform: format!("edgerun_{}", model.architecture()),
            inputs,
            outputs: model
                .outputs()
                .into_iter()
                .map(|(n, rank)| meta(&n, "FP32", any(rank)))
                .collect(),
        }
    }
}

/// The rank of the activation between stages: `[batch, seq, hidden]` for transformers,
/// `[batch, height, width, channels]` for convolutional networks.
fn activation_rank(model: &dyn Model) -> usize {
    match model.kind() {
        ModelKind::Vision if !model.architecture().starts_with("ViT") => 4,
        _ => 3,
    }
}
