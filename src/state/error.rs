//! What the state store fails with. `run` (and the tools) turn it into a [`RunError`], whose
//! `exit_code` is the one mapping to SPEC §7's codes.

use crate::error::RunError;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state folder or database that cannot be used as one, or a chain rule broken (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing the state failed (exit 1).
    #[error("{0}")]
    Io(String),
    /// Another process holds a lock (exit 5).
    #[error("{0}")]
    Locked(String),
}

impl StateError {
    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> StateError {
        StateError::Io(format!("{context}: {err}"))
    }

    /// A path given for `flag` that is a file where a folder must be (exit 2).
    pub fn not_a_folder(flag: &str, path: &std::path::Path, what: &str) -> StateError {
        match RunError::not_a_folder(flag, path, what) {
            RunError::Usage(message) => StateError::Usage(message),
            other => StateError::Usage(other.to_string()),
        }
    }
}

impl From<StateError> for RunError {
    fn from(e: StateError) -> RunError {
        match e {
            StateError::Usage(message) => RunError::Usage(message),
            StateError::Io(message) => RunError::Io(message),
            StateError::Locked(message) => RunError::Locked(message),
        }
    }
}
