//! GPT-2 (`GPT2LMHeadModel`): token and position embeddings, pre-norm blocks with fused
//! Conv1D projections, a final layer norm and the LM head tied to the token embeddings.
//! Mirrors transformers' `models/gpt2/modeling_gpt2.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{
    activate, join, last_token, project_onto_rows, self_attention, split_last, start_causal,
    LayerNorm, Linear, Param,
};
use crate::family::{detect_prefix, head_dim, positive};
use crate::{
    CausalInfo, Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State,
    UnitWeights,
};

#[derive(Clone, Debug, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub eos_token_id: Option<i64>,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Hugging Face's default: the head is `wte`, and a saved `lm_head.weight` is ignored.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    config: Gpt2Config,
    activation: Activation,
    layout: HeadLayout,
    wte: Param,
    wpe: Param,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// The checkpoint's `lm_head.weight` when `tie_word_embeddings` is false.
    lm_head: Option<Linear>,
    stages: Vec<StageSpec>,
}

impl Gpt2 {
    pub fn new(config: Gpt2Config, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = Activation::from_hf(&c.activation_function).ok_or_else(|| {
            ModelError::config(
                "activation_function",
                format!("{:?} is not supported", c.activation_function),
            )
        })?;
        let d = positive("n_embd", c.n_embd)?;
        let inner = c.n_inner.unwrap_or(4 * d);
        let layout = HeadLayout {
            heads: c.n_head,
            head_dim: head_dim(d, c.n_head)?,
        };
        let p = detect_prefix("transformer.", "wte.weight", has_tensor);
        let blocks: Vec<Block> = (0..c.n_layer)
            .map(|i| {
                let b = join(&p, &format!("h.{i}."));
                Block {
                    ln_1: LayerNorm::new(&join(&b, "ln_1"), d, c.layer_norm_epsilon),
                    c_attn: Linear::conv1d(&join(&b, "attn.c_attn"), d, 3 * d),
                    attn_proj: Linear::conv1d(&join(&b, "attn.c_proj"), d, d),
                    ln_2: LayerNorm::new(&join(&b, "ln_2"), d, c.layer_norm_epsilon),
                    c_fc: Linear::conv1d(&join(&b, "mlp.c_fc"), d, inner),
                    mlp_proj: Linear::conv1d(&join(&b, "mlp.c_proj"), inner, d),
                }
            })
            .collect();
        let wte = Param::new(join(&p, "wte.weight"), vec![c.vocab_size, d]);
        // Untied, the head must be the checkpoint's own `lm_head.weight` (checked with the rest).
        let lm_head =
            (!c.tie_word_embeddings).then(|| Linear::new("lm_head", d, c.vocab_size, false));
        let ln_f = LayerNorm::new(&join(&p, "ln_f"), d, c.layer_norm_epsilon);
        let mut stages = vec![StageSpec {
            id: "embeddings".into(),
            tensors: vec![
                wte.spec(),
                Param::new(join(&p, "wpe.weight"), vec![c.n_positions, d]).spec(),
            ],
        }];
        for (i, b) in blocks.iter().enumerate() {
            let tensors = [
                &b.ln_1.specs(),
                &b.c_attn.specs(),
                &b.attn_proj.specs(),
                &b.ln_2.specs(),
                &b.c_fc.specs(),
                &b.mlp_proj.specs(),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
            stages.push(StageSpec {
                id: format!("h.{i}"),
                tensors,
            });
        }
        let mut head = ln_f.specs();
        match &lm_head {
            Some(l) => head.extend(l.specs()),
            None => head.push(wte.spec()),
        }
        stages.push(StageSpec {
            id: "head".into(),
            tensors: head,
        });
        Ok(Self {
            activation,
            layout,
            wpe: Param::new(join(&p, "wpe.weight"), vec![c.n_positions, d]),
            wte,
            blocks,
            ln_f,
            lm_head,
            stages,
            config,
        })
    }

    fn embed(&self, w: &UnitWeights, state: &State) -> Result<Tensor> {
        let ids = state.inputs.ids()?;
        let tokens = kernels::embedding(self.wte.get(w)?, &ids.values)?;
        let positions: Vec<i64> = state.positions.iter().map(|&p| p as i64).collect();
        let positions = kernels::embedding(self.wpe.get(w)?, &positions)?;
        Ok(kernels::add(&tokens, &positions)?.reshape(&[
            state.batch,
            state.seq,
            self.config.n_embd,
        ])?)
    }

    fn block(&self, i: usize, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<Tensor> {
        let b = &self.blocks[i];
        let qkv = b.c_attn.forward(w, &b.ln_1.forward(w, &x)?)?;
        let [q, k, v]: [Tensor; 3] = split_last(&qkv, 3)?.try_into().expect("three parts");
        let mut scale = if self.config.scale_attn_weights {
            1.0 / (self.layout.head_dim as f32).sqrt()
        } else {
            1.0
        };
        if self.config.scale_attn_by_inverse_layer_idx {
            scale /= (i + 1) as f32;
        }
        let context = self_attention(state, i, [&q, &k, &v], self.layout, true, scale)?;
        let x = kernels::add(&b.attn_proj.forward(w, &context)?, &x)?;
        let inner = activate(b.c_fc.forward(w, &b.ln_2.forward(w, &x)?)?, self.activation)?;
        Ok(kernels::add(&b.mlp_proj.forward(w, &inner)?, &x)?)
    }

    fn head(&self, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<()> {
        let x = self.ln_f.forward(w, &x)?;
        state.record_hidden(&x);
        let last = if state.options.last_logits_only {
            last_token(&x)?
        } else {
            x.clone()
        };
        let logits = match &self.lm_head {
            Some(l) => l.forward(w, &last)?,
            None => project_onto_rows(&last, self.wte.get(w)?)?,
        };
        state.output("logits", logits);
        state.hidden = Some(x);
        Ok(())
    }
}

impl Model for Gpt2 {
    fn architecture(&self) -> &str {
        "GPT2LMHeadModel"
    }

    fn kind(&self) -> ModelKind {
        ModelKind::CausalLm
    }

    fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        let c = &self.config;
        start_causal(inputs, options, c.n_layer, c.n_embd, c.n_positions)
    }

    fn activation_bytes(&self, state: &State) -> u64 {
        let c = &self.config;
        let inner = c.n_inner.unwrap_or(4 * c.n_embd);
        crate::common::transformer_activation_bytes(state, c.n_embd, inner, c.n_layer, c.vocab_size)
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let layers = self.blocks.len();
        let x = match index {
            0 => self.embed(w, state)?,
            i if i <= layers => {
                let x = state.take_hidden(&self.stages[i].id)?;
                self.block(i - 1, w, state, x)?
            }
            _ => {
                let x = state.take_hidden("head")?;
                return self.head(w, state, x);
            }
        };
        // transformers records the input of every block, then ln_f's output instead of the
        // last block's.
        if index < layers {
            state.record_hidden(&x);
        }
        state.hidden = Some(x);
        Ok(())
    }

    fn causal(&self) -> Option<CausalInfo> {
        Some(CausalInfo {
            eos_token_id: self.config.eos_token_id,
            pad_token_id: self.config.pad_token_id,
            vocab_size: self.config.vocab_size,
            max_positions: self.config.n_positions,
        })
    }
}
