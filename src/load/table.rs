//! Reading one input CSV: header matched by name, records streamed in chunks, bytes hashed as they
//! pass, UTF-8 enforced. Every file of the bundle goes through here.

use crate::error::StructuralError;
use csv::StringRecord;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::path::Path;
use strum::VariantNames;

/// The columns of one input file, as an enum whose variants, in snake_case, are the column names.
pub trait Schema: Copy + Into<&'static str> + VariantNames + Sync + 'static {
    /// The file's name in the bundle.
    const FILE: &'static str;
    /// Whether the bundle must contain the file.
    const FILE_REQUIRED: bool;
    /// Columns the header may leave out; every cell of a missing column reads as blank.
    const OPTIONAL: &'static [Self];
    /// The variant's position in `VARIANTS`.
    fn index(self) -> usize;
}

/// What the manifest records of an input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDigest {
    pub present: bool,
    pub sha256: String,
    /// Data records read (the header not counted).
    pub rows_read: u64,
}

/// Hashes every byte the CSV reader pulls, so a file is read once for both parsing and its sha256.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// How a file's header maps onto its schema: enough to read a record, shared by all workers.
pub struct Layout<S: Schema> {
    /// For each schema column, its position in the header (None: absent, read as blank).
    positions: Vec<Option<usize>>,
    width: usize,
    _schema: PhantomData<S>,
}

impl<S: Schema> Layout<S> {
    /// A view of one record through the schema.
    pub fn row<'a>(&'a self, number: u64, record: &'a StringRecord) -> Row<'a, S> {
        Row {
            number,
            record,
            positions: &self.positions,
            width: self.width,
            _schema: PhantomData,
        }
    }
}

/// Records read together, each with its record number; their buffers are reused chunk after chunk.
#[derive(Default)]
pub struct Chunk {
    slots: Vec<(u64, StringRecord)>,
    len: usize,
}

impl Chunk {
    pub fn records(&self) -> &[(u64, StringRecord)] {
        &self.slots[..self.len]
    }
}

/// The reading side of an open file.
pub struct Source {
    file: &'static str,
    reader: csv::Reader<HashingReader<File>>,
    /// The header's column names, to name the column of an encoding error.
    header: Vec<String>,
    /// Record number of the last record read; the header is record 1.
    last_row: u64,
    file_len: u64,
}

impl Source {
    /// Reads up to `max` records into `chunk`. Returns false once the file is exhausted and
    /// nothing was read.
    pub fn read_chunk(&mut self, max: usize, chunk: &mut Chunk) -> Result<bool, StructuralError> {
        chunk.len = 0;
        while chunk.len < max {
            if chunk.slots.len() == chunk.len {
                chunk.slots.push((0, StringRecord::new()));
            }
            let row = self.last_row + 1;
            let slot = &mut chunk.slots[chunk.len];
            match self.reader.read_record(&mut slot.1) {
                Ok(true) => {
                    self.last_row = row;
                    slot.0 = row;
                    chunk.len += 1;
                }
                Ok(false) => break,
                Err(e) => return Err(csv_error(self.file, row, &self.header, e)),
            }
        }
        Ok(chunk.len > 0)
    }

    /// Records still to come, estimated from the bytes read so far (to size vectors once).
    pub fn estimated_remaining(&self) -> usize {
        let read = self.reader.position().byte().max(1);
        let rows = self.last_row.saturating_sub(1).max(1);
        (u128::from(self.file_len.saturating_sub(read)) * u128::from(rows) / u128::from(read))
            as usize
    }

    /// Drains what is left (nothing, once `read_chunk` returned false) and returns the digest.
    pub fn finish(mut self) -> Result<FileDigest, StructuralError> {
        io::copy(self.reader.get_mut(), &mut io::sink()).map_err(|e| StructuralError::Io {
            file: self.file,
            message: e.to_string(),
        })?;
        let hasher = self.reader.into_inner().hasher;
        Ok(FileDigest {
            present: true,
            sha256: hex::encode(hasher.finalize()),
            rows_read: self.last_row - 1,
        })
    }
}

/// An open input file, positioned after its header.
pub struct Table<S: Schema> {
    pub layout: Layout<S>,
    pub source: Source,
}

impl<S: Schema> Table<S> {
    /// Opens `dir/<FILE>` and maps its header. `Ok(None)` when an optional file is absent.
    pub fn open(dir: &Path) -> Result<Option<Table<S>>, StructuralError> {
        let path = dir.join(S::FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return if S::FILE_REQUIRED {
                    Err(StructuralError::MissingFile {
                        file: S::FILE,
                        dir: dir.to_path_buf(),
                    })
                } else {
                    Ok(None)
                };
            }
            Err(e) => {
                return Err(StructuralError::Io {
                    file: S::FILE,
                    message: e.to_string(),
                });
            }
        };
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(HashingReader {
                inner: file,
                hasher: Sha256::new(),
            });
        let mut header = StringRecord::new();
        match reader.read_record(&mut header) {
            Ok(true) => {}
            Ok(false) => return Err(StructuralError::Empty { file: S::FILE }),
            Err(e) => return Err(csv_error(S::FILE, 1, &[], e)),
        }
        // A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
        let names: Vec<&str> = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    h
                }
                .trim()
            })
            .collect();
        for (i, name) in names.iter().enumerate() {
            if !name.is_empty() && names[..i].contains(name) {
                return Err(StructuralError::DuplicateColumn {
                    file: S::FILE,
                    column: name.to_string(),
                });
            }
        }
        let mut positions = Vec::with_capacity(S::VARIANTS.len());
        for (index, column) in S::VARIANTS.iter().enumerate() {
            let position = names.iter().position(|n| n == column);
            let optional = S::OPTIONAL.iter().any(|c| c.index() == index);
            if position.is_none() && !optional {
                return Err(StructuralError::MissingColumn {
                    file: S::FILE,
                    column,
                    header: names.join(","),
                });
            }
            positions.push(position);
        }
        Ok(Some(Table {
            layout: Layout {
                positions,
                width: header.len(),
                _schema: PhantomData,
            },
            source: Source {
                file: S::FILE,
                reader,
                header: names.iter().map(|n| n.to_string()).collect(),
                last_row: 1,
                file_len,
            },
        }))
    }
}

fn csv_error(file: &'static str, row: u64, header: &[String], e: csv::Error) -> StructuralError {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => StructuralError::NotUtf8 {
            file,
            row,
            column: header
                .get(err.field())
                .cloned()
                .unwrap_or_else(|| format!("#{}", err.field() + 1)),
            byte_offset: pos.as_ref().map(|p| p.byte()).unwrap_or(0),
        },
        csv::ErrorKind::Io(io) => StructuralError::Io {
            file,
            message: io.to_string(),
        },
        _ => StructuralError::Csv {
            file,
            row,
            message: e.to_string(),
        },
    }
}

/// One record seen through its file's schema.
pub struct Row<'a, S: Schema> {
    pub number: u64,
    record: &'a StringRecord,
    positions: &'a [Option<usize>],
    width: usize,
    _schema: PhantomData<S>,
}

impl<'a, S: Schema> Row<'a, S> {
    /// The cell of `column`; blank when the header leaves the column out.
    pub fn cell(&self, column: S) -> Cell<'a> {
        let text = self.positions[column.index()]
            .and_then(|p| self.record.get(p))
            .unwrap_or("");
        Cell {
            column: column.into(),
            text,
        }
    }

    /// Whether the record has as many fields as the header.
    pub fn has_header_width(&self) -> bool {
        self.record.len() == self.width
    }

    pub fn field_count(&self) -> usize {
        self.record.len()
    }

    pub fn header_width(&self) -> usize {
        self.width
    }
}

/// A cell: its column's name and its raw text.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    pub column: &'static str,
    pub text: &'a str,
}
