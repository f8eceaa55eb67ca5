//! Tensors as the Open Inference Protocol carries them: a name, a datatype tag, a shape and
//! row-major little-endian bytes (what the binary-data extension sends as is; JSON data is
//! converted to these bytes on arrival).

use half::f16;

use crate::{Result, ServeError};

/// The protocol's datatypes edgerun reads and writes (`BYTES` strings are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
}

impl DataType {
    pub fn parse(tag: &str) -> Result<Self> {
        Ok(match tag {
            "BOOL" => Self::Bool,
            "UINT8" => Self::U8,
            "UINT16" => Self::U16,
            "UINT32" => Self::U32,
            "UINT64" => Self::U64,
            "INT8" => Self::I8,
            "INT16" => Self::I16,
            "INT32" => Self::I32,
            "INT64" => Self::I64,
            "FP16" => Self::F16,
            "FP32" => Self::F32,
            "FP64" => Self::F64,
            other => {
                return Err(ServeError::bad(format!(
                    "datatype {other:?} is not one edgerun reads (BOOL, UINT8-64, INT8-64, FP16, FP32, FP64)"
                )))
            }
        })
    }

    pub fn tag(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F16 => "FP16",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 | Self::F16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }
}

/// One tensor on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct WireTensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<usize>,
    /// `elements(shape) * datatype.size()` bytes, little-endian, row-major.
    pub bytes: Vec<u8>,
}

/// Elements of `shape`, refusing a product that overflows.
pub fn elements(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            ServeError::bad(format!(
                "shape {shape:?} has more elements than memory can hold"
            ))
        })
}

impl WireTensor {
    /// Checks the bytes against the shape and datatype.
    pub fn new(
        name: impl Into<String>,
        datatype: DataType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    ) -> Result<Self> {
        let name = name.into();
        let expected = elements(&shape)?
            .checked_mul(datatype.size())
            .ok_or_else(|| ServeError::bad(format!("{name}: shape {shape:?} is too large")))?;
        if bytes.len() != expected {
            return Err(ServeError::bad(format!(
                "{name}: {} bytes of data for {} {shape:?} ({expected} bytes)",
                bytes.len(),
                datatype.tag()
            )));
        }
        Ok(Self {
            name,
            datatype,
            shape,
            bytes,
        })
    }

    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, DataType::F32, shape, bytes)
    }

    pub fn from_f16(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        let bytes = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        Self::new(name, DataType::F16, shape, bytes)
    }

    pub fn from_i64(name: impl Into<String>, shape: Vec<usize>, values: &[i64]) -> Result<Self> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, DataType::I64, shape, bytes)
    }

    pub fn from_i8(name: impl Into<String>, shape: Vec<usize>, values: &[i8]) -> Result<Self> {
        let bytes = values.iter().map(|&v| v as u8).collect();
        Self::new(name, DataType::I8, shape, bytes)
    }

    pub fn from_u8(name: impl Into<String>, shape: Vec<usize>, values: Vec<u8>) -> Result<Self> {
        Self::new(name, DataType::U8, shape, values)
    }

    pub fn elements(&self) -> usize {
        self.bytes.len() / self.datatype.size()
    }

    /// The values as f32 (floats widened or narrowed as IEEE does; integers converted).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = &self.bytes;
        Ok(match self.datatype {
            DataType::F32 => chunks::<4>(b).map(f32::from_le_bytes).collect(),
            DataType::F16 => chunks::<2>(b)
                .map(|c| f16::from_le_bytes(c).to_f32())
                .collect(),
            DataType::F64 => chunks::<8>(b)
                .map(|c| f64::from_le_bytes(c) as f32)
                .collect(),
            _ => self.to_i64()?.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// The values as i64 (integer and boolean types only: a float is not an id).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let b = &self.bytes;
        Ok(match self.datatype {
            DataType::Bool | DataType::U8 => b.iter().map(|&v| i64::from(v)).collect(),
            DataType::I8 => b.iter().map(|&v| i64::from(v as i8)).collect(),
            DataType::U16 => chunks::<2>(b)
                .map(|c| i64::from(u16::from_le_bytes(c)))
                .collect(),
            DataType::I16 => chunks::<2>(b)
                .map(|c| i64::from(i16::from_le_bytes(c)))
                .collect(),
            DataType::U32 => chunks::<4>(b)
                .map(|c| i64::from(u32::from_le_bytes(c)))
                .collect(),
            DataType::I32 => chunks::<4>(b)
                .map(|c| i64::from(i32::from_le_bytes(c)))
                .collect(),
            DataType::I64 => chunks::<8>(b).map(i64::from_le_bytes).collect(),
            DataType::U64 => chunks::<8>(b)
                .map(|c| {
                    i64::try_from(u64::from_le_bytes(c)).map_err(|_| {
                        ServeError::bad(format!("{}: a UINT64 value exceeds INT64", self.name))
                    })
                })
                .collect::<Result<_>>()?,
            DataType::F16 | DataType::F32 | DataType::F64 => {
                return Err(ServeError::bad(format!(
                    "{} is {}; an integer type is expected",
                    self.name,
                    self.datatype.tag()
                )))
            }
        })
    }

    /// The values as i8 (INT8 only).
    pub fn to_i8(&self) -> Result<Vec<i8>> {
        self.expect(DataType::I8)?;
        Ok(self.bytes.iter().map(|&v| v as i8).collect())
    }

    /// Fails unless the tensor is of `datatype`.
    pub fn expect(&self, datatype: DataType) -> Result<()> {
        if self.datatype != datatype {
            return Err(ServeError::bad(format!(
                "{} is {}; {} is expected",
                self.name,
                self.datatype.tag(),
                datatype.tag()
            )));
        }
        Ok(())
    }

    /// The values as JSON numbers (for a response without binary data).
    pub fn to_json(&self) -> Result<Vec<serde_json::Value>> {
        Ok(match self.datatype {
            DataType::F16 | DataType::F32 | DataType::F64 => self
                .to_f32()?
                .into_iter()
                .map(|v| {
                    serde_json::Number::from_f64(f64::from(v))
                        .map_or(serde_json::Value::Null, Into::into)
                })
                .collect(),
            DataType::Bool => self
                .bytes
                .iter()
                .map(|&v| serde_json::Value::Bool(v != 0))
                .collect(),
            _ => self.to_i64()?.into_iter().map(Into::into).collect(),
        })
    }

    /// A tensor from JSON `data`: a flat or nested array of numbers (or booleans for BOOL).
    pub fn from_json(
        name: &str,
        datatype: DataType,
        shape: Vec<usize>,
        data: &serde_json::Value,
    ) -> Result<Self> {
        let count = elements(&shape)?;
        let mut flat = Vec::new();
        flatten(data, &mut flat, count, name)?;
        if flat.len() != count {
            return Err(ServeError::bad(format!(
                "{name}: {} values for shape {shape:?} ({count})",
                flat.len()
            )));
        }
        let mut bytes = Vec::with_capacity(count * datatype.size());
        for v in flat {
            encode_json(v, datatype, name, &mut bytes)?;
        }
        Self::new(name, datatype, shape, bytes)
    }
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes
        .chunks_exact(N)
        .map(|c| c.try_into().expect("chunks_exact gives N bytes"))
}

/// Collects the leaves of `data`, refusing more than `limit` (a hostile body cannot make the
/// server build a list larger than the shape it declared).
fn flatten<'v>(
    data: &'v serde_json::Value,
    out: &mut Vec<&'v serde_json::Value>,
    limit: usize,
    name: &str,
) -> Result<()> {
    match data {
        serde_json::Value::Array(items) => {
            for item in items {
                flatten(item, out, limit, name)?;
            }
        }
        leaf => {
            if out.len() == limit {
                return Err(ServeError::bad(format!(
                    "{name}: more values than its shape holds ({limit})"
                )));
            }
            out.push(leaf);
        }
    }
    Ok(())
}

fn encode_json(
    v: &serde_json::Value,
    datatype: DataType,
    name: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    let bad = || ServeError::bad(format!("{name}: {v} is not a {} value", datatype.tag()));
    if datatype == DataType::Bool {
        let b = match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                n.as_u64() == Some(1)
            }
            _ => return Err(bad()),
        };
        out.push(u8::from(b));
        return Ok(());
    }
    let n = v.as_number().ok_or_else(bad)?;
    match datatype {
        DataType::F16 => out.extend(f16::from_f64(n.as_f64().ok_or_else(bad)?).to_le_bytes()),
        DataType::F32 => out.extend((n.as_f64().ok_or_else(bad)? as f32).to_le_bytes()),
        DataType::F64 => out.extend(n.as_f64().ok_or_else(bad)?.to_le_bytes()),
        DataType::U64 => out.extend(n.as_u64().ok_or_else(bad)?.to_le_bytes()),
        _ => {
            let i = n.as_i64().ok_or_else(bad)?;
            let fits = |lo: i64, hi: i64| {
                if (lo..=hi).contains(&i) {
                    Ok(())
                } else {
                    Err(bad())
                }
            };
            match datatype {
                DataType::U8 => {
                    fits(0, 255)?;
                    out.push(i as u8)
                }
                DataType::I8 => {
                    fits(-128, 127)?;
                    out.push(i as i8 as u8)
                }
                DataType::U16 => {
                    fits(0, 65535)?;
                    out.extend((i as u16).to_le_bytes())
                }
                DataType::I16 => {
                    fits(-32768, 32767)?;
                    out.extend((i as i16).to_le_bytes())
                }
                DataType::U32 => {
                    fits(0, u32::MAX as i64)?;
                    out.extend((i as u32).to_le_bytes())
                }
                DataType::I32 => {
                    fits(i32::MIN as i64, i32::MAX as i64)?;
                    out.extend((i as i32).to_le_bytes())
                }
                _ => out.extend(i.to_le_bytes()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_round_trips_every_integer_type() {
        for tag in [
            "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "INT64", "BOOL",
        ] {
            let dt = DataType::parse(tag).unwrap();
            let data = serde_json::json!([[0, 1], [1, 0]]);
            let t = WireTensor::from_json("x", dt, vec![2, 2], &data).unwrap();
            assert_eq!(t.to_i64().unwrap(), vec![0, 1, 1, 0], "{tag}");
        }
    }

    #[test]
    fn refuses_out_of_range_and_miscounted_data() {
        let d = DataType::I8;
        assert!(WireTensor::from_json("x", d, vec![1], &serde_json::json!([128])).is_err());
        assert!(WireTensor::from_json("x", d, vec![2], &serde_json::json!([1])).is_err());
        assert!(WireTensor::from_json("x", d, vec![1], &serde_json::json!([1, 2])).is_err());
        assert!(WireTensor::from_json("x", d, vec![1], &serde_json::json!(["a"])).is_err());
        assert!(
            WireTensor::from_json("x", DataType::I64, vec![1], &serde_json::json!([1.5])).is_err()
        );
        assert!(WireTensor::new("x", DataType::F32, vec![usize::MAX, 2], vec![]).is_err());
        assert!(DataType::parse("BYTES").is_err());
        let floats = WireTensor::from_f32("x", vec![1], &[1.0]).unwrap();
        assert!(floats.to_i64().is_err(), "a float is not an id");
    }

    proptest! {
        #[test]
        fn f32_survives_the_wire_bit_for_bit(values in prop::collection::vec(any::<f32>(), 0..64)) {
            let t = WireTensor::from_f32("x", vec![values.len()], &values).unwrap();
            let back = t.to_f32().unwrap();
            prop_assert!(back.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
