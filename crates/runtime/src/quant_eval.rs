//! `eval-quant`: the same model from two stores (f32 and quantised) on the same inputs, output
//! by output and hidden state by hidden state: cosine, top-1 agreement of logits, largest
//! absolute error. The hidden states show where the error enters (the sensitive layers).

use edgerun_models::RunOptions;
use edgerun_store::ModelSource;
use edgerun_tensor::Tensor;

use crate::attention_eval::{row_cosines, top1_agreement};
use crate::{Embedder, EvalInput, Executor, FullExecutor, Outputs, Result, RuntimeError};

/// One output (or hidden state) of the quantised store against the reference's.
#[derive(Clone, Debug)]
pub struct TensorComparison {
    pub name: String,
    /// The stage that recorded a hidden state (`hidden_states.N` is stage N's output).
    pub stage: Option<String>,
    /// Mean and minimum cosine over rows of the last axis.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub max_abs_error: f32,
    /// The largest |value| of the reference, to read the error against.
    pub reference_max: f32,
    /// Share of rows whose argmax agrees, for logits.
    pub top1_agreement: Option<f64>,
    pub finite: bool,
}

/// Every output, then every hidden state.
#[derive(Clone, Debug)]
pub struct QuantReport {
    pub outputs: Vec<TensorComparison>,
    pub hidden_states: Vec<TensorComparison>,
}

/// Runs `input` through both stores (all weights loaded, hidden states recorded) and compares.
/// Refuses two stores of different models.
pub fn evaluate_quantisation(
    reference: &ModelSource,
    quantised: &ModelSource,
    input: &EvalInput,
) -> Result<QuantReport> {
    let a = Loaded::new(reference, input)?;
    let b = Loaded::new(quantised, input)?;
    let ids = |m: &dyn edgerun_models::Model| -> Vec<String> {
        m.stages().iter().map(|s| s.id.clone()).collect()
    };
    let stages = ids(a.model());
    if a.model().architecture() != b.model().architecture() || stages != ids(b.model()) {
        return Err(RuntimeError::DifferentModels {
            first: reference.dir().to_path_buf(),
            second: quantised.dir().to_path_buf(),
        });
    }
    let (ra, rb) = (a.run(input)?, b.run(input)?);
    let mut report = QuantReport {
        outputs: Vec::new(),
        hidden_states: Vec::new(),
    };
    for (name, expected) in &ra.tensors {
        let Some((_, got)) = rb.tensors.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let stage = name
            .strip_prefix("hidden_states.")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| stages.get(i).cloned());
        let comparison = compare(name, stage.clone(), expected, got);
        if stage.is_some() {
            report.hidden_states.push(comparison);
        } else {
            report.outputs.push(comparison);
        }
    }
    Ok(report)
}

fn compare(name: &str, stage: Option<String>, expected: &Tensor, got: &Tensor) -> TensorComparison {
    let (mean_cosine, min_cosine) = row_cosines(expected, got);
    let (e, g) = (expected.contiguous(), got.contiguous());
    let max_abs_error = e
        .values()
        .iter()
        .zip(g.values())
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    TensorComparison {
        name: name.to_string(),
        stage,
        mean_cosine,
        min_cosine,
        max_abs_error,
        reference_max: e.values().iter().fold(0.0f32, |m, v| m.max(v.abs())),
        top1_agreement: (name == "logits").then(|| top1_agreement(expected, got)),
        finite: g.values().iter().all(|v| v.is_finite()),
    }
}

enum Loaded {
    Tensors(FullExecutor),
    Texts(Box<Embedder>),
}

impl Loaded {
    fn new(source: &ModelSource, input: &EvalInput) -> Result<Self> {
        Ok(match input {
            EvalInput::Tensors(_) => Self::Tensors(FullExecutor::load(source)?),
            EvalInput::Texts(_) => Self::Texts(Box::new(Embedder::load(source)?)),
        })
    }

    fn model(&self) -> &dyn edgerun_models::Model {
        match self {
            Self::Tensors(e) => e.model(),
            Self::Texts(e) => e.model(),
        }
    }

    /// Every output with the hidden states; for texts the pooled embedding first.
    fn run(&self, input: &EvalInput) -> Result<Outputs> {
        let options = RunOptions {
            hidden_states: true,
            ..RunOptions::default()
        };
        match (self, input) {
            (Self::Tensors(e), EvalInput::Tensors(inputs)) => {
                e.forward(inputs.as_ref().clone(), options)
            }
            (Self::Texts(e), EvalInput::Texts(texts)) => {
                let (embedding, mut outputs) = e.embed_outputs(texts, options)?;
                outputs
                    .tensors
                    .insert(0, ("sentence_embedding".to_string(), embedding));
                Ok(outputs)
            }
            _ => unreachable!("loaded for its input"),
        }
    }
}
