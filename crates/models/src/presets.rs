//! The published configs `edgerun synth` reproduces (weights cannot be downloaded here, but
//! benchmarks need real sizes), and the tensor names their checkpoints hold.

use serde_json::{json, Value};

/// A named published architecture.
pub struct Preset {
    pub name: &'static str,
    /// The Hugging Face model this mirrors.
    pub source: &'static str,
    pub config: Value,
    /// Tensors whose presence selects prefixes and heads (see [`crate::build_model`]).
    pub present: &'static [&'static str],
}

pub const NAMES: &[&str] = &[
    "bert-base",
    "bert-large",
    "vit-base-16",
    "vit-large-16",
    "gpt2",
    "gpt2-medium",
    "gpt-j-6b",
    "resnet-50",
    "resnet-101",
    "resnet-152",
    "vgg19",
    "fcn-resnet101",
    "yolov3",
];

fn labels(n: usize) -> Value {
    Value::Object(
        (0..n)
            .map(|i| (i.to_string(), Value::String(format!("LABEL_{i}"))))
            .collect(),
    )
}

fn bert(hidden: usize, layers: usize, heads: usize) -> Value {
    json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 30522,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": 4 * hidden, "hidden_act": "gelu", "max_position_embeddings": 512,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute"
    })
}

fn vit(hidden: usize, layers: usize, heads: usize) -> Value {
    json!({
        "architectures": ["ViTForImageClassification"], "model_type": "vit",
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": 4 * hidden, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": true,
        "id2label": labels(1000)
    })
}

fn gpt2(hidden: usize, layers: usize, heads: usize) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257,
        "n_embd": hidden, "n_layer": layers, "n_head": heads, "n_positions": 1024, "n_ctx": 1024,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": true
    })
}

fn resnet(depths: [usize; 4]) -> Value {
    json!({
        "architectures": ["ResNetForImageClassification"], "model_type": "resnet",
        "num_channels": 3, "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048],
        "depths": depths, "layer_type": "bottleneck", "hidden_act": "relu",
        "downsample_in_first_stage": false, "downsample_in_bottleneck": false,
        "id2label": labels(1000)
    })
}

const BERT: &[&str] = &["pooler.dense.weight"];
const VIT: &[&str] = &["vit.embeddings.cls_token", "classifier.weight"];
const GPT: &[&str] = &["transformer.wte.weight"];
const RESNET: &[&str] = &[
    "resnet.embedder.embedder.convolution.weight",
    "classifier.1.weight",
];

const TORCHVISION_AUX: &[&str] = &["aux_classifier.0.weight"];

/// The preset called `name`, if there is one.
pub fn preset(name: &str) -> Option<Preset> {
    let (source, config, present) = match name {
        "bert-base" => ("google-bert/bert-base-uncased", bert(768, 12, 12), BERT),
        "bert-large" => ("google-bert/bert-large-uncased", bert(1024, 24, 16), BERT),
        "vit-base-16" => ("google/vit-base-patch16-224", vit(768, 12, 12), VIT),
        "vit-large-16" => ("google/vit-large-patch16-224", vit(1024, 24, 16), VIT),
        "gpt2" => ("openai-community/gpt2", gpt2(768, 12, 12), GPT),
        "gpt2-medium" => ("openai-community/gpt2-medium", gpt2(1024, 24, 16), GPT),
        "gpt-j-6b" => (
            "EleutherAI/gpt-j-6b",
            json!({
                "architectures": ["GPTJForCausalLM"], "model_type": "gptj", "vocab_size": 50400,
                "n_embd": 4096, "n_layer": 28, "n_head": 16, "n_positions": 2048, "rotary_dim": 64,
                "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
                "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": false
            }),
            GPT,
        ),
        "resnet-50" => ("microsoft/resnet-50", resnet([3, 4, 6, 3]), RESNET),
        "resnet-101" => ("microsoft/resnet-101", resnet([3, 4, 23, 3]), RESNET),
        "resnet-152" => ("microsoft/resnet-152", resnet([3, 8, 36, 3]), RESNET),
        "vgg19" => (
            "torchvision vgg19 (IMAGENET1K_V1)",
            json!({"library": "torchvision", "architecture": "vgg19", "num_classes": 1000}),
            &[][..],
        ),
        "fcn-resnet101" => (
            "torchvision fcn_resnet101 (COCO_WITH_VOC_LABELS_V1, with the aux head)",
            json!({"library": "torchvision", "architecture": "fcn_resnet101", "num_classes": 21}),
            TORCHVISION_AUX,
        ),
        "yolov3" => (
            "YOLOv3 (Redmon and Farhadi 2018), 80 COCO classes: timm darknet53 + three heads",
            json!({"library": "darknet", "architecture": "yolov3", "num_classes": 80}),
            &[][..],
        ),
        _ => return None,
    };
    Some(Preset {
        name: NAMES.iter().find(|n| **n == name).copied()?,
        source,
        config,
        present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(p: &Preset) -> Box<dyn crate::Model> {
        let has_tensor = |n: &str| p.present.contains(&n);
        let checkpoint = crate::Checkpoint {
            has_tensor: &has_tensor,
            tensors: None,
        };
        crate::build_model(&p.config.to_string(), checkpoint).unwrap()
    }

    fn params(name: &str) -> usize {
        let p = preset(name).unwrap();
        let model = build(&p);
        let mut seen = std::collections::HashSet::new();
        model
            .stages()
            .iter()
            .flat_map(|s| &s.tensors)
            .filter(|t| seen.insert(t.name.clone()))
            .map(|t| t.elements())
            .sum()
    }

    fn params_without_buffers(name: &str) -> usize {
        let p = preset(name).unwrap();
        let model = build(&p);
        model
            .stages()
            .iter()
            .flat_map(|s| &s.tensors)
            .filter(|t| !t.name.contains("running_"))
            .map(|t| t.elements())
            .sum()
    }

    #[test]
    fn parameter_counts_match_the_published_models() {
        // Counts of the transformers classes (BatchNorm buffers included for ResNet).
        assert_eq!(params("gpt2"), 124_439_808);
        assert_eq!(params("bert-base"), 109_482_240);
        assert_eq!(params("vit-base-16"), 86_567_656);
        // torchvision's documented parameter counts (BatchNorm buffers excluded).
        assert_eq!(params("vgg19"), 143_667_240);
        assert_eq!(params_without_buffers("fcn-resnet101"), 54_314_346);
        // Darknet's yolov3.cfg at 80 classes, as its PyTorch ports count it.
        assert_eq!(params_without_buffers("yolov3"), 61_949_149);
    }

    #[test]
    fn every_name_has_a_preset() {
        for name in NAMES {
            assert!(preset(name).is_some(), "{name}");
        }
        assert!(preset("llama").is_none());
    }
}
