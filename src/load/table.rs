//! Reading one input CSV: header matched by name, bytes hashed as they pass, UTF-8 enforced. The
//! file is read in windows cut at record ends (found with the quoting rules of the csv reader),
//! and each window's blocks are tokenized by the csv crate on every core. Every file of the
//! bundle goes through here.

use super::error::StructuralError;
use csv::StringRecord;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;
use strum::VariantNames;

/// The columns of one input file, as an enum whose variants, in snake_case, are the column names.
pub trait Schema: Copy + Into<&'static str> + VariantNames + Send + Sync + 'static {
    /// The file's name in the bundle.
    const FILE: &'static str;
    /// Whether the bundle must contain the file.
    const FILE_REQUIRED: bool;
    /// Columns the header may leave out; every cell of a missing column reads as blank.
    const OPTIONAL: &'static [Self];
    /// The variant's position in `VARIANTS`.
    fn index(self) -> usize;
    /// The one column whose cells may hold a line break (SPEC §2: `partners.csv` `name`).
    const MULTILINE: Option<Self> = None;
    /// Whether `row`, read alone, would be accepted: the lines a stray quote swallowed are.
    fn is_complete(_row: &Row<'_, Self>) -> bool {
        false
    }
}

/// What the manifest records of an input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Which fields may hold a line break. SPEC §2: only `partners.csv` `name`; anywhere else a
/// line break inside quotes is a stray quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaks {
    Nowhere,
    /// The field at this position of a record.
    Column(usize),
    /// Any field, and a quote may stay open at the end: the csv crate's own reading (tests only).
    #[cfg(test)]
    Anywhere,
}

impl Breaks {
    /// Whether anything goes (tests comparing with the csv crate): no stray quote is reported.
    fn lenient(self) -> bool {
        #[cfg(test)]
        if self == Breaks::Anywhere {
            return true;
        }
        false
    }

    fn allow(self, field: usize) -> bool {
        match self {
            Breaks::Nowhere => false,
            Breaks::Column(c) => c == field,
            #[cfg(test)]
            Breaks::Anywhere => true,
        }
    }
}

/// What one pass over a window's bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// The offset just past each `\n` that ends a record.
    ends: Vec<usize>,
    /// Quoted fields that hold a line break where one is allowed: (opening quote, field end).
    spans: Vec<(usize, usize)>,
    /// A quoted field holding a line break where none is allowed: (opening quote, field index).
    /// The scan stops there.
    stray: Option<(usize, usize)>,
    /// A quoted field still open at the end of the bytes: (opening quote, field index).
    open: Option<(usize, usize)>,
}

/// Where records end in `bytes`, which starts at a record's start, read the way csv_core reads (a
/// quote opens a quoted field only at a field's start, `""` inside one is a quote, `\r` also ends
/// a record); and which quoted fields hold line breaks. Without any quote in the bytes, the ends
/// are every `\n` and nothing else can be found.
fn scan(bytes: &[u8], breaks: Breaks) -> Scan {
    let mut found = Scan::default();
    if memchr::memchr(b'"', bytes).is_none() {
        found.ends = memchr::memchr_iter(b'\n', bytes).map(|p| p + 1).collect();
        return found;
    }
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        FieldStart,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let mut at = At::FieldStart;
    // The current field's index in its record, where its quote opened, whether it broke a line.
    let (mut field, mut opened, mut broke) = (0usize, 0usize, false);
    for (i, &b) in bytes.iter().enumerate() {
        at = match (at, b) {
            (At::Quoted, b'"') => At::QuoteInQuoted,
            (At::Quoted, b'\n' | b'\r') => {
                if !breaks.allow(field) {
                    found.stray = Some((opened, field));
                    return found;
                }
                broke = true;
                At::Quoted
            }
            (At::Quoted, _) => At::Quoted,
            (At::FieldStart, b'"') => {
                opened = i;
                At::Quoted
            }
            (At::QuoteInQuoted, b'"') => At::Quoted,
            (_, b',' | b'\n' | b'\r') => {
                if broke {
                    found.spans.push((opened, i));
                    broke = false;
                }
                if b == b',' {
                    field += 1;
                } else {
                    field = 0;
                    if b == b'\n' {
                        found.ends.push(i + 1);
                    }
                }
                At::FieldStart
            }
            _ => At::Field,
        };
    }
    if at == At::Quoted {
        found.open = Some((opened, field));
    } else if broke {
        found.spans.push((opened, bytes.len()));
    }
    found
}

/// The offsets where records end in `bytes` (no field checked for line breaks).
#[cfg(test)]
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    scan(bytes, Breaks::Anywhere).ends
}

/// Where a stray quote sits in its file, in lines as an editor counts them (`\n`, `\r\n` or a
/// lone `\r` ends one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Located {
    /// The line of the opening quote.
    line: u64,
    /// The line of the closing quote, or the file's last line.
    last_line: u64,
    closed: bool,
}

/// Reads `file` (through positioned reads, which leave the streaming reader where it is) to
/// find the lines of the quoted field opening at byte `open`. Only on the error path.
fn locate(file: &File, open: u64) -> io::Result<Located> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let (mut offset, mut breaks, mut prev_cr) = (0u64, 0u64, false);
    let (mut line, mut last_line) = (0u64, 0u64);
    // After the opening quote: inside the field, or just past a quote inside it.
    let (mut quoted, mut after_quote) = (false, false);
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            let at = offset + k as u64;
            // A `\r` not followed by `\n` ended its line.
            if prev_cr && b != b'\n' {
                breaks += 1;
            }
            prev_cr = b == b'\r';
            // The line this byte is on.
            let here = breaks + 1;
            if at == open {
                line = here;
                quoted = true;
            } else if quoted {
                if after_quote && b != b'"' {
                    return Ok(Located {
                        line,
                        last_line,
                        closed: true,
                    });
                }
                after_quote = b == b'"' && !after_quote;
            }
            last_line = here;
            if b == b'\n' {
                breaks += 1;
            }
        }
        offset += n as u64;
    }
    Ok(Located {
        line,
        last_line,
        closed: after_quote,
    })
}

/// Whether a record, read alone, would be accepted as a row of its file.
type Complete = Box<dyn Fn(&StringRecord) -> bool + Send + Sync>;

/// The reading side of an open file.
pub struct Source {
    file: &'static str,
    reader: HashingReader<File>,
    /// The header's column names, to name the column of an encoding error.
    header: Vec<String>,
    /// Offset in the file just past the header record: the first window's data starts there.
    header_end: u64,
    /// Bytes read after the last whole record handed out, and their offset in the file.
    carry: Vec<u8>,
    carry_offset: u64,
    eof: bool,
    sizes: Sizes,
    file_len: u64,
    /// Which fields may hold a line break, and the test that the lines after the first of such
    /// a field are not whole records of their own (a stray quote that swallowed them).
    breaks: Breaks,
    complete: Option<Complete>,
}

impl Source {
    fn open(
        file: &'static str,
        handle: File,
        sizes: Sizes,
        breaks: Breaks,
    ) -> Result<Option<(Source, StringRecord)>, StructuralError> {
        let file_len = handle.metadata().map(|m| m.len()).unwrap_or(0);
        let mut source = Source {
            file,
            reader: HashingReader {
                inner: handle,
                hasher: Sha256::new(),
            },
            header: Vec::new(),
            header_end: 0,
            carry: Vec::new(),
            carry_offset: 0,
            eof: false,
            sizes,
            file_len,
            breaks,
            complete: None,
        };
        // The header is the first record; what follows it is data, handed out by `read_window`
        // once the header tells which column may hold line breaks.
        let mut bytes = Vec::new();
        let mut target = sizes.window;
        loop {
            source.fill(&mut bytes, target)?;
            let mut reader = reader_builder().from_reader(&bytes[..]);
            let mut header = StringRecord::new();
            match reader.read_record(&mut header) {
                Ok(true) => {
                    // No header name holds a line break: a quote opened in the header.
                    if header.iter().any(|h| h.contains(['\n', '\r'])) && !breaks.lenient() {
                        let (at, field) = scan(&bytes, Breaks::Nowhere).stray.unwrap_or((0, 0));
                        return Err(source.stray_quote(at as u64, field, None));
                    }
                    let end = reader.position().byte();
                    if end < bytes.len() as u64 || source.eof {
                        source.header_end = end;
                        source.carry = bytes;
                        return Ok(Some((source, header)));
                    }
                }
                // Only blank lines so far.
                Ok(false) if source.eof => return Ok(None),
                Ok(false) => {}
                // A character cut at the end of what was read is not an error yet: the header
                // (after any blank lines) has not ended.
                Err(_) if !source.eof && !header_ended(&bytes) => {}
                Err(e) => return Err(csv_error(file, 1, &[], &bytes, 0, e)),
            }
            // The header may go on past what was read.
            target *= 2;
        }
    }

    /// Reads the next window of whole records into `window`. Returns false once the file is
    /// exhausted and nothing was read.
    pub fn read_window(&mut self, window: &mut Window) -> Result<bool, StructuralError> {
        loop {
            self.read_records(window)?;
            // The header's window may hold nothing else while more follows.
            if !window.blocks.is_empty() || self.eof {
                return Ok(!window.blocks.is_empty());
            }
        }
    }

    fn read_records(&mut self, window: &mut Window) -> Result<(), StructuralError> {
        window.bytes.clear();
        window.blocks.clear();
        window.bytes.append(&mut self.carry);
        window.offset = self.carry_offset;
        let mut target = self.sizes.window;
        let spans = loop {
            self.fill(&mut window.bytes, target)?;
            let found = scan(&window.bytes, self.breaks);
            if let Some((at, field)) = found.stray {
                return Err(self.stray_quote(window.offset + at as u64, field, None));
            }
            cut_blocks(&found.ends, self.sizes.block, &mut window.blocks);
            if self.eof {
                if let Some((at, field)) = found.open
                    && !self.breaks.lenient()
                {
                    return Err(self.stray_quote(window.offset + at as u64, field, None));
                }
                // The last record may have no terminator.
                let len = window.bytes.len();
                match window.blocks.last_mut() {
                    Some(last) => last.end = len,
                    None if len > 0 => window.blocks.push(0..len),
                    None => {}
                }
                break found.spans;
            }
            if let Some(&end) = found.ends.last() {
                self.carry.extend_from_slice(&window.bytes[end..]);
                window.bytes.truncate(end);
                let mut spans = found.spans;
                spans.retain(|&(_, field_end)| field_end < end);
                break spans;
            }
            // A record longer than the window: read on until it ends.
            target *= 2;
        };
        self.carry_offset = window.offset + window.bytes.len() as u64;
        for (open, field_end) in spans {
            if let Some(lines) = self.swallowed_records(&window.bytes, open, field_end) {
                let at = window.offset + open as u64;
                let field = match self.breaks {
                    Breaks::Column(c) => c,
                    _ => 0,
                };
                return Err(self.stray_quote(at, field, Some(lines)));
            }
        }
        // The header is not data.
        if window.offset < self.header_end {
            let skip = (self.header_end - window.offset) as usize;
            window.blocks.retain_mut(|block| {
                block.start = block.start.max(skip);
                block.end > block.start
            });
        }
        Ok(())
    }

    /// A field that may hold line breaks (`name`) but whose lines after the first would each
    /// be a whole record of the file on its own is a quote that swallowed those records (SPEC
    /// §2): how many lines, if so. The lines run from the one after the opening quote's to the
    /// end of the line where the field ends.
    fn swallowed_records(&self, bytes: &[u8], open: usize, field_end: usize) -> Option<usize> {
        let complete = self.complete.as_ref()?;
        let first_break = open + memchr::memchr2(b'\n', b'\r', &bytes[open..field_end])?;
        let mut start = first_break + 1;
        if bytes[first_break] == b'\r' && bytes.get(start) == Some(&b'\n') {
            start += 1;
        }
        let end = field_end
            + memchr::memchr2(b'\n', b'\r', &bytes[field_end..]).unwrap_or(bytes.len() - field_end);
        let mut record = StringRecord::new();
        let mut lines = 0;
        for line in bytes[start..end].split(|&b| b == b'\n' || b == b'\r') {
            // The `\n` of a `\r\n` leaves an empty piece: not a line.
            if line.is_empty() {
                continue;
            }
            let mut reader = reader_builder().from_reader(line);
            match reader.read_record(&mut record) {
                Ok(true) if complete(&record) => lines += 1,
                _ => return None,
            }
        }
        (lines > 0).then_some(lines)
    }

    /// The structural error for a quoted field opening at byte `at` of the file, in field
    /// `field` of its record; `records`: the whole records it swallowed, when that is why.
    fn stray_quote(&self, at: u64, field: usize, records: Option<usize>) -> StructuralError {
        let file = self.file;
        let column = self
            .header
            .get(field)
            .cloned()
            .unwrap_or_else(|| format!("#{}", field + 1));
        let Located {
            line,
            last_line,
            closed,
        } = match locate(&self.reader.inner, at) {
            Ok(located) => located,
            Err(e) => {
                return StructuralError::Io {
                    file,
                    message: e.to_string(),
                };
            }
        };
        let lines = last_line.saturating_sub(line) + 1;
        let reach = if closed {
            format!("runs on to line {last_line}")
        } else {
            format!("is still open at the end of the file (line {last_line})")
        };
        let why = match records {
            Some(n) => format!(
                "; the {n} line{} after the first would each be a whole {file} record of their own",
                if n == 1 { "" } else { "s" }
            ),
            None if file == "partners.csv" && column == "name" => String::new(),
            None => {
                format!("; no column of {file} holds a line break (only partners.csv `name` may)")
            }
        };
        StructuralError::StrayQuote {
            file,
            line,
            column,
            lines,
            detail: format!(
                "a quoted field opens here and {reach}, swallowing {lines} line{} ({line} to {last_line}) into one cell{why}. \
                 Remove the stray `\"` (a quote inside a cell is written `\"\"` in a quoted cell) and run again",
                if lines == 1 { "" } else { "s" }
            ),
        }
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

/// Whether `bytes` hold a line break outside quotes after their leading blank lines: the header
/// record (the first non-blank line) has ended there. A line break inside a quote (a quote
/// opened in the header, perhaps never closed) does not end it: reading on decides.
fn header_ended(bytes: &[u8]) -> bool {
    let content = bytes
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(bytes.len());
    let mut quoted = false;
    for &b in &bytes[content..] {
        match b {
            // `""` inside a quote toggles twice: the state stays right.
            b'"' => quoted = !quoted,
            b'\n' if !quoted => return true,
            _ => {}
        }
    }
    false
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
                // `Bill_Lines.CSV` beside a missing `bill_lines.csv` is the export under another
                // name: reading on without it would drop a whole file (optional ones too).
                if let Some(found) = under_another_case(dir, S::FILE) {
                    return Err(StructuralError::OtherCase {
                        file: S::FILE,
                        found,
                        dir: dir.to_path_buf(),
                    });
                }
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
        let Some((mut source, header)) = Source::open(S::FILE, file, sizes, Breaks::Nowhere)?
        else {
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
                if let Some(separator) = other_separator(&names, column) {
                    return Err(StructuralError::Separator {
                        file: S::FILE,
                        separator,
                    });
                }
                return Err(StructuralError::MissingColumn {
                    file: S::FILE,
                    column,
                    header: names.join(","),
                });
            }
            positions.push(position);
        }
        source.header = names.iter().map(|n| n.to_string()).collect();
        if let Some(position) = S::MULTILINE.and_then(|c| positions[c.index()]) {
            source.breaks = Breaks::Column(position);
            let alone = Layout::<S> {
                positions: positions.clone(),
                width: header.len(),
                _schema: PhantomData,
            };
            source.complete = Some(Box::new(move |record: &StringRecord| {
                S::is_complete(&alone.row(0, record))
            }));
        }
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

/// The name of a file in `dir` that is `file` but for the case of its letters.
fn under_another_case(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.eq_ignore_ascii_case(file))
}

/// The separator a header uses instead of `,`, when one of its names split by it is `column`
/// (a header read as one name: `line_id;bill_cycle;…`).
fn other_separator(names: &[&str], column: &str) -> Option<char> {
    let [name] = names else {
        return None;
    };
    [';', '\t', '|']
        .into_iter()
        .find(|&sep| name.split(sep).any(|n| n.trim() == column))
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

    /// The record's fields as the file holds them, in header order.
    pub fn fields(&self) -> impl Iterator<Item = &'a str> {
        self.record.iter()
    }

    /// The record's last field (a partition's file keeps the line's row in `bill_lines.csv`
    /// there, after the export's own columns).
    pub fn last_field(&self) -> Option<&'a str> {
        self.record.iter().next_back()
    }

    /// The same record as row `number`.
    pub fn renumbered(&self, number: u64) -> Row<'a, S> {
        Row {
            number,
            record: self.record,
            positions: self.positions,
            width: self.width,
            _schema: PhantomData,
        }
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
        match windowed_with(bytes, sizes, Breaks::Anywhere) {
            Ok(records) => records,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    /// What the windowed reader gives, reading line breaks in quotes as `breaks` says: the
    /// records (and encoding error), or the first other structural error.
    fn windowed_with(
        bytes: &[u8],
        sizes: Sizes,
        breaks: Breaks,
    ) -> Result<Records, StructuralError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let mut records = Vec::new();
        let utf8 = |e: StructuralError| match e {
            StructuralError::NotUtf8 { .. } => Ok(not_utf8(e)),
            other => Err(other),
        };
        let (mut source, header) =
            match Source::open("f", File::open(&path).unwrap(), sizes, breaks) {
                Ok(Some(opened)) => opened,
                Ok(None) => return Ok((records, None)),
                Err(e) => return Ok((records, Some(utf8(e)?))),
            };
        records.push((1, fields(&header)));
        let mut window = Window::default();
        let mut last_row = 1;
        while source.read_window(&mut window)? {
            match window.tokenize("f", &[], last_row) {
                Ok(row) => last_row = row,
                Err(e) => return Ok((records, Some(utf8(e)?))),
            }
            for chunk in window.chunks() {
                records.extend(chunk.records().iter().map(|(n, r)| (*n, fields(r))));
            }
        }
        let digest = source.finish(last_row - 1).unwrap();
        use sha2::Digest;
        assert_eq!(digest.sha256, hex::encode(Sha256::digest(bytes)));
        Ok((records, None))
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
    fn a_line_break_in_quotes_is_a_stray_quote_unless_its_column_may_hold_one() {
        // `a,"x\ny",z\n`: field 1 opens a quote at byte 2 and breaks a line at byte 4.
        let bytes = b"a,\"x\ny\",z\nb,c,d\n";
        let nowhere = scan(bytes, Breaks::Nowhere);
        assert_eq!((nowhere.stray, nowhere.ends), (Some((2, 1)), vec![]));
        let name = scan(bytes, Breaks::Column(1));
        assert_eq!(name.stray, None);
        assert_eq!((name.spans, name.ends), (vec![(2, 7)], vec![10, 16]));
        // Another column may not.
        assert_eq!(scan(bytes, Breaks::Column(2)).stray, Some((2, 1)));
        // A quote still open at the end, with or without a line break before it.
        assert_eq!(scan(b"a,b\nc,\"d", Breaks::Nowhere).open, Some((6, 1)));
        assert_eq!(scan(b"a,\"b\nc", Breaks::Column(1)).open, Some((2, 1)));
        // A quote inside an unquoted field opens nothing.
        assert_eq!(
            scan(b"a,b\"c\nd\n", Breaks::Nowhere),
            Scan {
                ends: vec![6, 8],
                ..Scan::default()
            }
        );
    }

    #[test]
    fn a_stray_quote_is_located_in_lines_as_an_editor_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        // Lines: 1 `h`, 2 `a,"b` (quote at byte 4), 3 `c` (\r\n), 4 `d` (lone \r), 5 `e"",f"`
        // (an escaped quote, then the closing one), 6 `g`.
        std::fs::write(&path, b"h\na,\"b\nc\r\nd\re\"\",f\"\ng\n").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            locate(&file, 4).unwrap(),
            Located {
                line: 2,
                last_line: 5,
                closed: true
            }
        );
        // Never closed: the field runs to the last line (the final `\n` ends line 3, it opens
        // none).
        std::fs::write(&path, b"h\n\"a\nb\n").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            locate(&file, 2).unwrap(),
            Located {
                line: 2,
                last_line: 3,
                closed: false
            }
        );
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

    #[test]
    fn a_header_quote_open_to_the_end_is_read_on_past_a_character_cut_by_the_window() {
        // `"a⏎aé`: the window of 5 bytes ends inside `é` (C3 A9) and inside the open quote; the
        // line break is quoted, so the header has not ended and reading goes on (found by the
        // property below).
        let bytes = b"\"a\na\xC3\xA9";
        let sizes = Sizes {
            window: 5,
            block: 1,
            ..Sizes::default()
        };
        assert_eq!(windowed(bytes, sizes), serial(bytes));
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

        /// A stray quote is found, at the same line and with the same count, however the file
        /// is cut into windows and blocks; without one, the records are the csv crate's.
        #[test]
        fn stray_quotes_are_found_whatever_the_windows(
            bytes in prop::collection::vec(
                prop::sample::select(vec![b'a', b'b', b',', b'"', b'\n', b'\r']),
                0..300,
            ),
            window in 1usize..80,
            block in 1usize..40,
        ) {
            let whole = Sizes { window: 1 << 20, block: 1 << 20, ..Sizes::default() };
            let expected = windowed_with(&bytes, whole, Breaks::Nowhere);
            let got = windowed_with(&bytes, Sizes { window, block, ..Sizes::default() }, Breaks::Nowhere);
            prop_assert_eq!(&got, &expected);
            if let Ok(records) = expected {
                // No cell kept holds a line break.
                prop_assert!(records.0.iter().all(|(_, r)| r.iter().all(|f| !f.contains(['\n', '\r']))));
                prop_assert_eq!(records, serial(&bytes));
            }
        }
    }
}
