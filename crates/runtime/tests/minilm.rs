//! The real all-MiniLM-L6-v2 (fetched by scripts/fetch-minilm.sh): sentence embeddings from
//! text must match sentence-transformers' with cosine >= 0.99999, and tokenization must give
//! transformers' ids and mask exactly.

mod common;

use common::{fixtures, minilm, read_all, Expected};
use edgerun_models::tokenizer::Tokenizer;
use edgerun_runtime::attention_eval::row_cosines;
use edgerun_runtime::Embedder;
use edgerun_store::ModelSource;

#[test]
fn tokenization_matches_transformers() {
    let (Some(root), Some(model)) = (fixtures(), minilm()) else {
        return;
    };
    let tokenizer =
        Tokenizer::from_bytes(&std::fs::read(model.join("tokenizer.json")).unwrap()).unwrap();
    let inputs = tokenizer
        .encode_batch(&common::minilm_sentences(&root))
        .unwrap();
    for (name, expected) in read_all(&root.join("minilm-real/inputs.safetensors")) {
        let Expected::I64 { shape, values } = expected else {
            continue;
        };
        let got = match name.as_str() {
            "input_ids" => inputs.input_ids.as_ref(),
            "attention_mask" => inputs.attention_mask.as_ref(),
            "token_type_ids" => inputs.token_type_ids.as_ref(),
            _ => continue,
        }
        .unwrap();
        assert_eq!((&got.shape, &got.values), (&shape, &values), "{name}");
    }
}

#[test]
fn sentence_embeddings_match_sentence_transformers() {
    let (Some(root), Some(model)) = (fixtures(), minilm()) else {
        return;
    };
    let embedder = Embedder::load(&ModelSource::open(&model).unwrap()).unwrap();
    let got = embedder.embed(&common::minilm_sentences(&root)).unwrap();
    let reference = common::minilm_reference(&root);
    assert_eq!(got.shape(), reference.shape());
    let (_, min) = row_cosines(&reference, &got);
    assert!(min >= 0.99999, "a sentence's cosine is {min}");
}
