//! VGG (torchvision `vgg11`..`vgg19`, with or without `_bn`): 3x3 convolutions with ReLU and
//! max pools (`features`), an adaptive average pool, and a three-layer classifier. Mirrors
//! `torchvision/models/vgg.py`; each convolution (with the pool after it) and each classifier
//! layer is a stage, so VGG-19's 411 MB first classifier layer is a unit of its own.
//!
//! `features` run channels last (NHWC); the map is turned back to NCHW before the pool and
//! flatten, so the classifier reads its features in torchvision's order.

use edgerun_tensor::kernels::im2col_elements;
use edgerun_tensor::kernels::{self, Activation};
use edgerun_tensor::Tensor;

use crate::common::{stage_at, ConvBn, Linear};
use crate::torchvision::{overridden, TorchvisionConfig};
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
    UnitWeights,
};

/// A `features` entry: a convolution's output channels or a max pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Layer {
    Conv(usize),
    Pool(PoolMark),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum PoolMark {
    M,
}

fn standard(depth: usize) -> Option<Vec<Layer>> {
    let layout: &[usize] = match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
        16 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        19 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
        _ => return None,
    };
    Some(
        layout
            .iter()
            .map(|&c| {
                if c == 0 {
                    Layer::Pool(PoolMark::M)
                } else {
                    Layer::Conv(c)
                }
            })
            .collect(),
    )
}

/// One convolution of `features` (with its ReLU), and whether a 2x2 max pool follows it.
struct ConvStage {
    conv: ConvBn,
    pool_after: bool,
}

impl ConvStage {
    fn specs(&self) -> Vec<TensorSpec> {
        self.conv.specs()
    }

    fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(w, x)?;
        if self.pool_after {
            return Ok(kernels::max_pool2d_nhwc(&y, 2, 2, 0)?);
        }
        Ok(y)
    }
}

/// What stage `i` of a VGG is: a convolution of `features`, or a layer of `classifier`
/// (the first after the adaptive average pool and flatten).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VggStage {
    Conv(usize),
    Classifier(usize),
}

pub struct Vgg {
    architecture: String,
    convs: Vec<ConvStage>,
    pool_size: usize,
    classifier: [Linear; 3],
    order: Vec<VggStage>,
    stages: Vec<StageSpec>,
}

impl Vgg {
    pub fn new(config: &TorchvisionConfig) -> Result<Self> {
        let arch = config.architecture.as_str();
        let batch_norm = arch.ends_with("_bn");
        let depth: usize = arch
            .trim_start_matches("vgg")
            .trim_end_matches("_bn")
            .parse()
            .map_err(|_| ModelError::UnknownArchitecture(format!("torchvision {arch}")))?;
        let default = standard(depth)
            .ok_or_else(|| ModelError::UnknownArchitecture(format!("torchvision {arch}")))?;
        let layers: Vec<Layer> = overridden(&config.overrides, "cfg", default)?;
        let pool_size: usize = overridden(&config.overrides, "pool_size", 7)?;
        let hidden: usize = overridden(&config.overrides, "classifier_hidden", 4096)?;
        if config.num_classes == 0 || pool_size == 0 || hidden == 0 {
            return Err(ModelError::config(
                "num_classes",
                "num_classes, pool_size and classifier_hidden must be positive",
            ));
        }
        // torchvision numbers features.N over every module: conv, [bn], relu, and pools.
        let mut convs: Vec<ConvStage> = Vec::new();
        let (mut index, mut channels) = (0usize, 3usize);
        for layer in &layers {
            match *layer {
                Layer::Pool(_) => {
                    let last = convs.last_mut().ok_or_else(|| {
                        ModelError::config("cfg", "a max pool before any convolution")
                    })?;
                    last.pool_after = true;
                    index += 1;
                }
                Layer::Conv(out) => {
                    let conv_path = format!("features.{index}");
                    let conv = if batch_norm {
                        let norm = format!("features.{}", index + 1);
                        ConvBn::new(&conv_path, &norm, (channels, out, 3), 1, Activation::Relu)
                            .with_bias()
                    } else {
                        ConvBn::plain(&conv_path, (channels, out, 3), Activation::Relu)
                    };
                    convs.push(ConvStage {
                        conv,
                        pool_after: false,
                    });
                    index += if batch_norm { 3 } else { 2 };
                    channels = out;
                }
            }
        }
        if convs.is_empty() {
            return Err(ModelError::config("cfg", "no convolutions"));
        }
        let flat = channels * pool_size * pool_size;
        let classifier = [
            Linear::new("classifier.0", flat, hidden, true),
            Linear::new("classifier.3", hidden, hidden, true),
            Linear::new("classifier.6", hidden, config.num_classes, true),
        ];
        let order: Vec<VggStage> = (0..convs.len())
            .map(VggStage::Conv)
            .chain((0..classifier.len()).map(VggStage::Classifier))
            .collect();
        let mut model = Self {
            architecture: arch.to_string(),
            convs,
            pool_size,
            classifier,
            order,
            stages: Vec::new(),
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: VggStage) -> StageSpec {
        let (id, tensors) = match stage {
            VggStage::Conv(i) => (self.convs[i].conv.id(), self.convs[i].specs()),
            VggStage::Classifier(i) => (self.classifier[i].id(), self.classifier[i].specs()),
        };
        StageSpec { id, tensors }
    }
}

impl Vgg {
    /// Elements of the largest feature map and of the largest im2col buffer (per image).
    fn feature_extents(&self, state: &State) -> Option<(u64, u64)> {
        let shape = state.inputs.image_shape().ok()?;
        let (b, h, w) = (state.batch as u64, shape[2] as u64, shape[3] as u64);
        let (mut largest, mut columns) = (0u64, 0u64);
        let (mut fh, mut fw, mut channels) = (h, w, 3u64);
        for stage in &self.convs {
            let out = stage.conv.out_channels() as u64;
            largest = largest.max(b * out * fh * fw);
            columns = columns
                .max(im2col_elements(9 * channels as usize, fh as usize, fw as usize) as u64);
            channels = out;
            if stage.pool_after {
                (fh, fw) = (fh / 2, fw / 2);
            }
        }
        Some((largest, columns))
    }
}

impl Model for Vgg {
    fn outputs(&self) -> Vec<(String, usize)> {
        vec![("logits".into(), 2)]
    }

    fn architecture(&self) -> &str {
        &self.architecture
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Vision
    }

    fn has_attention(&self) -> bool {
        false
    }

    fn stages(&self) -> &[StageSpec] {
        &self.stages
    }

    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        let pools = self.convs.iter().filter(|c| c.pool_after).count() as u32;
        crate::common::start_image(inputs, options, 3, 1 << pools)
    }

    /// The first convolution's output (the widest map) three times over, plus its im2col
    /// buffer and the flattened classifier input.
    fn activation_bytes(&self, state: &State) -> u64 {
        let Some((largest, columns)) = self.feature_extents(state) else {
            return 0;
        };
        let input = state
            .inputs
            .image_shape()
            .map_or(0, |s| s.iter().product::<usize>() as u64);
        4 * (3 * largest + columns + input)
    }

    fn scratch_bytes(&self, state: &State) -> u64 {
        self.feature_extents(state)
            .map_or(0, |(_, columns)| 4 * columns)
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let stage = stage_at(&self.order, index)?;
        let x = match index {
            0 => kernels::nchw_to_nhwc(state.inputs.pixels()?)?,
            _ => state.take_hidden(&self.stages[index].id)?,
        };
        let layer = match stage {
            VggStage::Conv(i) => {
                state.hidden = Some(self.convs[i].forward(w, &x)?);
                return Ok(());
            }
            VggStage::Classifier(layer) => layer,
        };
        let input = if layer == 0 {
            let x = kernels::nhwc_to_nchw(&x)?;
            let pooled = kernels::adaptive_avg_pool2d(&x, self.pool_size, self.pool_size)?;
            let features = pooled.len() / state.batch.max(1);
            pooled.reshape(&[state.batch, features])?
        } else {
            x
        };
        let y = self.classifier[layer].forward(w, &input)?;
        if layer + 1 == self.classifier.len() {
            state.output("logits", y);
        } else {
            // Dropout is the identity in eval.
            state.hidden = Some(crate::common::activate(y, Activation::Relu)?);
        }
        Ok(())
    }
}
