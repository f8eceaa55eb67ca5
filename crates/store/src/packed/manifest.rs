//! The packed store's manifest (manifest.json): format version, the model config, and the units
//! in execution order with their byte ranges, checksums and tensor tables, and a checksum of
//! the manifest itself.

use edgerun_tensor::DType;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "edgerun-packed";
/// Version 2 added the manifest's own checksum; version 3 holds Linear and Conv1D weights packed
/// for the GEMM; version 4 also a tied LM head's embedding table (GPT-2's `wte`); version 5
/// convolution weights packed for the channels-last convolution.
pub const VERSION: u32 = 5;
/// Every unit starts and ends on this boundary, so one aligned read (O_DIRECT) fetches it.
pub const UNIT_ALIGN: u64 = 4096;
/// Tensors start on this boundary inside their unit (a cache line, and f32/f16 alignment).
pub const TENSOR_ALIGN: u64 = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// config.json of the source model, verbatim.
    pub config: serde_json::Value,
    pub architecture: String,
    pub data_file: String,
    pub data_bytes: u64,
    pub units: Vec<UnitEntry>,
    /// CRC-32C of [`Manifest::canonical_text`]: an edited or damaged manifest (a flipped
    /// `transposed`, a removed unit, a changed config flag) fails at open.
    #[serde(default)]
    pub checksum: u32,
}

impl Manifest {
    /// The text the checksum covers: this manifest serialised with `checksum` at 0. Every
    /// value in it survives a JSON round trip exactly (integers, strings, and floats parsed
    /// with correct rounding), so a reader recomputes the writer's text.
    pub fn canonical_text(&self) -> String {
        let mut copy = self.clone();
        copy.checksum = 0;
        serde_json::to_string_pretty(&copy).expect("a manifest serialises")
    }

    /// The manifest's checksum as the writer sets it.
    pub fn compute_checksum(&self) -> u32 {
        crc32c::crc32c(self.canonical_text().as_bytes())
    }
}

/// One stage's tensors, stored contiguously at `offset .. offset + length` of the data file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnitEntry {
    pub id: String,
    pub offset: u64,
    pub length: u64,
    /// CRC-32C of the unit's `length` bytes (padding included).
    pub crc32c: u32,
    /// Parameters of the stage (elements of its tensors).
    pub parameters: u64,
    pub tensors: Vec<TensorEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    /// Written `f32`, `f16` or `bf16`; any other name fails the manifest's parse.
    #[serde(with = "dtype_name")]
    pub dtype: DType,
    /// The shape kernels read: Linear and Conv1D weights packed for the GEMM,
    /// `[ceil(out / 64), in, 64]` (columns past `out` zero), convolution weights
    /// `[ceil(out / 64), kh * kw * in, 64]`.
    pub shape: Vec<usize>,
    /// True for Linear weights stored transposed from the checkpoint's `[out, in]`.
    pub transposed: bool,
    /// Offset inside the unit.
    pub offset: u64,
    pub length: u64,
}

/// A dtype as the manifest names it: exactly `f32`, `f16` or `bf16` (the writer's names, so the
/// checksum's canonical text is the text that was written).
mod dtype_name {
    use edgerun_tensor::DType;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(dtype: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(dtype.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown dtype {name:?} (f32, f16 or bf16)")))
    }
}
