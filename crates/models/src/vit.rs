//! ViT (`ViTModel`, `ViTForImageClassification`): patch embeddings with a CLS token, pre-norm
//! encoder layers, a final layer norm, and a pooler or classifier. Mirrors transformers'
//! `models/vit/modeling_vit.py`.

use serde::Deserialize;

use edgerun_tensor::kernels::{self, Activation, Conv2dParams, HeadLayout};
use edgerun_tensor::Tensor;

use crate::common::{first_token, join, stage_at, LayerNorm, Linear, Param, QkvAttention};
use crate::family::{activation, detect_prefix, head_layout, positive};
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

/// `ViTEmbeddings`: patches by a strided convolution, the CLS token in front, positions added.
struct VitEmbeddings {
    cls_token: Param,
    position: Param,
    patch: Param,
    patch_bias: Param,
    channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden: usize,
}

impl VitEmbeddings {
    fn specs(&self) -> Vec<TensorSpec> {
        vec![
            self.cls_token.spec(),
            self.position.spec(),
            self.patch.spec(),
            self.patch_bias.spec(),
        ]
    }

    fn forward(&self, w: &UnitWeights, state: &State) -> Result<Tensor> {
        let pixels = state.inputs.pixels()?;
        let expected = [state.batch, self.channels, self.image_size, self.image_size];
        if pixels.shape() != expected {
            return Err(ModelError::input(
                "pixel_values",
                format!("expected {expected:?}, got {:?}", pixels.shape()),
            ));
        }
        let params = Conv2dParams {
            stride: self.patch_size,
            ..Conv2dParams::default()
        };
        let grid = kernels::conv2d(
            pixels,
            self.patch.get(w)?,
            Some(self.patch_bias.get(w)?),
            params,
        )?;
        let (b, d) = (state.batch, self.hidden);
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
}

/// `ViTLayer`: pre-norm attention (`ViTAttention`) and MLP (`ViTIntermediate`, `ViTOutput`),
/// each with its residual.
struct VitLayer {
    norm_before: LayerNorm,
    attention: QkvAttention,
    norm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
    activation: Activation,
}

impl VitLayer {
    fn new(c: &VitConfig, prefix: &str, layout: HeadLayout, activation: Activation) -> Self {
        let d = c.hidden_size;
        let linear = |path: &str, i, o, bias| Linear::new(&join(prefix, path), i, o, bias);
        let norm = |path: &str| LayerNorm::new(&join(prefix, path), d, c.layer_norm_eps);
        Self {
            norm_before: norm("layernorm_before"),
            attention: QkvAttention {
                query: linear("attention.attention.query", d, d, c.qkv_bias),
                key: linear("attention.attention.key", d, d, c.qkv_bias),
                value: linear("attention.attention.value", d, d, c.qkv_bias),
                output: linear("attention.output.dense", d, d, true),
                layout,
            },
            norm_after: norm("layernorm_after"),
            intermediate: linear("intermediate.dense", d, c.intermediate_size, true),
            output: linear("output.dense", c.intermediate_size, d, true),
            activation,
        }
    }

    fn specs(&self) -> Vec<TensorSpec> {
        [
            self.norm_before.specs(),
            self.attention.specs(),
            self.norm_after.specs(),
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
        let normed = self.norm_before.forward(w, &x)?;
        let attended = self.attention.forward(w, state, layer, &normed)?;
        let (x, normed) = self.norm_after.forward_keeping(w, attended, &x)?;
        let inner = self
            .intermediate
            .forward_then(w, &normed, self.activation)?;
        Ok(kernels::add(&self.output.forward(w, &inner)?, &x)?)
    }
}

/// The final LayerNorm and what follows it.
struct VitHead {
    final_norm: LayerNorm,
    kind: VitHeadKind,
}

enum VitHeadKind {
    /// `ViTModel`, with its tanh pooler (`ViTPooler`) when the checkpoint has one.
    Base { pooler: Option<Linear> },
    /// `ViTForImageClassification`: a linear classifier on the CLS token.
    Classifier(Linear),
}

impl VitHead {
    fn specs(&self) -> Vec<TensorSpec> {
        let after = match &self.kind {
            VitHeadKind::Classifier(c) => c.specs(),
            VitHeadKind::Base { pooler: Some(p) } => p.specs(),
            VitHeadKind::Base { pooler: None } => Vec::new(),
        };
        [self.final_norm.specs(), after].concat()
    }

    fn forward(&self, w: &UnitWeights, state: &mut State, x: Tensor) -> Result<()> {
        let x = self.final_norm.forward(w, &x)?;
        match &self.kind {
            VitHeadKind::Classifier(classifier) => {
                let logits = classifier.forward(w, &first_token(&x)?)?;
                state.output("logits", logits);
            }
            VitHeadKind::Base { pooler } => {
                state.output("last_hidden_state", x.clone());
                if let Some(pooler) = pooler {
                    let pooled = pooler.forward_then(w, &first_token(&x)?, Activation::Tanh)?;
                    state.output("pooler_output", pooled);
                }
            }
        }
        state.hidden = Some(x);
        Ok(())
    }
}

/// What stage `i` of a ViT is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VitStage {
    Embeddings,
    Layer(usize),
    Head,
}

pub struct Vit {
    config: VitConfig,
    embeddings: VitEmbeddings,
    layers: Vec<VitLayer>,
    head: VitHead,
    order: Vec<VitStage>,
    stages: Vec<StageSpec>,
}

impl Vit {
    pub fn new(config: VitConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let c = &config;
        let activation = activation("hidden_act", &c.hidden_act)?;
        let d = positive("hidden_size", c.hidden_size)?;
        let patch = positive("patch_size", c.patch_size)?;
        if !c.image_size.is_multiple_of(patch) {
            return Err(ModelError::config(
                "image_size",
                format!("{} is not a multiple of patch_size {patch}", c.image_size),
            ));
        }
        let patches = (c.image_size / patch).pow(2);
        let layout = head_layout(d, c.num_attention_heads)?;
        let p = detect_prefix("vit.", "embeddings.cls_token", has_tensor);
        let e = join(&p, "embeddings.");
        let embeddings = VitEmbeddings {
            cls_token: Param::new(join(&e, "cls_token"), vec![1, 1, d]),
            position: Param::new(join(&e, "position_embeddings"), vec![1, patches + 1, d]),
            patch: Param::new(
                join(&e, "patch_embeddings.projection.weight"),
                vec![d, c.num_channels, patch, patch],
            ),
            patch_bias: Param::new(join(&e, "patch_embeddings.projection.bias"), vec![d]),
            channels: c.num_channels,
            image_size: c.image_size,
            patch_size: patch,
            hidden: d,
        };
        let layers: Vec<VitLayer> = (0..c.num_hidden_layers)
            .map(|i| {
                VitLayer::new(
                    c,
                    &join(&p, &format!("encoder.layer.{i}.")),
                    layout,
                    activation,
                )
            })
            .collect();
        let kind = if has_tensor("classifier.weight") {
            VitHeadKind::Classifier(Linear::new(
                "classifier",
                d,
                label_count(&c.id2label, c.num_labels),
                true,
            ))
        } else {
            let path = join(&p, "pooler.dense");
            VitHeadKind::Base {
                pooler: has_tensor(&format!("{path}.weight"))
                    .then(|| Linear::new(&path, d, d, true)),
            }
        };
        let head = VitHead {
            final_norm: LayerNorm::new(&join(&p, "layernorm"), d, c.layer_norm_eps),
            kind,
        };
        let order: Vec<VitStage> = std::iter::once(VitStage::Embeddings)
            .chain((0..layers.len()).map(VitStage::Layer))
            .chain([VitStage::Head])
            .collect();
        let mut vit = Self {
            config,
            embeddings,
            layers,
            head,
            order,
            stages: Vec::new(),
        };
        vit.stages = vit.order.iter().map(|&s| vit.spec(s)).collect();
        Ok(vit)
    }

    fn spec(&self, stage: VitStage) -> StageSpec {
        let (id, tensors) = match stage {
            VitStage::Embeddings => ("embeddings".into(), self.embeddings.specs()),
            VitStage::Layer(i) => (format!("encoder.layer.{i}"), self.layers[i].specs()),
            VitStage::Head => ("head".into(), self.head.specs()),
        };
        StageSpec { id, tensors }
    }
}

impl Model for Vit {
    fn outputs(&self) -> Vec<(String, usize)> {
        match &self.head.kind {
            VitHeadKind::Classifier(_) => vec![("logits".into(), 2)],
            VitHeadKind::Base { pooler } => {
                let mut names = vec![("last_hidden_state".into(), 3)];
                if pooler.is_some() {
                    names.push(("pooler_output".into(), 2));
                }
                names
            }
        }
    }

    fn architecture(&self) -> &str {
        match self.head.kind {
            VitHeadKind::Classifier(_) => "ViTForImageClassification",
            VitHeadKind::Base { .. } => "ViTModel",
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
        let stage = stage_at(&self.order, index)?;
        let x = match stage {
            VitStage::Embeddings => self.embeddings.forward(w, state)?,
            VitStage::Layer(i) => {
                let x = state.take_hidden(&self.stages[index].id)?;
                self.layers[i].forward(w, state, i, x)?
            }
            VitStage::Head => {
                let x = state.take_hidden("head")?;
                return self.head.forward(w, state, x);
            }
        };
        state.record_hidden(&x);
        state.hidden = Some(x);
        Ok(())
    }
}
