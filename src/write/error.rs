//! What writing and publishing the outputs fails with. `run` turns it into a [`RunError`],
//! whose `exit_code` is the one mapping to SPEC §7's codes.

use crate::error::RunError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Something at `OUT/<cycle>` the engine did not create, or a path of the wrong kind (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Writing, syncing or renaming failed: a full disk, a permission (exit 1).
    #[error("{0}")]
    Io(String),
}

impl WriteError {
    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> WriteError {
        WriteError::Io(format!("{context}: {err}"))
    }
}

impl From<WriteError> for RunError {
    fn from(e: WriteError) -> RunError {
        match e {
            WriteError::Usage(message) => RunError::Usage(message),
            WriteError::Io(message) => RunError::Io(message),
        }
    }
}
