//! One output table, in CSV or Parquet, hashed as it is written.
//!
//! Each table declares its columns once, as a list of [`Column`]s (name and type): the CSV
//! header is their names, the Parquet schema their types. Writers fill [`Batch`]es of typed
//! cells ([`Out`]) in parallel (a batch per partner or per slice of rows); [`Batch::encode`]
//! turns a batch into what the file takes (CSV bytes, or one Arrow array per column), and
//! [`Table::write`] appends it, in order, on one thread. So the cost of formatting is spread
//! over the cores while the file's order stays fixed.
//!
//! Both formats hold the same rows. CSV holds text (formula-neutralised, below). Parquet holds
//! each column in its declared type (SPEC §8): text as UTF-8 (exactly the CSV's text), amounts
//! `DECIMAL(38,8)` (every amount the engine reads or writes has at most 8 places, so nothing
//! is rounded), instants `TIMESTAMP` (UTC, microseconds), dates `DATE`, counts `INT64`; an
//! empty optional cell is null. Cells reach Parquet as their values, never parsed back from
//! text.

use super::WrittenFile;
use super::error::WriteError;
use super::writeback::WritebackFile;
use crate::calendar::format_instant;
use crate::csv_field::push_csv_field;
use arrow_array::ArrayRef;
use arrow_array::builder::{
    Date32Builder, Decimal128Builder, Int64Builder, LargeStringBuilder, TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV, UTF-8, `\n`-terminated.
    #[default]
    Csv,
    /// Apache Parquet, Snappy-compressed, one typed schema per table.
    Parquet,
    /// A partition's tables before the merge (`write/merge.rs`): CSV with text cells as they
    /// are, not neutralised, so the merge reads back exactly what was meant and neutralises once;
    /// Snappy-framed (SPEC §8: spilled compressed), neither hashed nor synced (read once, then
    /// removed).
    #[value(skip)]
    Spill,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Spill => crate::spill::EXTENSION,
            Format::Parquet => "parquet",
        }
    }
}

/// A column's type: what its cells hold, and so its Parquet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text, exactly as the CSV holds it (never null: an empty cell is `""`).
    Text,
    /// `DECIMAL(38, 8)`, written from the exact decimal.
    Amount,
    /// `INT64`: a count or a row number.
    Count,
    /// `TIMESTAMP` adjusted to UTC, microseconds.
    Instant,
    /// `DATE`.
    Date,
}

/// One output column: its name (the contract, SPEC Appendix B), its type, and how Parquet
/// stores it. Each table declares its columns as one list; the CSV header is their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Dictionary-encoded (values that repeat: levers, kinds, cycles, currencies, rule ids...).
    /// Values distinct per row are written plain: the dictionary costs more to build than it
    /// saves.
    pub dictionary: bool,
    /// Statistics (min and max per row group and page) kept: on what analysts filter by; not on
    /// values distinct per row, where they prune nothing and cost a comparison per cell.
    pub statistics: bool,
}

impl Column {
    const fn of(name: &'static str, ty: ColumnType, dictionary: bool, statistics: bool) -> Column {
        Column {
            name,
            ty,
            dictionary,
            statistics,
        }
    }

    /// Text whose values repeat: dictionary-encoded, with statistics.
    pub const fn text(name: &'static str) -> Column {
        Column::of(name, ColumnType::Text, true, true)
    }

    /// Text distinct (or nearly) per row (entry ids, line ids, paragraphs): plain, no statistics.
    pub const fn unique(name: &'static str) -> Column {
        Column::of(name, ColumnType::Text, false, false)
    }

    /// An amount: plain (a 16-byte value rarely repeated), without statistics. The parquet
    /// crate (60.x) cuts a row group's decimals out of one buffer and a chunk's min and max
    /// keep that buffer alive until the file is closed: 1 MiB per amount column and row group,
    /// so a month's journal held ~55 bytes a line (1.8 GB at 30M lines) until it was closed.
    /// Nobody prunes by amount; the columns analysts filter by are text (SPEC §8).
    pub const fn amount(name: &'static str) -> Column {
        Column::of(name, ColumnType::Amount, false, false)
    }

    /// A count or row number: plain, with statistics.
    pub const fn count(name: &'static str) -> Column {
        Column::of(name, ColumnType::Count, false, true)
    }

    /// An instant: plain, with statistics.
    pub const fn instant(name: &'static str) -> Column {
        Column::of(name, ColumnType::Instant, false, true)
    }

    /// A calendar date: dictionary-encoded (dates repeat), with statistics.
    pub const fn date(name: &'static str) -> Column {
        Column::of(name, ColumnType::Date, true, true)
    }

    /// The same column, dictionary-encoded (e.g. rates: one per rule).
    pub const fn repeating(self) -> Column {
        Column::of(self.name, self.ty, true, self.statistics)
    }

    /// The same column with statistics kept though its values are distinct per row: analysts
    /// filter by it (`line_id`).
    pub const fn filtered(self) -> Column {
        Column::of(self.name, self.ty, self.dictionary, true)
    }

    /// The Arrow field the column is written from.
    fn field(&self) -> Field {
        let (data_type, nullable) = match self.ty {
            // Large offsets: one partner's statement is one batch, whatever its size.
            ColumnType::Text => (DataType::LargeUtf8, false),
            ColumnType::Amount => (DataType::Decimal128(38, PARQUET_SCALE as i8), true),
            ColumnType::Count => (DataType::Int64, true),
            ColumnType::Instant => (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            ColumnType::Date => (DataType::Date32, true),
        };
        Field::new(self.name, data_type, nullable)
    }
}

/// One output cell. Text is neutralised against formula injection; every other cell is
/// written as its value (in CSV, as SPEC Appendix B writes it).
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    /// Text, neutralised.
    Text(&'a str),
    /// Text written unaltered (headers, words the engine chose).
    Number(&'a str),
    /// An amount, written in CSV as [`crate::money::push_amount`] writes it with this minimum
    /// scale; Parquet takes the value itself, never its text.
    Amount(Decimal, u32),
    /// A count or a row number.
    Count(u64),
    /// An instant: ISO 8601 UTC in CSV ([`format_instant`]).
    Instant(DateTime<Utc>),
    /// A calendar date: `YYYY-MM-DD` in CSV.
    Date(NaiveDate),
    /// An empty optional cell: nothing in CSV, null in Parquet (`""` in a text column).
    Null,
    /// An input's amount cell as written, and its value when it was a decimal (a rejected
    /// line's `payable_amount`): the text (neutralised) in CSV, the value or null in Parquet.
    Raw(&'a str, Option<Decimal>),
}

/// A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
/// first) gets a leading `'` (OWASP CSV injection guidance); anything else is written unaltered.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// Every decimal place an output amount can have: inputs have at most 8, computed amounts are
/// rounded to a currency scale, rates are checked to 8 places.
pub const PARQUET_SCALE: u32 = 8;

/// Rows of cells without an allocation per cell: for CSV the rows in one buffer as the file
/// will hold them (quoted where RFC 4180 needs it); for Parquet each column's values in an
/// Arrow builder of its type.
#[derive(Debug)]
pub struct Batch {
    format: Format,
    columns: &'static [Column],
    /// CSV: the rows' bytes.
    text: String,
    /// Parquet: the values, column by column.
    values: Vec<Values>,
    rows: usize,
    /// The first cell that did not fit its column (a writer's mistake, never the data's).
    fault: Option<String>,
}

/// One column of a Parquet batch.
#[derive(Debug)]
enum Values {
    Text(LargeStringBuilder),
    Amount(Decimal128Builder),
    Count(Int64Builder),
    Instant(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Values {
    fn new(ty: ColumnType) -> Values {
        match ty {
            ColumnType::Text => Values::Text(LargeStringBuilder::new()),
            ColumnType::Amount => Values::Amount(Decimal128Builder::new()),
            ColumnType::Count => Values::Count(Int64Builder::new()),
            ColumnType::Instant => Values::Instant(TimestampMicrosecondBuilder::new()),
            ColumnType::Date => Values::Date(Date32Builder::new()),
        }
    }

    /// Appends `cell`; an error names what does not fit (the column gets a null or `""`).
    fn push(&mut self, cell: Out<'_>) -> Result<(), String> {
        let unfit = |what: &str| Err(format!("{what} {cell:?}"));
        match (self, cell) {
            (Values::Text(b), Out::Text(t) | Out::Raw(t, _)) => b.append_value(neutralise(t)),
            (Values::Text(b), Out::Number(t)) => b.append_value(t),
            (Values::Text(b), Out::Null) => b.append_value(""),
            (Values::Text(b), _) => {
                b.append_value("");
                return unfit("a text column given");
            }
            (Values::Amount(b), Out::Amount(d, _) | Out::Raw(_, Some(d))) => match scaled(d) {
                Some(v) => b.append_value(v),
                None => {
                    b.append_null();
                    return Err(format!(
                        "{d} has more than {PARQUET_SCALE} decimal places for a Parquet amount"
                    ));
                }
            },
            (Values::Count(b), Out::Count(n)) => match i64::try_from(n) {
                Ok(v) => b.append_value(v),
                Err(_) => {
                    b.append_null();
                    return unfit("a count beyond INT64:");
                }
            },
            (Values::Instant(b), Out::Instant(t)) => match micros(t) {
                Some(v) => b.append_value(v),
                None => {
                    b.append_null();
                    return unfit("an instant finer than a microsecond:");
                }
            },
            (Values::Date(b), Out::Date(d)) => b.append_value(days(d)),
            (Values::Amount(b), Out::Null | Out::Raw(_, None)) => b.append_null(),
            (Values::Count(b), Out::Null) => b.append_null(),
            (Values::Instant(b), Out::Null) => b.append_null(),
            (Values::Date(b), Out::Null) => b.append_null(),
            (Values::Amount(b), _) => {
                b.append_null();
                return unfit("an amount column given");
            }
            (Values::Count(b), _) => {
                b.append_null();
                return unfit("a count column given");
            }
            (Values::Instant(b), _) => {
                b.append_null();
                return unfit("an instant column given");
            }
            (Values::Date(b), _) => {
                b.append_null();
                return unfit("a date column given");
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Values::Text(b) => Arc::new(b.finish()),
            Values::Amount(b) => Arc::new(
                b.finish()
                    .with_precision_and_scale(38, PARQUET_SCALE as i8)
                    .map_err(|e| e.to_string())?,
            ),
            Values::Count(b) => Arc::new(b.finish()),
            Values::Instant(b) => Arc::new(b.finish().with_timezone("UTC")),
            Values::Date(b) => Arc::new(b.finish()),
        })
    }
}

/// An amount as its value × 10^8 (`DECIMAL(38, 8)`'s unscaled value); None when it has more
/// than 8 places.
fn scaled(value: Decimal) -> Option<i128> {
    let scale = value.scale();
    if scale > PARQUET_SCALE {
        return None;
    }
    Some(value.mantissa() * 10i128.pow(PARQUET_SCALE - scale))
}

/// Microseconds since 1970-01-01T00:00:00Z; None for an instant finer than a microsecond
/// (the loader rejects such inputs, SPEC §8).
fn micros(t: DateTime<Utc>) -> Option<i64> {
    t.timestamp_subsec_nanos()
        .is_multiple_of(1000)
        .then(|| t.timestamp_micros())
}

/// Days since 1970-01-01.
fn days(d: NaiveDate) -> i32 {
    (d - DateTime::UNIX_EPOCH.date_naive()).num_days() as i32
}

impl Batch {
    pub fn new(columns: &'static [Column], format: Format) -> Batch {
        let values = match format {
            Format::Csv | Format::Spill => Vec::new(),
            Format::Parquet => columns.iter().map(|c| Values::new(c.ty)).collect(),
        };
        Batch {
            format,
            columns,
            text: String::new(),
            values,
            rows: 0,
            fault: None,
        }
    }

    /// Appends one row (a cell per column).
    pub fn row(&mut self, cells: &[Out<'_>]) {
        debug_assert_eq!(cells.len(), self.columns.len());
        if cells.len() != self.columns.len() && self.fault.is_none() {
            self.fault = Some(format!(
                "a row of {} cells for {} columns",
                cells.len(),
                self.columns.len()
            ));
        }
        match self.format {
            Format::Csv | Format::Spill => {
                let plain = self.format == Format::Spill;
                for (c, cell) in cells.iter().enumerate() {
                    if c > 0 {
                        self.text.push(',');
                    }
                    match cell {
                        Out::Text(t) if plain => push_csv_field(&mut self.text, t),
                        _ => push_csv_cell(&mut self.text, *cell),
                    }
                }
                self.text.push('\n');
            }
            Format::Parquet => {
                for ((values, cell), column) in self.values.iter_mut().zip(cells).zip(self.columns)
                {
                    if let Err(e) = values.push(*cell)
                        && self.fault.is_none()
                    {
                        self.fault = Some(format!("column {}: {e}", column.name));
                    }
                }
            }
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The CSV bytes of a CSV batch.
    pub fn csv_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// What [`Table::write`] takes for this batch.
    pub fn encode(mut self) -> Result<Encoded, WriteError> {
        if let Some(fault) = self.fault {
            return Err(WriteError::Io(format!(
                "an output cell does not fit: {fault}"
            )));
        }
        match self.format {
            Format::Csv | Format::Spill => {
                Ok(Encoded::Csv(self.text.into_bytes(), self.rows as u64))
            }
            Format::Parquet => {
                let arrays = self
                    .values
                    .iter_mut()
                    .map(Values::finish)
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(WriteError::Io)?;
                Ok(Encoded::Arrow(arrays, self.rows as u64))
            }
        }
    }
}

/// Appends one cell's CSV text.
fn push_csv_cell(out: &mut String, cell: Out<'_>) {
    use std::fmt::Write as _;
    match cell {
        Out::Text(t) | Out::Raw(t, _) => push_csv_field(out, &neutralise(t)),
        Out::Number(n) => push_csv_field(out, n),
        // Digits, sign, point, dashes, colons: never quoted.
        Out::Amount(d, scale) => crate::money::push_amount(out, d, scale),
        Out::Count(n) => out.push_str(itoa::Buffer::new().format(n)),
        Out::Instant(t) => out.push_str(&format_instant(t)),
        Out::Date(d) => {
            let _ = write!(out, "{d}");
        }
        Out::Null => {}
    }
}

/// Rows per slice that [`write_parallel`] formats on one thread.
const SLICE_ROWS: usize = 1 << 14;

/// Writes one row per item of `items` to `table`, in order: slices of the items are formatted
/// in parallel by `fill` (a few slices at a time, so the bytes held stay bounded) and written
/// in order on this thread. The file does not depend on the thread count.
pub fn write_parallel<T: Sync>(
    table: &mut Table,
    items: &[T],
    fill: impl Fn(&[T], &mut Batch) + Sync,
) -> Result<(), WriteError> {
    use rayon::prelude::*;
    let (format, columns) = (table.format(), table.columns);
    let window = SLICE_ROWS * 2 * rayon::current_num_threads().max(1);
    for part in items.chunks(window) {
        let encoded: Vec<Encoded> = part
            .par_chunks(SLICE_ROWS)
            .map(|slice| {
                let mut batch = Batch::new(columns, format);
                fill(slice, &mut batch);
                batch.encode()
            })
            .collect::<Result<_, WriteError>>()?;
        for e in encoded {
            table.write(&e)?;
        }
    }
    Ok(())
}

/// A batch ready for its file.
pub enum Encoded {
    Csv(Vec<u8>, u64),
    /// One array per column; shared (the arrays are reference-counted), so a batch written to
    /// two files (journal and statement) is not copied.
    Arrow(Vec<ArrayRef>, u64),
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

type Sink = Hashing<BufWriter<WritebackFile>>;

/// An output table being written: `<name>.csv` or `<name>.parquet`.
pub struct Table {
    name: String,
    path: PathBuf,
    columns: &'static [Column],
    rows: u64,
    body: Body,
}

enum Body {
    Csv(Sink),
    Spill(Box<crate::spill::Writer>),
    Parquet(Box<ParquetBody>),
}

struct ParquetBody {
    writer: SerializedFileWriter<Sink>,
    /// Column writers for each row group, from the Arrow schema.
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Batches not yet in a row group, and their rows.
    pending: Vec<Vec<ArrayRef>>,
    pending_rows: usize,
    row_groups: usize,
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1 << 16;

fn io_err(path: &Path, e: impl std::fmt::Display) -> WriteError {
    WriteError::Io(format!("{}: {e}", path.display()))
}

impl Table {
    /// Creates `dir/<name>.<ext>` (`name` may hold one folder level, e.g. `ledgers/P1`) and
    /// writes the header (CSV) or the schema (Parquet).
    pub(super) fn create(
        dir: &Path,
        name: &str,
        columns: &'static [Column],
        format: Format,
    ) -> Result<Table, WriteError> {
        let name = format!("{name}.{}", format.extension());
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| WriteError::io(parent.display(), e))?;
        }
        let file = File::create(&path).map_err(|e| WriteError::io(path.display(), e))?;
        let io = |e| WriteError::io(path.display(), e);
        let header = || {
            let mut header = String::new();
            for (c, column) in columns.iter().enumerate() {
                if c > 0 {
                    header.push(',');
                }
                push_csv_field(&mut header, column.name);
            }
            header.push('\n');
            header
        };
        let sink = |file| Hashing {
            inner: BufWriter::with_capacity(1 << 20, WritebackFile::new(file)),
            hasher: Sha256::new(),
        };
        let body = match format {
            Format::Csv => {
                let mut sink = sink(file);
                sink.write_all(header().as_bytes()).map_err(io)?;
                Body::Csv(sink)
            }
            Format::Spill => {
                let mut spill = Box::new(crate::spill::writer(file));
                spill.write_all(header().as_bytes()).map_err(io)?;
                Body::Spill(spill)
            }
            Format::Parquet => {
                Body::Parquet(Box::new(ParquetBody::new(sink(file), columns, &path)?))
            }
        };
        Ok(Table {
            name,
            path,
            columns,
            rows: 0,
            body,
        })
    }

    pub fn format(&self) -> Format {
        match self.body {
            Body::Csv(_) => Format::Csv,
            Body::Spill(_) => Format::Spill,
            Body::Parquet(_) => Format::Parquet,
        }
    }

    pub fn columns(&self) -> &'static [Column] {
        self.columns
    }

    /// Appends one row.
    pub fn row(&mut self, cells: &[Out<'_>]) -> Result<(), WriteError> {
        let mut batch = Batch::new(self.columns, self.format());
        batch.row(cells);
        self.write(&batch.encode()?)
    }

    /// Appends an encoded batch.
    pub fn write(&mut self, encoded: &Encoded) -> Result<(), WriteError> {
        let path = &self.path;
        match (&mut self.body, encoded) {
            (Body::Csv(sink), Encoded::Csv(bytes, rows)) => {
                sink.write_all(bytes)
                    .map_err(|e| WriteError::io(path.display(), e))?;
                self.rows += rows;
            }
            (Body::Spill(spill), Encoded::Csv(bytes, rows)) => {
                spill
                    .write_all(bytes)
                    .map_err(|e| WriteError::io(path.display(), e))?;
                self.rows += rows;
            }
            (Body::Parquet(p), Encoded::Arrow(arrays, rows)) => {
                if arrays.len() != self.columns.len() {
                    return Err(io_err(path, "a batch of another table"));
                }
                p.pending.push(arrays.clone());
                p.pending_rows += *rows as usize;
                while p.pending_rows >= ROW_GROUP_ROWS {
                    p.flush(path, ROW_GROUP_ROWS)?;
                }
                self.rows += rows;
            }
            (Body::Parquet(_), Encoded::Csv(..))
            | (Body::Csv(_) | Body::Spill(_), Encoded::Arrow(..)) => {
                return Err(io_err(path, "a batch encoded for the other format"));
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<WrittenFile, WriteError> {
        let path = self.path;
        let sink = match self.body {
            Body::Csv(sink) => sink,
            Body::Spill(spill) => {
                crate::spill::finish(*spill).map_err(|e| WriteError::io(path.display(), e))?;
                return Ok(WrittenFile {
                    file: self.name,
                    rows: Some(self.rows),
                    sha256: String::new(),
                });
            }
            Body::Parquet(mut p) => {
                let rest = p.pending_rows;
                p.flush(&path, rest)?;
                p.writer.into_inner().map_err(|e| io_err(&path, e))?
            }
        };
        let Hashing { inner, hasher } = sink;
        // Synced with every other output when the staging folder is finished: its writeback was
        // started block by block as it was written, so by then little is left to wait for.
        inner
            .into_inner()
            .map_err(|e| WriteError::io(path.display(), e.into_error()))?;
        Ok(WrittenFile {
            file: self.name,
            rows: Some(self.rows),
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl ParquetBody {
    /// The file's writer with the table's schema: the Arrow fields of its columns, converted
    /// by the parquet crate (so the Parquet types are those Arrow readers expect), Snappy, and
    /// each column's dictionary and statistics as declared.
    fn new(sink: Sink, columns: &[Column], path: &Path) -> Result<ParquetBody, WriteError> {
        let schema: SchemaRef = Arc::new(Schema::new(
            columns.iter().map(Column::field).collect::<Vec<_>>(),
        ));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("incentives {}", env!("CARGO_PKG_VERSION")));
        for c in columns {
            let path = ColumnPath::from(c.name);
            props = props.set_column_dictionary_enabled(path.clone(), c.dictionary);
            if !c.statistics {
                props = props.set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
        let props = props.build();
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(&schema)
            .map_err(|e| io_err(path, e))?;
        let writer =
            SerializedFileWriter::new(sink, parquet_schema.root_schema_ptr(), props.into())
                .map_err(|e| io_err(path, e))?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
        Ok(ParquetBody {
            writer,
            factory,
            schema,
            pending: Vec::new(),
            pending_rows: 0,
            row_groups: 0,
        })
    }

    /// Writes the first `rows` pending rows as one row group. Each column chunk is encoded
    /// (statistics, dictionary, Snappy) by a writer of its own on every core, then the chunks
    /// are spliced into the file in column order: the bytes do not depend on the thread count.
    /// A row group is every [`ROW_GROUP_ROWS`] rows, each column given to its writer as one
    /// array (the writer cuts pages where its calls fall), so the bytes do not depend on how
    /// the rows came in batches either (a partitioned run merges them in other batches).
    fn flush(&mut self, path: &Path, rows: usize) -> Result<(), WriteError> {
        use rayon::prelude::*;
        if rows == 0 {
            return Ok(());
        }
        let err = |e| io_err(path, e);
        let batches = std::mem::take(&mut self.pending);
        let columns = batches.first().map_or(0, Vec::len);
        let mut group: Vec<ArrayRef> = Vec::with_capacity(columns);
        let mut rest: Vec<ArrayRef> = Vec::with_capacity(columns);
        for c in 0..columns {
            let parts: Vec<&dyn arrow_array::Array> = batches
                .iter()
                .filter_map(|b| b.get(c).map(|a| a.as_ref()))
                .collect();
            let whole = match parts.as_slice() {
                [one] => one.slice(0, one.len()),
                _ => arrow_select::concat::concat(&parts).map_err(|e| io_err(path, e))?,
            };
            group.push(whole.slice(0, rows));
            rest.push(whole.slice(rows, whole.len() - rows));
        }
        self.pending_rows -= rows;
        if self.pending_rows > 0 {
            self.pending.push(rest);
        }
        let batches = [group];
        let writers = self
            .factory
            .create_column_writers(self.row_groups)
            .map_err(err)?;
        let fields = self.schema.fields();
        let chunks = writers
            .into_par_iter()
            .zip(fields.par_iter())
            .enumerate()
            .map(|(c, (mut writer, field))| {
                for arrays in &batches {
                    if let Some(array) = arrays.get(c) {
                        for leaf in compute_leaves(field, array)? {
                            writer.write(&leaf)?;
                        }
                    }
                }
                writer.close()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut group = self.writer.next_row_group().map_err(err)?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group).map_err(err)?;
        }
        group.close().map_err(err)?;
        self.row_groups += 1;
        Ok(())
    }
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

    const FOUR: &[Column] = &[
        Column::text("a"),
        Column::text("b"),
        Column::text("c"),
        Column::text("d"),
    ];

    #[test]
    fn a_batch_neutralises_text_but_not_numbers_and_quotes_as_rfc_4180() {
        let mut b = Batch::new(FOUR, Format::Csv);
        b.row(&[
            Out::Text("-x"),
            Out::Number("-1.50"),
            Out::Text("a,\"b\""),
            Out::Text("two\nlines"),
        ]);
        b.row(&[Out::Text(""), Out::Null, Out::Text("P1"), Out::Text("x")]);
        assert_eq!(b.rows(), 2);
        let expected = "'-x,-1.50,\"a,\"\"b\"\"\",\"two\nlines\"\n,,P1,x\n";
        assert_eq!(String::from_utf8(b.csv_bytes().to_vec()).unwrap(), expected);
        // The same cells through the csv crate give the same bytes.
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(["'-x", "-1.50", "a,\"b\"", "two\nlines"])
            .unwrap();
        w.write_record(["", "", "P1", "x"]).unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner().unwrap()).unwrap(),
            expected
        );
    }

    #[test]
    fn amounts_are_exact_at_scale_8() {
        let d = |s: &str| crate::money::parse_decimal(s, 28).unwrap();
        // 12.30 → 1230000000 × 10^-8; -0.00000001 → -1 × 10^-8.
        assert_eq!(scaled(d("12.30")), Some(1_230_000_000));
        assert_eq!(scaled(d("-0.00000001")), Some(-1));
        assert_eq!(scaled(d("0.123456789")), None);
    }

    const TYPED: &[Column] = &[
        Column::amount("a"),
        Column::amount("b"),
        Column::amount("c"),
        Column::count("n"),
        Column::instant("t"),
        Column::date("d"),
        Column::amount("r"),
        Column::amount("e"),
    ];

    #[test]
    fn typed_cells_write_the_csv_text_of_their_value() {
        // An amount cell is what push_amount writes: 12.3 at scale 2 is 12.30, -0 is 0.00;
        // a count is its digits; an instant ISO 8601 UTC; a date YYYY-MM-DD; a raw cell its
        // text, neutralised; an empty cell nothing.
        let d = |s: &str| crate::money::parse_decimal(s, 28).unwrap();
        let t = crate::calendar::parse_instant("2026-11-01T00:05:00.25+08:00").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        let mut typed = Batch::new(TYPED, Format::Csv);
        typed.row(&[
            Out::Amount(d("12.3"), 2),
            Out::Amount(d("-0"), 2),
            Out::Amount(d("0.12345678"), 2),
            Out::Count(42),
            Out::Instant(t),
            Out::Date(day),
            Out::Raw("-1.5", Some(d("-1.5"))),
            Out::Null,
        ]);
        assert_eq!(
            typed.csv_bytes(),
            b"12.30,0.00,0.12345678,42,2026-10-31T16:05:00.250Z,2026-10-31,'-1.5,\n"
        );
    }

    #[test]
    fn parquet_takes_the_values_and_refuses_a_cell_of_another_type() {
        use arrow_array::{Array, Date32Array, Decimal128Array, TimestampMicrosecondArray};
        let d = |s: &str| crate::money::parse_decimal(s, 28).unwrap();
        let t = crate::calendar::parse_instant("2026-11-01T00:05:00.000001+08:00").unwrap();
        let day = NaiveDate::from_ymd_opt(1970, 1, 2).unwrap();
        let mut b = Batch::new(TYPED, Format::Parquet);
        b.row(&[
            Out::Amount(d("12.3"), 2),
            Out::Null,
            Out::Raw("x", None),
            Out::Count(42),
            Out::Instant(t),
            Out::Date(day),
            Out::Raw("-1.5", Some(d("-1.5"))),
            Out::Null,
        ]);
        let Ok(Encoded::Arrow(arrays, 1)) = b.encode() else {
            panic!("one row of arrays")
        };
        let a = arrays[0]
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!(a.value(0), 1_230_000_000);
        assert!(arrays[1].is_null(0) && arrays[2].is_null(0));
        let ts = arrays[4]
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), t.timestamp_micros());
        let dates = arrays[5].as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(dates.value(0), 1);

        // Text in an amount column, or a nanosecond, is a writer's mistake: an error, no panic.
        let mut b = Batch::new(TYPED, Format::Parquet);
        b.row(&[
            Out::Text("12.30"),
            Out::Null,
            Out::Null,
            Out::Null,
            Out::Null,
            Out::Null,
            Out::Null,
            Out::Null,
        ]);
        assert!(b.encode().is_err());
        let nano = crate::calendar::parse_instant("2026-10-31T16:05:00.000000001Z").unwrap();
        assert_eq!(micros(nano), None);
    }
}
