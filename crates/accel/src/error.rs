//! The accelerator crate's error type.

use thiserror::Error;

pub type Result<T, E = AccelError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum AccelError {
    #[error("{0}")]
    Config(String),
    #[error("hazard: instruction {index} ({instruction}) {}{}", kind.describe(*word, *cycle),
        writer.map_or(String::new(), |w| format!(" (written by instruction {w})")))]
    Hazard {
        kind: HazardKind,
        index: usize,
        instruction: String,
        word: usize,
        cycle: u64,
        /// The instruction that wrote (or is writing) the word, if not the host.
        writer: Option<usize>,
    },
    #[error("deadlock at cycle {cycle}: every PEG waits on a semaphore nobody will signal")]
    Deadlock { cycle: u64 },
    #[error("instruction {index} ({instruction}): {why}")]
    InvalidInstruction {
        index: usize,
        instruction: String,
        why: String,
    },
    #[error("descriptor d{index} {descriptor} leaves its memory of {words} words")]
    InvalidDescriptor {
        index: usize,
        descriptor: String,
        words: usize,
    },
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("{what} is {value}, more than the {limit} the simulator accepts")]
    TooLarge {
        what: &'static str,
        value: u128,
        limit: u128,
    },
    #[error(transparent)]
    Tensor(#[from] edgerun_tensor::TensorError),
}

/// How an access of the ARAP's activation memory raced another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HazardKind {
    /// Read a word before the operation writing it had ended.
    ReadBeforeValid,
    /// Wrote a word another operation in flight still reads or writes.
    OverwriteInUse,
}

impl HazardKind {
    fn describe(self, word: usize, cycle: u64) -> String {
        match self {
            HazardKind::ReadBeforeValid => {
                format!("reads word {word} at cycle {cycle} before it is valid")
            }
            HazardKind::OverwriteInUse => format!(
                "overwrites word {word} at cycle {cycle} while another instruction still uses it"
            ),
        }
    }
}
