//! Errors that end a run, each with the exit code of SPEC §7.

use std::path::PathBuf;

/// Exit codes of SPEC §7.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT_REJECTED: u8 = 3;
    pub const RECONCILIATION_FAILED: u8 = 4;
    pub const LOCKED: u8 = 5;
}

/// A fault in the shape of an input file, found before any row is judged: the run cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructuralError {
    #[error(
        "{file}: required file is missing from {dir} (--input must be the folder holding the cycle's CSV exports)"
    )]
    MissingFile { file: &'static str, dir: PathBuf },
    #[error(
        "{file}: line 1: required column `{column}` is missing; add it or rename the header (the header has: {header})"
    )]
    MissingColumn {
        file: &'static str,
        column: &'static str,
        header: String,
    },
    #[error("{file}: line 1: column `{column}` appears twice in the header")]
    DuplicateColumn { file: &'static str, column: String },
    #[error("{file}: the file is empty; a header row is required")]
    Empty { file: &'static str },
    #[error(
        "{file}: row {row}, column {column}: not valid UTF-8 (byte offset {byte_offset} in the file). \
         Exports saved by Chinese Excel are often GBK/GB18030: re-save the file as UTF-8 (CSV UTF-8) and run again"
    )]
    NotUtf8 {
        file: &'static str,
        row: u64,
        column: String,
        byte_offset: u64,
    },
    #[error("{file}: row {row}: unreadable CSV: {message}")]
    Csv {
        file: &'static str,
        row: u64,
        message: String,
    },
    /// A quoted field spanning lines where no column holds a line break, a quote open at the
    /// end of the file, or a `name` that swallowed whole records (SPEC §2).
    #[error("{file}: line {line}, column {column}: stray quote: {detail}")]
    StrayQuote {
        file: &'static str,
        /// The line where the field opened.
        line: u64,
        column: String,
        /// Lines swallowed into the one cell, the opening one included.
        lines: u64,
        detail: String,
    },
    #[error("{file}: cannot read: {message}")]
    Io { file: &'static str, message: String },
    #[error(
        "{file}: more than {max} records; one run reads at most that many (rows are numbered in 32 bits): split the export"
    )]
    TooManyRecords { file: &'static str, max: u64 },
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("the rule set has problems:\n{0}")]
    Rules(crate::rules::Problems),
    #[error(transparent)]
    Structural(#[from] StructuralError),
    #[error(
        "--strict: {count} input row(s) rejected; nothing was written (see the rejected rows above)"
    )]
    StrictRejects { count: usize },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Locked(String),
    #[error(
        "reconciliation failed: {} identit{} of SPEC §6 do not hold; nothing was published\n{}",
        .0.len(),
        if .0.len() == 1 { "y" } else { "ies" },
        .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    )]
    Reconciliation(Vec<crate::explain::Violation>),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) | RunError::Rules(_) => exit::USAGE,
            RunError::Structural(_) | RunError::StrictRejects { .. } => exit::INPUT_REJECTED,
            RunError::Io(_) => exit::OTHER,
            RunError::Locked(_) => exit::LOCKED,
            RunError::Reconciliation(_) => exit::RECONCILIATION_FAILED,
        }
    }

    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> RunError {
        RunError::Io(format!("{context}: {err}"))
    }
}
