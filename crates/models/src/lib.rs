//! Model families as ordered lists of stages whose weights are bound late.
//!
//! A [`Model`] is built from config.json and the list of tensor names a checkpoint holds; it
//! names each stage's tensors ([`StageSpec`]) but owns no bytes. An executor binds a stage's
//! tensors ([`UnitWeights`]) however it likes (all at once, mapped, streamed) and calls
//! [`Model::run_stage`] in order over one [`State`]. Every strategy runs the same code, so
//! outputs are identical across them.

pub mod boundary;
mod common;
pub mod error;
pub mod family;
pub mod inputs;
pub mod pooling;
pub mod presets;
pub mod stage;
pub mod state;
pub mod tokenizer;

pub mod bert;
pub mod fcn;
pub mod gpt2;
pub mod gptj;
pub mod resnet;
pub mod torchvision;
pub mod vgg;
pub mod vit;
pub mod yolov3;

pub use boundary::Boundary;
pub use error::{ModelError, Result};
pub use family::{build_model, CausalInfo, Checkpoint, Model, ModelKind};
pub use inputs::{IdTensor, Inputs};
pub use stage::{Layout, ReadLog, StageSpec, TensorSpec, UnitWeights};
pub use state::{KvCache, RunOptions, State};
