//! DVFO (Zhang et al., IEEE TMC 2024) on edgerun: an edge board as a power model
//! ([`board`]), one split inference as an environment whose latency and energy are accounted
//! per phase ([`env`]) from a model measured on this machine ([`calibrate`]), bandwidth
//! traces ([`trace`]), the baselines and the exhaustive oracle ([`policy`]), and the learned
//! controller: a branching deep Q-network over CPU level, memory level and offload
//! ([`dqn`], behind the `dqn` feature).

pub mod action;
pub mod board;
pub mod calibrate;
#[cfg(feature = "dqn")]
pub mod dqn;
pub mod env;
pub mod episode;
pub mod error;
pub mod policy;
pub mod trace;

pub use action::{Action, ActionSpace, Budget, LoadPlan, Offload};
pub use board::Board;
pub use calibrate::Calibration;
pub use env::{EnvOptions, Environment, Outcome};
pub use error::{DvfoError, Result};
pub use trace::Trace;

use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, renamed over it
/// once complete: a failed write leaves the old file (or none), never half of one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let failed = |source| DvfoError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| failed(std::io::Error::other("not a file name")))?;
    let mut temporary = path.to_path_buf();
    temporary.set_file_name(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&temporary, bytes).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        failed(e)
    })
}
