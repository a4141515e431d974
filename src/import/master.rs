//! `--master`: the partner centre's own exports in Appendix A's columns, copied into the bundle
//! or joined with what the responses gave. Validation is the loader's, on the bundle written
//! (`bundle.rs`), so a master file is checked exactly as any input; rows keep their record
//! numbers because master rows are written first, in their order.

use super::ImportReport;
use crate::error::RunError;
use crate::load::is_valid_id;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;

/// Master files copied as they are.
pub const COPIED: [&str; 5] = [
    "partners.csv",
    "capability_tags.csv",
    "projects.csv",
    "withdrawals.csv",
    "opening_balances.csv",
];

fn unreadable(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::VendorResponse(format!(
        "{}: unreadable CSV: {e}; nothing was written",
        path.display()
    ))
}

/// A master CSV: its header and records, as written.
pub struct Table {
    pub header: Vec<String>,
    pub records: Vec<csv::StringRecord>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.trim() == name)
    }

    /// Every value of column `name` (none when the column is missing).
    pub fn values(&self, name: &str) -> std::collections::HashSet<String> {
        self.column(name).map_or_else(Default::default, |c| {
            self.records
                .iter()
                .filter_map(|r| r.get(c))
                .map(str::to_string)
                .collect()
        })
    }
}

/// Reads `dir/file` if it is there.
pub fn table(dir: &Path, file: &str) -> Result<Option<Table>, RunError> {
    let path = dir.join(file);
    if !path.is_file() {
        return Ok(None);
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(|e| unreadable(&path, e))?;
    let header = reader
        .headers()
        .map_err(|e| unreadable(&path, e))?
        .iter()
        .map(str::to_string)
        .collect();
    let records = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&path, e))?;
    Ok(Some(Table { header, records }))
}

/// `settlements.csv` (`line_id`, `settlement_amount`): the partner's settlement per line,
/// joined onto the lines by id. A row that fails its check is for a person, never applied.
pub fn settlements(
    dir: &Path,
    report: &mut ImportReport,
) -> Result<BTreeMap<String, Decimal>, RunError> {
    let mut out = BTreeMap::new();
    let Some(t) = table(dir, "settlements.csv")? else {
        return Ok(out);
    };
    let file = "master/settlements.csv";
    let (Some(id_col), Some(amount_col)) = (t.column("line_id"), t.column("settlement_amount"))
    else {
        return Err(RunError::VendorResponse(format!(
            "{file}: line 1: columns `line_id` and `settlement_amount` are required; nothing was written"
        )));
    };
    report.read(file, t.records.len() as u64);
    for (i, r) in t.records.iter().enumerate() {
        let row = format!("row {}", i + 2);
        let (id, amount) = (r.get(id_col).unwrap_or(""), r.get(amount_col).unwrap_or(""));
        if !is_valid_id(id) {
            report.for_person(file, &row, format!("line_id {id:?} is not an id"));
        } else {
            match super::json::amount_text(amount, "settlement_amount") {
                Err(r) => report.for_person(
                    file,
                    &row,
                    format!("settlement_amount {:?}: {}", r.value, r.why),
                ),
                Ok(_) if out.contains_key(id) => report.for_person(
                    file,
                    &row,
                    format!("line {id} settled twice: the later row is not applied"),
                ),
                Ok(d) => {
                    out.insert(id.to_string(), d);
                }
            }
        }
    }
    Ok(out)
}

/// Writes a table: the master's rows first (each through `edit`), then `extra` rows mapped onto
/// the master's header by column name; with no master file, `ours` is the header.
pub fn merged(
    master: Option<&Table>,
    ours: &[&str],
    edit: &mut dyn FnMut(&Table, &mut Vec<String>),
    extra: &[Vec<(&str, String)>],
) -> Result<(Vec<u8>, u64), RunError> {
    let header: Vec<String> = match master {
        Some(t) => t.header.clone(),
        None => ours.iter().map(|c| c.to_string()).collect(),
    };
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let io = |e: csv::Error| RunError::Io(format!("writing the bundle: {e}"));
    w.write_record(&header).map_err(io)?;
    let mut rows = 0;
    if let Some(t) = master {
        for r in &t.records {
            let mut fields: Vec<String> = r.iter().map(str::to_string).collect();
            edit(t, &mut fields);
            w.write_record(&fields).map_err(io)?;
            rows += 1;
        }
    }
    for row in extra {
        let fields: Vec<&str> = header
            .iter()
            .map(|h| {
                row.iter()
                    .find(|(c, _)| *c == h.trim())
                    .map_or("", |(_, v)| v.as_str())
            })
            .collect();
        w.write_record(&fields).map_err(io)?;
        rows += 1;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| RunError::Io(format!("writing the bundle: {e}")))?;
    Ok((bytes, rows))
}
