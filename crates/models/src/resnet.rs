//! ResNet (`ResNetModel`, `ResNetForImageClassification`): a 7x7 stem and max pool, stages of
//! basic or bottleneck residual layers, global average pooling and a linear classifier.
//! Mirrors transformers' `models/resnet/modeling_resnet.py`; each residual layer is a stage.
//!
//! Feature maps run channels last (NHWC) from the stem to the head, so every convolution is
//! one product over packed weights; the hidden states a caller sees are NCHW, as transformers
//! returns them.

use serde::Deserialize;

use edgerun_tensor::kernels::im2col_elements;
use edgerun_tensor::kernels::{self, Activation};
use edgerun_tensor::Tensor;

use crate::common::{join, stage_at, ConvBn, Linear};
use crate::family::{activation, detect_prefix, positive};
use crate::vit::label_count;
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
    UnitWeights,
};

#[derive(Clone, Debug, Deserialize)]
pub struct ResNetConfig {
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    pub embedding_size: usize,
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    #[serde(default = "default_layer_type")]
    pub layer_type: String,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub downsample_in_first_stage: bool,
    #[serde(default)]
    pub downsample_in_bottleneck: bool,
    #[serde(default)]
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
}

fn default_channels() -> usize {
    3
}
fn default_layer_type() -> String {
    "bottleneck".into()
}
fn default_act() -> String {
    "relu".into()
}

/// `ResNetEmbeddings`: the 7x7 stem and a 3x3 max pool.
struct ResNetEmbedder {
    stem: ConvBn,
}

impl ResNetEmbedder {
    fn specs(&self) -> Vec<TensorSpec> {
        self.stem.specs()
    }

    fn forward(&self, w: &UnitWeights, pixels: &Tensor) -> Result<Tensor> {
        let y = self.stem.forward(w, &kernels::nchw_to_nhwc(pixels)?)?;
        Ok(kernels::max_pool2d_nhwc(&y, 3, 2, 1)?)
    }
}

/// One residual layer (`ResNetBasicLayer` or `ResNetBottleNeckLayer`): its convolutions in
/// order and an optional projection shortcut.
struct ResidualLayer {
    /// `encoder.stages.S.layers.L`.
    id: String,
    convs: Vec<ConvBn>,
    shortcut: Option<ConvBn>,
    activation: Activation,
    /// Records `hidden_states` after it: the last layer of a stage.
    ends_stage: bool,
}

impl ResidualLayer {
    fn specs(&self) -> Vec<TensorSpec> {
        self.shortcut
            .iter()
            .chain(&self.convs)
            .flat_map(ConvBn::specs)
            .collect()
    }

    fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        let residual = match &self.shortcut {
            Some(s) => s.forward(w, x)?,
            None => x.clone(),
        };
        let Some((last, first)) = self.convs.split_last() else {
            return Ok(kernels::add_then(x.clone(), &residual, self.activation)?);
        };
        let mut y = x.clone();
        for conv in first {
            y = conv.forward(w, &y)?;
        }
        last.forward_adding(w, &y, &residual, self.activation)
    }
}

/// Global average pooling, then the classifier of `ResNetForImageClassification` if any.
struct ResNetHead {
    classifier: Option<Linear>,
}

impl ResNetHead {
    fn specs(&self) -> Vec<TensorSpec> {
        self.classifier.iter().flat_map(Linear::specs).collect()
    }

    /// `x` is NHWC.
    fn forward(&self, w: &UnitWeights, state: &mut State, x: &Tensor) -> Result<()> {
        let pooled = kernels::global_avg_pool_nhwc(x)?;
        match &self.classifier {
            Some(classifier) => {
                state.output("logits", classifier.forward(w, &pooled)?);
            }
            None => {
                let channels = pooled.shape()[1];
                state.output("last_hidden_state", kernels::nhwc_to_nchw(x)?);
                state.output(
                    "pooler_output",
                    pooled.reshape(&[state.batch, channels, 1, 1])?,
                );
            }
        }
        Ok(())
    }
}

/// What stage `i` of a ResNet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResNetStage {
    Embedder,
    Layer(usize),
    Head,
}

pub struct ResNet {
    config: ResNetConfig,
    embedder: ResNetEmbedder,
    layers: Vec<ResidualLayer>,
    head: ResNetHead,
    order: Vec<ResNetStage>,
    stages: Vec<StageSpec>,
}

impl ResNet {
    pub fn new(
        config: ResNetConfig,
        architecture: Option<&str>,
        has_tensor: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        let c = &config;
        let act = activation("hidden_act", &c.hidden_act)?;
        let bottleneck = match c.layer_type.as_str() {
            "bottleneck" => true,
            "basic" => false,
            other => {
                return Err(ModelError::config(
                    "layer_type",
                    format!("{other:?} is neither basic nor bottleneck"),
                ))
            }
        };
        if c.depths.len() != c.hidden_sizes.len() || c.depths.is_empty() {
            return Err(ModelError::config(
                "depths",
                format!(
                    "{} depths for {} hidden_sizes",
                    c.depths.len(),
                    c.hidden_sizes.len()
                ),
            ));
        }
        positive("embedding_size", c.embedding_size)?;
        if c.depths.contains(&0) {
            return Err(ModelError::config(
                "depths",
                "every stage needs at least one layer",
            ));
        }
        let p = detect_prefix(
            "resnet.",
            "embedder.embedder.convolution.weight",
            has_tensor,
        );
        let stem_path = join(&p, "embedder.embedder.");
        let stem = ConvBn::new(
            &join(&stem_path, "convolution"),
            &join(&stem_path, "normalization"),
            (c.num_channels, c.embedding_size, 7),
            2,
            act,
        );

        let mut layers = Vec::new();
        let mut in_ch = c.embedding_size;
        for (s, (&out_ch, &depth)) in c.hidden_sizes.iter().zip(&c.depths).enumerate() {
            positive("hidden_sizes", out_ch)?;
            let first_stride = if s == 0 && !c.downsample_in_first_stage {
                1
            } else {
                2
            };
            for l in 0..depth {
                let (cin, stride) = if l == 0 {
                    (in_ch, first_stride)
                } else {
                    (out_ch, 1)
                };
                let path = join(&p, &format!("encoder.stages.{s}.layers.{l}."));
                let conv =
                    |i: usize, shape: (usize, usize, usize), stride: usize, act: Activation| {
                        let base = join(&path, &format!("layer.{i}."));
                        ConvBn::new(
                            &join(&base, "convolution"),
                            &join(&base, "normalization"),
                            shape,
                            stride,
                            act,
                        )
                    };
                let convs = if bottleneck {
                    let reduced = out_ch / 4;
                    let (s1, s3) = if c.downsample_in_bottleneck {
                        (stride, 1)
                    } else {
                        (1, stride)
                    };
                    vec![
                        conv(0, (cin, reduced, 1), s1, act),
                        conv(1, (reduced, reduced, 3), s3, act),
                        conv(2, (reduced, out_ch, 1), 1, Activation::Identity),
                    ]
                } else {
                    vec![
                        conv(0, (cin, out_ch, 3), stride, act),
                        conv(1, (out_ch, out_ch, 3), 1, Activation::Identity),
                    ]
                };
                let shortcut = (cin != out_ch || stride != 1).then(|| {
                    let base = join(&path, "shortcut.");
                    ConvBn::new(
                        &join(&base, "convolution"),
                        &join(&base, "normalization"),
                        (cin, out_ch, 1),
                        stride,
                        Activation::Identity,
                    )
                });
                layers.push(ResidualLayer {
                    id: format!("encoder.stages.{s}.layers.{l}"),
                    convs,
                    shortcut,
                    activation: act,
                    ends_stage: l + 1 == depth,
                });
            }
            in_ch = out_ch;
        }
        let wants_classifier = architecture != Some("ResNetModel");
        let classifier = (wants_classifier && has_tensor("classifier.1.weight")).then(|| {
            Linear::new(
                "classifier.1",
                in_ch,
                label_count(&c.id2label, c.num_labels),
                true,
            )
        });

        let order: Vec<ResNetStage> = std::iter::once(ResNetStage::Embedder)
            .chain((0..layers.len()).map(ResNetStage::Layer))
            .chain([ResNetStage::Head])
            .collect();
        let mut model = Self {
            config,
            embedder: ResNetEmbedder { stem },
            layers,
            head: ResNetHead { classifier },
            order,
            stages: Vec::new(),
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: ResNetStage) -> StageSpec {
        let (id, tensors) = match stage {
            ResNetStage::Embedder => ("embedder".into(), self.embedder.specs()),
            ResNetStage::Layer(i) => (self.layers[i].id.clone(), self.layers[i].specs()),
            ResNetStage::Head => ("head".into(), self.head.specs()),
        };
        StageSpec { id, tensors }
    }

    /// Elements of the largest feature map and of the largest im2col buffer (per image; the
    /// buffer is reused across a batch). A bottleneck's 3x3 runs on a quarter of the stage
    /// width; counting the whole width keeps the bound safe for basic blocks too.
    fn feature_extents(&self, state: &State) -> Option<(u64, u64)> {
        let shape = state.inputs.image_shape().ok()?;
        let (h, w) = (shape[2] as u64, shape[3] as u64);
        let b = state.batch as u64;
        let c = &self.config;
        let mut largest = b * c.embedding_size as u64 * (h / 2 + 1) * (w / 2 + 1);
        let mut columns = 0u64;
        let (mut fh, mut fw) = (h / 4 + 1, w / 4 + 1);
        for (s, &width) in c.hidden_sizes.iter().enumerate() {
            if s > 0 || c.downsample_in_first_stage {
                (fh, fw) = (fh / 2 + 1, fw / 2 + 1);
            }
            largest = largest.max(b * width as u64 * fh * fw);
            columns = columns.max(im2col_elements(9 * width, fh as usize, fw as usize) as u64);
        }
        let stem = im2col_elements(
            49 * c.num_channels,
            (h / 2 + 1) as usize,
            (w / 2 + 1) as usize,
        );
        columns = columns.max(stem as u64);
        Some((largest, columns))
    }
}

impl Model for ResNet {
    fn outputs(&self) -> Vec<(String, usize)> {
        match self.head.classifier {
            Some(_) => vec![("logits".into(), 2)],
            None => vec![("last_hidden_state".into(), 4), ("pooler_output".into(), 4)],
        }
    }

    fn has_attention(&self) -> bool {
        false
    }

    fn architecture(&self) -> &str {
        if self.head.classifier.is_some() {
            "ResNetForImageClassification"
        } else {
            "ResNetModel"
        }
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Vision
    }

    fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        let shape = inputs.image_shape()?;
        if shape.len() != 4 || shape[1] != self.config.num_channels {
            return Err(ModelError::input(
                "pixel_values",
                format!(
                    "expected [batch, {}, height, width], got {shape:?}",
                    self.config.num_channels,
                ),
            ));
        }
        State::for_pixels(inputs, options)
    }

    /// The largest feature map times the tensors live in a residual layer, plus the im2col
    /// buffer of the widest 3x3 convolution and recorded hidden states.
    fn activation_bytes(&self, state: &State) -> u64 {
        let Some((largest, columns)) = self.feature_extents(state) else {
            return 0;
        };
        let c = &self.config;
        let recorded = if state.options.hidden_states {
            (c.hidden_sizes.len() as u64 + 1) * largest
        } else {
            0
        };
        let input = state
            .inputs
            .image_shape()
            .map_or(0, |s| s.iter().product::<usize>() as u64);
        4 * (6 * largest + columns + recorded + input)
    }

    fn scratch_bytes(&self, state: &State) -> u64 {
        self.feature_extents(state)
            .map_or(0, |(_, columns)| 4 * columns)
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let stage = stage_at(&self.order, index)?;
        let y = match stage {
            ResNetStage::Embedder => {
                let y = self.embedder.forward(w, state.inputs.pixels()?)?;
                state.record_hidden_nhwc(&y)?;
                y
            }
            ResNetStage::Layer(i) => {
                let layer = &self.layers[i];
                let y = layer.forward(w, &state.take_hidden(&layer.id)?)?;
                if layer.ends_stage {
                    state.record_hidden_nhwc(&y)?;
                }
                y
            }
            ResNetStage::Head => {
                let x = state.take_hidden("head")?;
                self.head.forward(w, state, &x)?;
                x
            }
        };
        state.hidden = Some(y);
        Ok(())
    }
}
