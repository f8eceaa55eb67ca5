//! The [`Model`] trait every family implements, and the dispatch from config.json to a family.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{bert, gpt2, gptj, resnet, torchvision, vit, yolov3};
use crate::{Inputs, ModelError, Result, RunOptions, StageSpec, State, UnitWeights};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Token encoder (BERT).
    TextEncoder,
    /// Image model (ViT, ResNet, VGG, FCN).
    Vision,
    /// Decoder-only language model with a KV cache (GPT-2, GPT-J).
    CausalLm,
}

/// What greedy generation needs to know of a causal model.
#[derive(Clone, Copy, Debug)]
pub struct CausalInfo {
    pub eos_token_id: Option<i64>,
    pub pad_token_id: Option<i64>,
    pub vocab_size: usize,
    pub max_positions: usize,
}

/// A model family instance: a config turned into stages, and the code that runs them.
pub trait Model: Send + Sync {
    /// The transformers class this instance mirrors, e.g. `BertModel`.
    fn architecture(&self) -> &str;
    fn kind(&self) -> ModelKind;
    /// Stages in execution order.
    fn stages(&self) -> &[StageSpec];
    /// Validates `inputs` and prepares the state of a pass.
    fn start(&self, inputs: Inputs, options: RunOptions) -> Result<State>;
    /// Runs stage `index` with its bound weights.
    fn run_stage(&self, index: usize, weights: &UnitWeights, state: &mut State) -> Result<()>;
    /// The outputs a whole pass writes, in order, with each one's rank (what a server
    /// declares before it has run anything). Recorded hidden states come after these.
    fn outputs(&self) -> Vec<(String, usize)>;
    fn causal(&self) -> Option<CausalInfo> {
        None
    }
    /// Whether any stage runs attention (what `--attention` swaps).
    fn has_attention(&self) -> bool {
        true
    }
    /// An upper estimate of the activation bytes live at once during a pass on `state`
    /// (KV cache and recorded hidden states included): the governor reserves it up front.
    fn activation_bytes(&self, state: &State) -> u64;
    /// The part of [`Model::activation_bytes`] live only while one stage runs (im2col
    /// buffers), not between stages. A scheduler that runs one stage at a time across several
    /// models needs it once, not once per model. 0 counts everything as live throughout.
    fn scratch_bytes(&self, _state: &State) -> u64 {
        0
    }
    /// Parameters over all stages (a tensor shared by two stages counts twice).
    fn parameters(&self) -> usize {
        self.stages().iter().map(StageSpec::parameters).sum()
    }
}

/// What a model is built against: the checkpoint's tensor names and how many it holds.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    /// Whether the checkpoint holds a tensor; it decides prefixes (`bert.`, `vit.`) and
    /// optional heads.
    pub has_tensor: &'a dyn Fn(&str) -> bool,
    /// Tensors the checkpoint holds. Every stage reads at least one, so no count of repeated
    /// blocks a config states may exceed it: the bound is checked before anything is
    /// allocated for them. `None` only for a model about to be synthesized from a preset.
    pub tensors: Option<usize>,
}

/// Config fields that count repeated blocks (layers, residual blocks), as integers or as
/// lists of integers per stage, in any family's config or its `overrides`.
const COUNT_FIELDS: &[&str] = &[
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "depths",
    "layers",
];

/// Refuses a config whose block counts exceed the checkpoint's tensors (a config of 2^40
/// layers would otherwise allocate stage skeletons until memory runs out).
fn check_counts(value: &Value, tensors: usize) -> Result<()> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    for (key, v) in map {
        if let Some(field) = COUNT_FIELDS.iter().find(|f| **f == key) {
            let count = match v {
                Value::Number(n) => n.as_u64().map(u128::from),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_u64().map(u128::from))
                    .sum::<Option<u128>>(),
                _ => None,
            };
            if let Some(count) = count.filter(|&c| c > tensors as u128) {
                return Err(ModelError::config(
                    field,
                    format!(
                        "states {count} blocks, but the checkpoint holds only {tensors} tensors"
                    ),
                ));
            }
        }
        check_counts(v, tensors)?;
    }
    Ok(())
}

/// Config flags that change what a family computes, with the one value edgerun implements.
/// A config that sets one otherwise is refused rather than run as if it had not.
fn unimplemented_flags(model_type: &str) -> &'static [(&'static str, bool)] {
    match model_type {
        // BertModel as a decoder (causal mask, cross-attention) is another model.
        "bert" => &[("is_decoder", false), ("add_cross_attention", false)],
        // Cross-attention blocks hold weights an encoder-decoder pairing would use; running
        // without them would silently ignore part of the checkpoint.
        "gpt2" => &[("add_cross_attention", false)],
        // GPT-J's head has a bias of its own; a head tied to wte is not implemented.
        "gptj" => &[
            ("add_cross_attention", false),
            ("tie_word_embeddings", false),
        ],
        _ => &[],
    }
}

fn refuse_unimplemented(value: &Value, model_type: &str) -> Result<()> {
    for &(field, implemented) in unimplemented_flags(model_type) {
        match value.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) if *b == implemented => {}
            Some(other) => {
                return Err(ModelError::Unsupported {
                    what: format!("config.json {field} = {other} for {model_type}"),
                    why: format!("edgerun implements {field} = {implemented} only"),
                })
            }
        }
    }
    Ok(())
}

/// Builds the family config.json names, against `checkpoint`.
pub fn build_model(config_json: &str, checkpoint: Checkpoint) -> Result<Box<dyn Model>> {
    let model = build_unchecked(config_json, checkpoint)?;
    check_extents(model.as_ref())?;
    Ok(model)
}

/// Refuses a model any of whose tensors has more f32 bytes than a `usize` holds (a config with
/// a huge width), so that code past this point may multiply shapes freely.
fn check_extents(model: &dyn Model) -> Result<()> {
    for t in model.stages().iter().flat_map(|s| &s.tensors) {
        let bytes = t.shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
        if bytes.is_none() {
            return Err(ModelError::config(
                "shape",
                format!(
                    "tensor {} of shape {:?} is too large to address",
                    t.name, t.shape
                ),
            ));
        }
    }
    Ok(())
}

fn build_unchecked(config_json: &str, checkpoint: Checkpoint) -> Result<Box<dyn Model>> {
    let value: Value =
        serde_json::from_str(config_json).map_err(|e| ModelError::Config(e.to_string()))?;
    if let Some(tensors) = checkpoint.tensors {
        check_counts(&value, tensors)?;
    }
    let has_tensor = checkpoint.has_tensor;
    if value.get("library").and_then(Value::as_str) == Some("torchvision") {
        return torchvision::build(value, has_tensor);
    }
    if value.get("library").and_then(Value::as_str) == Some("darknet") {
        return Ok(Box::new(yolov3::YoloV3::from_config(value)?));
    }
    let model_type = value
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::Config("no \"model_type\" string".into()))?
        .to_string();
    let architecture = value
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .map(str::to_string);
    refuse_unimplemented(&value, &model_type)?;
    Ok(match model_type.as_str() {
        "bert" => Box::new(bert::Bert::new(parse(value)?, has_tensor)?),
        "vit" => Box::new(vit::Vit::new(parse(value)?, has_tensor)?),
        "gpt2" => Box::new(gpt2::Gpt2::new(parse(value)?, has_tensor)?),
        "gptj" => Box::new(gptj::GptJ::new(parse(value)?, has_tensor)?),
        "resnet" => Box::new(resnet::ResNet::new(
            parse(value)?,
            architecture.as_deref(),
            has_tensor,
        )?),
        other => {
            return Err(ModelError::UnknownArchitecture(format!(
                "model_type {other:?} (supported: bert, vit, gpt2, gptj, resnet; or \"library\": \"torchvision\" or \"darknet\")"
            )))
        }
    })
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| ModelError::Config(e.to_string()))
}

/// Returns `prefix` when the checkpoint's `probe` tensor carries it, else "".
pub(crate) fn detect_prefix(
    prefix: &str,
    probe: &str,
    has_tensor: &dyn Fn(&str) -> bool,
) -> String {
    if has_tensor(&format!("{prefix}{probe}")) {
        prefix.to_string()
    } else {
        String::new()
    }
}

/// Checks a config value is positive.
pub(crate) fn positive(field: &'static str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(ModelError::config(field, "must be positive"));
    }
    Ok(value)
}

/// Checks `hidden` splits evenly into `heads`, returning the head width.
pub(crate) fn head_dim(hidden: usize, heads: usize) -> Result<usize> {
    positive("num_attention_heads", heads)?;
    if !hidden.is_multiple_of(heads) {
        return Err(ModelError::config(
            "num_attention_heads",
            format!("hidden size {hidden} is not divisible by {heads} heads"),
        ));
    }
    Ok(hidden / heads)
}

/// The activation config field `field` names (`hidden_act`, `activation_function`), or a
/// config error naming the field.
pub(crate) fn activation(
    field: &'static str,
    name: &str,
) -> Result<edgerun_tensor::kernels::Activation> {
    edgerun_tensor::kernels::Activation::from_hf(name)
        .ok_or_else(|| ModelError::config(field, format!("{name:?} is not supported")))
}

/// `heads` attention heads over a hidden size of `hidden`, which they must divide.
pub(crate) fn head_layout(
    hidden: usize,
    heads: usize,
) -> Result<edgerun_tensor::kernels::HeadLayout> {
    Ok(edgerun_tensor::kernels::HeadLayout {
        heads,
        head_dim: head_dim(hidden, heads)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/config_model: a width whose squared tensor overflows `usize`.
    #[test]
    fn a_tensor_too_large_to_address_is_a_config_error() {
        let config = r#"{"model_type": "bert", "hidden_size": 222222222220, "intermediate_size": 16,
            "max_position_embeddings": 16, "num_attention_heads": 1, "num_hidden_layers": 2,
            "vocab_size": 40}"#;
        let checkpoint = Checkpoint {
            has_tensor: &|_| true,
            tensors: Some(512),
        };
        let err = build_model(config, checkpoint).err().expect("refused");
        assert!(
            matches!(err, ModelError::BadConfigValue { field: "shape", .. }),
            "{err}"
        );
    }
}
