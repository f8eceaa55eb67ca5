//! Greedy decoding with the KV cache, as transformers' `generate(do_sample=False)`: each step
//! feeds only the new token; rows that emitted EOS keep emitting the pad token.

use edgerun_models::{IdTensor, Inputs, ModelError, ModelKind, RunOptions};
use edgerun_tensor::kernels::AttentionAlgorithm;

use crate::{Executor, Result, RuntimeError};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop early when every row has produced EOS.
    pub stop_at_eos: bool,
    /// The attention every layer runs.
    pub attention: AttentionAlgorithm,
}

/// Returns `[batch, prompt + generated]` token ids.
pub fn generate(
    executor: &dyn Executor,
    inputs: Inputs,
    options: &GenerateOptions,
) -> Result<IdTensor> {
    let model = executor.model();
    let info = match (model.kind(), model.causal()) {
        (ModelKind::CausalLm, Some(info)) => info,
        _ => {
            return Err(RuntimeError::NotCausal {
                architecture: model.architecture().to_string(),
            })
        }
    };
    let prompt = inputs.ids()?.clone();
    let (batch, prompt_len) = prompt.dims2("input_ids")?;
    if prompt_len == 0 {
        return Err(ModelError::Input {
            name: "input_ids",
            why: "the prompt is empty".into(),
        }
        .into());
    }
    let options_run = RunOptions {
        hidden_states: false,
        extra_tokens: options.max_new_tokens,
        last_logits_only: true,
        attention: options.attention,
        taylor_engine: None,
    };
    let has_mask = inputs.attention_mask.is_some();
    let mut state = model.start(inputs, options_run)?;
    if has_mask {
        state.positions_from_mask();
    }
    let mut rows: Vec<Vec<i64>> = prompt
        .values
        .chunks(prompt_len)
        .map(<[i64]>::to_vec)
        .collect();
    let mut finished = vec![false; batch];
    let pad = info.pad_token_id.or(info.eos_token_id).unwrap_or(0);
    for step in 0..options.max_new_tokens {
        executor.run_stages(&mut state, executor.all_stages())?;
        let logits = state
            .outputs
            .iter()
            .find(|(n, _)| n == "logits")
            .map(|(_, t)| t.clone())
            .expect("causal models output logits");
        let vocab = logits.last_dim();
        let next: Vec<i64> = logits
            .values()
            .chunks_exact(vocab)
            .zip(&finished)
            .map(|(row, &done)| if done { pad } else { argmax(row) as i64 })
            .collect();
        for (b, &token) in next.iter().enumerate() {
            rows[b].push(token);
            finished[b] |= Some(token) == info.eos_token_id;
        }
        if options.stop_at_eos && finished.iter().all(|&f| f) || step + 1 == options.max_new_tokens
        {
            break;
        }
        state.advance(next)?;
    }
    let len = rows[0].len();
    Ok(IdTensor::new(
        vec![batch, len],
        rows.into_iter().flatten().collect(),
    )?)
}

/// Index of the largest value; the first on ties, as torch.argmax.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
