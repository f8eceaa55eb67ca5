//! ViT (`ViTModel`, `ViTForImageClassification`): patch embeddings with a CLS token, pre-norm
//! encoder layers, a final layer norm, and a pooler or classifier. Mirrors transformers'
//! `models/vit/modeling_vit.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, Conv2dParams, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{first_token, join, LayerNorm, Linear, Param, QkvAttention};
use crate::family::{detect_prefix, head_dim, positive};
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
    UnitWeights,
};

#[derive(Clone, Debug, Deserialize)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}

/// Labels from `id2label` (or `num_labels`), as `PretrainedConfig` derives them.
pub(crate) fn label_count(
    id2label: &Option<serde_json::Map<String, serde_json::Value>>,
    num_labels: Option<usize>,
) -> usize {
    id2label
        .as_ref()
        .map(|m| m.len())
        .or(num_labels)
        .unwrap_or(2)
}

struct VitLayer {
    norm_before: LayerNorm,
    attention: QkvAttention,
    norm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
}

enum VitHead {
    /// `ViTModel`, with its tanh pooler when the checkpoint has one.
    Base { pooler: Option<Linear> },
    /// `ViTForImageClassification`: a linear classifier on the CLS token.
    Classifier(Linear),
}

pub struct Vit {
    config: VitConfig,
    activation: Activation,
    cls_token: Param,
    position: Param,
    patch: Param,
    patch_bias: Param,
    layers: Vec<VitLayer>,
    final_norm: LayerNorm,
    head: VitHead,
    stages: Vec<StageSpec>,
}

impl Vit {
    pub fn new(config: VitConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = Activation::from_hf(&c.hidden_act).ok_or_else(|| {
            ModelError::config("hidden_act", format!("{:?} is not supported", c.hidden_act))
        })?;
        let d = positive("hidden_size", c.hidden_size)?;
        let patch = positive("patch_size", c.patch_size)?;
        if !c.image_size.is_multiple_of(patch) {
            return Err(ModelError::config(
                "image_size",
                format!("{} is not a multiple of patch_size {patch}", c.image_size),
            ));
        }
        let patches = (c.image_size / patch).pow(2);
        let layout = HeadLayout {
            heads: c.num_attention_heads,
            head_dim: head_dim(d, c.num_attention_heads)?,
        };
        let p = detect_prefix("vit.", "embeddings.cls_token", has_tensor);
        let e = join(&p, "embeddings.");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = join(&p, &format!("encoder.layer.{i}."));
                VitLayer {
                    norm_before: LayerNorm::new(&join(&l, "layernorm_before"), d, c.layer_norm_eps),
                    attention: QkvAttention {
                        query: Linear::new(
                            &join(&l, "attention.attention.query"),
                            d,
                            d,
                            c.qkv_bias,
                        ),
                        key: Linear::new(&join(&l, "attention.attention.key"), d, d, c.qkv_bias),
                        value: Linear::new(
                            &join(&l, "attention.attention.value"),
                            d,
                            d,
                            c.qkv_bias,
                        ),
                        output: Linear::new(&join(&l, "attention.output.dense"), d, d, true),
                        layout,
                    },
                    norm_after: LayerNorm::new(&join(&l, "layernorm_after"), d, c.layer_norm_eps),
                    intermediate: Linear::new(
                        &join(&l, "intermediate.dense"),
                        d,
                        c.intermediate_size,
                        true,
                    ),
                    output: Linear::new(&join(&l, "output.dense"), c.intermediate_size, d, true),
                }
            })
            .collect::<Vec<_>>();
        let head = if has_tensor("classifier.weight") {
            VitHead::Classifier(Linear::new(
                "classifier",
                d,
                label_count(&c.id2label, c.num_labels),
                true,
            ))
        } else {
            let path = join(&p, "pooler.dense");
            VitHead::Base {
                pooler: has_tensor(&format!("{path}.weight"))
                    .then(|| Linear::new(&path, d, d, true)),
            }
        };
        let mut vit = Self {
            activation,
            cls_token: Param::new(join(&e, "cls_token"), vec![1, 1, d]),
            position: Param::new(join(&e, "position_embeddings"), vec![1, patches + 1, d]),
            patch: Param::new(
                join(&e, "patch_embeddings.projection.weight"),
                vec![d, c.num_channels, patch, patch],
            ),
            patch_bias: Param::new(join(&e, "patch_embeddings.projection.bias"), vec![d]),
            layers,
            final_norm: LayerNorm::new(&join(&p, "layernorm"), d, c.layer_norm_eps),
            head,
            stages: Vec::new(),
            config,
        };
        vit.stages = vit.stage_specs();
        Ok(vit)
    }

    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut stages = vec![StageSpec {
            id: "embeddings".into(),
            tensors: vec![
                self.cls_token.spec(),
                self.position.spec(),
                self.patch.spec(),
                self.patch_bias.spec(),
            ],
        }];
        for (i, l) in self.layers.iter().enumerate() {
            let tensors = l
                .norm_before
                .specs()
                .into_iter()
                .chain(l.attention.specs())
                .chain(l.norm_after.specs())
                .chain(l.intermediate.specs())
                .chain(l.output.specs())
                .collect();
            stages.push(StageSpec {
                id: format!("encoder.layer.{i}"),
                tensors,
            });
        }
        let mut head: Vec<TensorSpec> = self.final_norm.specs();
        match &self.head {
            VitHead::Classifier(c) => head.extend(c.specs()),
            VitHead::Base { pooler: Some(p) } => head.extend(p.specs()),
            VitHead::Base { pooler: None } => {}
        }
        stages.push(StageSpec {
            id: "head".into(),
            tensors: head,
        });
        stages
    }

    fn embed(&self, w: &UnitWeights, state: &State) -> Result<Tensor> {
        let c = &self.config;
        let pixels = state.inputs.pixels()?;
        let expected = [state.batch, c.num_channels, c.image_size, c.image_size];
        if pixels.shape() != expected {
            return Err(ModelError::input(
                "pixel_values",
                format!("expected {expected:?}, got {:?}", pixels.shape()),
            ));
        }
        let params = Conv2dParams {
            stride: c.patch_size,
            ..Conv2dParams::default()
        };
        let grid = kernels::conv2d(
            pixels,
            self.patch.get(w)?,
            Some(self.patch_bias.get(w)?),
            params,
        )?;
        let (b, d) = (state.batch, c.hidden_size);
        let n = grid.shape()[2] * grid.shape()[3];
        // [b, d, n] -> [b, n, d], with the CLS token in front.
        let tokens = grid.reshape(&[b, d, n])?.transpose(1, 2)?.contiguous();
        let cls = self.cls_token.get(w)?.contiguous();
        let mut out = Vec::with_capacity(b * (n + 1) * d);
        for i in 0..b {
            out.extend_from_slice(cls.values());
            out.extend_from_slice(&tokens.values()[i * n * d..][..n * d]);
        }
        let position = self.position.get(w)?.contiguous();
        for row in out.chunks_exact_mut((n + 1) * d) {
            row.iter_mut()
                .zip(position.values())
                .for_each(|(x, p)| *x += p);
        }
        Ok(Tensor::from_vec(&[b, n + 1, d], out)?)
    }

    fn layer(&self, i: usize, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<Tensor> {
        let l = &self.layers[i];
        let attended = l
            .attention
            .forward(w, state, i, &l.norm_before.forward(w, &x)?)?;
        let x = kernels::add(&attended, &x)?;
        let mut inner = l.intermediate.forward(w, &l.norm_after.forward(w, &x)?)?;
        let shape = inner.shape().to_vec();
        let mut values = inner.into_values();
        self.activation.apply_in_place(&mut values);
        inner = Tensor::from_vec(&shape, values)?;
        Ok(kernels::add(&l.output.forward(w, &inner)?, &x)?)
    }

    fn head(&self, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<()> {
        let x = self.final_norm.forward(w, &x)?;
        match &self.head {
            VitHead::Classifier(classifier) => {
                let logits = classifier.forward(w, &first_token(&x)?)?;
                state.output("logits", logits);
            }
            VitHead::Base { pooler } => {
                state.output("last_hidden_state", x.clone());
                if let Some(pooler) = pooler {
                    let pooled = pooler.forward(w, &first_token(&x)?)?;
                    let shape = pooled.shape().to_vec();
                    let mut values = pooled.into_values();
                    Activation::Tanh.apply_in_place(&mut values);
                    state.output("pooler_output", Tensor::from_vec(&shape, values)?);
                }
            }
        }
        state.hidden = Some(x);
        Ok(())
    }
}

impl Model for Vit {
    fn architecture(&self) -> &str {
        match self.head {
            VitHead::Classifier(_) => "ViTForImageClassification",
            VitHead::Base { .. } => "ViTModel",
        }
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Vision
    }

    fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        let mut state = State::for_pixels(inputs, options)?;
        state.seq = (self.config.image_size / self.config.patch_size).pow(2) + 1;
        Ok(state)
    }

    fn activation_bytes(&self, state: &State) -> u64 {
        let c = &self.config;
        let image = (state.batch * c.num_channels * c.image_size * c.image_size) as u64 * 4;
        image
            + crate::common::transformer_activation_bytes(
                state,
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
                0,
            )
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let x = match index {
            0 => self.embed(w, state)?,
            i if i <= self.layers.len() => {
                let x = state.take_hidden(&self.stages[i].id)?;
                self.layer(i - 1, w, state, x)?
            }
            _ => {
                let x = state.take_hidden("head")?;
                return self.head(w, state, x);
            }
        };
        state.record_hidden(&x);
        state.hidden = Some(x);
        Ok(())
    }
}
