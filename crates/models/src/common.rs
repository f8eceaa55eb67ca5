//! Building blocks the families share: Linear, Conv1D and LayerNorm weights by name, conv +
//! batch-norm layers, and multi-head attention over the state's mask and cache.

use edgerun_tensor::kernels::gemm::{Epilogue, Residual};
use edgerun_tensor::kernels::{
    self, Activation, AttentionMask, Conv2dParams, HeadLayout, KvRef, Weight,
};
use edgerun_tensor::Tensor;

use crate::{Inputs, Layout, ModelError, Result, RunOptions, State, TensorSpec, UnitWeights};

pub(crate) fn join(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

fn spec(name: String, shape: Vec<usize>, layout: Layout) -> TensorSpec {
    TensorSpec {
        name,
        shape,
        layout,
    }
}

/// `torch.nn.Linear` (`<p>.weight` `[out, in]`, `<p>.bias`), or GPT-2's `Conv1D`, which
/// stores `[in, out]` already.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: String,
    bias: Option<String>,
    shape: [usize; 2],
    layout: Layout,
}

impl Linear {
    pub fn new(path: &str, in_dim: usize, out_dim: usize, bias: bool) -> Self {
        Self {
            weight: format!("{path}.weight"),
            bias: bias.then(|| format!("{path}.bias")),
            shape: [out_dim, in_dim],
            layout: Layout::Linear,
        }
    }

    /// The module path (`classifier.0`): a natural stage id.
    pub fn id(&self) -> String {
        self.weight.trim_end_matches(".weight").to_string()
    }

    pub fn conv1d(path: &str, in_dim: usize, out_dim: usize) -> Self {
        Self {
            weight: format!("{path}.weight"),
            bias: Some(format!("{path}.bias")),
            shape: [in_dim, out_dim],
            layout: Layout::Conv1d,
        }
    }

    fn out_dim(&self) -> usize {
        match self.layout {
            Layout::Linear | Layout::Conv2d | Layout::Table => self.shape[0],
            Layout::Plain | Layout::Conv1d => self.shape[1],
        }
    }

    pub fn specs(&self) -> Vec<TensorSpec> {
        let out_dim = self.out_dim();
        let mut specs = vec![spec(self.weight.clone(), self.shape.to_vec(), self.layout)];
        if let Some(bias) = &self.bias {
            specs.push(spec(bias.clone(), vec![out_dim], Layout::Plain));
        }
        specs
    }

    pub fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        self.forward_then(w, x, Activation::Identity)
    }

    /// `activation(x @ W + b)`, the bias and the activation applied in the GEMM's epilogue.
    pub fn forward_then(
        &self,
        w: &UnitWeights,
        x: &Tensor,
        activation: Activation,
    ) -> Result<Tensor> {
        let layer = self.layer(w, activation)?;
        Ok(kernels::linear_fused(
            x,
            layer.weight,
            layer.out_dim,
            layer.bias,
            layer.activation,
        )?)
    }

    /// The bound weight and bias, for a product with other layers of the same input
    /// ([`kernels::linear_many`]).
    pub fn layer<'w>(
        &self,
        w: &'w UnitWeights,
        activation: Activation,
    ) -> Result<kernels::LinearLayer<'w>> {
        let bias = match &self.bias {
            Some(name) => Some(w.get(name)?),
            None => None,
        };
        Ok(kernels::LinearLayer {
            weight: w.matrix(&self.weight)?,
            out_dim: self.out_dim(),
            bias,
            activation,
        })
    }
}

/// Several Linear layers (no activation) of the same input as one product
/// ([`kernels::linear_many`]): the query, key and value projections.
pub(crate) fn project<const N: usize>(
    w: &UnitWeights,
    x: &Tensor,
    linears: [&Linear; N],
) -> Result<[Tensor; N]> {
    let layers = linears
        .iter()
        .map(|linear| linear.layer(w, Activation::Identity))
        .collect::<Result<Vec<_>>>()?;
    let outputs = kernels::linear_many(x, &layers)?;
    Ok(outputs
        .try_into()
        .unwrap_or_else(|_| unreachable!("linear_many returns one output per layer")))
}

/// `torch.nn.LayerNorm` over the last dimension.
#[derive(Clone, Debug)]
pub(crate) struct LayerNorm {
    weight: String,
    bias: String,
    dim: usize,
    eps: f32,
}

impl LayerNorm {
    pub fn new(path: &str, dim: usize, eps: f64) -> Self {
        Self {
            weight: format!("{path}.weight"),
            bias: format!("{path}.bias"),
            dim,
            eps: eps as f32,
        }
    }

    pub fn specs(&self) -> Vec<TensorSpec> {
        vec![
            spec(self.weight.clone(), vec![self.dim], Layout::Plain),
            spec(self.bias.clone(), vec![self.dim], Layout::Plain),
        ]
    }

    pub fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        Ok(kernels::layer_norm(
            x,
            w.get(&self.weight)?,
            w.get(&self.bias)?,
            self.eps,
        )?)
    }

    /// The norm of `x + residual` (a post-norm residual), in one pass.
    pub fn forward_adding(&self, w: &UnitWeights, x: Tensor, residual: &Tensor) -> Result<Tensor> {
        let (weight, bias) = (w.get(&self.weight)?, w.get(&self.bias)?);
        Ok(kernels::add_layer_norm(
            x, residual, weight, bias, self.eps,
        )?)
    }

    /// `x + residual` and its norm (a pre-norm residual: the stream and the next sublayer's
    /// input), in one pass.
    pub fn forward_keeping(
        &self,
        w: &UnitWeights,
        x: Tensor,
        residual: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (weight, bias) = (w.get(&self.weight)?, w.get(&self.bias)?);
        Ok(kernels::add_and_layer_norm(
            x, residual, weight, bias, self.eps,
        )?)
    }
}

/// A tensor a stage reads whole (embedding tables, tokens, position tables).
#[derive(Clone, Debug)]
pub(crate) struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: Layout,
}

impl Param {
    /// Read as stored.
    pub fn new(name: String, shape: Vec<usize>) -> Self {
        Self {
            name,
            shape,
            layout: Layout::Plain,
        }
    }

    /// A `[rows, dim]` table that is also a Linear weight (a tied LM head), bound packed for
    /// the GEMM; `kernels::embedding_packed` gathers its rows.
    pub fn packed_rows(name: String, rows: usize, dim: usize) -> Self {
        Self {
            name,
            shape: vec![rows, dim],
            layout: Layout::Linear,
        }
    }

    pub fn spec(&self) -> TensorSpec {
        spec(self.name.clone(), self.shape.clone(), self.layout)
    }

    /// A `[rows, dim]` table read only by [`Param::rows`] (a quantised store may quantise it).
    pub fn table(name: String, rows: usize, dim: usize) -> Self {
        Self {
            name,
            shape: vec![rows, dim],
            layout: Layout::Table,
        }
    }

    /// The table's rows for `ids`, whichever way it is bound.
    pub fn rows(&self, w: &UnitWeights, ids: &[i64]) -> Result<Tensor> {
        if !matches!(self.layout, Layout::Linear | Layout::Table) {
            return Ok(kernels::embedding(self.get(w)?, ids)?);
        }
        Ok(match w.matrix(&self.name)? {
            Weight::F32(table) if self.layout == Layout::Linear => {
                kernels::embedding_packed(table, self.shape[0], ids)?
            }
            Weight::F32(table) => kernels::embedding(table, ids)?,
            Weight::Quant(table) => kernels::embedding_quantised(table, ids)?,
        })
    }

    pub fn get<'w>(&self, w: &'w UnitWeights) -> Result<&'w Tensor> {
        w.get(&self.name)
    }
}

/// The rows of token 0 of every batch: `[b, s, d] -> [b, d]` (CLS pooling, classifiers).
pub(crate) fn first_token(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous();
    let (b, s, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let mut out = Vec::with_capacity(b * d);
    for i in 0..b {
        out.extend_from_slice(&x.values()[i * s * d..][..d]);
    }
    Ok(Tensor::from_vec(&[b, d], out)?)
}

/// The rows of the last token of every batch: `[b, s, d] -> [b, 1, d]`.
pub(crate) fn last_token(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous();
    let (b, s, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let mut out = Vec::with_capacity(b * d);
    for i in 0..b {
        out.extend_from_slice(&x.values()[(i * s + s - 1) * d..][..d]);
    }
    Ok(Tensor::from_vec(&[b, 1, d], out)?)
}

/// Self-attention of one layer: without a cache over this step's k and v, with one after
/// writing them into `layer`'s rows.
pub(crate) fn self_attention(
    state: &mut State,
    layer: usize,
    [q, k, v]: [&Tensor; 3],
    layout: HeadLayout,
    causal: bool,
    scale: f32,
) -> Result<Tensor> {
    let bias = state.key_bias();
    let algorithm = state.options.attention;
    let engine = state.options.taylor_engine.clone();
    let mask = AttentionMask {
        key_bias: bias.as_deref(),
        causal,
    };
    let width = layout.heads * layout.head_dim;
    let attend = |kr, vr| {
        kernels::attention_with(
            q,
            kr,
            vr,
            layout,
            mask,
            scale,
            &algorithm,
            engine.as_deref(),
        )
    };
    match state.cache.as_mut() {
        Some(cache) => {
            cache.write(layer, state.past, k, v)?;
            let (kr, vr) = cache.view(layer, state.past + state.seq);
            Ok(attend(kr, vr)?)
        }
        None => {
            let (k, v) = (k.contiguous(), v.contiguous());
            let kr = KvRef::dense(k.values(), state.seq, width);
            let vr = KvRef::dense(v.values(), state.seq, width);
            Ok(attend(kr, vr)?)
        }
    }
}

/// A convolution, with or without a bias, then eval batch norm (or none) and an activation:
/// ResNet's and FCN's bias-free conv + BN, VGG's conv + bias [+ BN].
///
/// It reads and writes channels-last (NHWC) maps, with its weight packed when bound
/// ([`Layout::Conv2d`]) and the bias, batch norm and activation in the GEMM's epilogue.
#[derive(Clone, Debug)]
pub(crate) struct ConvBn {
    conv: String,
    bias: Option<String>,
    norm: Option<String>,
    shape: [usize; 4],
    params: Conv2dParams,
    activation: Activation,
}

impl ConvBn {
    /// A bias-free convolution followed by the batch norm at `norm_path`.
    pub fn new(
        conv_path: &str,
        norm_path: &str,
        (in_ch, out_ch, kernel): (usize, usize, usize),
        stride: usize,
        activation: Activation,
    ) -> Self {
        Self {
            conv: format!("{conv_path}.weight"),
            bias: None,
            norm: Some(norm_path.to_string()),
            shape: [out_ch, in_ch, kernel, kernel],
            params: Conv2dParams {
                stride,
                padding: kernel / 2,
                ..Conv2dParams::default()
            },
            activation,
        }
    }

    /// A convolution with a bias and no batch norm.
    pub fn plain(conv_path: &str, dims: (usize, usize, usize), activation: Activation) -> Self {
        Self {
            norm: None,
            ..Self::new(conv_path, "", dims, 1, activation).with_bias()
        }
    }

    /// The convolution's module path (`features.3`).
    pub fn id(&self) -> String {
        self.conv.trim_end_matches(".weight").to_string()
    }

    pub fn out_channels(&self) -> usize {
        self.shape[0]
    }

    /// Adds the convolution's own bias (`{conv}.bias`).
    pub fn with_bias(mut self) -> Self {
        self.bias = Some(self.conv.replace(".weight", ".bias"));
        self
    }

    /// Dilates the kernel, padding so the plane keeps its size at stride 1.
    pub fn dilated(mut self, dilation: usize) -> Self {
        self.params.dilation = dilation;
        self.params.padding = dilation * (self.shape[2] - 1) / 2;
        self
    }

    pub fn specs(&self) -> Vec<TensorSpec> {
        let c = self.shape[0];
        let mut specs = vec![spec(self.conv.clone(), self.shape.to_vec(), Layout::Conv2d)];
        if let Some(bias) = &self.bias {
            specs.push(spec(bias.clone(), vec![c], Layout::Plain));
        }
        if let Some(norm) = &self.norm {
            for part in ["weight", "bias", "running_mean", "running_var"] {
                specs.push(spec(format!("{norm}.{part}"), vec![c], Layout::Plain));
            }
        }
        specs
    }

    /// `x` is NHWC.
    pub fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|b| w.get(b)).transpose()?;
        self.forward_nhwc(w, x, w.matrix(&self.conv)?, bias, None)
    }

    /// `activation(conv(x) + residual)`: the convolution (and its norm, without its own
    /// activation) with a residual connection added, in the GEMM's epilogue, before the
    /// block's activation.
    pub fn forward_adding(
        &self,
        w: &UnitWeights,
        x: &Tensor,
        residual: &Tensor,
        activation: Activation,
    ) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|b| w.get(b)).transpose()?;
        let with = Self {
            activation,
            ..self.clone()
        };
        with.forward_nhwc(w, x, w.matrix(&self.conv)?, bias, Some(residual))
    }

    fn batch_norm(&self, w: &UnitWeights, norm: &str) -> Result<kernels::ChannelAffine> {
        let n = |part: &str| w.get(&format!("{norm}.{part}"));
        let stats = (
            n("running_mean")?,
            n("running_var")?,
            n("weight")?,
            n("bias")?,
        );
        Ok(kernels::ChannelAffine::batch_norm(
            self.shape[0],
            stats,
            1e-5,
            self.activation,
        )?)
    }

    /// With `residual` (the output's shape) added before the activation, if any.
    fn forward_nhwc(
        &self,
        w: &UnitWeights,
        x: &Tensor,
        weight: Weight,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let conv = kernels::PackedConv {
            weight,
            shape: self.shape,
        };
        if let Some(b) = bias {
            b.expect_shape("convolution bias", &[self.shape[0]])?;
        }
        let residual = residual.map(Tensor::contiguous);
        let residual = residual.as_ref().map(|r| Residual {
            data: r.values(),
            row_stride: self.shape[0],
        });
        let Some(norm) = &self.norm else {
            let bias = bias.map(Tensor::values);
            let epilogue = Epilogue {
                residual,
                ..Epilogue::columns(bias, self.activation)
            };
            return Ok(kernels::conv2d_nhwc(x, conv, self.params, epilogue)?);
        };
        let after = self.batch_norm(w, norm)?;
        // A convolution's own bias before the norm moves into the norm's shift:
        // (y + b) * s + t = y * s + (b * s + t).
        let shift: Vec<f32> = match bias {
            Some(b) => (b.values().iter().zip(after.scale()).zip(after.shift()))
                .map(|((&b, &s), &t)| b * s + t)
                .collect(),
            None => after.shift().to_vec(),
        };
        let epilogue = Epilogue {
            residual,
            ..Epilogue::affine(after.scale(), &shift, self.activation)
        };
        Ok(kernels::conv2d_nhwc(x, conv, self.params, epilogue)?)
    }
}

/// Separate query, key and value projections, attention, and an output projection: BERT's
/// `attention.self` + `attention.output.dense`, ViT's `attention.attention` + `attention.output`.
#[derive(Clone, Debug)]
pub(crate) struct QkvAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub layout: HeadLayout,
}

impl QkvAttention {
    pub fn specs(&self) -> Vec<TensorSpec> {
        [&self.query, &self.key, &self.value, &self.output]
            .iter()
            .flat_map(|l| l.specs())
            .collect()
    }

    pub fn forward(
        &self,
        w: &UnitWeights,
        state: &mut State,
        layer: usize,
        x: &Tensor,
    ) -> Result<Tensor> {
        let [q, k, v] = project(w, x, [&self.query, &self.key, &self.value])?;
        let scale = 1.0 / (self.layout.head_dim as f32).sqrt();
        let context = self_attention(state, layer, [&q, &k, &v], self.layout, false, scale)?;
        self.output.forward(w, &context)
    }
}

/// Splits the last dimension into `parts` equal tensors (GPT-2's fused `c_attn` output).
pub(crate) fn split_last(x: &Tensor, parts: usize) -> Result<Vec<Tensor>> {
    let x = x.contiguous();
    let width = x.last_dim() / parts;
    let rows = x.len() / x.last_dim().max(1);
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = width;
    (0..parts)
        .map(|p| {
            let mut out = Vec::with_capacity(rows * width);
            for r in x.values().chunks_exact(x.last_dim()) {
                out.extend_from_slice(&r[p * width..(p + 1) * width]);
            }
            Ok(Tensor::from_vec(&shape, out)?)
        })
        .collect()
}

/// A transformer MLP without its residual: widen, activate, narrow (GPT-2's `GPT2MLP`,
/// GPT-J's `GPTJMLP`).
#[derive(Clone, Debug)]
pub struct Mlp {
    pub up: Linear,
    pub down: Linear,
    pub activation: Activation,
}

impl Mlp {
    pub fn specs(&self) -> Vec<TensorSpec> {
        [self.up.specs(), self.down.specs()].concat()
    }

    pub fn forward(&self, w: &UnitWeights, x: &Tensor) -> Result<Tensor> {
        let inner = self.up.forward_then(w, x, self.activation)?;
        self.down.forward(w, &inner)
    }
}

/// The stage `order[index]` of a family's stage enum, or [`ModelError::NoStage`].
pub(crate) fn stage_at<S: Copy>(order: &[S], index: usize) -> Result<S> {
    order
        .get(index)
        .copied()
        .ok_or(crate::ModelError::NoStage { index })
}

/// Applies an activation to a tensor it consumes.
pub(crate) fn activate(x: Tensor, activation: Activation) -> Result<Tensor> {
    let shape = x.shape().to_vec();
    let mut values = x.into_values();
    activation.apply_in_place(&mut values);
    Ok(Tensor::from_vec(&shape, values)?)
}

/// Sets up the KV cache of a causal model and checks the positions fit its tables.
pub(crate) fn start_causal(
    inputs: crate::Inputs,
    options: crate::RunOptions,
    layers: usize,
    width: usize,
    max_positions: usize,
) -> Result<State> {
    let mut state = State::for_tokens(inputs, options)?;
    let (prompt, extra) = (state.seq, state.options.extra_tokens);
    let capacity = prompt
        .checked_add(extra)
        .filter(|&c| c <= max_positions)
        .ok_or_else(|| {
            crate::ModelError::input(
                "input_ids",
                format!(
                    "{prompt} prompt tokens and {extra} new ones exceed the model's {max_positions} positions"
                ),
            )
        })?;
    state.cache = Some(crate::KvCache::new(layers, state.batch, capacity, width)?);
    Ok(state)
}

/// Activation estimate of a transformer pass (see `Model::activation_bytes`): the tensors live
/// inside one layer, one attention score matrix per thread, logits, the KV cache and recorded
/// hidden states, in f32.
pub(crate) fn transformer_activation_bytes(
    state: &State,
    hidden: usize,
    inner: usize,
    layers: usize,
    vocab: usize,
) -> u64 {
    let tokens = (state.batch * state.seq) as u64;
    let kv = (state.past + state.seq) as u64;
    let (d, inner) = (hidden as u64, inner as u64);
    let threads = edgerun_tensor::parallel::threads() as u64;
    let layer = 12 * tokens * d + 2 * tokens * inner + threads * state.seq as u64 * kv;
    let logit_rows = if state.options.last_logits_only {
        state.batch as u64
    } else {
        tokens
    };
    let recorded = if state.options.hidden_states {
        (layers as u64 + 1) * tokens * d
    } else {
        0
    };
    4 * (layer + 2 * logit_rows * vocab as u64 + recorded)
        + state.cache.as_ref().map_or(0, |c| c.bytes() as u64)
}

/// Validates `pixel_values` as `[batch, channels, h, w]` with both sides at least `min_side`
/// and starts an image pass.
pub(crate) fn start_image(
    inputs: Inputs,
    options: RunOptions,
    channels: usize,
    min_side: usize,
) -> Result<State> {
    let shape = inputs.image_shape()?;
    if shape.len() != 4 || shape[1] != channels || shape[2] < min_side || shape[3] < min_side {
        return Err(ModelError::input(
            "pixel_values",
            format!("expected [batch, {channels}, height >= {min_side}, width >= {min_side}], got {shape:?}"),
        ));
    }
    State::for_pixels(inputs, options)
}
