//! The packed store's manifest (manifest.json): format version, the model config, and the units
//! in execution order with their byte ranges, checksums and tensor tables, and a checksum of
//! the manifest itself.

use edgerun_tensor::quant::QuantFormat;
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
    /// Written `f32`, `f16`, `bf16`, `int8` or `q4`; any other name fails the manifest's parse.
    #[serde(with = "stored_name")]
    pub dtype: StoredType,
    /// The shape kernels read: Linear and Conv1D weights packed for the GEMM,
    /// `[ceil(out / 64), in, 64]` (columns past `out` zero), convolution weights
    /// `[ceil(out / 64), kh * kw * in, 64]`. A quantised matrix has this shape too, its bytes
    /// laid out as [`QuantEntry`] says.
    pub shape: Vec<usize>,
    /// True for Linear weights stored transposed from the checkpoint's `[out, in]`.
    pub transposed: bool,
    /// Offset inside the unit.
    pub offset: u64,
    pub length: u64,
    /// How a quantised matrix is laid out (absent for float tensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<QuantEntry>,
}

/// A quantised matrix (`edgerun_tensor::quant`): its codes from the tensor's offset, then its
/// scales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantEntry {
    /// `[in, out]`: the product's `k` and `n`.
    pub matrix: [usize; 2],
    /// Steps of `in` sharing one scale: all of them (int8, one scale per output) or 32 (q4).
    pub group: usize,
    /// `f32` (int8) or `f16` (q4).
    pub scale_dtype: String,
    /// Where the scales start and how long they are, inside the tensor's bytes.
    pub scales_offset: u64,
    pub scales_length: u64,
}

impl QuantEntry {
    /// The entry a `k x n` matrix of `format` has.
    pub fn new(format: QuantFormat, k: usize, n: usize) -> Self {
        QuantEntry {
            matrix: [k, n],
            group: format.group_size(k),
            scale_dtype: match format {
                QuantFormat::Int8 => "f32",
                QuantFormat::Q4 => "f16",
            }
            .into(),
            scales_offset: format.codes_len(k, n) as u64,
            scales_length: format.scales_len(k, n) as u64,
        }
    }
}

/// How a tensor is stored: a float dtype (widened to f32 when narrower), or a quantised
/// matrix computed from as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredType {
    Float(DType),
    Quant(QuantFormat),
}

impl StoredType {
    pub const F32: StoredType = StoredType::Float(DType::F32);

    pub fn name(self) -> &'static str {
        match self {
            StoredType::Float(d) => d.name(),
            StoredType::Quant(q) => q.name(),
        }
    }

    /// Whether binding widens it to an f32 copy (f16, bf16).
    pub fn widens(self) -> bool {
        matches!(self, StoredType::Float(d) if d != DType::F32)
    }

    /// The float dtype, if it is one.
    pub fn float(self) -> Option<DType> {
        match self {
            StoredType::Float(d) => Some(d),
            StoredType::Quant(_) => None,
        }
    }
}

/// A stored type as the manifest names it: exactly `f32`, `f16`, `bf16`, `int8` or `q4` (the
/// writer's names, so the checksum's canonical text is the text that was written).
mod stored_name {
    use edgerun_tensor::DType;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use super::{QuantFormat, StoredType};

    pub fn serialize<S: Serializer>(dtype: &StoredType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(dtype.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StoredType, D::Error> {
        let name = String::deserialize(d)?;
        [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .map(StoredType::Float)
            .chain([QuantFormat::Int8, QuantFormat::Q4].map(StoredType::Quant))
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "unknown dtype {name:?} (f32, f16, bf16, int8 or q4)"
                ))
            })
    }
}
