//! The Open Inference Protocol v2 (KServe, NVIDIA Triton) REST messages: infer requests and
//! responses as JSON, with the binary-data extension (a JSON header of
//! `Inference-Header-Content-Length` bytes, then each binary tensor's bytes in order, each
//! sized by its `binary_data_size` parameter), and model metadata.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire::{DataType, WireTensor};
use crate::{Result, ServeError};

/// The header that says where the JSON ends and binary tensor data begins.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// A tensor in a request's `inputs` or a response's `outputs`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct TensorJson {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// An output a request asks for, and whether as binary data.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct OutputRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct RequestHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<TensorJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<OutputRequest>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct ResponseHeader {
    model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
    outputs: Vec<TensorJson>,
}

/// An infer request as the server acts on it.
#[derive(Debug, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: Map<String, Value>,
    pub inputs: Vec<WireTensor>,
    /// The outputs asked for by name, each `true` for binary data; `None` asks for all.
    pub outputs: Option<Vec<(String, bool)>>,
    /// The request-level `binary_data_output` parameter: every output binary.
    pub binary_outputs: bool,
}

impl InferRequest {
    /// Whether output `name` goes back as binary data.
    pub fn binary(&self, name: &str) -> bool {
        let asked = self
            .outputs
            .as_ref()
            .and_then(|o| o.iter().find(|(n, _)| n == name))
            .map(|(_, binary)| *binary);
        asked.unwrap_or(false) || self.binary_outputs
    }

    /// A boolean request parameter (absent is false; another type is an error).
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.parameters.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ServeError::bad(format!(
                "parameter {key} must be true or false, got {other}"
            ))),
        }
    }
}

fn binary_size(parameters: &Option<Map<String, Value>>, name: &str) -> Result<Option<usize>> {
    match parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
        None => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            ServeError::bad(format!(
                "{name}: binary_data_size must be a byte count, got {v}"
            ))
        }),
    }
}

fn flag(parameters: &Option<Map<String, Value>>, key: &str) -> bool {
    parameters
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The JSON part and the binary part of a body.
fn split_body(body: &[u8], header_length: Option<usize>) -> Result<(&[u8], &[u8])> {
    match header_length {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(ServeError::bad(format!(
            "{HEADER_LENGTH} is {n}, but the body has {} bytes",
            body.len()
        ))),
    }
}

/// Reads `tensors`, taking binary data from `binary` in order; every binary byte must be used.
fn read_tensors(tensors: Vec<TensorJson>, binary: &[u8]) -> Result<Vec<WireTensor>> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let datatype = DataType::parse(&t.datatype)
            .map_err(|e| ServeError::bad(format!("{}: {e}", t.name)))?;
        let shape = t
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                ServeError::bad(format!(
                    "{}: shape {:?} has a negative dimension",
                    t.name, t.shape
                ))
            })?;
        let tensor = match (binary_size(&t.parameters, &t.name)?, &t.data) {
            (Some(size), None) => {
                let end = at
                    .checked_add(size)
                    .filter(|&e| e <= binary.len())
                    .ok_or_else(|| {
                        ServeError::bad(format!(
                            "{}: binary_data_size {size} runs past the {} bytes of binary data",
                            t.name,
                            binary.len()
                        ))
                    })?;
                let bytes = binary[at..end].to_vec();
                at = end;
                WireTensor::new(t.name, datatype, shape, bytes)?
            }
            (None, Some(data)) => WireTensor::from_json(&t.name, datatype, shape, data)?,
            (Some(_), Some(_)) => {
                return Err(ServeError::bad(format!(
                    "{}: has both data and binary_data_size",
                    t.name
                )))
            }
            (None, None) => {
                return Err(ServeError::bad(format!(
                    "{}: has neither data nor binary_data_size",
                    t.name
                )))
            }
        };
        out.push(tensor);
    }
    if at != binary.len() {
        return Err(ServeError::bad(format!(
            "{} bytes of binary data, of which the tensors claim {at}",
            binary.len()
        )));
    }
    Ok(out)
}

/// Writes `tensors`, those marked binary as data after the JSON.
fn write_tensors(tensors: &[(WireTensor, bool)]) -> Result<(Vec<TensorJson>, Vec<u8>)> {
    let mut binary = Vec::new();
    let mut json = Vec::with_capacity(tensors.len());
    for (t, as_binary) in tensors {
        let mut entry = TensorJson {
            name: t.name.clone(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            datatype: t.datatype.tag().into(),
            ..TensorJson::default()
        };
        if *as_binary {
            let mut p = Map::new();
            p.insert("binary_data_size".into(), t.bytes.len().into());
            entry.parameters = Some(p);
            binary.extend_from_slice(&t.bytes);
        } else {
            entry.data = Some(Value::Array(t.to_json()?));
        }
        json.push(entry);
    }
    Ok((json, binary))
}

/// A body: the JSON header, then the binary data; the header's length when there is binary.
fn join_body<T: Serialize>(header: &T, binary: Vec<u8>) -> Result<(Vec<u8>, Option<usize>)> {
    let mut body = serde_json::to_vec(header)
        .map_err(|e| ServeError::bad(format!("cannot encode JSON: {e}")))?;
    if binary.is_empty() {
        return Ok((body, None));
    }
    let length = body.len();
    body.extend(binary);
    Ok((body, Some(length)))
}

fn parse_json<'a, T: Deserialize<'a>>(json: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| ServeError::bad(format!("malformed {what}: {e}")))
}

/// Reads an infer request body.
pub fn parse_request(body: &[u8], header_length: Option<usize>) -> Result<InferRequest> {
    let (json, binary) = split_body(body, header_length)?;
    let header: RequestHeader = parse_json(json, "infer request")?;
    let binary_outputs = flag(&header.parameters, "binary_data_output");
    let outputs = header.outputs.map(|outputs| {
        outputs
            .into_iter()
            .map(|o| {
                let binary = flag(&o.parameters, "binary_data");
                (o.name, binary)
            })
            .collect()
    });
    Ok(InferRequest {
        id: header.id,
        parameters: header.parameters.unwrap_or_default(),
        inputs: read_tensors(header.inputs, binary)?,
        outputs,
        binary_outputs,
    })
}

/// Writes an infer request with every input and every output as binary data.
pub fn encode_request(
    inputs: &[WireTensor],
    parameters: Map<String, Value>,
) -> Result<(Vec<u8>, Option<usize>)> {
    let marked: Vec<(WireTensor, bool)> = inputs.iter().map(|t| (t.clone(), true)).collect();
    let (json, binary) = write_tensors(&marked)?;
    let mut parameters = parameters;
    parameters.insert("binary_data_output".into(), true.into());
    let header = RequestHeader {
        id: None,
        parameters: Some(parameters),
        inputs: json,
        outputs: None,
    };
    join_body(&header, binary)
}

/// Writes an infer response.
pub fn encode_response(
    model: &str,
    id: Option<String>,
    outputs: &[(WireTensor, bool)],
) -> Result<(Vec<u8>, Option<usize>)> {
    let (json, binary) = write_tensors(outputs)?;
    let header = ResponseHeader {
        model_name: model.into(),
        model_version: Some("1".into()),
        id,
        parameters: None,
        outputs: json,
    };
    join_body(&header, binary)
}

/// Reads an infer response body.
pub fn parse_response(body: &[u8], header_length: Option<usize>) -> Result<Vec<WireTensor>> {
    let (json, binary) = split_body(body, header_length)?;
    let header: ResponseHeader = parse_json(json, "infer response")?;
    read_tensors(header.outputs, binary)
}

/// A tensor in model metadata (`-1` for a dimension of any size).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_json_tensors_round_trip() {
        let a = WireTensor::from_f32("a", vec![2], &[1.5, -2.0]).unwrap();
        let b = WireTensor::from_i64("b", vec![1, 3], &[1, 2, 3]).unwrap();
        let (body, length) =
            encode_response("m", None, &[(a.clone(), true), (b.clone(), false)]).unwrap();
        let back = parse_response(&body, length).unwrap();
        assert_eq!(back, vec![a.clone(), b.clone()]);
        let (body, length) = encode_request(&[a.clone(), b.clone()], Map::new()).unwrap();
        let request = parse_request(&body, length).unwrap();
        assert_eq!(request.inputs, vec![a, b]);
        assert!(request.binary("anything"));
    }

    #[test]
    fn refuses_bodies_that_do_not_add_up() {
        let json = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = json.to_vec();
        body.extend([0u8; 8]);
        assert!(parse_request(&body, Some(json.len())).is_ok());
        assert!(
            parse_request(&body, Some(json.len() + 9)).is_err(),
            "header past the body"
        );
        body.push(0);
        assert!(
            parse_request(&body, Some(json.len())).is_err(),
            "a stray byte"
        );
        body.truncate(json.len() + 4);
        assert!(
            parse_request(&body, Some(json.len())).is_err(),
            "data cut short"
        );
        for bad in [
            &br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}"#[..],
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]}"#,
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]}"#,
            br#"{"inputs":"#,
            br#"{"inputs":[{"name":"x","shape":[4611686018427387904,4],"datatype":"FP32","data":[1]}]}"#,
        ] {
            assert!(parse_request(bad, None).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
