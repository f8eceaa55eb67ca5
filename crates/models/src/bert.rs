//! BERT (`BertModel`): embeddings, post-norm encoder layers, and the optional tanh pooler.
//! Mirrors transformers' `models/bert/modeling_bert.py`; checkpoints with or without the
//! `bert.` prefix load alike.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{first_token, join, stage_at, LayerNorm, Linear, Param, QkvAttention};
use crate::family::{activation, detect_prefix, head_layout, positive};
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
    UnitWeights,
};

/// A serde mirror of the config.json fields BERT reads.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// `BertEmbeddings`: word + token type + position embeddings, then LayerNorm.
struct BertEmbeddings {
    word: Param,
    position: Param,
    token_type: Param,
    norm: LayerNorm,
    max_positions: usize,
    hidden: usize,
}

impl BertEmbeddings {
    fn specs(&self) -> Vec<TensorSpec> {
        [
            self.word.spec(),
            self.position.spec(),
            self.token_type.spec(),
        ]
        .into_iter()
        .chain(self.norm.specs())
        .collect()
    }

    fn forward(&self, w: &UnitWeights, state: &State) -> Result<Tensor> {
        let ids = state.inputs.ids()?;
        let (b, s) = (state.batch, state.seq);
        if s > self.max_positions {
            return Err(ModelError::input(
                "input_ids",
                format!(
                    "{s} tokens exceed max_position_embeddings {}",
                    self.max_positions
                ),
            ));
        }
        let words = self.word.rows(w, &ids.values)?;
        let types = match &state.inputs.token_type_ids {
            Some(t) if t.dims2("token_type_ids")? == (b, s) => t.values.clone(),
            Some(t) => {
                return Err(ModelError::input(
                    "token_type_ids",
                    format!("shape {:?} differs from input_ids [{b}, {s}]", t.shape),
                ))
            }
            None => vec![0; b * s],
        };
        let types = self.token_type.rows(w, &types)?;
        let positions: Vec<i64> = state.positions.iter().map(|&p| p as i64).collect();
        let positions = self.position.rows(w, &positions)?;
        let sum = kernels::add(&kernels::add(&words, &types)?, &positions)?;
        self.norm.forward(w, &sum.reshape(&[b, s, self.hidden])?)
    }
}

/// `BertAttention`: self-attention (`BertSelfAttention`) and its output projection, residual
/// and LayerNorm (`BertSelfOutput`).
struct BertAttention {
    attention: QkvAttention,
    norm: LayerNorm,
}

impl BertAttention {
    fn specs(&self) -> Vec<TensorSpec> {
        self.attention
            .specs()
            .into_iter()
            .chain(self.norm.specs())
            .collect()
    }

    fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: &Tensor,
    ) -> Result<Tensor> {
        let attended = self.attention.forward(w, state, layer, x)?;
        self.norm.forward_adding(w, attended, x)
    }
}

/// `BertIntermediate`: the FFN's widening projection and its activation.
struct BertIntermediate {
    dense: Linear,
    activation: Activation,
}

impl BertIntermediate {
    fn specs(&self) -> Vec<TensorSpec> {
        self.dense.specs()
    }

    fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        self.dense.forward_then(w, x, self.activation)
    }
}

/// `BertOutput`: the FFN's narrowing projection, residual and LayerNorm.
struct BertOutput {
    dense: Linear,
    norm: LayerNorm,
}

impl BertOutput {
    fn specs(&self) -> Vec<TensorSpec> {
        self.dense
            .specs()
            .into_iter()
            .chain(self.norm.specs())
            .collect()
    }

    fn forward(&self, w: &UnitWeights, inner: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let out = self.dense.forward(w, inner)?;
        self.norm.forward_adding(w, out, residual)
    }
}

/// `BertLayer`: one post-norm encoder layer.
struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    fn new(c: &BertConfig, prefix: &str, layout: HeadLayout, activation: Activation) -> Self {
        let d = c.hidden_size;
        let eps = c.layer_norm_eps;
        let linear = |path: &str, i, o| Linear::new(&join(prefix, path), i, o, true);
        Self {
            attention: BertAttention {
                attention: QkvAttention {
                    query: linear("attention.self.query", d, d),
                    key: linear("attention.self.key", d, d),
                    value: linear("attention.self.value", d, d),
                    output: linear("attention.output.dense", d, d),
                    layout,
                },
                norm: LayerNorm::new(&join(prefix, "attention.output.LayerNorm"), d, eps),
            },
            intermediate: BertIntermediate {
                dense: linear("intermediate.dense", d, c.intermediate_size),
                activation,
            },
            output: BertOutput {
                dense: linear("output.dense", c.intermediate_size, d),
                norm: LayerNorm::new(&join(prefix, "output.LayerNorm"), d, eps),
            },
        }
    }

    fn specs(&self) -> Vec<TensorSpec> {
        [
            self.attention.specs(),
            self.intermediate.specs(),
            self.output.specs(),
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
        let x = self.attention.forward(w, state, layer, &x)?;
        let inner = self.intermediate.forward(w, &x)?;
        self.output.forward(w, &inner, &x)
    }
}

/// `BertPooler`: tanh of a projection of the first token.
struct BertPooler {
    dense: Linear,
}

impl BertPooler {
    fn specs(&self) -> Vec<TensorSpec> {
        self.dense.specs()
    }

    fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        self.dense
            .forward_then(w, &first_token(x)?, Activation::Tanh)
    }
}

/// What stage `i` of a BERT is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BertStage {
    Embeddings,
    Layer(usize),
    Pooler,
}

pub struct Bert {
    config: BertConfig,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Option<BertPooler>,
    order: Vec<BertStage>,
    stages: Vec<StageSpec>,
}

impl Bert {
    pub fn new(config: BertConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = activation("hidden_act", &c.hidden_act)?;
        if let Some(kind) = c
            .position_embedding_type
            .as_deref()
            .filter(|k| *k != "absolute")
        {
            return Err(ModelError::config(
                "position_embedding_type",
                format!("{kind:?} is not supported (absolute only)"),
            ));
        }
        let d = positive("hidden_size", c.hidden_size)?;
        let layout = head_layout(d, c.num_attention_heads)?;
        let p = detect_prefix("bert.", "embeddings.word_embeddings.weight", has_tensor);
        let embeddings = BertEmbeddings {
            word: Param::table(
                join(&p, "embeddings.word_embeddings.weight"),
                c.vocab_size,
                d,
            ),
            position: Param::table(
                join(&p, "embeddings.position_embeddings.weight"),
                c.max_position_embeddings,
                d,
            ),
            token_type: Param::table(
                join(&p, "embeddings.token_type_embeddings.weight"),
                c.type_vocab_size,
                d,
            ),
            norm: LayerNorm::new(&join(&p, "embeddings.LayerNorm"), d, c.layer_norm_eps),
            max_positions: c.max_position_embeddings,
            hidden: d,
        };
        let layers: Vec<BertLayer> = (0..c.num_hidden_layers)
            .map(|i| {
                BertLayer::new(
                    c,
                    &join(&p, &format!("encoder.layer.{i}.")),
                    layout,
                    activation,
                )
            })
            .collect();
        let pooler_path = join(&p, "pooler.dense");
        let pooler = has_tensor(&format!("{pooler_path}.weight")).then(|| BertPooler {
            dense: Linear::new(&pooler_path, d, d, true),
        });
        let order: Vec<BertStage> = std::iter::once(BertStage::Embeddings)
            .chain((0..layers.len()).map(BertStage::Layer))
            .chain(pooler.as_ref().map(|_| BertStage::Pooler))
            .collect();
        let mut model = Self {
            config,
            embeddings,
            layers,
            pooler,
            order,
            stages: Vec::new(),
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: BertStage) -> StageSpec {
        let (id, tensors) = match stage {
            BertStage::Embeddings => ("embeddings".into(), self.embeddings.specs()),
            BertStage::Layer(i) => (format!("encoder.layer.{i}"), self.layers[i].specs()),
            BertStage::Pooler => (
                "pooler".into(),
                self.pooler
                    .as_ref()
                    .map_or_else(Vec::new, BertPooler::specs),
            ),
        };
        StageSpec { id, tensors }
    }
}

impl Model for Bert {
    fn outputs(&self) -> Vec<(String, usize)> {
        let mut names = vec![("last_hidden_state".into(), 3)];
        if self.pooler.is_some() {
            names.push(("pooler_output".into(), 2));
        }
        names
    }

    fn architecture(&self) -> &str {
        "BertModel"
    }

    fn kind(&self) -> ModelKind {
        ModelKind::TextEncoder
    }

    fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        State::for_tokens(inputs, options)
    }

    fn activation_bytes(&self, state: &State) -> u64 {
        let c = &self.config;
        crate::common::transformer_activation_bytes(
            state,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            0,
        )
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let stage = stage_at(&self.order, index)?;
        let x = match stage {
            BertStage::Embeddings => self.embeddings.forward(w, state)?,
            BertStage::Layer(i) => {
                let x = state.take_hidden(&self.stages[index].id)?;
                self.layers[i].forward(w, state, i, x)?
            }
            BertStage::Pooler => {
                let x = state.take_hidden("pooler")?;
                if let Some(pooler) = &self.pooler {
                    state.output("pooler_output", pooler.forward(w, &x)?);
                }
                state.hidden = Some(x);
                return Ok(());
            }
        };
        state.record_hidden(&x);
        if index == self.layers.len() {
            state.output("last_hidden_state", x.clone());
        }
        state.hidden = Some(x);
        Ok(())
    }
}
