//! Model files: the only crate that opens them.
//!
//! [`HfFolder`] opens a Hugging Face folder (config.json plus one or several safetensors files),
//! validates every header, and binds a stage's tensors to memory: f32 tensors borrow the mapped
//! file in place, Linear weights are transposed once to `[in, out]`, f16/bf16 are widened.
//! [`PackedStore`] holds the same tensors as units aligned for direct I/O (`edgerun pack`);
//! [`ModelSource`] opens either. [`tensor_file`] reads input tensors and writes outputs;
//! [`synth`] writes random checkpoints with published configs.

pub mod error;
pub mod hf;
pub mod input;
mod mapped;
pub mod output;
pub mod packed;
pub mod safetensors_index;
pub mod source;
pub mod synth;
pub mod tensor_file;
pub mod throughput;

pub use error::{Result, StoreError};

/// Reads `relative` under `dir` if it exists: the small side files of a model (tokenizer.json,
/// pooling configs).
pub(crate) fn read_optional(dir: &std::path::Path, relative: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(relative);
    match input::read_bounded(&path, "model side file", input::METADATA_LIMIT) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
pub use hf::HfFolder;
pub use input::{read_bounded, read_metadata};
pub use mapped::MappedFile;
pub use output::{check_distinct, write_file, NamedPath, OutputFile};
pub use packed::{IoMode, PackedStore};
pub use source::{ModelSource, ReadOptions};
pub use tensor_file::{parse_inputs, read_inputs, write_tensors, OutputTensor};
