//! A partitioned run's outputs, merged (SPEC §8). Each partition wrote its tables as
//! [`Format::Spill`] CSV into a folder of its own, each table in its SPEC Appendix B order and
//! holding only the partition's partners; the merge reads a table's files side by side and writes
//! it once, in Appendix B order, in the run's format. Only a record per partition is held.
//!
//! Across partitions a table's order needs only its first key (the partner for tables sorted by
//! partner first: a partner's rows are all in one partition, already in order), or for
//! `line_outcomes` the line id and source row.

use super::table::{Batch, Column, ColumnType, Format, Out, Table};
use super::{Staging, WriteError};
pub use crate::spill::{KeyPart, Merge, Order};
use csv::StringRecord;
use rust_decimal::Decimal;
use std::path::PathBuf;

/// Rows a merged table is handed to its file at a time.
pub(super) const MERGE_BATCH: usize = 1 << 12;

/// A spilled record's cells for the final table: text as it is (neutralised as it is written),
/// every other cell as its type (in CSV, its text unchanged: the spill wrote it as the output
/// does).
pub(super) fn cells<'r>(
    record: &'r StringRecord,
    columns: &[Column],
    format: Format,
    out: &mut Vec<Out<'r>>,
) -> Result<(), WriteError> {
    out.clear();
    for (column, text) in columns.iter().zip(record.iter()) {
        out.push(cell(column, text, format)?);
    }
    if out.len() != columns.len() {
        return Err(WriteError::Io(format!(
            "a partition's record of {} cells for {} columns",
            record.len(),
            columns.len()
        )));
    }
    Ok(())
}

fn cell<'r>(column: &Column, text: &'r str, format: Format) -> Result<Out<'r>, WriteError> {
    let bad = || {
        WriteError::Io(format!(
            "a partition's {} cell {text:?} is not its type",
            column.name
        ))
    };
    if column.ty == ColumnType::Text {
        return Ok(Out::Text(text));
    }
    if format != Format::Parquet {
        return Ok(Out::Number(text));
    }
    if text.is_empty() {
        return Ok(Out::Null);
    }
    Ok(match column.ty {
        ColumnType::Text => Out::Text(text),
        ColumnType::Amount => Out::Amount(text.parse::<Decimal>().map_err(|_| bad())?, 0),
        ColumnType::Count => Out::Count(text.parse().map_err(|_| bad())?),
        ColumnType::Instant => Out::Instant(crate::calendar::parse_instant(text).ok_or_else(bad)?),
        ColumnType::Date => {
            Out::Date(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?)
        }
    })
}

/// A spilled record's cells as an array (no allocation per row), as [`cells`] makes them.
pub(super) fn cells_array<'r, const N: usize>(
    record: &'r StringRecord,
    columns: &[Column],
    format: Format,
) -> Result<[Out<'r>; N], WriteError> {
    if record.len() != N || columns.len() != N {
        return Err(WriteError::Io(format!(
            "a partition's record of {} cells for {N} columns",
            record.len()
        )));
    }
    let mut fault = None;
    let out = std::array::from_fn(|c| {
        cell(&columns[c], &record[c], format).unwrap_or_else(|e| {
            fault.get_or_insert(e);
            Out::Null
        })
    });
    match fault {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Rows handed to a table a batch at a time.
pub(super) struct Rows {
    table: Table,
    batch: Batch,
}

impl Rows {
    pub(super) fn new(table: Table) -> Rows {
        let batch = Batch::new(table.columns(), table.format());
        Rows { table, batch }
    }

    pub(super) fn format(&self) -> Format {
        self.table.format()
    }

    /// The table, every row handed to it.
    pub(super) fn finish(mut self) -> Result<Table, WriteError> {
        self.flush()?;
        Ok(self.table)
    }

    pub(super) fn row(&mut self, cells: &[Out<'_>]) -> Result<(), WriteError> {
        self.batch.row(cells);
        if self.batch.rows() >= MERGE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), WriteError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.batch,
            Batch::new(self.table.columns(), self.table.format()),
        );
        self.table.write(&batch.encode()?)
    }
}

/// The table's files of the partition folders, merged.
pub(super) fn open_merge(dirs: &[PathBuf], name: &str, order: Order) -> Result<Merge, WriteError> {
    let paths = dirs
        .iter()
        .map(|d| d.join(format!("{name}.{}", crate::spill::EXTENSION)))
        .collect();
    Merge::open(paths, order).map_err(WriteError::Io)
}

/// Merges table `name` (file `name.csv` in each partition folder) into the staging folder.
/// `extra` yields rows of the table made outside the partitions, already in `order`'s order,
/// with their key (the rejected lines' outcomes).
pub fn merge_table<'x>(
    staging: &Staging,
    dirs: &[PathBuf],
    name: &str,
    columns: &'static [Column],
    order: Order,
    mut extra: impl Iterator<Item = (Vec<crate::spill::KeyValue>, Vec<Out<'x>>)>,
) -> Result<(), WriteError> {
    let mut merge = open_merge(dirs, name, order)?;
    let mut rows = Rows::new(staging.table(name, columns)?);
    let format = rows.format();
    let mut pending = extra.next();
    while let Some(record) = merge.next_record().map_err(WriteError::Io)? {
        let key = crate::spill::key(order, record);
        while pending.as_ref().is_some_and(|(k, _)| *k <= key) {
            if let Some((_, cells)) = pending.take() {
                rows.row(&cells)?;
            }
            pending = extra.next();
        }
        let mut out = Vec::with_capacity(columns.len());
        cells(record, columns, format, &mut out)?;
        rows.row(&out)?;
    }
    while let Some((_, cells)) = pending.take() {
        rows.row(&cells)?;
        pending = extra.next();
    }
    staging.finish(rows.finish()?)
}
