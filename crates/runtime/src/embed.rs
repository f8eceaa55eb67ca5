//! Sentence embeddings: tokenize, run the encoder, pool as the folder's sentence-transformers
//! modules say. [`TextHead`] is the part that is not the encoder (tokenizer and pooling), so
//! any executor can embed; [`Embedder`] pairs it with every weight loaded.

use edgerun_models::pooling::Pooling;
use edgerun_models::tokenizer::Tokenizer;
use edgerun_models::RunOptions;
use edgerun_store::ModelSource;
use edgerun_tensor::Tensor;

use crate::{Executor, FullExecutor, Outputs, Result, RuntimeError};

/// A sentence-transformers folder's tokenizer and pooling.
pub struct TextHead {
    tokenizer: Tokenizer,
    pooling: Pooling,
}

impl TextHead {
    pub fn load(folder: &ModelSource) -> Result<Self> {
        let tokenizer_json =
            folder
                .read_optional("tokenizer.json")?
                .ok_or_else(|| RuntimeError::NoTokenizer {
                    dir: folder.dir().to_path_buf(),
                })?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_json)?;
        let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
        let pooling = Pooling::from_json(
            text(folder.read_optional("1_Pooling/config.json")?).as_deref(),
            text(folder.read_optional("modules.json")?).as_deref(),
        )?;
        Ok(Self { tokenizer, pooling })
    }

    /// `[texts, dim]` sentence embeddings, the encoder run by `executor` with `options`.
    pub fn embed(
        &self,
        executor: &dyn Executor,
        texts: &[String],
        options: RunOptions,
    ) -> Result<Tensor> {
        Ok(self.embed_outputs(executor, texts, options)?.0)
    }

    /// [`TextHead::embed`], with the encoder's outputs (hidden states, if `options` asks).
    pub fn embed_outputs(
        &self,
        executor: &dyn Executor,
        texts: &[String],
        options: RunOptions,
    ) -> Result<(Tensor, Outputs)> {
        let inputs = self.tokenize(texts)?;
        let mask = inputs
            .attention_mask
            .clone()
            .expect("the tokenizer returns a mask");
        let outputs = executor.forward(inputs, options)?;
        let embedding = self.pool(&outputs, &mask, executor.model())?;
        Ok((embedding, outputs))
    }

    /// The encoder's inputs for `texts`: ids, mask and token types, padded to the longest.
    pub fn tokenize(&self, texts: &[String]) -> Result<edgerun_models::Inputs> {
        Ok(self.tokenizer.encode_batch(texts)?)
    }

    /// `[texts, dim]` embeddings pooled from the encoder's `last_hidden_state` under `mask`
    /// (however the encoder was run: here, streamed, or split with a server).
    pub fn pool(
        &self,
        outputs: &Outputs,
        mask: &edgerun_models::IdTensor,
        model: &dyn edgerun_models::Model,
    ) -> Result<Tensor> {
        let hidden =
            outputs
                .get("last_hidden_state")
                .ok_or_else(|| RuntimeError::NoTokenEmbeddings {
                    architecture: model.architecture().to_string(),
                })?;
        Ok(self.pooling.apply(hidden, mask)?)
    }
}

pub struct Embedder {
    executor: FullExecutor,
    head: TextHead,
}

impl Embedder {
    pub fn model(&self) -> &dyn edgerun_models::Model {
        self.executor.model()
    }

    pub fn load(folder: &ModelSource) -> Result<Self> {
        Ok(Self {
            head: TextHead::load(folder)?,
            executor: FullExecutor::load(folder)?,
        })
    }

    /// `[texts, dim]` sentence embeddings.
    pub fn embed(&self, texts: &[String]) -> Result<Tensor> {
        self.embed_with(texts, RunOptions::default())
    }

    /// [`Embedder::embed`] with run options (another attention, for one).
    pub fn embed_with(&self, texts: &[String], options: RunOptions) -> Result<Tensor> {
        self.head.embed(&self.executor, texts, options)
    }

    /// [`Embedder::embed_with`], with the encoder's outputs.
    pub fn embed_outputs(
        &self,
        texts: &[String],
        options: RunOptions,
    ) -> Result<(Tensor, Outputs)> {
        self.head.embed_outputs(&self.executor, texts, options)
    }
}
