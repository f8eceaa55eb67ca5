//! Reproducible inputs for a model that has none given: what a profile, a plan, a server's
//! warm-up or an automatic split measures on.

use edgerun_models::{IdTensor, Inputs, ModelError, ModelKind};
use edgerun_store::ModelSource;
use edgerun_tensor::Tensor;

use crate::Result;

/// Tokens in an example text input.
pub const EXAMPLE_TOKENS: usize = 128;

/// 128 token ids for text models, one image at the config's size (224 unless it says
/// otherwise) for vision models.
pub fn example_inputs(source: &ModelSource) -> Result<Inputs> {
    match source.model()?.kind() {
        ModelKind::TextEncoder | ModelKind::CausalLm => Ok(example_tokens(EXAMPLE_TOKENS)?),
        ModelKind::Vision => example_image(&source.config_json()),
    }
}

/// `[1, tokens]` ids spread over the first 600 of any vocabulary.
pub fn example_tokens(tokens: usize) -> Result<Inputs> {
    let ids = (0..tokens as i64).map(|i| 100 + (i * 37) % 500).collect();
    Ok(Inputs {
        input_ids: Some(IdTensor::new(vec![1, tokens], ids)?),
        ..Inputs::default()
    })
}

/// One image of the config's `num_channels` (3) and `image_size` (224), values in [-1, 1).
pub fn example_image(config_json: &str) -> Result<Inputs> {
    let config: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
    let get = |key: &str, default: u64| {
        config.get(key).and_then(|v| v.as_u64()).unwrap_or(default) as usize
    };
    let (channels, size) = (get("num_channels", 3), get("image_size", 224));
    let values: Vec<f32> = (0..channels * size * size)
        .map(|i| ((i as f32 * 0.618_034).fract() * 2.0) - 1.0)
        .collect();
    Ok(Inputs {
        pixel_values: Some(
            Tensor::from_vec(&[1, channels, size, size], values).map_err(ModelError::from)?,
        ),
        ..Inputs::default()
    })
}
