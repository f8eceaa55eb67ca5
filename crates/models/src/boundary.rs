//! What a pass carries across a split between two machines: the state after stage `K - 1`
//! reduced to what stages `K..` read. The receiving side rebuilds the rest (masks, positions,
//! the sequence length, an empty KV cache) by starting a pass on the same inputs, so both sides
//! derive them with the same code and the tail computes on exactly the state a local pass
//! would have reached.

use edgerun_tensor::Tensor;

use crate::{Inputs, Model, ModelError, Result, RunOptions, State};

/// The state between stage `stage - 1` and stage `stage`.
#[derive(Clone, Debug)]
pub struct Boundary {
    /// The first stage the receiving side runs.
    pub stage: usize,
    /// The pass's inputs with any pixels replaced by their shape ([`Inputs::without_pixels`]):
    /// token ids and masks are small, an image is what the split avoids sending.
    pub inputs: Inputs,
    /// The running activation (`None` only before the first stage).
    pub hidden: Option<Tensor>,
    /// Activations a later stage reads again, by name.
    pub skips: Vec<(String, Tensor)>,
}

impl State {
    /// Takes what stages `stage..` read out of this state (outputs and recorded hidden states
    /// stay: they belong to the side that computed them).
    pub fn take_boundary(&mut self, stage: usize) -> Boundary {
        Boundary {
            stage,
            inputs: self.inputs.without_pixels(),
            hidden: self.hidden.take(),
            skips: std::mem::take(&mut self.skips),
        }
    }
}

impl Boundary {
    /// The state stage `self.stage` of `model` starts from. The model's `start` validates the
    /// inputs as for a whole pass; the activation's shape is checked against what the stage
    /// would have received: its batch and, for token sequences, its length here, its width
    /// by the stage's own kernels.
    pub fn resume(self, model: &dyn Model, options: RunOptions) -> Result<State> {
        let stages = model.stages().len();
        if self.stage > stages {
            return Err(ModelError::input(
                "stage",
                format!(
                    "a split at stage {} of a model of {stages} stages",
                    self.stage
                ),
            ));
        }
        if self.stage > 0 && self.hidden.is_none() {
            return Err(ModelError::input(
                "hidden",
                format!(
                    "stage {} needs the activation of the stage before it",
                    self.stage
                ),
            ));
        }
        let mut state = model.start(self.inputs, options)?;
        if let Some(hidden) = &self.hidden {
            check_rows(hidden, &state, "hidden")?;
        }
        for (name, skip) in &self.skips {
            check_rows(skip, &state, name)?;
        }
        state.hidden = self.hidden;
        state.skips = self.skips;
        Ok(state)
    }
}

/// An activation's leading dimensions against the pass it joins: the batch always, and the
/// sequence length where the pass runs over tokens (attention reads masks of that length).
fn check_rows(t: &Tensor, state: &State, name: &str) -> Result<()> {
    let shape = t.shape();
    let batch_ok = shape.first() == Some(&state.batch);
    let seq_ok = state.seq == 0 || (shape.len() == 3 && shape[1] == state.seq);
    if batch_ok && seq_ok {
        return Ok(());
    }
    let expected = if state.seq == 0 {
        format!("[{}, ...]", state.batch)
    } else {
        format!("[{}, {}, width]", state.batch, state.seq)
    };
    Err(ModelError::input(
        "hidden",
        format!("{name} has shape {shape:?}; the inputs make it {expected}"),
    ))
}
