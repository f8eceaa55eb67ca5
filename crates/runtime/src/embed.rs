//! Sentence embeddings: tokenize, run the encoder, pool as the folder's sentence-transformers
//! modules say.

use edgerun_models::pooling::Pooling;
use edgerun_models::tokenizer::Tokenizer;
use edgerun_models::RunOptions;
use edgerun_store::ModelSource;
use edgerun_tensor::Tensor;

use crate::{Executor, FullExecutor, Result, RuntimeError};

pub struct Embedder {
    executor: FullExecutor,
    tokenizer: Tokenizer,
    pooling: Pooling,
}

impl Embedder {
    pub fn model(&self) -> &dyn edgerun_models::Model {
        self.executor.model()
    }

    pub fn load(folder: &ModelSource) -> Result<Self> {
        let tokenizer_json = folder.read_optional("tokenizer.json")?.ok_or_else(|| {
            RuntimeError::Unsupported(format!(
                "{} has no tokenizer.json; embed needs one",
                folder.dir().display()
            ))
        })?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_json)?;
        let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
        let pooling = Pooling::from_json(
            text(folder.read_optional("1_Pooling/config.json")?).as_deref(),
            text(folder.read_optional("modules.json")?).as_deref(),
        )?;
        Ok(Self {
            executor: FullExecutor::load(folder)?,
            tokenizer,
            pooling,
        })
    }

    /// `[texts, dim]` sentence embeddings.
    pub fn embed(&self, texts: &[String]) -> Result<Tensor> {
        self.embed_with(texts, RunOptions::default())
    }

    /// [`Embedder::embed`] with run options (another attention, for one).
    pub fn embed_with(&self, texts: &[String], options: RunOptions) -> Result<Tensor> {
        let inputs = self.tokenizer.encode_batch(texts)?;
        let mask = inputs
            .attention_mask
            .clone()
            .expect("the tokenizer returns a mask");
        let outputs = self.executor.forward(inputs, options)?;
        let hidden = outputs.get("last_hidden_state").ok_or_else(|| {
            RuntimeError::Unsupported(format!(
                "{} gives no token embeddings to pool",
                self.executor.model().architecture()
            ))
        })?;
        Ok(self.pooling.apply(hidden, &mask)?)
    }
}
