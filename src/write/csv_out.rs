//! CSV outputs that are safe to open in a spreadsheet and hashed as they are written.

use super::WrittenFile;
use crate::error::RunError;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One output cell. Text is neutralised against formula injection; numbers are written as given.
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    Text(&'a str),
    Number(&'a str),
}

/// A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
/// first) gets a leading `'` (OWASP CSV injection guidance); anything else is written unaltered.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A CSV file being written.
pub struct CsvOut {
    name: String,
    path: PathBuf,
    writer: csv::Writer<Hashing<BufWriter<File>>>,
    rows: u64,
}

impl CsvOut {
    pub(super) fn create(dir: &Path, name: &str, header: &[&str]) -> Result<CsvOut, RunError> {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RunError::io(parent.display(), e))?;
        }
        let file = File::create(&path).map_err(|e| RunError::io(path.display(), e))?;
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Hashing {
                inner: BufWriter::with_capacity(1 << 20, file),
                hasher: Sha256::new(),
            });
        writer.write_record(header).map_err(|e| csv_err(&path, e))?;
        Ok(CsvOut {
            name: name.to_string(),
            path,
            writer,
            rows: 0,
        })
    }

    pub fn row(&mut self, cells: &[Out<'_>]) -> Result<(), RunError> {
        for cell in cells {
            let field = match *cell {
                Out::Text(t) => neutralise(t),
                Out::Number(n) => Cow::Borrowed(n),
            };
            self.writer
                .write_field(field.as_bytes())
                .map_err(|e| csv_err(&self.path, e))?;
        }
        // An empty record ends the current one.
        self.writer
            .write_record(None::<&[u8]>)
            .map_err(|e| csv_err(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    pub(super) fn finish(self) -> Result<WrittenFile, RunError> {
        let path = self.path;
        let hashing = self
            .writer
            .into_inner()
            .map_err(|e| RunError::io(path.display(), e.into_error()))?;
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| RunError::io(path.display(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| RunError::io(path.display(), e))?;
        Ok(WrittenFile {
            file: self.name,
            rows: Some(self.rows),
            sha256: hex::encode(hashing.hasher.finalize()),
        })
    }
}

fn csv_err(path: &Path, e: csv::Error) -> RunError {
    RunError::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_nothing_else_changes() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-10000.00"), "'-10000.00");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("\rx"), "'\rx");
        assert_eq!(neutralise("P00001"), "P00001");
        assert_eq!(neutralise("a=b"), "a=b");
        assert_eq!(neutralise(""), "");
    }
}
