//! Errors that end a run, each with the exit code of SPEC §7.

/// Exit codes of SPEC §7.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT_REJECTED: u8 = 3;
    pub const RECONCILIATION_FAILED: u8 = 4;
    pub const LOCKED: u8 = 5;
}

/// `text` with every control character but the line feed escaped (`\u{1b}`, `\r`, `\t`): what
/// came from an input file or a command line cannot move a terminal's cursor or recolour it.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An identity of SPEC §6 that does not hold: a bug, never bad input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub identity: String,
    pub expected: rust_decimal::Decimal,
    pub actual: rust_decimal::Decimal,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: expected {}, actual {}, difference {}",
            self.key,
            self.identity,
            self.expected,
            self.actual,
            self.actual - self.expected
        )
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("the rule set has problems:\n{0}")]
    Rules(crate::rules::Problems),
    #[error(transparent)]
    Structural(#[from] crate::load::StructuralError),
    #[error(
        "--strict: {count} input row(s) rejected; nothing was written (see the rejected rows above)"
    )]
    StrictRejects { count: usize },
    #[error("{0}")]
    Io(String),
    /// A vendor response that `import` cannot take (SPEC §11): file, record and value named.
    #[error("{0}")]
    VendorResponse(String),
    #[error("{0}")]
    Locked(String),
    #[error(
        "reconciliation failed: {} identit{} of SPEC §6 do not hold; nothing was published\n{}",
        .0.len(),
        if .0.len() == 1 { "y" } else { "ies" },
        .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    )]
    Reconciliation(Vec<Violation>),
}

impl RunError {
    /// `--input`: a folder that exists (exit 2 otherwise), checked before anything is read.
    pub fn check_input(input: &std::path::Path) -> Result<(), RunError> {
        if input.is_file() {
            return Err(RunError::not_a_folder(
                "--input",
                input,
                "the one holding the cycle's CSV exports, e.g. exports/2026-10",
            ));
        }
        if !input.is_dir() {
            return Err(RunError::Usage(format!(
                "--input {}: no such folder; it must hold the cycle's CSV exports",
                input.display()
            )));
        }
        Ok(())
    }

    /// Checks a folder given for `flag` that a run writes into (created if missing): neither it
    /// nor the nearest of its parents that exists may be a file (exit 2). Made before any input
    /// is read, so a month's load is not spent on a run that cannot write.
    pub fn check_folder(flag: &str, path: &std::path::Path, what: &str) -> Result<(), RunError> {
        let mut at = Some(path);
        while let Some(p) = at {
            // An empty parent of a relative path is the current folder.
            if p.as_os_str().is_empty() {
                break;
            }
            if let Ok(meta) = std::fs::metadata(p) {
                if meta.is_dir() {
                    return Ok(());
                }
                if p == path {
                    return Err(RunError::not_a_folder(flag, path, what));
                }
                return Err(RunError::Usage(format!(
                    "{flag} {}: cannot be created: {} is a file, where a folder must be ({what}); pass another folder",
                    path.display(),
                    p.display()
                )));
            }
            at = p.parent();
        }
        Ok(())
    }

    /// A path given for `flag` that is a file where a folder must be, or the reverse (exit 2).
    pub fn not_a_folder(flag: &str, path: &std::path::Path, what: &str) -> RunError {
        RunError::Usage(format!(
            "{flag} {}: is a file, where a folder must be ({what}): pass a folder, or move the file away",
            path.display()
        ))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) | RunError::Rules(_) => exit::USAGE,
            RunError::Structural(_)
            | RunError::StrictRejects { .. }
            | RunError::VendorResponse(_) => exit::INPUT_REJECTED,
            RunError::Io(_) => exit::OTHER,
            RunError::Locked(_) => exit::LOCKED,
            RunError::Reconciliation(_) => exit::RECONCILIATION_FAILED,
        }
    }

    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> RunError {
        RunError::Io(format!("{context}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters_but_line_feeds() {
        assert_eq!(super::printable("a\nb"), "a\nb");
        assert_eq!(
            super::printable("x\u{1b}[2Jy\r\tz\u{7f}\u{9b}"),
            "x\\u{1b}[2Jy\\r\\tz\\u{7f}\\u{9b}"
        );
    }
}
