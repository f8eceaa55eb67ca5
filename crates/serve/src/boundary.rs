//! A model's inputs and a split's boundary as v2 tensors. Inputs keep transformers' names
//! (`input_ids`, `attention_mask`, `token_type_ids`, `pixel_values`); a boundary adds
//! `pixel_shape` (the image's shape without its pixels), `hidden` (the activation) and
//! `skip.NAME` (activations a later stage reads again), each compressed as asked.

use edgerun_models::{Boundary, IdTensor, Inputs};
use edgerun_tensor::Tensor;

use crate::compress::{self, base_name, Compression};
use crate::wire::WireTensor;
use crate::{Result, ServeError};

const ID_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];
const HIDDEN: &str = "hidden";
const SKIP: &str = "skip.";
const PIXEL_SHAPE: &str = "pixel_shape";

fn ids_field<'i>(inputs: &'i Inputs, name: &str) -> Option<&'i IdTensor> {
    match name {
        "input_ids" => inputs.input_ids.as_ref(),
        "attention_mask" => inputs.attention_mask.as_ref(),
        _ => inputs.token_type_ids.as_ref(),
    }
}

fn id_tensors(inputs: &Inputs) -> Result<Vec<WireTensor>> {
    ID_INPUTS
        .iter()
        .filter_map(|&name| ids_field(inputs, name).map(|ids| (name, ids)))
        .map(|(name, ids)| WireTensor::from_i64(name, ids.shape.clone(), &ids.values))
        .collect()
}

/// A whole model's inputs as v2 tensors.
pub fn inputs_to_wire(inputs: &Inputs) -> Result<Vec<WireTensor>> {
    let mut tensors = id_tensors(inputs)?;
    if let Some(pixels) = &inputs.pixel_values {
        tensors.push(WireTensor::from_f32(
            "pixel_values",
            pixels.shape().to_vec(),
            pixels.contiguous().values(),
        )?);
    }
    Ok(tensors)
}

/// A whole model's inputs from v2 tensors; any other name is refused.
pub fn inputs_from_wire(tensors: &[WireTensor]) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for t in tensors {
        match t.name.as_str() {
            "pixel_values" => inputs.pixel_values = Some(tensor(t.shape.clone(), t.to_f32()?)?),
            name if ID_INPUTS.contains(&name) => set_ids(&mut inputs, t)?,
            other => {
                return Err(ServeError::bad(format!(
                    "unknown input {other:?} (a model takes input_ids, attention_mask, token_type_ids or pixel_values)"
                )))
            }
        }
    }
    Ok(inputs)
}

fn set_ids(inputs: &mut Inputs, t: &WireTensor) -> Result<()> {
    let ids = Some(IdTensor::new(t.shape.clone(), t.to_i64()?)?);
    match t.name.as_str() {
        "input_ids" => inputs.input_ids = ids,
        "attention_mask" => inputs.attention_mask = ids,
        _ => inputs.token_type_ids = ids,
    }
    Ok(())
}

fn tensor(shape: Vec<usize>, values: Vec<f32>) -> Result<Tensor> {
    Tensor::from_vec(&shape, values).map_err(|e| ServeError::bad(e.to_string()))
}

/// A boundary as v2 tensors, its activations compressed as `how`.
pub fn boundary_to_wire(boundary: &Boundary, how: Compression) -> Result<Vec<WireTensor>> {
    let mut tensors = id_tensors(&boundary.inputs)?;
    if let Some(shape) = &boundary.inputs.pixel_shape {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        tensors.push(WireTensor::from_i64(PIXEL_SHAPE, vec![dims.len()], &dims)?);
    }
    let activations = boundary
        .hidden
        .iter()
        .map(|h| (HIDDEN.to_string(), h))
        .chain(
            boundary
                .skips
                .iter()
                .map(|(n, t)| (format!("{SKIP}{n}"), t)),
        );
    for (name, t) in activations {
        let t = t.contiguous();
        tensors.extend(compress::encode(&name, t.shape(), t.values(), how)?);
    }
    Ok(tensors)
}

/// The boundary before stage `stage` from v2 tensors (any compression).
pub fn boundary_from_wire(stage: usize, tensors: &[WireTensor]) -> Result<Boundary> {
    let mut inputs = Inputs::default();
    let mut activations: Vec<&str> = Vec::new();
    for t in tensors {
        match t.name.as_str() {
            PIXEL_SHAPE => {
                let shape = t
                    .to_i64()?
                    .into_iter()
                    .map(usize::try_from)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| ServeError::bad("pixel_shape has a negative dimension"))?;
                inputs.pixel_shape = Some(shape);
            }
            name if ID_INPUTS.contains(&name) => set_ids(&mut inputs, t)?,
            name => {
                let base = base_name(name);
                if base != HIDDEN && !base.starts_with(SKIP) {
                    return Err(ServeError::bad(format!(
                        "unknown input {name:?} (a model tail takes hidden, skip.NAME, pixel_shape and the token inputs)"
                    )));
                }
                if !activations.contains(&base) {
                    activations.push(base);
                }
            }
        }
    }
    let mut hidden = None;
    let mut skips = Vec::new();
    for base in activations {
        let (shape, values) = compress::decode(base, tensors)?;
        let t = tensor(shape, values)?;
        match base.strip_prefix(SKIP) {
            Some(name) => skips.push((name.to_string(), t)),
            None => hidden = Some(t),
        }
    }
    Ok(Boundary {
        stage,
        inputs,
        hidden,
        skips,
    })
}
