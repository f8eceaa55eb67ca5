//! torchvision models from their state dicts, with the config.json convention of
//! `../shared/fixtures/{vgg,fcn}-tiny`: `library` = "torchvision", `architecture` = the builder
//! name (`vgg19_bn`, `fcn_resnet50`, ...), `num_classes`, and `overrides` that shrink widths
//! and depths (absent for the published models).

use serde::Deserialize;
use serde_json::Value;

use crate::{fcn, vgg, Model, ModelError, Result};

#[derive(Clone, Debug, Deserialize)]
pub struct TorchvisionConfig {
    pub architecture: String,
    #[serde(default = "thousand")]
    pub num_classes: usize,
    #[serde(default)]
    pub overrides: Value,
}

fn thousand() -> usize {
    1000
}

/// Builds the torchvision model `config` names.
pub fn build(config: Value, has_tensor: &dyn Fn(&str) -> bool) -> Result<Box<dyn Model>> {
    let config: TorchvisionConfig =
        serde_json::from_value(config).map_err(|e| ModelError::Config(e.to_string()))?;
    let arch = config.architecture.as_str();
    if arch.starts_with("vgg") {
        return Ok(Box::new(vgg::Vgg::new(&config)?));
    }
    if arch.starts_with("fcn_resnet") {
        return Ok(Box::new(fcn::Fcn::new(&config, has_tensor)?));
    }
    Err(ModelError::UnknownArchitecture(format!(
        "torchvision {arch} (known: vgg11, vgg13, vgg16, vgg19 with or without _bn; fcn_resnet50, fcn_resnet101)"
    )))
}

/// An entry of a config's `overrides` object, or `default` when absent (the torchvision and
/// darknet conventions share it).
pub(crate) fn overridden<T: serde::de::DeserializeOwned>(
    overrides: &Value,
    key: &'static str,
    default: T,
) -> Result<T> {
    match overrides.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| ModelError::config(key, e.to_string()))
        }
    }
}
