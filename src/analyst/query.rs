//! `incentives query` (SPEC §10): polars SQL over a published cycle's tables by name, printed as
//! a table or written to a CSV or Parquet file (format by extension). Amounts stay exact
//! decimals; in CSV and on the terminal they are written as the published tables write them:
//! the exact value, padded to at least its currency's places (the row's `currency` column,
//! when the result has one; else 2).

use super::cycle::{PublishedCycle, amount_type, polars_error, tables};
use crate::error::RunError;
use polars::prelude::*;
use std::path::Path;

/// The cycle's tables registered by name (those present), and `statements`: every partner's
/// statement (`ledgers/*`: the journal and the rows earlier runs credited to this cycle).
fn context(cycle: &PublishedCycle) -> Result<polars::sql::SQLContext, RunError> {
    let ctx = polars::sql::SQLContext::new();
    for table in tables() {
        if cycle.path(table).is_file() {
            ctx.register(table, cycle.scan(table)?);
        }
    }
    if let Some(statements) = cycle.scan_statements()? {
        ctx.register("statements", statements);
    }
    Ok(ctx)
}

/// Runs `sql` on the cycle: the result as a frame. A query polars cannot parse or plan (an
/// unknown table or column, a syntax error) is exit 2 with polars' message.
pub fn run_query(cycle: &PublishedCycle, sql: &str) -> Result<DataFrame, RunError> {
    let mut ctx = context(cycle)?;
    let usage = |e: PolarsError| {
        RunError::Usage(format!(
            "the query cannot be run: {e} (tables: {}, statements)",
            tables().collect::<Vec<_>>().join(", ")
        ))
    };
    let lf = ctx.execute(sql).map_err(usage)?;
    // Planning errors (a column that is not there) come out when the plan is resolved.
    let mut lf = lf;
    lf.collect_schema().map_err(usage)?;
    lf.collect_with_engine(Engine::Streaming)
        .map(|r| r.unwrap_single())
        .map_err(|e| match e {
            PolarsError::IO { .. } => polars_error(&cycle.dir, e),
            other => usage(other),
        })
}

/// The cells of a result as text: decimals as the published tables write them.
pub fn cells(cycle: &PublishedCycle, df: &DataFrame) -> Result<Vec<Vec<String>>, RunError> {
    let currency = match df.column("currency") {
        Ok(c) => Some(super::cycle::texts(df, c.name().as_str())?),
        Err(_) => None,
    };
    let mut columns = Vec::new();
    for column in df.columns() {
        let name = column.name().as_str();
        let cells: Vec<String> = if matches!(column.dtype(), DataType::Decimal(_, _)) {
            let ca = column
                .decimal()
                .map_err(|e| RunError::Io(format!("column {name}: {e}")))?;
            let scale = ca.scale() as u32;
            ca.physical()
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    None => Ok(String::new()),
                    Some(m) => super::cycle::to_decimal(m, scale).map(|d| {
                        let places = currency.as_ref().map_or(2, |c| cycle.scale(&c[i]));
                        crate::money::format_amount(d, places)
                    }),
                })
                .collect::<Result<_, _>>()?
        } else {
            super::cycle::texts(df, name)?
        };
        columns.push(cells);
    }
    Ok(columns)
}

/// The result as an aligned table (numbers right-aligned), header first.
pub fn table(cycle: &PublishedCycle, df: &DataFrame) -> Result<String, RunError> {
    use std::fmt::Write as _;
    let columns = cells(cycle, df)?;
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let numeric: Vec<bool> = df
        .columns()
        .iter()
        .map(|c| c.dtype().is_primitive_numeric() || matches!(c.dtype(), DataType::Decimal(_, _)))
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .zip(&columns)
        .map(|(n, cells)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([n.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let row: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(&numeric)
            .map(|((c, w), num)| {
                if *num {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", row.join("  ").trim_end());
    };
    line(&mut out, names.iter().map(String::as_str).collect());
    for i in 0..df.height() {
        line(&mut out, columns.iter().map(|c| c[i].as_str()).collect());
    }
    let _ = writeln!(
        out,
        "({} row{})",
        df.height(),
        if df.height() == 1 { "" } else { "s" }
    );
    Ok(out)
}

/// Writes the result to `output`: `.csv` (decimals as the published tables write them) or
/// `.parquet` (amounts `DECIMAL(38, 8)`). A new file only: a symbolic link or any file already
/// there is refused (exit 2), never followed or replaced.
pub fn write(cycle: &PublishedCycle, df: &mut DataFrame, output: &Path) -> Result<(), RunError> {
    let shown = output.display();
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes: Vec<u8> = match ext.as_deref() {
        Some("csv") => {
            let columns = cells(cycle, df)?;
            let mut w = csv::Writer::from_writer(Vec::new());
            let names: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            w.write_record(&names)
                .map_err(|e| RunError::Io(format!("{shown}: {e}")))?;
            for i in 0..df.height() {
                // Cells as the published tables hold them (their text cells were neutralised
                // against spreadsheet formulas when the cycle was written).
                w.write_record(columns.iter().map(|c| c[i].as_str()))
                    .map_err(|e| RunError::Io(format!("{shown}: {e}")))?;
            }
            w.into_inner()
                .map_err(|e| RunError::Io(format!("{shown}: {e}")))?
        }
        Some("parquet") => {
            // Amounts as the published Parquet declares them.
            let decimals: Vec<String> = df
                .columns()
                .iter()
                .filter(|c| matches!(c.dtype(), DataType::Decimal(_, _)))
                .map(|c| c.name().to_string())
                .collect();
            for name in decimals {
                let cast = df
                    .column(&name)
                    .and_then(|c| c.cast(&amount_type()))
                    .map_err(|e| RunError::Io(format!("{shown}: {e}")))?;
                df.with_column(cast)
                    .map_err(|e| RunError::Io(format!("{shown}: {e}")))?;
            }
            let mut buffer = Vec::new();
            ParquetWriter::new(&mut buffer)
                .finish(df)
                .map_err(|e| RunError::Io(format!("{shown}: {e}")))?;
            buffer
        }
        _ => {
            return Err(RunError::Usage(format!(
                "{shown}: --output must end in .csv or .parquet (the format is chosen by the extension)"
            )));
        }
    };
    write_new_file(output, &bytes)
}

/// Writes `bytes` to `output` through a file beside it, renamed into place only if nothing is
/// at `output` (a link planted there is neither followed nor replaced).
pub fn write_new_file(output: &Path, bytes: &[u8]) -> Result<(), RunError> {
    use std::io::Write as _;
    let shown = output.display();
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(RunError::Usage(format!(
            "{shown}: already exists; nothing was written over it: move it away or pass another file"
        )));
    }
    let parent = super::cycle::folder_of(output, "--output")?;
    let mut file = tempfile::Builder::new()
        .prefix(".incentives-")
        .tempfile_in(parent)
        .map_err(|e| RunError::io(parent.display(), e))?;
    file.write_all(bytes)
        .map_err(|e| RunError::io(output.display(), e))?;
    file.persist_noclobber(output).map_err(|e| {
        RunError::Usage(format!("{shown}: {}; nothing was written over it", e.error))
    })?;
    Ok(())
}

/// `incentives query`'s arguments.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The output folder the cycle was published to (its OUT).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: std::path::PathBuf,
    /// The state folder of the chain: a stale cycle is warned about before the answer.
    #[arg(long, value_name = "DIR", default_value = "state")]
    pub state: std::path::PathBuf,
    #[arg(long, value_name = "YYYY-MM")]
    pub cycle: crate::calendar::Cycle,
    /// The query, e.g. "SELECT lever, currency, SUM(amount) AS amount FROM ledger GROUP BY
    /// lever, currency ORDER BY lever".
    #[arg(value_name = "SQL")]
    pub sql: String,
    /// Write the result to FILE.csv or FILE.parquet (by extension) instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// Runs `incentives query`: the text for the terminal.
pub fn main(args: &QueryArgs) -> Result<String, RunError> {
    crate::analyst::explain::warn_on_standing(&args.state, &args.out, args.cycle);
    let cycle = PublishedCycle::open(&args.out, args.cycle)?;
    let mut df = run_query(&cycle, &args.sql)?;
    match &args.output {
        Some(path) => {
            write(&cycle, &mut df, path)?;
            Ok(format!("wrote {} ({} rows)\n", path.display(), df.height()))
        }
        None => table(&cycle, &df),
    }
}
