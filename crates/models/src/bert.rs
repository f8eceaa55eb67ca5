//! BERT (`BertModel`): embeddings, post-norm encoder layers, and the optional tanh pooler.
//! Mirrors transformers' `models/bert/modeling_bert.py`; checkpoints with or without the
//! `bert.` prefix load alike.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{first_token, join, LayerNorm, Linear, Param, QkvAttention};
use crate::family::{detect_prefix, head_dim, positive};
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, UnitWeights,
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

struct BertEmbeddings {
    word: Param,
    position: Param,
    token_type: Param,
    norm: LayerNorm,
}

struct BertLayer {
    attention: QkvAttention,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct Bert {
    config: BertConfig,
    activation: Activation,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Option<Linear>,
    stages: Vec<StageSpec>,
}

impl Bert {
    pub fn new(config: BertConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = Activation::from_hf(&c.hidden_act).ok_or_else(|| {
            ModelError::config("hidden_act", format!("{:?} is not supported", c.hidden_act))
        })?;
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
        let layout = HeadLayout {
            heads: c.num_attention_heads,
            head_dim: head_dim(d, c.num_attention_heads)?,
        };
        let p = detect_prefix("bert.", "embeddings.word_embeddings.weight", has_tensor);
        let embeddings = BertEmbeddings {
            word: Param::new(
                join(&p, "embeddings.word_embeddings.weight"),
                vec![c.vocab_size, d],
            ),
            position: Param::new(
                join(&p, "embeddings.position_embeddings.weight"),
                vec![c.max_position_embeddings, d],
            ),
            token_type: Param::new(
                join(&p, "embeddings.token_type_embeddings.weight"),
                vec![c.type_vocab_size, d],
            ),
            norm: LayerNorm::new(&join(&p, "embeddings.LayerNorm"), d, c.layer_norm_eps),
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = join(&p, &format!("encoder.layer.{i}."));
                BertLayer {
                    attention: QkvAttention {
                        query: Linear::new(&join(&l, "attention.self.query"), d, d, true),
                        key: Linear::new(&join(&l, "attention.self.key"), d, d, true),
                        value: Linear::new(&join(&l, "attention.self.value"), d, d, true),
                        output: Linear::new(&join(&l, "attention.output.dense"), d, d, true),
                        layout,
                    },
                    attention_norm: LayerNorm::new(
                        &join(&l, "attention.output.LayerNorm"),
                        d,
                        c.layer_norm_eps,
                    ),
                    intermediate: Linear::new(
                        &join(&l, "intermediate.dense"),
                        d,
                        c.intermediate_size,
                        true,
                    ),
                    output: Linear::new(&join(&l, "output.dense"), c.intermediate_size, d, true),
                    output_norm: LayerNorm::new(&join(&l, "output.LayerNorm"), d, c.layer_norm_eps),
                }
            })
            .collect::<Vec<_>>();
        let pooler_path = join(&p, "pooler.dense");
        let pooler = has_tensor(&format!("{pooler_path}.weight"))
            .then(|| Linear::new(&pooler_path, d, d, true));

        let e = &embeddings;
        let mut stages = vec![StageSpec {
            id: "embeddings".into(),
            tensors: [e.word.spec(), e.position.spec(), e.token_type.spec()]
                .into_iter()
                .chain(e.norm.specs())
                .collect(),
        }];
        for (i, l) in layers.iter().enumerate() {
            let tensors = l
                .attention
                .specs()
                .into_iter()
                .chain(l.attention_norm.specs())
                .chain(l.intermediate.specs())
                .chain(l.output.specs())
                .chain(l.output_norm.specs())
                .collect();
            stages.push(StageSpec {
                id: format!("encoder.layer.{i}"),
                tensors,
            });
        }
        if let Some(pooler) = &pooler {
            stages.push(StageSpec {
                id: "pooler".into(),
                tensors: pooler.specs(),
            });
        }
        Ok(Self {
            config,
            activation,
            embeddings,
            layers,
            pooler,
            stages,
        })
    }

    fn embed(&self, w: &UnitWeights, state: &mut State) -> Result<Tensor> {
        let ids = state.inputs.ids()?;
        let (b, s) = (state.batch, state.seq);
        let d = self.config.hidden_size;
        if s > self.config.max_position_embeddings {
            return Err(ModelError::input(
                "input_ids",
                format!(
                    "{s} tokens exceed max_position_embeddings {}",
                    self.config.max_position_embeddings
                ),
            ));
        }
        let words = kernels::embedding(self.embeddings.word.get(w)?, &ids.values)?;
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
        let types = kernels::embedding(self.embeddings.token_type.get(w)?, &types)?;
        let positions: Vec<i64> = state.positions.iter().map(|&p| p as i64).collect();
        let positions = kernels::embedding(self.embeddings.position.get(w)?, &positions)?;
        let sum = kernels::add(&kernels::add(&words, &types)?, &positions)?.reshape(&[b, s, d])?;
        self.embeddings.norm.forward(w, &sum)
    }

    fn layer(&self, i: usize, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<Tensor> {
        let l = &self.layers[i];
        let attended = l.attention.forward(w, state, i, &x)?;
        let x = l.attention_norm.forward(w, &kernels::add(&attended, &x)?)?;
        let mut inner = l.intermediate.forward(w, &x)?.into_values();
        self.activation.apply_in_place(&mut inner);
        let inner = Tensor::from_vec(
            &[state.batch, state.seq, self.config.intermediate_size],
            inner,
        )?;
        let out = l.output.forward(w, &inner)?;
        l.output_norm.forward(w, &kernels::add(&out, &x)?)
    }
}

impl Model for Bert {
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
        let layers = self.layers.len();
        let x = match index {
            0 => self.embed(w, state)?,
            i if i <= layers => {
                let x = state.take_hidden(&self.stages[i].id)?;
                self.layer(i - 1, w, state, x)?
            }
            _ => {
                let x = state.take_hidden("pooler")?;
                let pooler = self
                    .pooler
                    .as_ref()
                    .expect("pooler stage exists only with a pooler");
                let mut pooled = pooler.forward(w, &first_token(&x)?)?.into_values();
                Activation::Tanh.apply_in_place(&mut pooled);
                state.output(
                    "pooler_output",
                    Tensor::from_vec(&[state.batch, self.config.hidden_size], pooled)?,
                );
                state.hidden = Some(x);
                return Ok(());
            }
        };
        state.record_hidden(&x);
        if index == layers {
            state.output("last_hidden_state", x.clone());
        }
        state.hidden = Some(x);
        Ok(())
    }
}
