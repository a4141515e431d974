//! The state's two large tables, stored in bulk: one run writes hundreds of thousands of pool
//! and deferred rows per million lines, and a row-per-row SQLite insert of them cost more than
//! evaluating the cycle. Each is kept as CSV text (a header row, then one record per row,
//! every value as exact text) compressed with Snappy's frame format, in parts of at most
//! [`PART_ROWS`] rows, one SQLite row per part (`cycle_rows`), inside the run's one
//! transaction. Any reader of the Snappy framing format turns a part back into plain CSV.

use super::error::StateError;
use std::io::{Read, Write};

/// Rows per stored part: keeps every blob far below SQLite's 1 GB value limit, and the part
/// being encoded (in memory until it is closed and shelved) a few megabytes.
pub const PART_ROWS: u64 = 1 << 16;

fn io_err(e: impl std::fmt::Display) -> StateError {
    StateError::Io(format!("state store: {e}"))
}

/// Encodes rows into compressed CSV parts as they come, never holding the plain text whole.
pub struct PartsEncoder {
    header: &'static [&'static str],
    current: Option<snap::write::FrameEncoder<Vec<u8>>>,
    rows_in_current: u64,
    scratch: String,
    done: Vec<Part>,
}

/// One stored part: how many rows, and the compressed CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub rows: u64,
    pub data: Vec<u8>,
}

/// Formats one CSV record (`\n`-terminated) into `out`, with the outputs' field writer.
fn record<I, F>(out: &mut String, fields: I)
where
    I: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::csv_field::push_csv_field(out, field.as_ref());
    }
    out.push('\n');
}

impl PartsEncoder {
    pub fn new(header: &'static [&'static str]) -> PartsEncoder {
        PartsEncoder {
            header,
            current: None,
            rows_in_current: 0,
            scratch: String::new(),
            done: Vec::new(),
        }
    }

    /// Appends one record (as many fields as the header).
    pub fn row<I, F>(&mut self, fields: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = F>,
        F: AsRef<str>,
    {
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        record(&mut line, fields);
        let result = self.csv_rows(line.as_bytes(), 1);
        self.scratch = line;
        result
    }

    /// Appends `rows` records already formatted as CSV (as many fields as the header each).
    pub fn csv_rows(&mut self, csv: &[u8], rows: u64) -> Result<(), StateError> {
        if self.current.is_none() {
            let mut head = String::new();
            record(&mut head, self.header);
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(head.as_bytes()).map_err(io_err)?;
            self.current = Some(e);
        }
        if let Some(e) = self.current.as_mut() {
            e.write_all(csv).map_err(io_err)?;
        }
        self.rows_in_current += rows;
        if self.rows_in_current >= PART_ROWS {
            self.close_part()?;
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<(), StateError> {
        if let Some(e) = self.current.take() {
            let data = e.into_inner().map_err(|e| io_err(e.error()))?;
            self.done.push(Part {
                rows: self.rows_in_current,
                data,
            });
        }
        self.rows_in_current = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<Part>, StateError> {
        self.close_part()?;
        Ok(self.done)
    }

    /// The parts closed so far, handed over (to a [`Shelf`]).
    pub fn take_closed(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.done)
    }
}

/// Closed parts waiting for the commit, in an unnamed temporary file (the system removes it
/// when the run ends, also when it is killed): a month's state rows, which grow with its lines
/// (~55 MB compressed per million), are not held in memory until the commit (SPEC §8).
pub struct Shelf {
    /// Made at the first part: a writer whose rows all fit in the part being encoded (a
    /// partition's, whose rows credited later are the merge's) never makes one.
    file: Option<std::fs::File>,
    dir: Option<std::path::PathBuf>,
    end: u64,
}

/// Where a shelved part lies in its [`Shelf`], and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shelved {
    pub rows: u64,
    offset: u64,
    len: u64,
}

impl Shelf {
    /// A shelf in `dir` (the run's spill folder), or in the system's temporary folder.
    pub fn new(dir: Option<&std::path::Path>) -> Shelf {
        Shelf {
            file: None,
            dir: dir.map(std::path::Path::to_path_buf),
            end: 0,
        }
    }

    pub fn put(&mut self, part: &Part) -> Result<Shelved, StateError> {
        use std::os::unix::fs::FileExt;
        let file = match self.file.take() {
            Some(file) => file,
            None => match &self.dir {
                Some(d) => tempfile::tempfile_in(d),
                None => tempfile::tempfile(),
            }
            .map_err(io_err)?,
        };
        let file = self.file.insert(file);
        file.write_all_at(&part.data, self.end).map_err(io_err)?;
        let shelved = Shelved {
            rows: part.rows,
            offset: self.end,
            len: part.data.len() as u64,
        };
        self.end += shelved.len;
        Ok(shelved)
    }

    /// A shelved part's compressed bytes, read back.
    pub fn take(&self, at: &Shelved) -> Result<Vec<u8>, StateError> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(at.len).map_err(io_err)?;
        let mut data = vec![0; len];
        if len > 0 {
            let file = self
                .file
                .as_ref()
                .ok_or_else(|| io_err("a part taken from an empty shelf"))?;
            file.read_exact_at(&mut data, at.offset).map_err(io_err)?;
        }
        Ok(data)
    }
}

/// Decodes one part, calling `each` with every record (header checked against `header`).
pub fn decode_part(
    data: &[u8],
    header: &[&str],
    mut each: impl FnMut(&csv::StringRecord) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut plain = Vec::new();
    snap::read::FrameDecoder::new(data)
        .read_to_end(&mut plain)
        .map_err(io_err)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(plain.as_slice());
    let found = reader.headers().map_err(io_err)?.clone();
    if found.iter().ne(header.iter().copied()) {
        return Err(io_err(format!(
            "a stored part has columns {:?}, expected {header:?}",
            found.iter().collect::<Vec<_>>()
        )));
    }
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(io_err)? {
        if record.len() != header.len() {
            return Err(io_err(format!(
                "a stored record has {} fields, expected {}",
                record.len(),
                header.len()
            )));
        }
        each(&record)?;
    }
    Ok(())
}

/// Compresses already-formatted CSV bytes (used by tests and small tables).
#[cfg(test)]
fn compress(plain: &[u8]) -> Vec<u8> {
    let mut e = snap::write::FrameEncoder::new(Vec::new());
    let _ = e.write_all(plain);
    e.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[&str] = &["order_id", "earned"];

    #[test]
    fn rows_come_back_exactly_in_order() {
        let mut enc = PartsEncoder::new(HEADER);
        enc.row(["O1", "12.30"]).unwrap();
        enc.row(["O,2", "-0.00000001"]).unwrap();
        let parts = enc.finish().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].rows, 2);
        let mut seen = Vec::new();
        decode_part(&parts[0].data, HEADER, |r| {
            seen.push((r[0].to_string(), r[1].to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("O1".to_string(), "12.30".to_string()),
                ("O,2".to_string(), "-0.00000001".to_string())
            ]
        );
    }

    #[test]
    fn shelved_parts_come_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut shelf = Shelf::new(Some(dir.path()));
        let a = Part {
            rows: 2,
            data: b"first".to_vec(),
        };
        let b = Part {
            rows: 1,
            data: b"second part".to_vec(),
        };
        let (at_a, at_b) = (shelf.put(&a).unwrap(), shelf.put(&b).unwrap());
        assert_eq!(shelf.take(&at_b).unwrap(), b.data);
        assert_eq!(shelf.take(&at_a).unwrap(), a.data);
        assert_eq!((at_a.rows, at_b.rows), (2, 1));
        // Unnamed: nothing is left in the folder to clean up.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn no_rows_no_parts() {
        assert!(PartsEncoder::new(HEADER).finish().unwrap().is_empty());
    }

    #[test]
    fn a_part_of_other_columns_is_an_error_not_a_guess() {
        let data = compress(b"order_id,amount\nO1,1\n");
        assert!(decode_part(&data, HEADER, |_| Ok(())).is_err());
        let short = compress(b"order_id,earned\nO1\n");
        assert!(decode_part(&short, HEADER, |_| Ok(())).is_err());
    }
}
