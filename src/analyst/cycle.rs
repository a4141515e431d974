//! A published cycle (`OUT/<cycle>`) read through polars: lazy scans of its tables, CSV or
//! Parquet alike, each with a declared schema (amounts `Decimal(38, 8)`, counts `Int64`, text
//! as text), so no amount ever passes through a float and a question reads only the columns
//! and rows it names. The tools beside the run (`explain`, `report`, `query`, `whatif`) read
//! the cycle only through this module.

use crate::calendar::Cycle;
use crate::error::RunError;
use polars::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every decimal place a published amount can have (SPEC Appendix B: at most 8).
pub const SCALE: usize = 8;
/// Digits of a published amount: `DECIMAL(38, 8)`, as the Parquet outputs declare it.
pub const PRECISION: usize = 38;

/// The tables of a published cycle, by the names `query` knows them by.
pub fn tables() -> impl Iterator<Item = &'static str> {
    crate::write::PUBLISHED_TABLES.iter().map(|(name, _)| *name)
}

/// The columns the writer declares of type `ty` in any table (names mean the same in every
/// table): amounts are read as exact decimals, counts as `Int64`, the rest as text.
fn declared(ty: crate::write::ColumnType) -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = crate::write::PUBLISHED_TABLES
        .iter()
        .flat_map(|(_, columns)| columns.iter())
        .filter(|c| c.ty == ty)
        .map(|c| c.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// The decimal type every amount is read as.
pub fn amount_type() -> DataType {
    DataType::Decimal(PRECISION, SCALE)
}

/// How a cycle was published: the writer's own formats.
pub use crate::write::Format;

/// A published cycle folder, its format, and the places each currency's computed amounts are
/// written with (from the manifest's totals, written at the currency's scale).
#[derive(Debug, Clone)]
pub struct PublishedCycle {
    pub dir: PathBuf,
    pub cycle: Cycle,
    pub format: Format,
    scales: BTreeMap<String, u32>,
}

/// A polars error as this crate's: a question the cycle cannot answer is an I/O-class failure
/// (exit 1) naming the folder.
pub fn polars_error(dir: &Path, e: PolarsError) -> RunError {
    RunError::Io(format!(
        "{}: {}",
        dir.display(),
        without_advice(&e.to_string())
    ))
}

/// A polars message without the advice meant for its Python users (`infer_schema_length`,
/// `ignore_errors` …): what is wrong, and where.
fn without_advice(message: &str) -> String {
    match message.split_once("\n\nYou might want to try:") {
        None => message.trim_end().to_string(),
        Some((what, rest)) => {
            let original = rest
                .split_once("Original error:")
                .map(|(_, o)| format!(" ({})", o.trim().trim_matches('`').trim()))
                .unwrap_or_default();
            format!("{}{original}", what.trim_end().replace("\n\n", "; "))
        }
    }
}

impl PublishedCycle {
    /// The cycle published as `OUT/<cycle>`: CSV if `ledger.csv` is there, Parquet if
    /// `ledger.parquet` is; exit 2 naming the folder otherwise.
    pub fn open(out: &Path, cycle: Cycle) -> Result<PublishedCycle, RunError> {
        let dir = out.join(cycle.to_string());
        let format = if dir.join("ledger.csv").is_file() {
            Format::Csv
        } else if dir.join("ledger.parquet").is_file() {
            Format::Parquet
        } else {
            return Err(RunError::Usage(format!(
                "{}: no published cycle {cycle} here (neither ledger.csv nor ledger.parquet): pass --out with the folder the cycle was run with",
                dir.display()
            )));
        };
        let scales = manifest_scales(&dir.join("manifest.json"));
        Ok(PublishedCycle {
            dir,
            cycle,
            format,
            scales,
        })
    }

    /// The places `currency`'s computed amounts are written with (2 when the manifest does not
    /// say).
    pub fn scale(&self, currency: &str) -> u32 {
        self.scales.get(currency).copied().unwrap_or(2)
    }

    /// The file of `table` in this cycle.
    pub fn path(&self, table: &str) -> PathBuf {
        self.dir
            .join(format!("{table}.{}", self.format.extension()))
    }

    /// A lazy scan of `table` with its declared schema.
    pub fn scan(&self, table: &str) -> Result<LazyFrame, RunError> {
        let path = self.path(table);
        if !path.is_file() {
            return Err(RunError::Usage(format!(
                "{}: missing from the published cycle (is this a published cycle folder?)",
                path.display()
            )));
        }
        check_table(&path, self.format)?;
        self.scan_path(&path, false)
    }

    /// A lazy scan of every partner statement (`ledgers/*`): the journal's rows and the rows
    /// of earlier runs credited to this cycle. `None` when the cycle has none.
    pub fn scan_statements(&self) -> Result<Option<LazyFrame>, RunError> {
        let folder = self.dir.join("ledgers");
        let any = std::fs::read_dir(&folder)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if !any {
            return Ok(None);
        }
        let ext = self.format.extension();
        let entries = std::fs::read_dir(&folder).map_err(|e| RunError::io(folder.display(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| RunError::io(folder.display(), e))?.path();
            if path.extension().is_some_and(|e| e == ext) {
                check_table(&path, self.format)?;
            }
        }
        let pattern = folder.join(format!("*.{ext}"));
        self.scan_path(&pattern, true).map(Some)
    }

    fn scan_path(&self, path: &Path, glob: bool) -> Result<LazyFrame, RunError> {
        let err = |e| polars_error(path, e);
        let pl_path = PlRefPath::try_from_path(path).map_err(err)?;
        match self.format {
            Format::Csv | Format::Spill => {
                // Every column as text but the declared ones: nothing is inferred.
                use crate::write::ColumnType;
                let declared: Schema = declared(ColumnType::Amount)
                    .map(|c| Field::new(c.into(), amount_type()))
                    .chain(
                        declared(ColumnType::Count).map(|c| Field::new(c.into(), DataType::Int64)),
                    )
                    .collect();
                LazyCsvReader::new(pl_path)
                    .with_has_header(true)
                    .with_glob(glob)
                    .with_infer_schema_length(Some(0))
                    .with_dtype_overwrite(Some(Arc::new(declared)))
                    .finish()
                    .map_err(err)
            }
            Format::Parquet => {
                let args = ScanArgsParquet {
                    glob,
                    ..Default::default()
                };
                let mut lf = LazyFrame::scan_parquet(pl_path, args).map_err(err)?;
                // Through polars' own schema, then the declared types: amounts exact decimals
                // whether a file holds them as DECIMAL or as text, counts Int64.
                let schema = lf.collect_schema().map_err(err)?;
                let amounts: Vec<&str> = declared(crate::write::ColumnType::Amount).collect();
                let counts: Vec<&str> = declared(crate::write::ColumnType::Count).collect();
                let casts: Vec<Expr> = schema
                    .iter_names()
                    .filter_map(|name| {
                        let n = name.as_str();
                        if amounts.contains(&n) {
                            Some(col(n).cast(amount_type()))
                        } else if counts.contains(&n) {
                            Some(col(n).cast(DataType::Int64))
                        } else {
                            None
                        }
                    })
                    .collect();
                if !casts.is_empty() {
                    lf = lf.with_columns(casts);
                }
                Ok(lf)
            }
        }
    }

    /// The rows of `table` that `filter` keeps, only `columns`, where every kept row holds the
    /// id `key` in one of its cells (the filter names it). On a CSV cycle the records holding
    /// `key` are picked from the file first ([`pick_records`]: a byte search, never a parse of
    /// every record) into a temporary file, scanned with the declared schema: a partner's or a
    /// line's rows of a 1.1 GB `line_outcomes.csv` are found without polars tokenizing all of
    /// it. The filter decides as on the whole file; Parquet is scanned as it is (row-group
    /// statistics skip what they can).
    pub fn rows_holding(
        &self,
        table: &str,
        key: &str,
        filter: Expr,
        columns: &[&str],
    ) -> Result<DataFrame, RunError> {
        let select = |lf: LazyFrame| {
            lf.filter(filter)
                .select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())
        };
        let pickable = !key.is_empty() && !key.contains(['"', ',', '\n', '\r']);
        if self.format != Format::Csv || !pickable {
            return self.collect(select(self.scan(table)?));
        }
        let path = self.path(table);
        if !path.is_file() {
            return self.collect(select(self.scan(table)?));
        }
        check_table(&path, self.format)?;
        // The picked records go to a temporary file; where that cannot be written (a full or
        // small temporary folder), the question reads the whole table as polars scans it.
        let picked = tempfile::Builder::new()
            .prefix(".incentives-picked-")
            .suffix(".csv")
            .tempfile()
            .and_then(|mut picked| {
                let mut out = std::io::BufWriter::new(picked.as_file_mut());
                pick_records(&path, key.as_bytes(), &mut out)?;
                std::io::Write::flush(&mut out)?;
                drop(out);
                Ok(picked)
            });
        let Ok(picked) = picked else {
            return self.collect(select(self.scan(table)?));
        };
        let lf = self.scan_path(picked.path(), false)?;
        // A failure names the table, not the temporary file it was picked into.
        let shown = picked.path().display().to_string();
        self.collect(select(lf)).map_err(|e| match e {
            RunError::Io(m) => RunError::Io(m.replace(&shown, &path.display().to_string())),
            other => other,
        })
    }

    /// Runs a question on the streaming engine (memory bounded by the batches it holds).
    pub fn collect(&self, lf: LazyFrame) -> Result<DataFrame, RunError> {
        collect(&self.dir, lf)
    }
}

/// Runs `lf` on polars' streaming engine.
pub fn collect(dir: &Path, lf: LazyFrame) -> Result<DataFrame, RunError> {
    lf.collect_with_engine(Engine::Streaming)
        .map(|r| r.unwrap_single())
        .map_err(|e| polars_error(dir, e))
}

/// `{"CNY": 2, ...}` from the manifest's totals of computed amounts (written at the currency's
/// scale); empty if the manifest cannot be read.
fn manifest_scales(path: &Path) -> BTreeMap<String, u32> {
    let mut scales = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return scales;
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return scales;
    };
    let places = |s: &str| s.split_once('.').map_or(0, |(_, f)| f.len() as u32);
    if let Some(map) = doc
        .pointer("/output_totals/explained_incentive")
        .and_then(|v| v.as_object())
    {
        for (currency, total) in map {
            if let Some(s) = total.as_str() {
                scales.insert(currency.clone(), places(s));
            }
        }
    }
    if let Some(map) = doc
        .pointer("/output_totals/ledger")
        .and_then(|v| v.as_object())
    {
        for (currency, kinds) in map {
            if let Some(s) = kinds
                .as_object()
                .and_then(|k| k.values().next())
                .and_then(|v| v.as_str())
            {
                scales.entry(currency.clone()).or_insert_with(|| places(s));
            }
        }
    }
    scales
}

/// A published table must be one: not empty, and in Parquet begin with its magic bytes. What
/// is not is named with the fix (exit 2), before polars reads it.
fn check_table(path: &Path, format: Format) -> Result<(), RunError> {
    use std::io::Read as _;
    let shown = path.display();
    let not_one = |what: &str| {
        RunError::Usage(format!(
            "{shown}: {what}, not a table incentives published: re-run the cycle to publish it again"
        ))
    };
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(4).read(&mut head))
        .map_err(|e| RunError::io(&shown, e))?;
    match (read, format) {
        (0, _) => Err(not_one("is empty (0 bytes)")),
        (_, Format::Parquet) if head != *b"PAR1" => Err(not_one("is not a Parquet file")),
        _ => Ok(()),
    }
}

/// A column of text cells (empty for nulls), control characters escaped for a terminal;
/// amounts as the published tables write them (exact, padded to 2 places).
pub fn texts(df: &DataFrame, name: &str) -> Result<Vec<String>, RunError> {
    let column = df
        .column(name)
        .map_err(|e| RunError::Io(format!("column {name}: {e}")))?;
    if matches!(column.dtype(), DataType::Decimal(_, _)) {
        // As the published tables write an amount: exact, at least 2 places.
        return Ok(decimals(df, name)?
            .into_iter()
            .map(|d| crate::money::format_amount(d, 2))
            .collect());
    }
    if let DataType::Datetime(unit, _) = column.dtype() {
        // As the published tables write an instant: ISO 8601 UTC (`2026-10-06T02:00:00Z`).
        let unit = *unit;
        let fail = |e: PolarsError| RunError::Io(format!("column {name}: {e}"));
        let physical = column.cast(&DataType::Int64).map_err(fail)?;
        return Ok(physical
            .i64()
            .map_err(fail)?
            .iter()
            .map(|v| v.and_then(|v| instant(v, unit)).unwrap_or_default())
            .collect());
    }
    let column = column
        .cast(&DataType::String)
        .map_err(|e| RunError::Io(format!("column {name}: {e}")))?;
    let strings = column
        .str()
        .map_err(|e| RunError::Io(format!("column {name}: {e}")))?;
    Ok(strings
        .iter()
        .map(|v| crate::error::printable(v.unwrap_or("")).into_owned())
        .collect())
}

/// A polars instant (`unit`s since the epoch, UTC) as the published CSV writes it.
fn instant(value: i64, unit: TimeUnit) -> Option<String> {
    let t = match unit {
        TimeUnit::Nanoseconds => Some(chrono::DateTime::from_timestamp_nanos(value)),
        TimeUnit::Microseconds => chrono::DateTime::from_timestamp_micros(value),
        TimeUnit::Milliseconds => chrono::DateTime::from_timestamp_millis(value),
    }?;
    Some(crate::calendar::format_instant(t))
}

/// A column of exact amounts (zero for nulls).
pub fn decimals(df: &DataFrame, name: &str) -> Result<Vec<Decimal>, RunError> {
    let fail = |e: PolarsError| RunError::Io(format!("column {name}: {e}"));
    let column = df.column(name).map_err(fail)?;
    let column = column.cast(&amount_type()).map_err(fail)?;
    let ca = column.decimal().map_err(fail)?;
    let scale = ca.scale() as u32;
    ca.physical()
        .iter()
        .map(|v| to_decimal(v.unwrap_or(0), scale))
        .collect()
}

/// A polars decimal (mantissa and scale) as an exact `Decimal`, trailing zeros dropped.
pub fn to_decimal(mantissa: i128, scale: u32) -> Result<Decimal, RunError> {
    Decimal::try_from_i128_with_scale(mantissa, scale)
        .map(|d| d.normalize())
        .map_err(|e| RunError::Io(format!("an amount out of range: {e}")))
}

/// The folder a file given by `flag` is written into: it must exist and be a folder (exit 2
/// naming it otherwise).
pub fn folder_of<'p>(file: &'p Path, flag: &str) -> Result<&'p Path, RunError> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(RunError::Usage(format!(
            "{}: no such folder for {flag} {}: create it or pass a file in a folder that exists",
            folder.display(),
            file.display()
        )));
    }
    Ok(folder)
}

/// `sum += amount`, or an error if the sum leaves `Decimal`'s range (a hand-edited table must
/// not end in a panic).
pub fn add(sum: &mut Decimal, amount: Decimal) -> Result<(), RunError> {
    *sum = sum
        .checked_add(amount)
        .ok_or_else(|| RunError::Io(format!("a sum of amounts out of range ({sum} + {amount})")))?;
    Ok(())
}

/// A column of counts (zero for nulls).
pub fn counts(df: &DataFrame, name: &str) -> Result<Vec<i64>, RunError> {
    let fail = |e: PolarsError| RunError::Io(format!("column {name}: {e}"));
    let column = df.column(name).map_err(fail)?;
    let column = column.cast(&DataType::Int64).map_err(fail)?;
    Ok(column
        .i64()
        .map_err(fail)?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// `col == value` for a text column.
pub fn is(name: &str, value: &str) -> Expr {
    col(name).eq(lit(value))
}

/// `col` is one of `values` (an OR of equalities: the sets asked here are small).
pub fn is_one_of(name: &str, values: &[String]) -> Expr {
    values
        .iter()
        .map(|v| col(name).eq(lit(v.as_str())))
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false))
}

/// SPEC §6's "credited to this cycle", the one definition every reader shares: the rows of
/// kinds earn, clawback, tier, cap and override whose `credit_cycle` is the cycle, this run's
/// and those an earlier run created and credited now (the partner statements hold both).
/// Subsidies, withdrawals and expiry move balances and stay outside it.
pub fn credited_to(cycle: Cycle) -> Expr {
    is("credit_cycle", &cycle.to_string()).and(is_one_of(
        "kind",
        &["earn", "clawback", "tier", "cap", "override"].map(String::from),
    ))
}

/// Copies to `out` the header and every record of the CSV file `path` that holds the bytes
/// `key`, in file order. Record ends are found as RFC 4180 has them (a line break inside quotes
/// is inside the record), so a record is copied whole or not at all; which records hold `key`
/// is a byte search over each block. Every record whose cell equals `key` is among those copied
/// (a cell is written unquoted unless it holds a quote, comma or line break, which `key` never
/// does: the caller checks); records that hold it elsewhere are left for the caller's filter.
pub fn pick_records(path: &Path, key: &[u8], out: &mut impl std::io::Write) -> std::io::Result<()> {
    pick_records_in_blocks(path, key, out, 8 << 20)
}

fn pick_records_in_blocks(
    path: &Path,
    key: &[u8],
    out: &mut impl std::io::Write,
    block: usize,
) -> std::io::Result<()> {
    use std::io::Read;
    let finder = memchr::memmem::Finder::new(key);
    let mut file = std::fs::File::open(path)?;
    let mut data: Vec<u8> = Vec::with_capacity(2 * block);
    // `data[..scanned]` has been searched for record ends; `quoted`: inside quotes there.
    let (mut scanned, mut quoted, mut header, mut eof) = (0, false, true, false);
    let mut ends: Vec<usize> = Vec::new();
    while !eof {
        let old = data.len();
        data.resize(old + block, 0);
        let n = file.read(&mut data[old..])?;
        data.truncate(old + n);
        eof = n == 0;
        ends.clear();
        for i in memchr::memchr2_iter(b'"', b'\n', &data[scanned..]) {
            let at = scanned + i;
            if data[at] == b'"' {
                quoted = !quoted;
            } else if !quoted {
                ends.push(at + 1);
            }
        }
        scanned = data.len();
        if eof && ends.last().is_none_or(|&e| e < data.len()) && !data.is_empty() {
            ends.push(data.len()); // a last record without a line break
        }
        let Some(&complete) = ends.last() else {
            continue;
        };
        let start_of = |r: usize| if r == 0 { 0 } else { ends[r - 1] };
        // Records [0, next) of this block are done: the header, record 0 of the first block,
        // is copied whatever it holds.
        let mut next = 0;
        if header {
            out.write_all(&data[..ends[0]])?;
            header = false;
            next = 1;
        }
        for hit in finder.find_iter(&data[..complete]) {
            let r = ends.partition_point(|&e| e <= hit);
            if r >= next {
                out.write_all(&data[start_of(r)..ends[r]])?;
                next = r + 1;
            }
        }
        data.drain(..complete);
        scanned -= complete;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The records (header first) whose cells hold `key`, by the csv crate: what the picker
    /// must copy.
    fn expected(text: &str, key: &str) -> Vec<Vec<String>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>())
            .enumerate()
            .filter(|(i, r)| *i == 0 || r.iter().any(|c| c.contains(key)))
            .map(|(_, r)| r)
            .collect()
    }

    fn picked(text: &str, key: &str, block: usize) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let mut out = Vec::new();
        pick_records_in_blocks(&path, key.as_bytes(), &mut out, block).unwrap();
        expected(std::str::from_utf8(&out).unwrap(), "")
    }

    fn record(cells: &[String]) -> String {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            crate::csv_field::push_csv_field(&mut line, c);
        }
        line
    }

    #[test]
    fn records_are_copied_whole_with_quoted_line_breaks_and_no_final_break() {
        let text = "line_id,partner_id,note\nL1,P1,\"a\nP2, b\"\nL2,P2,x\nL3,P1,\"say \"\"P2\"\"\"\nL4,P3,y";
        let want = expected(text, "P2");
        assert_eq!(want.len(), 4); // header, L1 (in its note), L2, L3
        for block in [1, 2, 3, 5, 8, 13, 1 << 20] {
            assert_eq!(picked(text, "P2", block), want, "block {block}");
        }
        assert_eq!(picked(text, "P3", 4).len(), 2);
        assert_eq!(picked(text, "nowhere", 4).len(), 1);
    }

    proptest! {
        #[test]
        fn the_picker_copies_exactly_the_records_that_hold_the_key(
            rows in proptest::collection::vec(
                proptest::collection::vec("[ab,\"\n]{0,6}", 3), 1..12),
            block in 1usize..40,
            final_break in any::<bool>(),
        ) {
            let mut text = String::from("id,partner_id,note\n");
            for r in &rows {
                text.push_str(&record(r));
                text.push('\n');
            }
            if !final_break {
                text.pop();
            }
            prop_assert_eq!(picked(&text, "ab", block), expected(&text, "ab"));
        }
    }
}
