//! One output table, in CSV or Parquet, hashed as it is written.
//!
//! Writers fill [`Batch`]es of text cells (in parallel, a batch per partner or per slice of
//! rows), [`Batch::encode`] turns a batch into what the file takes (CSV bytes, or the batch
//! itself for Parquet), and [`Table::write`] appends it, in order, on one thread. So the cost of
//! formatting is spread over the cores while the file's order stays fixed.
//!
//! Both formats hold the same cells: text as the CSV shows it (formula-neutralised, below);
//! in Parquet, the amount columns are `DECIMAL(38, 8)` (every amount the engine reads or
//! writes has at most 8 places, so nothing is rounded), the row numbers `INT64`, and an empty
//! or non-decimal amount cell (a rejected line's raw payable) is null.

use super::WrittenFile;
use super::writeback::WritebackFile;
use crate::csv_field::push_csv_field;
use crate::error::RunError;
use bytes::Bytes;
use parquet::basic::Compression;
use parquet::column::writer::{ColumnCloseResult, get_column_writer, get_typed_column_writer};
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int64Type,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV, UTF-8, `\n`-terminated.
    #[default]
    Csv,
    /// Apache Parquet, Snappy-compressed, amounts as exact decimals.
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// One output cell. Text is neutralised against formula injection; numbers are written as given.
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    Text(&'a str),
    Number(&'a str),
    /// An amount, written as [`crate::money::write_amount`] writes it with this minimum scale;
    /// Parquet takes the value itself, never its text.
    Amount(Decimal, u32),
    /// A count or a row number.
    Count(u64),
}

/// A Parquet cell's value when it was given as a number rather than as text.
#[derive(Debug, Clone, Copy)]
enum Typed {
    Text,
    Amount(Decimal, u32),
    Count(u64),
}

impl Typed {
    /// The cell's text as CSV would hold it (for a typed cell in a text column).
    fn text(self) -> Option<String> {
        match self {
            Typed::Text => None,
            Typed::Amount(d, scale) => Some(crate::money::format_amount(d, scale)),
            Typed::Count(n) => Some(n.to_string()),
        }
    }
}

/// A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
/// first) gets a leading `'` (OWASP CSV injection guidance); anything else is written unaltered.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// Rows of cells without an allocation per cell: for CSV the rows in one buffer as the file
/// will hold them (quoted where RFC 4180 needs it); for Parquet each column's cells side by
/// side, as its column chunk reads them.
#[derive(Debug, Clone)]
pub struct Batch {
    format: Format,
    /// CSV: the rows' bytes.
    text: String,
    /// Parquet: the cells, column by column.
    columns: Vec<Cells>,
    rows: usize,
    width: usize,
}

/// One column of a Parquet batch.
#[derive(Debug, Clone, Default)]
struct Cells {
    /// The text cells' text, one after the other.
    text: String,
    /// Where each cell's text ends.
    ends: Vec<usize>,
    /// Empty while every cell is text; then one per cell.
    typed: Vec<Typed>,
}

impl Cells {
    fn push(&mut self, typed: Typed) {
        self.ends.push(self.text.len());
        if self.typed.is_empty() && matches!(typed, Typed::Text) {
            return;
        }
        self.typed.resize(self.ends.len() - 1, Typed::Text);
        self.typed.push(typed);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where cell `r`'s text sits in `text`.
    fn range(&self, r: usize) -> Range<usize> {
        let start = match r {
            0 => 0,
            _ => self.ends.get(r - 1).copied().unwrap_or(0),
        };
        start..self.ends.get(r).copied().unwrap_or(start)
    }

    /// Cell `r`: its value when given as a number, else its text.
    fn cell(&self, r: usize) -> (Typed, &str) {
        let typed = self.typed.get(r).copied().unwrap_or(Typed::Text);
        (typed, &self.text[self.range(r)])
    }
}

impl Batch {
    pub fn new(width: usize, format: Format) -> Batch {
        let columns = match format {
            Format::Csv => Vec::new(),
            Format::Parquet => vec![Cells::default(); width],
        };
        Batch {
            format,
            text: String::new(),
            columns,
            rows: 0,
            width,
        }
    }

    /// Appends one row (exactly `width` cells).
    pub fn row(&mut self, cells: &[Out<'_>]) {
        debug_assert_eq!(cells.len(), self.width);
        for (c, cell) in cells.iter().enumerate() {
            match self.format {
                Format::Csv => {
                    if c > 0 {
                        self.text.push(',');
                    }
                    match *cell {
                        Out::Text(t) => push_csv_field(&mut self.text, &neutralise(t)),
                        Out::Number(n) => push_csv_field(&mut self.text, n),
                        // Digits, sign and point: never quoted.
                        Out::Amount(d, scale) => {
                            crate::money::push_amount(&mut self.text, d, scale)
                        }
                        Out::Count(n) => self.text.push_str(itoa::Buffer::new().format(n)),
                    }
                }
                Format::Parquet => {
                    let Some(column) = self.columns.get_mut(c) else {
                        continue;
                    };
                    let typed = match *cell {
                        Out::Text(t) => {
                            column.text.push_str(&neutralise(t));
                            Typed::Text
                        }
                        Out::Number(n) => {
                            column.text.push_str(n);
                            Typed::Text
                        }
                        Out::Amount(d, scale) => Typed::Amount(d, scale),
                        Out::Count(n) => Typed::Count(n),
                    };
                    column.push(typed);
                }
            }
        }
        if self.format == Format::Csv {
            self.text.push('\n');
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
    pub fn encode(self) -> Encoded {
        match self.format {
            Format::Csv => Encoded::Csv(self.text.into_bytes(), self.rows as u64),
            Format::Parquet => Encoded::Rows(Arc::new(self)),
        }
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
    width: usize,
    fill: impl Fn(&[T], &mut Batch) + Sync,
) -> Result<(), RunError> {
    use rayon::prelude::*;
    let format = table.format();
    let window = SLICE_ROWS * 2 * rayon::current_num_threads().max(1);
    for part in items.chunks(window) {
        let encoded: Vec<Encoded> = part
            .par_chunks(SLICE_ROWS)
            .map(|slice| {
                let mut batch = Batch::new(width, format);
                fill(slice, &mut batch);
                batch.encode()
            })
            .collect();
        for e in encoded {
            table.write(&e)?;
        }
    }
    Ok(())
}

/// A batch ready for its file.
pub enum Encoded {
    Csv(Vec<u8>, u64),
    /// Shared, so a batch written to two files (journal and statement) is not copied.
    Rows(Arc<Batch>),
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
    rows: u64,
    body: Body,
}

enum Body {
    Csv(Sink),
    Parquet(Box<ParquetBody>),
}

struct ParquetBody {
    writer: SerializedFileWriter<Sink>,
    types: Vec<ColumnType>,
    /// Batches not yet in a row group.
    pending: Vec<Arc<Batch>>,
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1 << 16;

/// Parquet's type of a column, by its name (the names are the contract, SPEC Appendix B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Text,
    Decimal,
    Integer,
}

/// Every decimal place an output amount can have: inputs have at most 8, computed amounts are
/// rounded to a currency scale, rates are checked to 8 places.
pub const PARQUET_SCALE: u32 = 8;

fn column_type(name: &str) -> ColumnType {
    match name {
        "row" | "source_row" | "rejected_lines" => ColumnType::Integer,
        "base"
        | "rate"
        | "amount"
        | "payable_amount"
        | "incentive"
        | "consumption"
        | "refunds"
        | "eligible_base"
        | "non_base"
        | "excluded"
        | "deferred_out_base"
        | "deferred_out_non_base"
        | "deferred_out_incentive"
        | "clawback_base"
        | "refund_not_earned"
        | "earned_now"
        | "carried_in"
        | "clawed_back"
        | "tier"
        | "cap"
        | "override"
        | "voucher_balance_after"
        | "opening"
        | "deducted"
        | "expired"
        | "closing"
        | "balance"
        | "annual_new_resource_amount" => ColumnType::Decimal,
        _ => ColumnType::Text,
    }
}

/// Columns whose every row holds a value of its own (ids, explanation paragraphs).
fn distinct_per_row(name: &str) -> bool {
    matches!(name, "entry_id" | "line_id" | "order_id" | "explanation")
}

/// Whether a column's values repeat enough for dictionary encoding. Values distinct per row and
/// amounts (a 16-byte value hashed per cell, rarely repeated) are written plain: the
/// dictionary cost more to build than it saved in bytes. Rates repeat (one per rule).
fn dictionary_pays(name: &str) -> bool {
    match name {
        "rate" => true,
        _ => !distinct_per_row(name) && column_type(name) != ColumnType::Decimal,
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Io(format!("{}: {e}", path.display()))
}

impl Table {
    /// Creates `dir/<name>.<ext>` (`name` may hold one folder level, e.g. `ledgers/P1`) and
    /// writes the header (CSV) or the schema (Parquet).
    pub(super) fn create(
        dir: &Path,
        name: &str,
        columns: &[&str],
        format: Format,
    ) -> Result<Table, RunError> {
        let name = format!("{name}.{}", format.extension());
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RunError::io(parent.display(), e))?;
        }
        let file = File::create(&path).map_err(|e| RunError::io(path.display(), e))?;
        let mut sink = Hashing {
            inner: BufWriter::with_capacity(1 << 20, WritebackFile::new(file)),
            hasher: Sha256::new(),
        };
        let body = match format {
            Format::Csv => {
                let mut header = Batch::new(columns.len(), Format::Csv);
                header.row(&columns.iter().map(|c| Out::Number(c)).collect::<Vec<_>>());
                sink.write_all(header.csv_bytes())
                    .map_err(|e| RunError::io(path.display(), e))?;
                Body::Csv(sink)
            }
            Format::Parquet => {
                let types: Vec<ColumnType> = columns.iter().map(|c| column_type(c)).collect();
                let fields: Vec<String> = columns
                    .iter()
                    .zip(&types)
                    .map(|(c, t)| match t {
                        ColumnType::Text => format!("REQUIRED BYTE_ARRAY {c} (UTF8);"),
                        ColumnType::Integer => format!("OPTIONAL INT64 {c};"),
                        ColumnType::Decimal => format!(
                            "OPTIONAL FIXED_LEN_BYTE_ARRAY (16) {c} (DECIMAL(38,{PARQUET_SCALE}));"
                        ),
                    })
                    .collect();
                let message = format!("message row {{ {} }}", fields.join(" "));
                let schema = parquet::schema::parser::parse_message_type(&message)
                    .map_err(|e| io_err(&path, e))?;
                let mut props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_created_by(format!("incentives {}", env!("CARGO_PKG_VERSION")));
                for c in columns.iter().filter(|c| !dictionary_pays(c)) {
                    props = props.set_column_dictionary_enabled(ColumnPath::from(*c), false);
                }
                // Min and max of values distinct per row prune nothing (row groups follow
                // partners, not ids) and cost a comparison per cell.
                for c in columns.iter().filter(|c| distinct_per_row(c)) {
                    props = props.set_column_statistics_enabled(
                        ColumnPath::from(*c),
                        EnabledStatistics::None,
                    );
                }
                let props = props.build();
                let writer = SerializedFileWriter::new(sink, Arc::new(schema), Arc::new(props))
                    .map_err(|e| io_err(&path, e))?;
                Body::Parquet(Box::new(ParquetBody {
                    writer,
                    types,
                    pending: Vec::new(),
                }))
            }
        };
        Ok(Table {
            name,
            path,
            rows: 0,
            body,
        })
    }

    pub fn format(&self) -> Format {
        match self.body {
            Body::Csv(_) => Format::Csv,
            Body::Parquet(_) => Format::Parquet,
        }
    }

    /// Appends one row.
    pub fn row(&mut self, cells: &[Out<'_>]) -> Result<(), RunError> {
        let mut batch = Batch::new(cells.len(), self.format());
        batch.row(cells);
        self.write(&batch.encode())
    }

    /// Appends an encoded batch.
    pub fn write(&mut self, encoded: &Encoded) -> Result<(), RunError> {
        let path = &self.path;
        match (&mut self.body, encoded) {
            (Body::Csv(sink), Encoded::Csv(bytes, rows)) => {
                sink.write_all(bytes)
                    .map_err(|e| RunError::io(path.display(), e))?;
                self.rows += rows;
            }
            (Body::Parquet(p), Encoded::Rows(batch)) => {
                p.pending.push(Arc::clone(batch));
                if p.pending_rows() >= ROW_GROUP_ROWS {
                    p.flush(path)?;
                }
                self.rows += batch.rows as u64;
            }
            (Body::Parquet(_), Encoded::Csv(..)) | (Body::Csv(_), Encoded::Rows(_)) => {
                return Err(RunError::Io(format!(
                    "{}: a batch encoded for the other format",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<WrittenFile, RunError> {
        let path = self.path;
        let sink = match self.body {
            Body::Csv(sink) => sink,
            Body::Parquet(mut p) => {
                p.flush(&path)?;
                p.writer.into_inner().map_err(|e| io_err(&path, e))?
            }
        };
        let Hashing { inner, hasher } = sink;
        // Synced with every other output when the staging folder is finished: its writeback was
        // started block by block as it was written, so by then little is left to wait for.
        inner
            .into_inner()
            .map_err(|e| RunError::io(path.display(), e.into_error()))?;
        Ok(WrittenFile {
            file: self.name,
            rows: Some(self.rows),
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl ParquetBody {
    fn pending_rows(&self) -> usize {
        self.pending.iter().map(|b| b.rows).sum()
    }

    /// Writes the pending rows as one row group. Each column chunk is encoded (statistics,
    /// dictionary, Snappy) into a buffer of its own on every core, then the chunks are spliced
    /// into the file in column order: the bytes are those a column-by-column writer makes.
    fn flush(&mut self, path: &Path) -> Result<(), RunError> {
        use rayon::prelude::*;
        let rows = self.pending_rows();
        let batches = std::mem::take(&mut self.pending);
        if rows == 0 {
            return Ok(());
        }
        let err = |e| io_err(path, e);
        let descr = self.writer.schema_descr();
        let columns: Vec<ColumnDescPtr> = (0..self.types.len()).map(|c| descr.column(c)).collect();
        let props = self.writer.properties().clone();
        let chunks = columns
            .into_par_iter()
            .zip(self.types.par_iter())
            .enumerate()
            .map(|(c, (column, ty))| encode_column(&batches, rows, c, *ty, column, props.clone()))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| io_err(path, e))?;
        let mut group = self.writer.next_row_group().map_err(err)?;
        for (bytes, close) in chunks {
            group.append_column(&bytes, close).map_err(err)?;
        }
        group.close().map_err(err)?;
        Ok(())
    }
}

/// A batch column's text as the owner of a `Bytes` buffer: text cells reach the writer as
/// slices of it rather than a copy each (measured at 10M: 8-10 s of the write phase).
struct SharedText(Arc<Batch>, usize);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0
            .columns
            .get(self.1)
            .map_or(&[], |c| c.text.as_bytes())
    }
}

/// Encodes column `c` of `batches` (`rows` rows in all) as one column chunk in a buffer of its
/// own.
fn encode_column(
    batches: &[Arc<Batch>],
    rows: usize,
    c: usize,
    ty: ColumnType,
    column: ColumnDescPtr,
    props: WriterPropertiesPtr,
) -> Result<(Bytes, ColumnCloseResult), String> {
    let columns = || batches.iter().filter_map(|b| b.columns.get(c));
    let cells = || columns().flat_map(|col| (0..col.len()).map(move |r| col.cell(r)));
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let writer = get_column_writer(
            column,
            props,
            Box::new(SerializedPageWriter::new(&mut sink)),
        );
        let e = |e: parquet::errors::ParquetError| e.to_string();
        match ty {
            ColumnType::Text => {
                let mut values: Vec<ByteArray> = Vec::with_capacity(rows);
                for batch in batches {
                    let Some(col) = batch.columns.get(c) else {
                        continue;
                    };
                    let text = Bytes::from_owner(SharedText(Arc::clone(batch), c));
                    for r in 0..col.len() {
                        values.push(match col.cell(r).0.text() {
                            None => ByteArray::from(text.slice(col.range(r))),
                            Some(owned) => ByteArray::from(owned.into_bytes()),
                        });
                    }
                }
                let mut w = get_typed_column_writer::<ByteArrayType>(writer);
                w.write_batch(&values, None, None).map_err(e)?;
                w.close().map_err(e)?
            }
            ColumnType::Integer => {
                let mut values = Vec::with_capacity(rows);
                let mut defined = Vec::with_capacity(rows);
                for (typed, s) in cells() {
                    let value = match typed {
                        Typed::Count(n) => i64::try_from(n).ok(),
                        Typed::Text => s.parse::<i64>().ok(),
                        Typed::Amount(..) => typed.text().and_then(|t| t.parse::<i64>().ok()),
                    };
                    match value {
                        Some(v) => {
                            values.push(v);
                            defined.push(1);
                        }
                        None => defined.push(0),
                    }
                }
                let mut w = get_typed_column_writer::<Int64Type>(writer);
                w.write_batch(&values, Some(&defined), None).map_err(e)?;
                w.close().map_err(e)?
            }
            ColumnType::Decimal => {
                let mut values = Vec::with_capacity(rows);
                let mut defined = Vec::with_capacity(rows);
                for (typed, s) in cells() {
                    let value = match typed {
                        Typed::Amount(d, _) => Some(d),
                        Typed::Count(n) => Some(Decimal::from(n)),
                        Typed::Text => crate::money::parse_decimal(s, 28).ok(),
                    };
                    match value.map(|v| (v, scaled(v))) {
                        Some((_, Some(bytes))) => {
                            values.push(FixedLenByteArray::from(bytes.to_vec()));
                            defined.push(1);
                        }
                        Some((v, None)) => {
                            return Err(format!(
                                "{v} has more than {PARQUET_SCALE} decimal places for a Parquet amount"
                            ));
                        }
                        None => defined.push(0),
                    }
                }
                let mut w = get_typed_column_writer::<FixedLenByteArrayType>(writer);
                w.write_batch(&values, Some(&defined), None).map_err(e)?;
                w.close().map_err(e)?
            }
        }
    };
    let bytes = sink.into_inner().map_err(|e| e.to_string())?;
    Ok((Bytes::from(bytes), close))
}

/// An amount as the 16 big-endian bytes of its value × 10^8; None when it has more than 8
/// places. An empty or non-decimal text cell (a rejected line's raw amount) is null instead.
fn scaled(value: Decimal) -> Option<[u8; 16]> {
    let scale = value.scale();
    if scale > PARQUET_SCALE {
        return None;
    }
    let mantissa = value.mantissa() * 10i128.pow(PARQUET_SCALE - scale);
    Some(mantissa.to_be_bytes())
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

    #[test]
    fn a_batch_neutralises_text_but_not_numbers_and_quotes_as_rfc_4180() {
        let mut b = Batch::new(4, Format::Csv);
        b.row(&[
            Out::Text("-x"),
            Out::Number("-1.50"),
            Out::Text("a,\"b\""),
            Out::Text("two\nlines"),
        ]);
        b.row(&[
            Out::Text(""),
            Out::Number(""),
            Out::Text("P1"),
            Out::Text("x"),
        ]);
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
        assert_eq!(scaled(d("12.30")), Some(1_230_000_000i128.to_be_bytes()));
        assert_eq!(scaled(d("-0.00000001")), Some((-1i128).to_be_bytes()));
        assert_eq!(scaled(d("0.123456789")), None);
    }

    #[test]
    fn typed_cells_write_the_csv_text_of_their_value() {
        // An amount cell is what write_amount writes: 12.3 at scale 2 is 12.30, -0 is 0.00;
        // a count is its digits.
        let d = |s: &str| crate::money::parse_decimal(s, 28).unwrap();
        let mut typed = Batch::new(4, Format::Csv);
        typed.row(&[
            Out::Amount(d("12.3"), 2),
            Out::Amount(d("-0"), 2),
            Out::Amount(d("0.12345678"), 2),
            Out::Count(42),
        ]);
        assert_eq!(typed.csv_bytes(), b"12.30,0.00,0.12345678,42\n");
    }
}
