//! GPT-2 (`GPT2LMHeadModel`): token and position embeddings, pre-norm blocks with fused
//! Conv1D projections, a final layer norm and the LM head tied to the token embeddings.
//! Mirrors transformers' `models/gpt2/modeling_gpt2.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{
    join, last_token, self_attention, split_last, stage_at, start_causal, LayerNorm, Linear, Mlp,
    Param,
};
use crate::family::{activation, detect_prefix, head_layout, positive};
use crate::{
    CausalInfo, Inputs, Model, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
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

/// `wte` + `wpe`: token and position embeddings.
struct Gpt2Embeddings {
    wte: Param,
    wpe: Param,
    hidden: usize,
}

impl Gpt2Embeddings {
    fn specs(&self) -> Vec<TensorSpec> {
        vec![self.wte.spec(), self.wpe.spec()]
    }

    fn forward(&self, w: &UnitWeights, state: &State) -> Result<Tensor> {
        let ids = state.inputs.ids()?;
        let tokens = self.wte.rows(w, &ids.values)?;
        let positions: Vec<i64> = state.positions.iter().map(|&p| p as i64).collect();
        let positions = self.wpe.rows(w, &positions)?;
        Ok(kernels::add(&tokens, &positions)?.reshape(&[state.batch, state.seq, self.hidden])?)
    }
}

/// `GPT2Attention`: the fused QKV projection, causal attention over the KV cache, the output
/// projection.
struct Gpt2Attention {
    c_attn: Linear,
    c_proj: Linear,
    layout: HeadLayout,
    scale: f32,
}

impl Gpt2Attention {
    fn specs(&self) -> Vec<TensorSpec> {
        [self.c_attn.specs(), self.c_proj.specs()].concat()
    }

    fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: &Tensor,
    ) -> Result<Tensor> {
        let qkv = self.c_attn.forward(w, x)?;
        let [q, k, v]: [Tensor; 3] = split_last(&qkv, 3)?.try_into().expect("three parts");
        let context = self_attention(state, layer, [&q, &k, &v], self.layout, true, self.scale)?;
        self.c_proj.forward(w, &context)
    }
}

/// `GPT2Block`: pre-norm attention and MLP, each with its residual.
struct Gpt2Block {
    ln_1: LayerNorm,
    attn: Gpt2Attention,
    ln_2: LayerNorm,
    /// `GPT2MLP`: `mlp.c_fc`, the activation, `mlp.c_proj`.
    mlp: Mlp,
}

impl Gpt2Block {
    fn new(
        c: &Gpt2Config,
        prefix: &str,
        layer: usize,
        layout: HeadLayout,
        activation: Activation,
    ) -> Self {
        let d = c.n_embd;
        let inner = c.n_inner.unwrap_or(4 * d);
        let mut scale = if c.scale_attn_weights {
            1.0 / (layout.head_dim as f32).sqrt()
        } else {
            1.0
        };
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f32;
        }
        Self {
            ln_1: LayerNorm::new(&join(prefix, "ln_1"), d, c.layer_norm_epsilon),
            attn: Gpt2Attention {
                c_attn: Linear::conv1d(&join(prefix, "attn.c_attn"), d, 3 * d),
                c_proj: Linear::conv1d(&join(prefix, "attn.c_proj"), d, d),
                layout,
                scale,
            },
            ln_2: LayerNorm::new(&join(prefix, "ln_2"), d, c.layer_norm_epsilon),
            mlp: Mlp {
                up: Linear::conv1d(&join(prefix, "mlp.c_fc"), d, inner),
                down: Linear::conv1d(&join(prefix, "mlp.c_proj"), inner, d),
                activation,
            },
        }
    }

    fn specs(&self) -> Vec<TensorSpec> {
        [
            self.ln_1.specs(),
            self.attn.specs(),
            self.ln_2.specs(),
            self.mlp.specs(),
        ]
        .concat()
    }

    fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: Tensor,
    ) -> Result<Tensor> {
        let attended = self
            .attn
            .forward(w, state, layer, &self.ln_1.forward(w, &x)?)?;
        let (x, normed) = self.ln_2.forward_keeping(w, attended, &x)?;
        let out = self.mlp.forward(w, &normed)?;
        Ok(kernels::add(&out, &x)?)
    }
}

/// `ln_f` and the LM head: the checkpoint's `lm_head` when untied, else `wte` read again as
/// a Linear weight.
struct Gpt2Head {
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl Gpt2Head {
    fn specs(&self) -> Vec<TensorSpec> {
        [self.ln_f.specs(), self.lm_head.specs()].concat()
    }

    fn forward(&self, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<()> {
        let x = self.ln_f.forward(w, &x)?;
        state.record_hidden(&x);
        let last = if state.options.last_logits_only {
            last_token(&x)?
        } else {
            x.clone()
        };
        let logits = self.lm_head.forward(w, &last)?;
        state.output("logits", logits);
        state.hidden = Some(x);
        Ok(())
    }
}

/// What stage `i` of a GPT-2 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gpt2Stage {
    Embeddings,
    Block(usize),
    Head,
}

pub struct Gpt2 {
    config: Gpt2Config,
    embeddings: Gpt2Embeddings,
    blocks: Vec<Gpt2Block>,
    head: Gpt2Head,
    order: Vec<Gpt2Stage>,
    stages: Vec<StageSpec>,
}

impl Gpt2 {
    pub fn new(config: Gpt2Config, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = activation("activation_function", &c.activation_function)?;
        let d = positive("n_embd", c.n_embd)?;
        let layout = head_layout(d, c.n_head)?;
        let p = detect_prefix("transformer.", "wte.weight", has_tensor);
        let blocks: Vec<Gpt2Block> = (0..c.n_layer)
            .map(|i| Gpt2Block::new(c, &join(&p, &format!("h.{i}.")), i, layout, activation))
            .collect();
        // Tied, `wte` is also the head's weight: bound packed once, and both uses read that
        // (the head's Linear names the same tensor with the same shape and layout).
        let wte = if c.tie_word_embeddings {
            Param::packed_rows(join(&p, "wte.weight"), c.vocab_size, d)
        } else {
            Param::table(join(&p, "wte.weight"), c.vocab_size, d)
        };
        let lm_head = if c.tie_word_embeddings {
            Linear::new(&join(&p, "wte"), d, c.vocab_size, false)
        } else {
            // Untied, the head must be the checkpoint's own `lm_head.weight` (checked with the
            // rest).
            Linear::new("lm_head", d, c.vocab_size, false)
        };
        let embeddings = Gpt2Embeddings {
            wte,
            wpe: Param::table(join(&p, "wpe.weight"), c.n_positions, d),
            hidden: d,
        };
        let head = Gpt2Head {
            ln_f: LayerNorm::new(&join(&p, "ln_f"), d, c.layer_norm_epsilon),
            lm_head,
        };
        let order: Vec<Gpt2Stage> = std::iter::once(Gpt2Stage::Embeddings)
            .chain((0..blocks.len()).map(Gpt2Stage::Block))
            .chain([Gpt2Stage::Head])
            .collect();
        let mut model = Self {
            config,
            embeddings,
            blocks,
            head,
            order,
            stages: Vec::new(),
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: Gpt2Stage) -> StageSpec {
        let (id, tensors) = match stage {
            Gpt2Stage::Embeddings => ("embeddings".into(), self.embeddings.specs()),
            Gpt2Stage::Block(i) => (format!("h.{i}"), self.blocks[i].specs()),
            Gpt2Stage::Head => ("head".into(), self.head.specs()),
        };
        StageSpec { id, tensors }
    }
}

impl Model for Gpt2 {
    fn outputs(&self) -> Vec<(String, usize)> {
        vec![("logits".into(), 3)]
    }

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
        let stage = stage_at(&self.order, index)?;
        let x = match stage {
            Gpt2Stage::Embeddings => self.embeddings.forward(w, state)?,
            Gpt2Stage::Block(i) => {
                let x = state.take_hidden(&self.stages[index].id)?;
                self.blocks[i].forward(w, state, i, x)?
            }
            Gpt2Stage::Head => {
                let x = state.take_hidden("head")?;
                return self.head.forward(w, state, x);
            }
        };
        // transformers records the input of every block, then ln_f's output instead of the
        // last block's.
        if index < self.blocks.len() {
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
