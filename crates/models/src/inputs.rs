//! Model inputs as Hugging Face names them: ids, masks and pixels.

use edgerun_tensor::Tensor;

use crate::{ModelError, Result};

/// An integer tensor (token ids, masks), row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTensor {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

impl IdTensor {
    pub fn new(shape: Vec<usize>, values: Vec<i64>) -> Result<Self> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(ModelError::input(
                "ids",
                format!("{} values for shape {shape:?}", values.len()),
            ));
        }
        Ok(Self { shape, values })
    }

    /// `[batch, seq]`, or an error naming the input.
    pub fn dims2(&self, name: &'static str) -> Result<(usize, usize)> {
        match *self.shape {
            [b, s] => Ok((b, s)),
            [s] => Ok((1, s)),
            _ => Err(ModelError::input(
                name,
                format!("expected [batch, seq], got {:?}", self.shape),
            )),
        }
    }
}

/// What a forward pass may read. Families say which fields they need.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub input_ids: Option<IdTensor>,
    pub attention_mask: Option<IdTensor>,
    pub token_type_ids: Option<IdTensor>,
    pub pixel_values: Option<Tensor>,
    /// The shape of `pixel_values` where only the shape travelled: a split's tail reads the
    /// image's geometry (output sizes, estimates), never its pixels.
    pub pixel_shape: Option<Vec<usize>>,
}

impl Inputs {
    pub fn ids(&self) -> Result<&IdTensor> {
        self.input_ids
            .as_ref()
            .ok_or_else(|| ModelError::input("input_ids", "this model needs token ids"))
    }

    pub fn pixels(&self) -> Result<&Tensor> {
        self.pixel_values
            .as_ref()
            .ok_or_else(|| ModelError::input("pixel_values", "this model needs an image tensor"))
    }

    /// The image's shape, from the pixels or from `pixel_shape` without them.
    pub fn image_shape(&self) -> Result<&[usize]> {
        match (&self.pixel_values, &self.pixel_shape) {
            (Some(pixels), _) => Ok(pixels.shape()),
            (None, Some(shape)) => Ok(shape),
            (None, None) => Err(ModelError::input(
                "pixel_values",
                "this model needs an image tensor",
            )),
        }
    }

    /// These inputs with the pixels replaced by their shape (what a split's tail needs).
    pub fn without_pixels(&self) -> Self {
        Self {
            pixel_shape: self.image_shape().ok().map(<[usize]>::to_vec),
            pixel_values: None,
            ..self.clone()
        }
    }
}
