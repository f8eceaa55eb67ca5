//! YOLOv3 (Redmon and Farhadi, 2018): the Darknet-53 backbone and three detection heads on a
//! feature pyramid, returning the raw prediction maps (decoding boxes and NMS are left to the
//! caller, as in most ports).
//!
//! Config convention (`library` = "darknet"): `architecture` = "yolov3", `num_classes`,
//! `anchors_per_scale` (3), `leaky_slope` (0.1), and `overrides` with `widths` (stem and the
//! five stages, default 32, 64, 128, 256, 512, 1024) and `depths` (residual blocks per stage,
//! default 1, 2, 8, 8, 4). Tensor names:
//! - backbone, as timm's `darknet53` under `backbone.`: `stem.conv1`, `stages.{i}.conv_down`,
//!   `stages.{i}.blocks.{j}.conv{1,2}`, each a bias-free `.conv` and a `.bn`;
//! - head `s` (0 at stride 32, 1 at 16, 2 at 8): `heads.{s}.convs.{0..4}` (1x1 and 3x3
//!   alternating), `heads.{s}.out` (3x3), `heads.{s}.pred` (1x1 with bias, no BN), and for
//!   s < 2 `heads.{s}.route` (1x1), whose output is upsampled 2x (nearest) and concatenated
//!   before the backbone feature of the next finer scale.
//!
//! Outputs `out0`, `out1`, `out2`: `[batch, anchors * (5 + classes), H/32 | H/16 | H/8, ...]`.
//!
//! Maps run channels last (NHWC) inside; outputs and hidden states are given back NCHW.

use edgerun_tensor::kernels::{self, im2col_elements, Activation};
use edgerun_tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

use crate::common::ConvBn;
use crate::torchvision::overridden;
use crate::{
    Inputs, Model, ModelError, ModelKind, Result, RunOptions, StageSpec, State, UnitWeights,
};

#[derive(Clone, Debug, Deserialize)]
pub struct YoloConfig {
    pub architecture: String,
    #[serde(default = "eighty")]
    pub num_classes: usize,
    #[serde(default = "three")]
    pub anchors_per_scale: usize,
    #[serde(default = "darknet_slope")]
    pub leaky_slope: f32,
    #[serde(default)]
    pub overrides: Value,
}

fn eighty() -> usize {
    80
}

fn three() -> usize {
    3
}

fn darknet_slope() -> f32 {
    0.1
}

/// One residual block; the first of a stage also runs the stage's strided `conv_down`.
struct DarkBlock {
    down: Option<ConvBn>,
    conv1: ConvBn,
    conv2: ConvBn,
    /// Keeps its output for a head (the last block of stages 2 and 3).
    skip: Option<String>,
}

struct Head {
    convs: Vec<ConvBn>,
    out: ConvBn,
    pred: ConvBn,
    route: Option<ConvBn>,
    /// The backbone feature concatenated after upsampling the previous head's route.
    joins: Option<String>,
}

enum Unit {
    Stem,
    Block(usize),
    HeadConvs(usize),
    HeadOut(usize),
}

pub struct YoloV3 {
    stem: ConvBn,
    blocks: Vec<DarkBlock>,
    heads: Vec<Head>,
    units: Vec<Unit>,
    stages: Vec<StageSpec>,
    widths: Vec<usize>,
}

fn skip_name(stage: usize) -> String {
    format!("backbone.stages.{stage}")
}

impl YoloV3 {
    pub fn from_config(value: Value) -> Result<Self> {
        let config: YoloConfig =
            serde_json::from_value(value).map_err(|e| ModelError::Config(e.to_string()))?;
        if config.architecture != "yolov3" {
            return Err(ModelError::UnknownArchitecture(format!(
                "darknet {} (known: yolov3)",
                config.architecture
            )));
        }
        let widths: Vec<usize> = overridden(
            &config.overrides,
            "widths",
            vec![32, 64, 128, 256, 512, 1024],
        )?;
        let depths: Vec<usize> = overridden(&config.overrides, "depths", vec![1, 2, 8, 8, 4])?;
        if widths.len() != 6
            || depths.len() != 5
            || depths.contains(&0)
            || widths.iter().any(|&w| w < 4 || w % 4 != 0)
            || config.num_classes == 0
            || config.anchors_per_scale == 0
            || !config.leaky_slope.is_finite()
        {
            return Err(ModelError::config(
                "overrides",
                "widths needs six multiples of 4, depths five positive counts; num_classes and anchors_per_scale positive, leaky_slope finite",
            ));
        }
        let act = Activation::leaky_relu(config.leaky_slope);
        let conv = |path: &str, dims, stride| {
            ConvBn::new(
                &format!("{path}.conv"),
                &format!("{path}.bn"),
                dims,
                stride,
                act,
            )
        };
        let stem = conv("backbone.stem.conv1", (3, widths[0], 3), 1);
        let mut blocks = Vec::new();
        for (i, &depth) in depths.iter().enumerate() {
            let (cin, c) = (widths[i], widths[i + 1]);
            for j in 0..depth {
                let p = format!("backbone.stages.{i}.blocks.{j}");
                blocks.push(DarkBlock {
                    down: (j == 0)
                        .then(|| conv(&format!("backbone.stages.{i}.conv_down"), (cin, c, 3), 2)),
                    conv1: conv(&format!("{p}.conv1"), (c, c / 2, 1), 1),
                    conv2: conv(&format!("{p}.conv2"), (c / 2, c, 3), 1),
                    skip: (j + 1 == depth && (i == 2 || i == 3)).then(|| skip_name(i)),
                });
            }
        }
        let outputs = config.anchors_per_scale * (5 + config.num_classes);
        let mut heads = Vec::new();
        for s in 0..3 {
            let level = 5 - s;
            let c = widths[level];
            let cin = if s == 0 { c } else { widths[level + 1] / 4 + c };
            let p = format!("heads.{s}");
            let convs = (0..5)
                .map(|k| {
                    let dims = match k {
                        0 => (cin, c / 2, 1),
                        _ if k % 2 == 1 => (c / 2, c, 3),
                        _ => (c, c / 2, 1),
                    };
                    conv(&format!("{p}.convs.{k}"), dims, 1)
                })
                .collect();
            heads.push(Head {
                convs,
                out: conv(&format!("{p}.out"), (c / 2, c, 3), 1),
                pred: ConvBn::plain(&format!("{p}.pred"), (c, outputs, 1), Activation::Identity),
                route: (s < 2).then(|| conv(&format!("{p}.route"), (c / 2, c / 4, 1), 1)),
                joins: (s > 0).then(|| skip_name(level - 1)),
            });
        }
        let mut units = vec![Unit::Stem];
        let mut stages = vec![StageSpec {
            id: "backbone.stem".into(),
            tensors: stem.specs(),
        }];
        for (b, block) in blocks.iter().enumerate() {
            units.push(Unit::Block(b));
            let tensors = block
                .down
                .iter()
                .chain([&block.conv1, &block.conv2])
                .flat_map(ConvBn::specs)
                .collect();
            let id = block.conv1.id().trim_end_matches(".conv1.conv").to_string();
            stages.push(StageSpec { id, tensors });
        }
        for (s, head) in heads.iter().enumerate() {
            units.push(Unit::HeadConvs(s));
            stages.push(StageSpec {
                id: format!("heads.{s}.convs"),
                tensors: head.convs.iter().flat_map(ConvBn::specs).collect(),
            });
            units.push(Unit::HeadOut(s));
            stages.push(StageSpec {
                id: format!("heads.{s}.out"),
                tensors: [&head.out, &head.pred]
                    .into_iter()
                    .chain(&head.route)
                    .flat_map(ConvBn::specs)
                    .collect(),
            });
        }
        Ok(Self {
            stem,
            blocks,
            heads,
            units,
            stages,
            widths,
        })
    }

    /// Elements live at once outside the routes (the worst unit: a stage's first block holds
    /// the previous map while `conv_down` runs, then its input, `conv1`'s output, `conv2`'s
    /// output before and after batch norm), of the two routes kept for the heads, and of the
    /// largest im2col band (per image), for an `h` x `w` input.
    fn extents(&self, b: u64, h: usize, w: usize) -> (u64, u64, u64) {
        let side = |stride: usize| (h.div_ceil(stride), w.div_ceil(stride));
        let c = &self.widths;
        // The stem: the image, the convolution's output before and after batch norm.
        let mut live = (3 + 2 * c[0]) * h * w;
        let mut columns = im2col_elements(9 * 3, h, w);
        for i in 0..5 {
            let (fh, fw) = side(1 << (i + 1));
            let (ph, pw) = side(1 << i);
            let previous = c[i] * ph * pw;
            let down = previous + 2 * c[i + 1] * fh * fw;
            let block = 4 * c[i + 1] * fh * fw;
            live = live.max(down).max(block);
            columns = columns
                .max(im2col_elements(9 * c[i], fh, fw))
                .max(im2col_elements(9 * c[i + 1] / 2, fh, fw));
        }
        // The heads run at 1/32 to 1/8 with at most the widest channels doubled by a join.
        let (h8, w8) = side(8);
        let head = 4 * (c[5] / 4 + c[3]) * h8 * w8;
        let (h16, w16) = side(16);
        let routes = c[3] * h8 * w8 + c[4] * h16 * w16;
        columns = columns.max(im2col_elements(9 * c[5] / 2, h / 32, w / 32));
        (b * live.max(head) as u64, b * routes as u64, columns as u64)
    }

    /// Head `s`'s input: the previous head's route upsampled and joined with the backbone
    /// feature, or for the first head the backbone's output.
    fn head_input(&self, s: usize, state: &mut State, stage: &str) -> Result<Tensor> {
        let x = state.take_hidden(stage)?;
        let Some(name) = &self.heads[s].joins else {
            return Ok(x);
        };
        let feature = state.take_skip(name, stage)?;
        Ok(kernels::concat_channels_nhwc(
            &kernels::upsample_nearest_nhwc(&x, 2)?,
            &feature,
        )?)
    }
}

impl Model for YoloV3 {
    fn outputs(&self) -> Vec<(String, usize)> {
        (0..self.heads.len())
            .map(|s| (format!("out{s}"), 4))
            .collect()
    }

    fn architecture(&self) -> &str {
        "yolov3"
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

    /// Sides must be multiples of 32: each head upsamples 2x and joins a map of the backbone.
    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State> {
        let shape = inputs.image_shape()?.to_vec();
        if shape.len() != 4
            || shape[1] != 3
            || shape[2] % 32 != 0
            || shape[3] % 32 != 0
            || shape[2] == 0
            || shape[3] == 0
        {
            return Err(ModelError::input(
                "pixel_values",
                format!("YOLOv3 needs [batch, 3, height, width] with both sides positive multiples of 32, got {shape:?}"),
            ));
        }
        State::for_pixels(inputs, options)
    }

    /// The worst unit's live maps (see `extents`; the image itself is among the stem's), the
    /// two routes kept for the heads, the prediction maps, and the largest im2col band.
    fn activation_bytes(&self, state: &State) -> u64 {
        let Ok(s) = state.inputs.image_shape() else {
            return 0;
        };
        let (b, h, w) = (s[0] as u64, s[2], s[3]);
        let (live, routes, _) = self.extents(b, h, w);
        let per_cell = self.heads[0].pred.out_channels() as u64;
        let cells = (h * w / (32 * 32) + h * w / (16 * 16) + h * w / 64) as u64;
        4 * (live + routes + b * per_cell * cells) + self.scratch_bytes(state)
    }

    fn scratch_bytes(&self, state: &State) -> u64 {
        let Ok(s) = state.inputs.image_shape() else {
            return 0;
        };
        4 * self.extents(s[0] as u64, s[2], s[3]).2
    }

    fn run_stage(&self, index: usize, w: &UnitWeights, state: &mut State) -> Result<()> {
        let stage = &self.stages[index].id;
        match self.units[index] {
            Unit::Stem => {
                let pixels = kernels::nchw_to_nhwc(state.inputs.pixels()?)?;
                let y = self.stem.forward(w, &pixels)?;
                state.record_hidden_nhwc(&y)?;
                state.hidden = Some(y);
            }
            Unit::Block(b) => {
                let block = &self.blocks[b];
                let mut x = state.take_hidden(stage)?;
                if let Some(down) = &block.down {
                    x = down.forward(w, &x)?;
                }
                let branch = block.conv2.forward(w, &block.conv1.forward(w, &x)?)?;
                let y = kernels::add_then(branch, &x, Activation::Identity)?;
                if let Some(name) = &block.skip {
                    state.skips.push((name.clone(), y.clone()));
                }
                state.record_hidden_nhwc(&y)?;
                state.hidden = Some(y);
            }
            Unit::HeadConvs(s) => {
                let mut x = self.head_input(s, state, stage)?;
                for conv in &self.heads[s].convs {
                    x = conv.forward(w, &x)?;
                }
                state.hidden = Some(x);
            }
            Unit::HeadOut(s) => {
                let head = &self.heads[s];
                let x = state.take_hidden(stage)?;
                let prediction = head.pred.forward(w, &head.out.forward(w, &x)?)?;
                state.output(&format!("out{s}"), kernels::nhwc_to_nchw(&prediction)?);
                if let Some(route) = &head.route {
                    state.hidden = Some(route.forward(w, &x)?);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tiny() -> YoloV3 {
        YoloV3::from_config(json!({
            "library": "darknet", "architecture": "yolov3", "num_classes": 2,
            "overrides": {"widths": [4, 8, 8, 16, 16, 32], "depths": [1, 1, 1, 1, 1]}
        }))
        .unwrap()
    }

    fn image(h: usize, w: usize) -> Inputs {
        Inputs {
            pixel_values: Some(Tensor::from_vec(&[1, 3, h, w], vec![0.0; 3 * h * w]).unwrap()),
            ..Inputs::default()
        }
    }

    #[test]
    fn units_cover_backbone_and_heads() {
        let model = tiny();
        // Stem, five one-block stages, two units per head.
        assert_eq!(model.stages().len(), 1 + 5 + 6);
        assert_eq!(model.heads[0].pred.out_channels(), 3 * (5 + 2));
    }

    #[test]
    fn sides_that_are_not_multiples_of_32_are_refused() {
        let model = tiny();
        let err = model
            .start(image(50, 64), RunOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("multiples of 32"), "{err}");
        assert!(model.start(image(64, 96), RunOptions::default()).is_ok());
    }

    #[test]
    fn bad_overrides_and_architectures_are_refused() {
        let bad = |config: Value| YoloV3::from_config(config).err().unwrap().to_string();
        let e =
            bad(json!({"architecture": "yolov3", "overrides": {"widths": [3, 8, 8, 16, 16, 32]}}));
        assert!(e.contains("widths"), "{e}");
        let e = bad(json!({"architecture": "yolov3", "overrides": {"depths": [1, 0, 1, 1, 1]}}));
        assert!(e.contains("depths"), "{e}");
        let e = bad(json!({"architecture": "yolov4"}));
        assert!(e.contains("yolov4"), "{e}");
    }
}
