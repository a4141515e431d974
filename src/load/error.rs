//! What the loader fails with before any row is judged (a structural fault: exit 3). Rows that
//! fail their checks are not errors: they are rejects (`crate::reject`).

use std::path::PathBuf;

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
    #[error(
        "{file}: not found under that name, but {dir} holds `{found}`: rename it to `{file}` (file names are matched exactly) and run again"
    )]
    OtherCase {
        file: &'static str,
        found: String,
        dir: PathBuf,
    },
    #[error(
        "{file}: line 1: the columns are separated by `{}`, not `,`: export the file again as comma-separated CSV (in Excel: \"CSV UTF-8 (Comma delimited)\") and run again",
        .separator.escape_default()
    )]
    Separator { file: &'static str, separator: char },
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
