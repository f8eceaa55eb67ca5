//! The load-all executor: every stage bound before the first runs.

use edgerun_models::{Inputs, Model, RunOptions, State, UnitWeights};
use edgerun_store::HfFolder;
use edgerun_tensor::Tensor;

use crate::Result;

/// Named outputs of a pass in transformers' order, then `hidden_states.N` if recorded.
#[derive(Debug, Default)]
pub struct Outputs {
    pub tensors: Vec<(String, Tensor)>,
}

impl Outputs {
    pub fn from_state(state: &mut State) -> Self {
        let mut tensors = std::mem::take(&mut state.outputs);
        tensors.extend(
            std::mem::take(&mut state.hidden_states)
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("hidden_states.{i}"), t)),
        );
        Self { tensors }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

pub struct FullExecutor {
    model: Box<dyn Model>,
    weights: Vec<UnitWeights>,
}

impl FullExecutor {
    /// Builds the model from the folder and binds all its stages.
    pub fn load(folder: &HfFolder) -> Result<Self> {
        let model = folder.model()?;
        let weights = model
            .stages()
            .iter()
            .map(|s| folder.bind(s))
            .collect::<edgerun_store::Result<Vec<_>>>()?;
        Ok(Self { model, weights })
    }

    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    /// Runs every stage on `state`.
    pub fn run_stages(&self, state: &mut State) -> Result<()> {
        for (i, w) in self.weights.iter().enumerate() {
            self.model.run_stage(i, w, state)?;
        }
        Ok(())
    }

    /// One forward pass.
    pub fn forward(&self, inputs: Inputs, options: RunOptions) -> Result<Outputs> {
        let mut state = self.model.start(inputs, options)?;
        self.run_stages(&mut state)?;
        Ok(Outputs::from_state(&mut state))
    }
}
