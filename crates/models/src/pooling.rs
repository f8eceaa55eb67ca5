//! sentence-transformers pooling: token embeddings to one vector per text, as
//! `1_Pooling/config.json` and `modules.json` describe it.

use serde::Deserialize;

use edgerun_tensor::Tensor;

use crate::{IdTensor, ModelError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pooling {
    pub mode: PoolingMode,
    /// A `sentence_transformers.models.Normalize` module follows the pooling.
    pub normalize: bool,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

impl Pooling {
    /// Reads the two JSON files; without them, mean pooling and no normalisation (what
    /// sentence-transformers assumes for a bare transformers checkpoint).
    pub fn from_json(pooling: Option<&str>, modules: Option<&str>) -> Result<Self> {
        let mode = match pooling {
            None => PoolingMode::Mean,
            Some(json) => {
                let c: PoolingConfig = serde_json::from_str(json)
                    .map_err(|e| ModelError::Config(format!("1_Pooling/config.json: {e}")))?;
                for (field, set) in [
                    (
                        "pooling_mode_weightedmean_tokens",
                        c.pooling_mode_weightedmean_tokens,
                    ),
                    ("pooling_mode_lasttoken", c.pooling_mode_lasttoken),
                ] {
                    if set {
                        return Err(ModelError::Unsupported {
                            what: format!("1_Pooling/config.json sets {field}"),
                            why: "only cls, mean, max and mean_sqrt_len pooling are implemented"
                                .into(),
                        });
                    }
                }
                match (
                    c.pooling_mode_cls_token,
                    c.pooling_mode_mean_tokens,
                    c.pooling_mode_max_tokens,
                    c.pooling_mode_mean_sqrt_len_tokens,
                ) {
                    (true, false, false, false) => PoolingMode::Cls,
                    (false, true, false, false) => PoolingMode::Mean,
                    (false, false, true, false) => PoolingMode::Max,
                    (false, false, false, true) => PoolingMode::MeanSqrtLen,
                    _ => {
                        return Err(ModelError::Config(
                            "1_Pooling/config.json: exactly one pooling mode must be set".into(),
                        ))
                    }
                }
            }
        };
        let normalize = match modules {
            None => false,
            Some(json) => {
                let modules: Vec<Module> = serde_json::from_str(json)
                    .map_err(|e| ModelError::Config(format!("modules.json: {e}")))?;
                if let Some(m) = modules.iter().find(|m| {
                    !["Transformer", "Pooling", "Normalize"]
                        .iter()
                        .any(|known| m.kind.rsplit('.').next() == Some(*known))
                }) {
                    return Err(ModelError::Unsupported {
                        what: format!("modules.json module {}", m.kind),
                        why: "only Transformer, Pooling and Normalize modules are implemented"
                            .into(),
                    });
                }
                modules
                    .iter()
                    .any(|m| m.kind.rsplit('.').next() == Some("Normalize"))
            }
        };
        Ok(Self { mode, normalize })
    }

    /// Pools `[batch, seq, dim]` token embeddings over the tokens `mask` keeps.
    pub fn apply(&self, tokens: &Tensor, mask: &IdTensor) -> Result<Tensor> {
        let [b, s, d] = *tokens.shape() else {
            return Err(ModelError::input(
                "last_hidden_state",
                format!("expected [batch, seq, dim], got {:?}", tokens.shape()),
            ));
        };
        let tokens = tokens.contiguous();
        let mut out = Vec::with_capacity(b * d);
        for i in 0..b {
            let rows = &tokens.values()[i * s * d..][..s * d];
            let keep = &mask.values[i * s..][..s];
            let mut v = vec![0.0f32; d];
            match self.mode {
                PoolingMode::Cls => v.copy_from_slice(&rows[..d]),
                PoolingMode::Max => {
                    v.fill(f32::MIN);
                    for (row, _) in rows.chunks_exact(d).zip(keep).filter(|(_, &k)| k != 0) {
                        v.iter_mut().zip(row).for_each(|(a, &x)| *a = a.max(x));
                    }
                }
                PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                    for (row, _) in rows.chunks_exact(d).zip(keep).filter(|(_, &k)| k != 0) {
                        v.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
                    }
                    // sentence-transformers clamps the count at 1e-9.
                    let count = (keep.iter().filter(|&&k| k != 0).count() as f32).max(1e-9);
                    let div = if self.mode == PoolingMode::Mean {
                        count
                    } else {
                        count.sqrt()
                    };
                    v.iter_mut().for_each(|a| *a /= div);
                }
            }
            if self.normalize {
                // torch.nn.functional.normalize: x / max(||x||, 1e-12).
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
            }
            out.extend(v);
        }
        Ok(Tensor::from_vec(&[b, d], out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_skips_padding_and_normalises() {
        let p = Pooling::from_json(
            Some(r#"{"pooling_mode_mean_tokens": true}"#),
            Some(r#"[{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Normalize"}]"#),
        )
        .unwrap();
        assert_eq!(
            p,
            Pooling {
                mode: PoolingMode::Mean,
                normalize: true
            }
        );
        let t = Tensor::from_vec(&[1, 3, 2], vec![3., 0., 0., 4., 100., 100.]).unwrap();
        let mask = IdTensor::new(vec![1, 3], vec![1, 1, 0]).unwrap();
        let v = p.apply(&t, &mask).unwrap();
        assert!((v.values()[0] - 0.6).abs() < 1e-6 && (v.values()[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn ambiguous_modes_are_rejected() {
        assert!(Pooling::from_json(
            Some(r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#),
            None
        )
        .is_err());
    }
}
