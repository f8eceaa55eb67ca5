//! A policy file: safetensors holding the network's layers (`trunk.0.weight`, ...), with
//! metadata naming what it was trained for (board, model, stages, the offloads it chooses
//! among, eta, the memory budget). Loading checks every shape against that metadata before allocating, and the
//! metadata against the environment it is asked to run in.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::network::{Network, LAYERS};
use super::{DqnPolicy, OBSERVATION};
use crate::env::Environment;
use crate::{DvfoError, Result};

pub const FORMAT: &str = "edgerun-dvfo-policy";
pub const VERSION: &str = "1";
const MAX_HIDDEN: usize = 4096;
const MAX_BRANCH: usize = 1 << 20;

/// What a policy was trained for, as its file states it.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyInfo {
    pub board: String,
    pub architecture: String,
    pub stages: usize,
    /// `split:compression` of each offload, as the environment orders them.
    pub offloads: Vec<String>,
    pub eta: f64,
    /// The memory budget heads were held to (`None`: resident).
    pub budget_bytes: Option<u64>,
    pub hidden: usize,
    pub branches: [usize; 3],
}

impl PolicyInfo {
    pub fn of(env: &Environment, hidden: usize) -> Self {
        Self {
            board: env.board.name.clone(),
            architecture: env.calibration.architecture.clone(),
            stages: env.space.stages,
            offloads: offload_names(env),
            eta: env.options.eta,
            budget_bytes: env.space.budget.as_ref().map(|b| b.bytes),
            hidden,
            branches: [
                env.space.cpu_levels,
                env.space.memory_levels,
                env.space.offloads.len(),
            ],
        }
    }
}

fn offload_names(env: &Environment) -> Vec<String> {
    env.space
        .offloads
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let streamed = env.space.plan(i).map_or(String::new(), |p| {
                let depth = p.depth.map_or("*".to_string(), |d| d.to_string());
                format!("/L{}D{depth}", p.loaders)
            });
            format!(
                "{}:{}{streamed}",
                o.split, env.calibration.compressions[o.compression]
            )
        })
        .collect()
}

pub fn save(policy: &DqnPolicy, env: &Environment, path: &Path) -> Result<()> {
    let failed = |why: String| DvfoError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(why),
    };
    let info = PolicyInfo::of(env, policy.network.hidden);
    let values = policy.network.values()?;
    let shapes = Network::shapes(OBSERVATION, info.hidden, info.branches);
    let bytes: Vec<(Vec<u8>, Vec<u8>)> = values
        .iter()
        .map(|(w, b)| (le_bytes(w), le_bytes(b)))
        .collect();
    let mut views = Vec::with_capacity(2 * LAYERS.len());
    for ((name, (out, inp)), (w, b)) in LAYERS.iter().zip(&shapes).zip(&bytes) {
        let weight = TensorView::new(Dtype::F32, vec![*out, *inp], w);
        let bias = TensorView::new(Dtype::F32, vec![*out], b);
        views.push((
            format!("{name}.weight"),
            weight.map_err(|e| failed(e.to_string()))?,
        ));
        views.push((
            format!("{name}.bias"),
            bias.map_err(|e| failed(e.to_string()))?,
        ));
    }
    let metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("board", info.board.clone()),
        ("architecture", info.architecture.clone()),
        ("stages", info.stages.to_string()),
        ("offloads", info.offloads.join(",")),
        ("eta", info.eta.to_string()),
        ("budget", budget_text(info.budget_bytes)),
        ("hidden", info.hidden.to_string()),
        ("observation", OBSERVATION.to_string()),
        ("cpu_levels", info.branches[0].to_string()),
        ("memory_levels", info.branches[1].to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| failed(e.to_string()))?;
    crate::write_atomically(path, &serialized)
}

/// Reads a policy and checks it was trained for `env` (board, model, offloads, eta).
pub fn load(path: &Path, env: &Environment) -> Result<DqnPolicy> {
    let bad = |why: String| DvfoError::Policy {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|source| DvfoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let meta = header
        .metadata()
        .clone()
        .ok_or_else(|| bad("no metadata: not an edgerun policy".into()))?;
    let get = |key: &str| {
        meta.get(key)
            .cloned()
            .ok_or_else(|| bad(format!("metadata lacks {key:?}")))
    };
    let number = |key: &str, max: usize| -> Result<usize> {
        let text = get(key)?;
        text.parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(format!("{key} = {text:?} is not from 1 to {max}")))
    };
    if get("format")? != FORMAT || get("version")? != VERSION {
        return Err(bad(format!("not an {FORMAT} file of version {VERSION}")));
    }
    if number("observation", 1024)? != OBSERVATION {
        return Err(bad(format!(
            "observations of another size (this edgerun's: {OBSERVATION})"
        )));
    }
    let hidden = number("hidden", MAX_HIDDEN)?;
    let offloads: Vec<String> = get("offloads")?.split(',').map(str::to_string).collect();
    let info = PolicyInfo {
        board: get("board")?,
        architecture: get("architecture")?,
        stages: number("stages", MAX_BRANCH)?,
        eta: get("eta")?
            .parse::<f64>()
            .map_err(|_| bad("eta is not a number".into()))?,
        // Files from before budgets were offered held every model resident.
        budget_bytes: match meta.get("budget").map(String::as_str) {
            None | Some("none") => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| bad(format!("budget = {text:?} is not a byte count")))?,
            ),
        },
        hidden,
        branches: [
            number("cpu_levels", MAX_BRANCH)?,
            number("memory_levels", MAX_BRANCH)?,
            offloads.len(),
        ],
        offloads,
    };
    let here = PolicyInfo::of(env, hidden);
    for (what, theirs, ours) in [
        ("board", &info.board, &here.board),
        ("model", &info.architecture, &here.architecture),
    ] {
        if theirs != ours {
            return Err(bad(format!(
                "trained for {what} {theirs:?}, asked to run on {ours:?}"
            )));
        }
    }
    if info.stages != here.stages
        || info.offloads != here.offloads
        || info.branches != here.branches
    {
        return Err(bad(format!(
            "trained for another action set ({} stages, {} offloads, levels {:?}; here {} stages, {} offloads, levels {:?}): \
             the calibration's compressions or the cosine floor differ",
            info.stages,
            info.offloads.len(),
            &info.branches[..2],
            here.stages,
            here.offloads.len(),
            &here.branches[..2]
        )));
    }
    if info.budget_bytes != here.budget_bytes {
        return Err(bad(format!(
            "trained for a budget of {}, asked to run with {}",
            budget_text(info.budget_bytes),
            budget_text(here.budget_bytes)
        )));
    }
    if (info.eta - here.eta).abs() > 1e-12 {
        return Err(bad(format!(
            "trained for eta {}, asked to run at eta {}",
            info.eta, here.eta
        )));
    }
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let shapes = Network::shapes(OBSERVATION, hidden, info.branches);
    let mut values = Vec::with_capacity(LAYERS.len());
    for (name, (out, inp)) in LAYERS.iter().zip(shapes) {
        let read = |suffix: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let key = format!("{name}.{suffix}");
            let t = tensors
                .tensor(&key)
                .map_err(|_| bad(format!("no tensor {key}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "{key} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("{key} holds a value that is not finite")));
            }
            Ok(values)
        };
        values.push((read("weight", vec![out, inp])?, read("bias", vec![out])?));
    }
    let network = Network::from_values(OBSERVATION, hidden, info.branches, values)?;
    let policy = DqnPolicy { network };
    policy.check_fits(env)?;
    Ok(policy)
}

fn budget_text(bytes: Option<u64>) -> String {
    bytes.map_or("none".to_string(), |b| b.to_string())
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
