//! GPT-J (`GPTJForCausalLM`): token embeddings, blocks whose attention (with interleaved rotary
//! embeddings) and MLP read the same layer norm in parallel, a final norm and a biased LM head.
//! Mirrors transformers' `models/gptj/modeling_gptj.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout, RotaryTable};
use edgerun_tensor::Tensor;

use crate::common::{
    join, last_token, project, self_attention, stage_at, start_causal, LayerNorm, Linear, Mlp,
    Param,
};
use crate::family::{activation, detect_prefix, head_layout, positive};
use crate::{
    CausalInfo, Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State,
    TensorSpec, UnitWeights,
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

/// `GPTJAttention`: separate Q, K, V projections, rotary positions on Q and K, causal
/// attention over the KV cache, the output projection.
struct GptJAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layout: HeadLayout,
}

impl GptJAttention {
    fn specs(&self) -> Vec<TensorSpec> {
        [
            self.q_proj.specs(),
            self.k_proj.specs(),
            self.v_proj.specs(),
            self.out_proj.specs(),
        ]
        .concat()
    }

    fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: &Tensor,
        rotary: &RotaryTable,
    ) -> Result<Tensor> {
        let shape = [
            state.batch,
            state.seq,
            self.layout.heads * self.layout.head_dim,
        ];
        let rotate = |t: Tensor| -> Result<Tensor> {
            let mut values = t.into_values();
            kernels::rotary_interleaved(
                &mut values,
                &state.positions,
                self.layout.heads,
                self.layout.head_dim,
                rotary,
            );
            Ok(Tensor::from_vec(&shape, values)?)
        };
        let [q, k, v] = project(w, x, [&self.q_proj, &self.k_proj, &self.v_proj])?;
        let (q, k) = (rotate(q)?, rotate(k)?);
        let scale = 1.0 / (self.layout.head_dim as f32).sqrt();
        let context = self_attention(state, layer, [&q, &k, &v], self.layout, true, scale)?;
        self.out_proj.forward(w, &context)
    }
}

/// `GPTJBlock`: one LayerNorm feeding attention and the MLP in parallel, both added to the
/// residual.
struct GptJBlock {
    ln_1: LayerNorm,
    attn: GptJAttention,
    /// `GPTJMLP`: `mlp.fc_in`, the activation, `mlp.fc_out`.
    mlp: Mlp,
}

impl GptJBlock {
    fn new(c: &GptJConfig, prefix: &str, layout: HeadLayout, activation: Activation) -> Self {
        let d = c.n_embd;
        let inner = c.n_inner.unwrap_or(4 * d);
        let linear = |path: &str, i, o, bias| Linear::new(&join(prefix, path), i, o, bias);
        Self {
            ln_1: LayerNorm::new(&join(prefix, "ln_1"), d, c.layer_norm_epsilon),
            attn: GptJAttention {
                q_proj: linear("attn.q_proj", d, d, false),
                k_proj: linear("attn.k_proj", d, d, false),
                v_proj: linear("attn.v_proj", d, d, false),
                out_proj: linear("attn.out_proj", d, d, false),
                layout,
            },
            mlp: Mlp {
                up: linear("mlp.fc_in", d, inner, true),
                down: linear("mlp.fc_out", inner, d, true),
                activation,
            },
        }
    }

    fn specs(&self) -> Vec<TensorSpec> {
        [self.ln_1.specs(), self.attn.specs(), self.mlp.specs()].concat()
    }

    fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: Tensor,
        rotary: &RotaryTable,
    ) -> Result<Tensor> {
        let a = self.ln_1.forward(w, &x)?;
        let attended = self.attn.forward(w, state, layer, &a, rotary)?;
        let fed = self.mlp.forward(w, &a)?;
        Ok(kernels::add(&kernels::add(&attended, &fed)?, &x)?)
    }
}

/// `ln_f` and the LM head.
struct GptJHead {
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl GptJHead {
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
        state.output("logits", self.lm_head.forward(w, &last)?);
        state.hidden = Some(x);
        Ok(())
    }
}

/// What stage `i` of a GPT-J is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GptJStage {
    Embeddings,
    Block(usize),
    Head,
}

pub struct GptJ {
    config: GptJConfig,
    rotary: RotaryTable,
    wte: Param,
    blocks: Vec<GptJBlock>,
    head: GptJHead,
    order: Vec<GptJStage>,
    stages: Vec<StageSpec>,
}

impl GptJ {
    pub fn new(config: GptJConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = activation("activation_function", &c.activation_function)?;
        let d = positive("n_embd", c.n_embd)?;
        let layout = head_layout(d, c.n_head)?;
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
        let blocks: Vec<GptJBlock> = (0..c.n_layer)
            .map(|i| GptJBlock::new(c, &join(&p, &format!("h.{i}.")), layout, activation))
            .collect();
        let head = GptJHead {
            ln_f: LayerNorm::new(&join(&p, "ln_f"), d, c.layer_norm_epsilon),
            lm_head: Linear::new("lm_head", d, c.vocab_size, true),
        };
        let order: Vec<GptJStage> = std::iter::once(GptJStage::Embeddings)
            .chain((0..blocks.len()).map(GptJStage::Block))
            .chain([GptJStage::Head])
            .collect();
        let mut model = Self {
            rotary: RotaryTable::new(rotary_dim, 10000.0),
            wte: Param::table(join(&p, "wte.weight"), c.vocab_size, d),
            blocks,
            head,
            order,
            stages: Vec::new(),
            config,
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: GptJStage) -> StageSpec {
        let (id, tensors) = match stage {
            GptJStage::Embeddings => ("embeddings".into(), vec![self.wte.spec()]),
            GptJStage::Block(i) => (format!("h.{i}"), self.blocks[i].specs()),
            GptJStage::Head => ("head".into(), self.head.specs()),
        };
        StageSpec { id, tensors }
    }
}

impl Model for GptJ {
    fn outputs(&self) -> Vec<(String, usize)> {
        vec![("logits".into(), 3)]
    }

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
        let stage = stage_at(&self.order, index)?;
        let x = match stage {
            GptJStage::Embeddings => {
                let ids = state.inputs.ids()?;
                self.wte.rows(w, &ids.values)?.reshape(&[
                    state.batch,
                    state.seq,
                    self.config.n_embd,
                ])?
            }
            GptJStage::Block(i) => {
                let x = state.take_hidden(&self.stages[index].id)?;
                self.blocks[i].forward(w, state, i, x, &self.rotary)?
            }
            GptJStage::Head => {
                let x = state.take_hidden("head")?;
                return self.head.forward(w, state, x);
            }
        };
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
