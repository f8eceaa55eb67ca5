//! The real all-MiniLM-L6-v2 (fetched by scripts/fetch-minilm.sh): sentence embeddings from
//! text must match sentence-transformers' with cosine >= 0.99999, and tokenization must give
//! transformers' ids and mask exactly.

mod common;

use common::{fixtures, minilm, read_all, Expected};
use edgerun_models::tokenizer::Tokenizer;
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
    let expected = read_all(&root.join("minilm-real/expected.safetensors"));
    let Some((_, Expected::F32 { shape, values })) =
        expected.iter().find(|(n, _)| n == "sentence_embedding")
    else {
        panic!("no sentence_embedding")
    };
    assert_eq!(got.shape(), shape.as_slice());
    let dim = shape[1];
    for (i, (a, b)) in got
        .values()
        .chunks_exact(dim)
        .zip(values.chunks_exact(dim))
        .enumerate()
    {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        assert!(cosine >= 0.99999, "sentence {i}: cosine {cosine}");
    }
}
