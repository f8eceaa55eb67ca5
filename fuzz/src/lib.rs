//! What the fuzz targets share: tiny models of each family, synthesized (and packed) once per
//! process into a scratch folder, and a forward pass through the real executor. A target may
//! see any error; a panic, an abort, a hang or an unbounded allocation is a bug.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use edgerun_models::{IdTensor, Inputs, RunOptions};
use edgerun_runtime::{Executor, FullExecutor};
use edgerun_store::synth::{synthesize_config, SynthOptions};
use edgerun_store::{HfFolder, ModelSource};
use edgerun_tensor::Tensor;

/// A tiny model of one family: its config, the tensors a checkpoint of it holds, its input.
pub struct Tiny {
    pub name: &'static str,
    pub config: &'static str,
    has_tensor: fn(&str) -> bool,
    /// Height and width of the image it takes; 0 for token models.
    pub side: usize,
}

pub const TINY: &[Tiny] = &[
    Tiny {
        name: "bert",
        config: r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 40,
          "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 16, "max_position_embeddings": 16, "type_vocab_size": 2}"#,
        has_tensor: |n| n == "pooler.dense.weight",
        side: 0,
    },
    Tiny {
        name: "gpt2",
        config: r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 40,
          "n_embd": 8, "n_layer": 2, "n_head": 2, "n_positions": 16}"#,
        has_tensor: |n| n.starts_with("transformer."),
        side: 0,
    },
    Tiny {
        name: "vit",
        config: r#"{"model_type": "vit", "architectures": ["ViTModel"], "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
          "image_size": 8, "patch_size": 4, "num_channels": 3}"#,
        has_tensor: |_| false,
        side: 8,
    },
    Tiny {
        name: "resnet",
        config: r#"{"model_type": "resnet", "architectures": ["ResNetModel"], "num_channels": 3,
          "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"}"#,
        has_tensor: |_| false,
        side: 32,
    },
];

/// This process's scratch folder (removed by nobody: libFuzzer exits without unwinding).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("edgerun-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

impl Tiny {
    /// The Hugging Face folder of this model, synthesized on first use.
    pub fn folder(&self) -> PathBuf {
        let dir = scratch().join(self.name);
        if !dir.join("config.json").exists() {
            let config: serde_json::Value =
                serde_json::from_str(self.config).expect("a tiny config parses");
            synthesize_config(
                &config,
                &self.has_tensor,
                &dir,
                &SynthOptions::default(),
                &mut |_, _| {},
            )
            .expect("a tiny model synthesizes");
        }
        dir
    }

    /// The packed store of this model, packed on first use.
    pub fn store(&self) -> PathBuf {
        let dir = scratch().join(format!("{}.packed", self.name));
        if !dir.join("manifest.json").exists() {
            let folder = HfFolder::open(&self.folder()).expect("the tiny folder opens");
            edgerun_store::packed::pack(&folder, &dir, None, &mut |_, _| {})
                .expect("the tiny model packs");
        }
        dir
    }

    /// An input this model accepts.
    pub fn inputs(&self) -> Inputs {
        if self.side > 0 {
            let side = self.side;
            let values = (0..3 * side * side).map(|i| (i % 7) as f32 / 7.0).collect();
            Inputs {
                pixel_values: Some(Tensor::from_vec(&[1, 3, side, side], values).expect("a shape")),
                ..Inputs::default()
            }
        } else {
            Inputs {
                input_ids: Some(IdTensor::new(vec![1, 4], vec![1, 2, 3, 4]).expect("a shape")),
                ..Inputs::default()
            }
        }
    }
}

/// Picks a tiny model by a byte of the fuzz input.
pub fn pick(byte: u8) -> &'static Tiny {
    &TINY[byte as usize % TINY.len()]
}

/// Loads every stage of `source` and runs one pass over `inputs`; errors are answers.
pub fn forward(source: &ModelSource, inputs: Inputs) {
    if let Ok(executor) = FullExecutor::load(source) {
        let _ = executor.forward(inputs, RunOptions::default());
    }
}
