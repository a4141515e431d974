//! Reading one input CSV: header matched by name, bytes hashed as they pass, UTF-8 enforced. The
//! file is read in windows cut at record ends (found with the quoting rules of the csv reader),
//! and each window's blocks are tokenized by the csv crate on every core. Every file of the
//! bundle goes through here.

use crate::error::StructuralError;
use csv::StringRecord;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::ops::Range;
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

/// Records tokenized together (one block of bytes), each with its record number; their buffers
/// are reused window after window.
#[derive(Default)]
pub struct Chunk {
    slots: Vec<(u64, StringRecord)>,
    len: usize,
}

impl Chunk {
    pub fn records(&self) -> &[(u64, StringRecord)] {
        &self.slots[..self.len]
    }

    /// Splits `block` (whole records) into records, as the serial csv reader would. On a
    /// failure, the index of the failing record in the block and the error (its position
    /// counted from the block's start).
    fn tokenize(&mut self, block: &[u8]) -> Result<(), (usize, csv::Error)> {
        let mut reader = reader_builder().from_reader(block);
        self.len = 0;
        loop {
            if self.slots.len() == self.len {
                self.slots.push((0, StringRecord::new()));
            }
            match reader.read_record(&mut self.slots[self.len].1) {
                Ok(true) => self.len += 1,
                Ok(false) => return Ok(()),
                Err(e) => return Err((self.len, e)),
            }
        }
    }
}

/// How every input CSV is read: RFC 4180 quoting, `\n`, `\r\n` or `\r` ends a record, rows
/// may be short or long (their width is checked per row, with a reject).
fn reader_builder() -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(false).flexible(true);
    builder
}

/// Bytes read from a file at once, cut at a record's end; and the bytes one task tokenizes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub window: usize,
    pub block: usize,
    /// Most records a file may hold: lines and rows are numbered and indexed in 32 bits.
    pub max_records: u64,
}

impl Default for Sizes {
    /// A window of 8 MiB (two are held: one checked while the next is read), blocks of 256 KiB
    /// (enough tasks per window for every core, each a few thousand records).
    fn default() -> Sizes {
        Sizes {
            window: 8 << 20,
            block: 256 << 10,
            max_records: u64::from(u32::MAX) - 1,
        }
    }
}

/// Whole records read from a file, cut into blocks that are tokenized in parallel.
#[derive(Default)]
pub struct Window {
    bytes: Vec<u8>,
    /// Offset in the file of `bytes[0]`.
    offset: u64,
    blocks: Vec<Range<usize>>,
    chunks: Vec<Chunk>,
}

impl Window {
    /// Tokenizes the window's blocks in parallel and numbers their records from `last_row + 1`,
    /// in file order. Returns the last record number.
    pub fn tokenize(
        &mut self,
        file: &'static str,
        header: &[String],
        last_row: u64,
    ) -> Result<u64, StructuralError> {
        use rayon::prelude::*;
        let Window {
            bytes,
            offset,
            blocks,
            chunks,
        } = self;
        chunks.resize_with(chunks.len().max(blocks.len()), Chunk::default);
        let failures: Vec<Option<(usize, csv::Error)>> = chunks[..blocks.len()]
            .par_iter_mut()
            .zip(blocks.par_iter())
            .map(|(chunk, block)| chunk.tokenize(&bytes[block.clone()]).err())
            .collect();
        let mut row = last_row;
        for ((chunk, block), failure) in chunks.iter_mut().zip(blocks.iter()).zip(failures) {
            if let Some((index, e)) = failure {
                let at = *offset + block.start as u64;
                return Err(csv_error(
                    file,
                    row + index as u64 + 1,
                    header,
                    &bytes[block.clone()],
                    at,
                    e,
                ));
            }
            for slot in &mut chunk.slots[..chunk.len] {
                row += 1;
                slot.0 = row;
            }
        }
        Ok(row)
    }

    /// Offset in the file just past the window's last record.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// The tokenized records, block by block.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks[..self.blocks.len()]
    }
}

/// Where records end in `bytes`, which starts at a record's start: the offset just past each
/// `\n` that ends a record, read the way csv_core reads (a quote opens a quoted field only at a
/// field's start, `""` inside one is a quote, `\r` also ends a record). Without any quote in the
/// bytes, that is every `\n`.
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    if memchr::memchr(b'"', bytes).is_none() {
        return memchr::memchr_iter(b'\n', bytes).map(|p| p + 1).collect();
    }
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        FieldStart,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let mut at = At::FieldStart;
    let mut ends = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        at = match (at, b) {
            (At::Quoted, b'"') => At::QuoteInQuoted,
            (At::Quoted, _) => At::Quoted,
            (At::FieldStart, b'"') | (At::QuoteInQuoted, b'"') => At::Quoted,
            (_, b',') => At::FieldStart,
            (_, b'\n') => {
                ends.push(i + 1);
                At::FieldStart
            }
            (_, b'\r') => At::FieldStart,
            _ => At::Field,
        };
    }
    ends
}

/// The reading side of an open file.
pub struct Source {
    file: &'static str,
    reader: HashingReader<File>,
    /// The header's column names, to name the column of an encoding error.
    header: Vec<String>,
    /// Bytes read after the last whole record handed out, and their offset in the file.
    carry: Vec<u8>,
    carry_offset: u64,
    eof: bool,
    sizes: Sizes,
    file_len: u64,
    /// The window read with the header, handed out first.
    first: Option<Window>,
}

impl Source {
    fn open(
        file: &'static str,
        handle: File,
        sizes: Sizes,
    ) -> Result<Option<(Source, StringRecord)>, StructuralError> {
        let file_len = handle.metadata().map(|m| m.len()).unwrap_or(0);
        let mut source = Source {
            file,
            reader: HashingReader {
                inner: handle,
                hasher: Sha256::new(),
            },
            header: Vec::new(),
            carry: Vec::new(),
            carry_offset: 0,
            eof: false,
            sizes,
            file_len,
            first: None,
        };
        // The header is the first record of the first window that holds one; the rest of that
        // window is data.
        let mut first = Window::default();
        while source.read_window(&mut first)? {
            let mut reader = reader_builder().from_reader(&first.bytes[..]);
            let mut header = StringRecord::new();
            match reader.read_record(&mut header) {
                Ok(true) => {
                    let header_end = reader.position().byte() as usize;
                    first.blocks.retain_mut(|block| {
                        block.start = block.start.max(header_end);
                        block.end > block.start
                    });
                    source.first = Some(first);
                    return Ok(Some((source, header)));
                }
                // Only blank lines so far.
                Ok(false) => {}
                Err(e) => return Err(csv_error(file, 1, &[], &first.bytes, first.offset, e)),
            }
        }
        Ok(None)
    }

    /// Reads the next window of whole records into `window`. Returns false once the file is
    /// exhausted and nothing was read.
    pub fn read_window(&mut self, window: &mut Window) -> Result<bool, StructuralError> {
        if let Some(first) = self.first.take()
            && !first.blocks.is_empty()
        {
            *window = first;
            return Ok(true);
        }
        window.bytes.clear();
        window.blocks.clear();
        window.bytes.append(&mut self.carry);
        window.offset = self.carry_offset;
        let mut target = self.sizes.window;
        loop {
            self.fill(&mut window.bytes, target)?;
            let ends = record_ends(&window.bytes);
            cut_blocks(&ends, self.sizes.block, &mut window.blocks);
            if self.eof {
                // The last record may have no terminator.
                let len = window.bytes.len();
                match window.blocks.last_mut() {
                    Some(last) => last.end = len,
                    None if len > 0 => window.blocks.push(0..len),
                    None => {}
                }
                break;
            }
            if let Some(&end) = ends.last() {
                self.carry.extend_from_slice(&window.bytes[end..]);
                window.bytes.truncate(end);
                break;
            }
            // A record longer than the window: read on until it ends.
            target *= 2;
        }
        self.carry_offset = window.offset + window.bytes.len() as u64;
        Ok(!window.blocks.is_empty())
    }

    /// Reads until `bytes` holds `target` bytes or the file ends.
    fn fill(&mut self, bytes: &mut Vec<u8>, target: usize) -> Result<(), StructuralError> {
        while !self.eof && bytes.len() < target {
            let want = (target - bytes.len()) as u64;
            let read = (&mut self.reader)
                .take(want)
                .read_to_end(bytes)
                .map_err(|e| StructuralError::Io {
                    file: self.file,
                    message: e.to_string(),
                })?;
            self.eof = read == 0;
        }
        Ok(())
    }

    /// The header's column names.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Records still to come after `rows` records in the file's first `bytes` bytes, estimated
    /// from the file's length (to size vectors once).
    pub fn estimated_remaining(&self, rows: u64, bytes: u64) -> usize {
        let (rows, bytes) = (rows.max(1), bytes.max(1));
        (u128::from(self.file_len.saturating_sub(bytes)) * u128::from(rows) / u128::from(bytes))
            as usize
    }

    /// Drains what is left (nothing, once `read_window` returned false) and returns the digest.
    pub fn finish(mut self, rows_read: u64) -> Result<FileDigest, StructuralError> {
        io::copy(&mut self.reader, &mut io::sink()).map_err(|e| StructuralError::Io {
            file: self.file,
            message: e.to_string(),
        })?;
        Ok(FileDigest {
            present: true,
            sha256: hex::encode(self.reader.hasher.finalize()),
            rows_read,
        })
    }
}

/// Cuts the records ending at `ends` into blocks of about `block` bytes.
fn cut_blocks(ends: &[usize], block: usize, blocks: &mut Vec<Range<usize>>) {
    let mut start = 0;
    for &end in ends {
        if end - start >= block {
            blocks.push(start..end);
            start = end;
        }
    }
    if let Some(&last) = ends.last()
        && last > start
    {
        blocks.push(start..last);
    }
}

/// An open input file, positioned after its header.
pub struct Table<S: Schema> {
    pub layout: Layout<S>,
    pub source: Source,
}

impl<S: Schema> Table<S> {
    /// Opens `dir/<FILE>` and maps its header. `Ok(None)` when an optional file is absent.
    pub fn open(dir: &Path, sizes: Sizes) -> Result<Option<Table<S>>, StructuralError> {
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
        let Some((mut source, header)) = Source::open(S::FILE, file, sizes)? else {
            return Err(StructuralError::Empty { file: S::FILE });
        };
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
        source.header = names.iter().map(|n| n.to_string()).collect();
        Ok(Some(Table {
            layout: Layout {
                positions,
                width: header.len(),
                _schema: PhantomData,
            },
            source,
        }))
    }
}

/// A csv error at record `row` of the tokenized `bytes`, which begin at `offset` in the file. A
/// UTF-8 error names the first byte of the record that is not UTF-8.
fn csv_error(
    file: &'static str,
    row: u64,
    header: &[String],
    bytes: &[u8],
    offset: u64,
    e: csv::Error,
) -> StructuralError {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => StructuralError::NotUtf8 {
            file,
            row,
            column: header
                .get(err.field())
                .cloned()
                .unwrap_or_else(|| format!("#{}", err.field() + 1)),
            byte_offset: offset + first_bad_byte(bytes, pos.as_ref().map_or(0, |p| p.byte())),
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

/// Where the first byte that is not UTF-8 lies in `bytes`, looking from `from` (a record's start;
/// what precedes it was read as UTF-8).
fn first_bad_byte(bytes: &[u8], from: u64) -> u64 {
    let from = (from as usize).min(bytes.len());
    let valid = match std::str::from_utf8(&bytes[from..]) {
        Ok(_) => 0,
        Err(e) => e.valid_up_to(),
    };
    (from + valid) as u64
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Records as (row, fields) with the header as row 1, and the (row, byte offset) of the first
    /// record that is not UTF-8.
    type Records = (Vec<(u64, Vec<String>)>, Option<(u64, u64)>);

    fn fields(record: &StringRecord) -> Vec<String> {
        record.iter().map(String::from).collect()
    }

    fn not_utf8(e: StructuralError) -> (u64, u64) {
        match e {
            StructuralError::NotUtf8 {
                row, byte_offset, ..
            } => (row, byte_offset),
            other => panic!("unexpected error {other}"),
        }
    }

    /// What one csv reader over the whole file gives: the reference.
    fn serial(bytes: &[u8]) -> Records {
        let mut reader = reader_builder().from_reader(bytes);
        let mut records = Vec::new();
        let mut record = StringRecord::new();
        for row in 1.. {
            match reader.read_record(&mut record) {
                Ok(true) => records.push((row, fields(&record))),
                Ok(false) => break,
                Err(e) => {
                    return (
                        records,
                        Some(not_utf8(csv_error("f", row, &[], bytes, 0, e))),
                    );
                }
            }
        }
        (records, None)
    }

    /// What the windowed reader gives.
    fn windowed(bytes: &[u8], sizes: Sizes) -> Records {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let mut records = Vec::new();
        let (mut source, header) = match Source::open("f", File::open(&path).unwrap(), sizes) {
            Ok(Some(opened)) => opened,
            Ok(None) => return (records, None),
            Err(e) => return (records, Some(not_utf8(e))),
        };
        records.push((1, fields(&header)));
        let mut window = Window::default();
        let mut last_row = 1;
        while source.read_window(&mut window).unwrap() {
            match window.tokenize("f", &[], last_row) {
                Ok(row) => last_row = row,
                Err(e) => return (records, Some(not_utf8(e))),
            }
            for chunk in window.chunks() {
                records.extend(chunk.records().iter().map(|(n, r)| (*n, fields(r))));
            }
        }
        let digest = source.finish(last_row - 1).unwrap();
        use sha2::Digest;
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(bytes)));
        (records, None)
    }

    #[test]
    fn records_end_at_newlines_outside_quotes() {
        // `a,"x\ny"\n` is one record (8 bytes, ends at 8); `"p""\n"\n` another (7 bytes, the
        // quote doubled, ends at 15); `q"r\n` a third (4 bytes, ends at 19): a quote inside an
        // unquoted field is a plain character.
        let bytes = b"a,\"x\ny\"\n\"p\"\"\n\"\nq\"r\n";
        assert_eq!(record_ends(bytes), vec![8, 15, 19]);
        // Without quotes, every newline; `\r\n` ends a record after its `\n`.
        assert_eq!(record_ends(b"a\r\nb\n\nc"), vec![3, 5, 6]);
    }

    #[test]
    fn a_quoted_newline_across_windows_and_blocks_is_one_field() {
        let bytes =
            b"h1,h2\nv1,\"multi\nline, with \"\"quotes\"\"\"\nv2,w2\r\nv3,\"\"\n\nlast,no-newline";
        let (records, error) = windowed(
            bytes,
            Sizes {
                window: 8,
                block: 4,
                ..Sizes::default()
            },
        );
        assert_eq!(error, None);
        assert_eq!(records, serial(bytes).0);
        assert_eq!(
            records[1],
            (2, vec!["v1".into(), "multi\nline, with \"quotes\"".into()])
        );
        assert_eq!(records.last().unwrap().0, 5);
    }

    proptest! {
        /// Whatever the bytes and however small the windows and blocks, the windowed reader gives
        /// the serial csv reader's records, numbers and first encoding error.
        #[test]
        fn windows_read_as_the_serial_reader_does(
            bytes in prop::collection::vec(
                prop::sample::select(vec![b'a', b'b', b',', b'"', b'\n', b'\r', 0xC3, 0xA9, 0xFF]),
                0..300,
            ),
            window in 1usize..80,
            block in 1usize..40,
        ) {
            let expected = serial(&bytes);
            let got = windowed(&bytes, Sizes { window, block, ..Sizes::default() });
            match expected.1 {
                // The windowed reader stops at a window with a bad record; the error must match.
                Some(error) => prop_assert_eq!(got.1, Some(error)),
                None => prop_assert_eq!(got, expected),
            }
        }
    }
}
