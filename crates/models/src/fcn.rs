//! FCN-ResNet (torchvision `fcn_resnet50`, `fcn_resnet101`): a ResNet backbone whose last two
//! layers trade stride for dilation (output stride 8), an FCN head (3x3 conv, BN, ReLU, 1x1
//! conv to the classes), bilinear upsampling to the input size, and optionally the auxiliary
//! head on layer3. Mirrors `torchvision/models/segmentation/fcn.py` and `resnet.py`; the stem,
//! each bottleneck block and each head are stages.
//!
//! Feature maps run channels last (NHWC); each head's logits are turned back to NCHW before
//! the upsampling, so the outputs are torchvision's.

use edgerun_tensor::kernels::im2col_elements;
use edgerun_tensor::kernels::{self, Activation};
use edgerun_tensor::Tensor;

use crate::common::{stage_at, ConvBn};
use crate::torchvision::{overridden, TorchvisionConfig};
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, TensorSpec,
    UnitWeights,
};

/// torchvision's Bottleneck: 1x1, 3x3 (stride, dilation), 1x1 to 4x the width, plus a
/// projection shortcut when the shape changes.
struct Bottleneck {
    convs: [ConvBn; 3],
    downsample: Option<ConvBn>,
    /// Runs the auxiliary head after this block (the last block of layer3).
    aux_after: bool,
}

impl Bottleneck {
    fn specs(&self) -> Vec<TensorSpec> {
        self.convs
            .iter()
            .chain(&self.downsample)
            .flat_map(ConvBn::specs)
            .collect()
    }

    fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some(d) => d.forward(w, x)?,
            None => x.clone(),
        };
        let [first, middle, last] = &self.convs;
        let y = middle.forward(w, &first.forward(w, x)?)?;
        last.forward_adding(w, &y, &identity, Activation::Relu)
    }
}

/// torchvision's FCNHead: conv3x3 (no bias), BN, ReLU, dropout (identity in eval), conv1x1.
struct Head {
    reduce: ConvBn,
    classify: ConvBn,
}

impl Head {
    fn new(path: &str, in_channels: usize, classes: usize) -> Self {
        let inter = in_channels / 4;
        Self {
            reduce: ConvBn::new(
                &format!("{path}.0"),
                &format!("{path}.1"),
                (in_channels, inter, 3),
                1,
                Activation::Relu,
            ),
            classify: ConvBn::plain(
                &format!("{path}.4"),
                (inter, classes, 1),
                Activation::Identity,
            ),
        }
    }

    fn specs(&self) -> Vec<TensorSpec> {
        [&self.reduce, &self.classify]
            .iter()
            .flat_map(|c| c.specs())
            .collect()
    }

    /// Logits upsampled to the input's height and width.
    fn forward(&self, w: &UnitWeights, x: &Tensor, (h, wd): (usize, usize)) -> Result<Tensor> {
        let y = self.classify.forward(w, &self.reduce.forward(w, x)?)?;
        Ok(kernels::resize_bilinear(
            &kernels::nhwc_to_nchw(&y)?,
            h,
            wd,
        )?)
    }
}

/// What stage `i` of an FCN is: the backbone's stem (conv, BN, ReLU, max pool), one of its
/// bottlenecks (with the auxiliary head after layer3's last), or the classifier head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FcnStage {
    Stem,
    Block(usize),
    Classifier,
}

pub struct Fcn {
    architecture: String,
    stem: ConvBn,
    blocks: Vec<Bottleneck>,
    head: Head,
    aux: Option<Head>,
    widest: usize,
    order: Vec<FcnStage>,
    stages: Vec<StageSpec>,
}

impl Fcn {
    pub fn new(config: &TorchvisionConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<Self> {
        let arch = config.architecture.as_str();
        let default_layers = match arch {
            "fcn_resnet50" => vec![3, 4, 6, 3],
            "fcn_resnet101" => vec![3, 4, 23, 3],
            other => {
                return Err(ModelError::UnknownArchitecture(format!(
                    "torchvision {other}"
                )))
            }
        };
        let layers: Vec<usize> = overridden(&config.overrides, "layers", default_layers)?;
        let planes: Vec<usize> = overridden(&config.overrides, "planes", vec![64, 128, 256, 512])?;
        if layers.len() != 4
            || planes.len() != 4
            || layers.contains(&0)
            || planes.contains(&0)
            || config.num_classes == 0
        {
            return Err(ModelError::config(
                "overrides",
                "layers and planes need four positive entries, num_classes a positive count",
            ));
        }
        let stem = ConvBn::new(
            "backbone.conv1",
            "backbone.bn1",
            (3, 64, 7),
            2,
            Activation::Relu,
        );
        // replace_stride_with_dilation = [False, True, True]: layer3 and layer4 dilate instead
        // of striding; each layer's first block keeps the previous dilation.
        let (mut inplanes, mut dilation) = (64usize, 1usize);
        let mut blocks = Vec::new();
        for (l, (&count, &width)) in layers.iter().zip(&planes).enumerate() {
            let (mut stride, dilate) = (if l == 0 { 1 } else { 2 }, l >= 2);
            let previous = dilation;
            if dilate {
                dilation *= stride;
                stride = 1;
            }
            let out = width * 4;
            for i in 0..count {
                let p = format!("backbone.layer{}.{i}", l + 1);
                let (s, d) = if i == 0 {
                    (stride, previous)
                } else {
                    (1, dilation)
                };
                let conv = |n: usize, dims, s| {
                    ConvBn::new(
                        &format!("{p}.conv{n}"),
                        &format!("{p}.bn{n}"),
                        dims,
                        s,
                        Activation::Relu,
                    )
                };
                let last = ConvBn::new(
                    &format!("{p}.conv3"),
                    &format!("{p}.bn3"),
                    (width, out, 1),
                    1,
                    Activation::Identity,
                );
                let downsample = (i == 0 && (s != 1 || inplanes != out)).then(|| {
                    ConvBn::new(
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        (inplanes, out, 1),
                        s,
                        Activation::Identity,
                    )
                });
                blocks.push(Bottleneck {
                    convs: [
                        conv(1, (inplanes, width, 1), 1),
                        conv(2, (width, width, 3), s).dilated(d),
                        last,
                    ],
                    downsample,
                    aux_after: false,
                });
                inplanes = out;
            }
        }
        let aux = has_tensor("aux_classifier.0.weight")
            .then(|| Head::new("aux_classifier", planes[2] * 4, config.num_classes));
        if aux.is_some() {
            let end_of_layer3 = layers[..3].iter().sum::<usize>() - 1;
            blocks[end_of_layer3].aux_after = true;
        }
        let head = Head::new("classifier", inplanes, config.num_classes);
        let widest = planes.iter().map(|p| p * 4).max().unwrap_or(64).max(64);
        let order: Vec<FcnStage> = std::iter::once(FcnStage::Stem)
            .chain((0..blocks.len()).map(FcnStage::Block))
            .chain([FcnStage::Classifier])
            .collect();
        let mut model = Self {
            architecture: arch.to_string(),
            stem,
            blocks,
            head,
            aux,
            widest,
            order,
            stages: Vec::new(),
        };
        model.stages = model.order.iter().map(|&s| model.spec(s)).collect();
        Ok(model)
    }

    fn spec(&self, stage: FcnStage) -> StageSpec {
        let (id, tensors) = match stage {
            FcnStage::Stem => ("backbone.stem".into(), self.stem.specs()),
            FcnStage::Block(i) => {
                let block = &self.blocks[i];
                let mut tensors = block.specs();
                if block.aux_after {
                    tensors.extend(self.aux.as_ref().map(Head::specs).unwrap_or_default());
                }
                let id = block.convs[0].id().trim_end_matches(".conv1").to_string();
                (id, tensors)
            }
            FcnStage::Classifier => ("classifier".into(), self.head.specs()),
        };
        StageSpec { id, tensors }
    }
}

impl Model for Fcn {
    fn outputs(&self) -> Vec<(String, usize)> {
        let mut names = vec![("out".into(), 4)];
        if self.aux.is_some() {
            names.push(("aux".into(), 4));
        }
        names
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
        crate::common::start_image(inputs, options, 3, 8)
    }

    /// Feature maps stay at 1/8 of the input from layer2 on, at up to 4x the widest planes:
    /// a few of them live at once, with the largest im2col buffer and the upsampled logits.
    fn activation_bytes(&self, state: &State) -> u64 {
        let Ok(shape) = state.inputs.image_shape() else {
            return 0;
        };
        let (b, h, w) = (state.batch as u64, shape[2] as u64, shape[3] as u64);
        let stem = b * 64 * (h / 2 + 1) * (w / 2 + 1);
        let deep = b * self.widest as u64 * (h / 8 + 1) * (w / 8 + 1);
        let logits = 2 * b * self.head.classify.out_channels() as u64 * h * w;
        4 * (2 * stem + 4 * deep + logits + b * 3 * h * w) + self.scratch_bytes(state)
    }

    /// The im2col buffer (per image) of the 7x7 stem or of the head's 3x3 convolution over
    /// the widest features, whichever is larger.
    fn scratch_bytes(&self, state: &State) -> u64 {
        let Ok(shape) = state.inputs.image_shape() else {
            return 0;
        };
        let (h, w) = (shape[2], shape[3]);
        let stem = im2col_elements(49 * 3, h / 2 + 1, w / 2 + 1);
        let head = im2col_elements(9 * self.widest, h / 8 + 1, w / 8 + 1);
        4 * stem.max(head) as u64
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let size = {
            let shape = state.inputs.image_shape()?;
            (shape[2], shape[3])
        };
        let stage = stage_at(&self.order, index)?;
        match stage {
            FcnStage::Stem => {
                let pixels = kernels::nchw_to_nhwc(state.inputs.pixels()?)?;
                let y = self.stem.forward(w, &pixels)?;
                state.hidden = Some(kernels::max_pool2d_nhwc(&y, 3, 2, 1)?);
            }
            FcnStage::Block(i) => {
                let block = &self.blocks[i];
                let y = block.forward(w, &state.take_hidden(&self.stages[index].id)?)?;
                if let (true, Some(aux)) = (block.aux_after, &self.aux) {
                    state.output("aux", aux.forward(w, &y, size)?);
                }
                state.hidden = Some(y);
            }
            FcnStage::Classifier => {
                let x = state.take_hidden("classifier")?;
                let out = self.head.forward(w, &x, size)?;
                // torchvision returns {"out", "aux"}: put `out` first.
                state.outputs.insert(0, ("out".into(), out));
            }
        }
        Ok(())
    }
}
