//! Text to token ids with the `tokenizers` crate, batched and padded like transformers'
//! `tokenizer(texts, padding=True, truncation=True)`.

use crate::{IdTensor, Inputs, ModelError, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: i64,
}

impl Tokenizer {
    /// Builds from the bytes of a tokenizer.json (the store reads the file).
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // tokenizer.json may pad every text to a fixed length; transformers' padding=True pads
        // to the longest text of the batch, which encode_batch does itself.
        let pad_id = inner.get_padding().map(|p| p.pad_id as i64).unwrap_or(0);
        inner.with_padding(None);
        Ok(Self { inner, pad_id })
    }

    /// Encodes `texts` with special tokens, padded on the right to the longest, as
    /// `input_ids`, `attention_mask` and `token_type_ids`.
    pub fn encode_batch(&self, texts: &[String]) -> Result<Inputs> {
        if texts.is_empty() {
            return Err(ModelError::input("text", "no text to encode"));
        }
        let encodings = texts
            .iter()
            .map(|t| {
                self.inner
                    .encode(t.as_str(), true)
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let seq = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
        if seq == 0 {
            return Err(ModelError::input(
                "text",
                "encodes to no tokens (this tokenizer adds no special tokens to an empty text)",
            ));
        }
        let pad_id = self.pad_id;
        let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
        for e in &encodings {
            let n = e.get_ids().len();
            ids.extend(
                e.get_ids()
                    .iter()
                    .map(|&i| i as i64)
                    .chain(std::iter::repeat_n(pad_id, seq - n)),
            );
            mask.extend(
                e.get_attention_mask()
                    .iter()
                    .map(|&m| m as i64)
                    .chain(std::iter::repeat_n(0, seq - n)),
            );
            types.extend(
                e.get_type_ids()
                    .iter()
                    .map(|&t| t as i64)
                    .chain(std::iter::repeat_n(0, seq - n)),
            );
        }
        let shape = vec![texts.len(), seq];
        Ok(Inputs {
            input_ids: Some(IdTensor::new(shape.clone(), ids)?),
            attention_mask: Some(IdTensor::new(shape.clone(), mask)?),
            token_type_ids: Some(IdTensor::new(shape, types)?),
            ..Inputs::default()
        })
    }

    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }
}
