//! GPT-J (`GPTJForCausalLM`): token embeddings, blocks whose attention (with interleaved rotary
//! embeddings) and MLP read the same layer norm in parallel, a final norm and a biased LM head.
//! Mirrors transformers' `models/gptj/modeling_gptj.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout, RotaryTable};
use edgerun_tensor::Tensor;

use crate::common::{
    activate, join, last_token, self_attention, start_causal, LayerNorm, Linear, Param,
};
use crate::family::{detect_prefix, head_dim, positive};
use crate::{
    CausalInfo, Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State,
    UnitWeights,
};

#[derive(Clone, Debug, Deserialize)]
pub struct GptJConfig {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    #[serde(default)]
    pub rotary_dim: Option<usize>,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default)]
    pub eos_token_id: Option<i64>,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}

struct Block {
    ln_1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    fc_in: Linear,
    fc_out: Linear,
}

pub struct GptJ {
    config: GptJConfig,
    activation: Activation,
    layout: HeadLayout,
    rotary: RotaryTable,
    wte: Param,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    stages: Vec<StageSpec>,
}

impl GptJ {
    pub fn new(config: GptJConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
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
        let rotary_dim = c.rotary_dim.unwrap_or(layout.head_dim);
        if rotary_dim > layout.head_dim || !rotary_dim.is_multiple_of(2) {
            return Err(ModelError::config(
                "rotary_dim",
                format!(
                    "{rotary_dim} must be even and at most the head size {}",
                    layout.head_dim
                ),
            ));
        }
        let p = detect_prefix("transformer.", "wte.weight", has_tensor);
        let blocks: Vec<Block> = (0..c.n_layer)
            .map(|i| {
                let b = join(&p, &format!("h.{i}."));
                Block {
                    ln_1: LayerNorm::new(&join(&b, "ln_1"), d, c.layer_norm_epsilon),
                    q_proj: Linear::new(&join(&b, "attn.q_proj"), d, d, false),
                    k_proj: Linear::new(&join(&b, "attn.k_proj"), d, d, false),
                    v_proj: Linear::new(&join(&b, "attn.v_proj"), d, d, false),
                    out_proj: Linear::new(&join(&b, "attn.out_proj"), d, d, false),
                    fc_in: Linear::new(&join(&b, "mlp.fc_in"), d, inner, true),
                    fc_out: Linear::new(&join(&b, "mlp.fc_out"), inner, d, true),
                }
            })
            .collect();
        let wte = Param::new(join(&p, "wte.weight"), vec![c.vocab_size, d]);
        let ln_f = LayerNorm::new(&join(&p, "ln_f"), d, c.layer_norm_epsilon);
        let lm_head = Linear::new("lm_head", d, c.vocab_size, true);
        let mut stages = vec![StageSpec {
            id: "embeddings".into(),
            tensors: vec![wte.spec()],
        }];
        for (i, b) in blocks.iter().enumerate() {
            let tensors = [&b.ln_1]
                .iter()
                .flat_map(|n| n.specs())
                .chain(
                    [
                        &b.q_proj,
                        &b.k_proj,
                        &b.v_proj,
                        &b.out_proj,
                        &b.fc_in,
                        &b.fc_out,
                    ]
                    .iter()
                    .flat_map(|l| l.specs()),
                )
                .collect();
            stages.push(StageSpec {
                id: format!("h.{i}"),
                tensors,
            });
        }
        stages.push(StageSpec {
            id: "head".into(),
            tensors: ln_f.specs().into_iter().chain(lm_head.specs()).collect(),
        });
        Ok(Self {
            activation,
            layout,
            rotary: RotaryTable::new(rotary_dim, 10000.0),
            wte,
            blocks,
            ln_f,
            lm_head,
            stages,
            config,
        })
    }

    fn block(&self, i: usize, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<Tensor> {
        let b = &self.blocks[i];
        let a = b.ln_1.forward(w, &x)?;
        let shape = [state.batch, state.seq, self.config.n_embd];
        let rotate = |t: Tensor| -> Result<Tensor> {
            let mut values = t.into_values();
            kernels::rotary_interleaved(
                &mut values,
                &state.positions,
                self.layout.heads,
                self.layout.head_dim,
                &self.rotary,
            );
            Ok(Tensor::from_vec(&shape, values)?)
        };
        let q = rotate(b.q_proj.forward(w, &a)?)?;
        let k = rotate(b.k_proj.forward(w, &a)?)?;
        let v = b.v_proj.forward(w, &a)?;
        let scale = 1.0 / (self.layout.head_dim as f32).sqrt();
        let context = self_attention(state, i, [&q, &k, &v], self.layout, true, scale)?;
        let attended = b.out_proj.forward(w, &context)?;
        let fed = b
            .fc_out
            .forward(w, &activate(b.fc_in.forward(w, &a)?, self.activation)?)?;
        Ok(kernels::add(&kernels::add(&attended, &fed)?, &x)?)
    }
}

impl Model for GptJ {
    fn architecture(&self) -> &str {
        "GPTJForCausalLM"
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
            0 => {
                let ids = state.inputs.ids()?;
                kernels::embedding(self.wte.get(w)?, &ids.values)?.reshape(&[
                    state.batch,
                    state.seq,
                    self.config.n_embd,
                ])?
            }
            i if i <= layers => {
                let x = state.take_hidden(&self.stages[i].id)?;
                self.block(i - 1, w, state, x)?
            }
            _ => {
                let x = self.ln_f.forward(w, &state.take_hidden("head")?)?;
                state.record_hidden(&x);
                let last = if state.options.last_logits_only {
                    last_token(&x)?
                } else {
                    x.clone()
                };
                state.output("logits", self.lm_head.forward(w, &last)?);
                state.hidden = Some(x);
                return Ok(());
            }
        };
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
