//! The state a forward pass threads through its stages: activations, masks, positions, the KV
//! cache, and the outputs collected so far.

use std::sync::Arc;

use edgerun_tensor::fixed::TaylorEngine;
use edgerun_tensor::kernels::{AttentionAlgorithm, KvRef};
use edgerun_tensor::Tensor;

use crate::{IdTensor, Inputs, ModelError, Result};

/// What a caller asks of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Record `hidden_states.N` as transformers' `output_hidden_states=True` does.
    pub hidden_states: bool,
    /// Tokens the KV cache must hold beyond the prompt (greedy generation).
    pub extra_tokens: usize,
    /// Compute logits for the last position only (generation needs no more).
    pub last_logits_only: bool,
    /// The attention every layer runs (softmax in f32 unless asked otherwise).
    pub attention: AttentionAlgorithm,
    /// Computes fixed-point Taylor heads instead of the kernel (an accelerator simulator).
    pub taylor_engine: Option<Arc<dyn TaylorEngine>>,
}

/// Keys and values of every layer: `[batch, capacity, width]` each, the first `len` rows filled.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    batch: usize,
    capacity: usize,
    width: usize,
}

impl KvCache {
    /// Fails, rather than aborting, where the cache's size overflows or memory cannot hold
    /// it: its size comes from the prompt and the tokens asked for.
    pub fn new(layers: usize, batch: usize, capacity: usize, width: usize) -> Result<Self> {
        let too_large = || {
            ModelError::input(
                "input_ids",
                format!(
                    "a KV cache of {layers} layers x {batch} sequences x {capacity} positions x {width} values does not fit in memory"
                ),
            )
        };
        let size = batch
            .checked_mul(capacity)
            .and_then(|n| n.checked_mul(width))
            .filter(|n| n.checked_mul(8 * layers.max(1)).is_some())
            .ok_or_else(too_large)?;
        let zeroed = || -> Result<Vec<f32>> {
            let mut v = Vec::new();
            v.try_reserve_exact(size).map_err(|_| too_large())?;
            v.resize(size, 0.0);
            Ok(v)
        };
        let layers = (0..layers)
            .map(|_| Ok((zeroed()?, zeroed()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            batch,
            capacity,
            width,
        })
    }

    pub fn bytes(&self) -> usize {
        self.layers.len() * 2 * self.batch * self.capacity * self.width * 4
    }

    /// Stores `seq` new rows per batch at rows `past..past + seq` of `layer`.
    pub fn write(&mut self, layer: usize, past: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let seq = k.len() / (self.batch * self.width).max(1);
        if past + seq > self.capacity {
            return Err(ModelError::input(
                "input_ids",
                format!(
                    "{} tokens exceed the KV cache of {} positions",
                    past + seq,
                    self.capacity
                ),
            ));
        }
        let (kc, vc) = &mut self.layers[layer];
        for (cache, new) in [(kc, k), (vc, v)] {
            let new = new.contiguous();
            for b in 0..self.batch {
                let src = &new.values()[b * seq * self.width..][..seq * self.width];
                let at = (b * self.capacity + past) * self.width;
                cache[at..at + seq * self.width].copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// Keys and values of `layer`, first `len` rows of every batch.
    pub fn view(&self, layer: usize, len: usize) -> (KvRef<'_>, KvRef<'_>) {
        let (k, v) = &self.layers[layer];
        let stride = self.capacity * self.width;
        let kv = |data| KvRef {
            data,
            len,
            batch_stride: stride,
        };
        (kv(k), kv(v))
    }
}

/// Everything a pass carries from stage to stage.
pub struct State {
    pub inputs: Inputs,
    pub options: RunOptions,
    /// The running activation (`[batch, seq, hidden]` or NCHW); `None` before the first stage.
    pub hidden: Option<Tensor>,
    pub batch: usize,
    /// Tokens in this step.
    pub seq: usize,
    /// Tokens already in the KV cache.
    pub past: usize,
    /// Absolute position of each `[batch, seq]` token of this step.
    pub positions: Vec<usize>,
    /// Per batch, 1 for every visible token so far (prompt and generated), 0 for padding.
    key_mask: Option<Vec<Vec<bool>>>,
    pub cache: Option<KvCache>,
    pub hidden_states: Vec<Tensor>,
    pub outputs: Vec<(String, Tensor)>,
    /// Activations a later stage reads again (YOLOv3's feature-pyramid routes), by name.
    pub skips: Vec<(String, Tensor)>,
}

impl State {
    /// A state for token inputs: positions 0..seq, the mask taken from `attention_mask`.
    pub fn for_tokens(inputs: Inputs, options: RunOptions) -> Result<Self> {
        let (batch, seq) = inputs.ids()?.dims2("input_ids")?;
        // Every pooling and head reads a token of each row; an empty batch or sequence has none.
        if batch == 0 || seq == 0 {
            return Err(ModelError::input(
                "input_ids",
                format!("needs at least one row of at least one token, got [{batch}, {seq}]"),
            ));
        }
        let key_mask = match &inputs.attention_mask {
            Some(mask) => Some(mask_rows(mask, batch, seq)?),
            None => None,
        };
        Ok(Self {
            positions: (0..batch).flat_map(|_| 0..seq).collect(),
            inputs,
            options,
            hidden: None,
            batch,
            seq,
            past: 0,
            key_mask,
            cache: None,
            hidden_states: Vec::new(),
            outputs: Vec::new(),
            skips: Vec::new(),
        })
    }

    /// A state for image inputs.
    pub fn for_pixels(inputs: Inputs, options: RunOptions) -> Result<Self> {
        let shape = inputs.image_shape()?;
        if shape.is_empty() || shape.contains(&0) {
            return Err(ModelError::input(
                "pixel_values",
                format!("needs at least one non-empty image, got {shape:?}"),
            ));
        }
        let batch = shape[0];
        Ok(Self {
            inputs,
            options,
            hidden: None,
            batch,
            seq: 0,
            past: 0,
            positions: Vec::new(),
            key_mask: None,
            cache: None,
            hidden_states: Vec::new(),
            outputs: Vec::new(),
            skips: Vec::new(),
        })
    }

    /// Positions from the mask (`cumsum(mask) - 1`, padding at 1), as transformers' generate
    /// computes them for left-padded prompts.
    pub fn positions_from_mask(&mut self) {
        if let Some(rows) = &self.key_mask {
            self.positions = rows
                .iter()
                .flat_map(|row| {
                    let mut seen = 0usize;
                    row.iter()
                        .map(|&visible| {
                            seen += visible as usize;
                            if visible {
                                seen - 1
                            } else {
                                1
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
        }
    }

    /// The additive key bias `[batch, past + seq]` (0 visible, f32::MIN padding), if masked.
    pub fn key_bias(&self) -> Option<Vec<f32>> {
        let rows = self.key_mask.as_ref()?;
        let len = self.past + self.seq;
        Some(
            rows.iter()
                .flat_map(|row| row[..len].iter().map(|&v| if v { 0.0 } else { f32::MIN }))
                .collect(),
        )
    }

    /// Takes the activation the previous stage left.
    pub fn take_hidden(&mut self, stage: &str) -> Result<Tensor> {
        self.hidden.take().ok_or_else(|| {
            ModelError::input(
                "stages",
                format!("{stage} ran before the stage that feeds it"),
            )
        })
    }

    pub fn record_hidden(&mut self, t: &Tensor) {
        if self.options.hidden_states {
            self.hidden_states.push(t.clone());
        }
    }

    /// Records the channels-last map `t` as an NCHW hidden state, if hidden states are asked
    /// for (callers see NCHW whatever layout a model computes in).
    pub fn record_hidden_nhwc(&mut self, t: &Tensor) -> Result<()> {
        if self.options.hidden_states {
            self.hidden_states
                .push(edgerun_tensor::kernels::nhwc_to_nchw(t)?);
        }
        Ok(())
    }

    pub fn output(&mut self, name: &str, t: Tensor) {
        self.outputs.push((name.to_string(), t));
    }

    /// Takes the skip `name` a previous stage kept.
    pub fn take_skip(&mut self, name: &str, stage: &str) -> Result<Tensor> {
        let at = self
            .skips
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| {
                ModelError::input(
                    "stages",
                    format!("{stage} needs {name}, which no earlier stage kept"),
                )
            })?;
        Ok(self.skips.remove(at).1)
    }

    /// Moves to the next decoding step: `ids` holds one new token per batch row.
    pub fn advance(&mut self, ids: Vec<i64>) -> Result<()> {
        if ids.len() != self.batch {
            return Err(ModelError::input(
                "input_ids",
                format!("{} new tokens for a batch of {}", ids.len(), self.batch),
            ));
        }
        let step_positions: Vec<usize> = (0..self.batch)
            .map(|b| self.positions[b * self.seq + self.seq - 1] + 1)
            .collect();
        self.past += self.seq;
        self.seq = 1;
        self.positions = step_positions;
        if let Some(rows) = &mut self.key_mask {
            rows.iter_mut().for_each(|row| row.push(true));
        }
        self.inputs.input_ids = Some(IdTensor::new(vec![self.batch, 1], ids)?);
        self.inputs.attention_mask = None;
        self.inputs.token_type_ids = None;
        self.hidden = None;
        self.hidden_states.clear();
        self.outputs.clear();
        Ok(())
    }
}

fn mask_rows(mask: &IdTensor, batch: usize, seq: usize) -> Result<Vec<Vec<bool>>> {
    if mask.dims2("attention_mask")? != (batch, seq) {
        return Err(ModelError::input(
            "attention_mask",
            format!(
                "shape {:?} differs from input_ids [{batch}, {seq}]",
                mask.shape
            ),
        ));
    }
    Ok(mask
        .values
        .chunks(seq.max(1))
        .map(|row| row.iter().map(|&v| v != 0).collect())
        .collect())
}
