//! `eval-attention`: one model run under every attention variant, each compared with softmax
//! on the same inputs -- attention FLOPs, cosine of the outputs, top-1 agreement of logits.

use edgerun_models::{Inputs, RunOptions};
use edgerun_store::ModelSource;
use edgerun_tensor::kernels::{attention_flops, AttentionAlgorithm};
use edgerun_tensor::Tensor;

use crate::{Embedder, Executor, FullExecutor, Result, RuntimeError};

/// What the model is fed.
pub enum EvalInput {
    /// An input file's tensors; the primary output is `logits` if present, else
    /// `last_hidden_state`.
    Tensors(Box<Inputs>),
    /// Sentences for a sentence-transformers folder; the output is the pooled embedding.
    Texts(Vec<String>),
}

/// One variant against the softmax reference.
#[derive(Clone, Debug)]
pub struct VariantReport {
    pub algorithm: AttentionAlgorithm,
    /// The output compared (`logits`, `last_hidden_state` or `sentence_embedding`).
    pub output: String,
    /// Attention operations of the pass (multiply-add = 2).
    pub attention_flops: u64,
    /// Mean and minimum cosine similarity over output rows (last axis).
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Share of rows whose argmax matches softmax's, for logits.
    pub top1_agreement: Option<f64>,
    pub finite: bool,
    /// Why the variant did not run (a causal model refuses SimA, for one).
    pub skipped: Option<String>,
}

/// Runs every algorithm (softmax in f32 is added first as the reference).
pub fn evaluate_attention(
    source: &ModelSource,
    input: &EvalInput,
    algorithms: &[AttentionAlgorithm],
) -> Result<Vec<VariantReport>> {
    let runner = Runner::load(source, input)?;
    if !runner.model().has_attention() {
        return Err(RuntimeError::NoAttention {
            architecture: runner.model().architecture().to_string(),
        });
    }
    let causal = runner.model().causal().is_some();
    let (name, reference, _) = runner.run(input, AttentionAlgorithm::default())?;
    let mut reports = Vec::new();
    let reference_algorithm = AttentionAlgorithm::default();
    let all = std::iter::once(reference_algorithm).chain(
        algorithms
            .iter()
            .copied()
            .filter(|a| *a != reference_algorithm),
    );
    for algorithm in all {
        if let Err(refusal) = algorithm.check_causal(causal) {
            reports.push(VariantReport {
                algorithm,
                output: name.clone(),
                attention_flops: 0,
                mean_cosine: f64::NAN,
                min_cosine: f64::NAN,
                top1_agreement: None,
                finite: true,
                skipped: Some(refusal.to_string()),
            });
            continue;
        }
        let (_, output, flops) = runner.run(input, algorithm)?;
        let (mean_cosine, min_cosine) = row_cosines(&reference, &output);
        reports.push(VariantReport {
            algorithm,
            output: name.clone(),
            attention_flops: flops,
            mean_cosine,
            min_cosine,
            top1_agreement: (name == "logits").then(|| top1_agreement(&reference, &output)),
            finite: output.values().iter().all(|v| v.is_finite()),
            skipped: None,
        });
    }
    Ok(reports)
}

enum Runner {
    Tensors(FullExecutor),
    Texts(Box<Embedder>),
}

impl Runner {
    fn load(source: &ModelSource, input: &EvalInput) -> Result<Self> {
        Ok(match input {
            EvalInput::Tensors(_) => Self::Tensors(FullExecutor::load(source)?),
            EvalInput::Texts(_) => Self::Texts(Box::new(Embedder::load(source)?)),
        })
    }

    fn model(&self) -> &dyn edgerun_models::Model {
        match self {
            Self::Tensors(executor) => executor.model(),
            Self::Texts(embedder) => embedder.model(),
        }
    }

    /// The primary output's name, the output, and the attention FLOPs of the pass.
    fn run(
        &self,
        input: &EvalInput,
        attention: AttentionAlgorithm,
    ) -> Result<(String, Tensor, u64)> {
        let options = RunOptions {
            attention,
            ..RunOptions::default()
        };
        let before = attention_flops();
        let (name, tensor) = match (self, input) {
            (Self::Tensors(executor), EvalInput::Tensors(inputs)) => {
                let outputs = executor.forward(inputs.as_ref().clone(), options)?;
                ["logits", "last_hidden_state"]
                    .iter()
                    .find_map(|n| outputs.get(n).map(|t| (n.to_string(), t.clone())))
                    .ok_or(RuntimeError::NoOutput)?
            }
            (Self::Texts(embedder), EvalInput::Texts(texts)) => (
                "sentence_embedding".to_string(),
                embedder.embed_with(texts, options)?,
            ),
            _ => unreachable!("the runner is loaded for its input"),
        };
        Ok((name, tensor, attention_flops() - before))
    }
}

fn rows(t: &Tensor) -> (Vec<f32>, usize) {
    let width = t.shape().last().copied().unwrap_or(1).max(1);
    (t.contiguous().values().to_vec(), width)
}

/// Mean and minimum cosine over the rows of the last axis (an all-zero pair counts as 1).
pub fn row_cosines(reference: &Tensor, other: &Tensor) -> (f64, f64) {
    let ((a, width), (b, _)) = (rows(reference), rows(other));
    let cosines: Vec<f64> = a
        .chunks_exact(width)
        .zip(b.chunks_exact(width))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|&p| (p as f64).powi(2)).sum::<f64>().sqrt();
            let (nx, ny) = (norm(x), norm(y));
            if nx == 0.0 && ny == 0.0 {
                1.0
            } else {
                dot / (nx * ny).max(f64::MIN_POSITIVE)
            }
        })
        .collect();
    let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
    (mean, cosines.iter().copied().fold(f64::INFINITY, f64::min))
}

/// Share of rows (last axis) whose argmax agrees.
pub fn top1_agreement(reference: &Tensor, other: &Tensor) -> f64 {
    let ((a, width), (b, _)) = (rows(reference), rows(other));
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            })
            .0
    };
    let pairs: Vec<bool> = a
        .chunks_exact(width)
        .zip(b.chunks_exact(width))
        .map(|(x, y)| argmax(x) == argmax(y))
        .collect();
    pairs.iter().filter(|&&same| same).count() as f64 / pairs.len().max(1) as f64
}
