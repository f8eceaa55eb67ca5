//! Cycle-level simulators of edge transformer accelerators.
//!
//! - [`systolic`]: an R x C systolic array in output-, weight- or input-stationary dataflow;
//!   cycle counts equal SCALE-Sim 3.0.0's, results equal `edgerun_tensor::fixed`'s matmul.
//! - [`energy`]: per-action energies by process node, priced over the simulators' counts.
//! - [`samm`]: the ViTALiTy SAMM datapath (three arrays, column accumulator, divider) and the
//!   controller that sequences a whole ViT on it.

pub mod arap;
pub mod array;
pub mod energy;
pub mod error;
pub mod samm;
pub mod systolic;

pub use array::{ArrayShape, Dataflow, GemmDims};
pub use error::{AccelError, HazardKind, Result};
