//! `--format parquet`: every output table in Parquet holds what its CSV holds, cell for cell,
//! each column in its SPEC §8 type (amounts exact decimals, instants UTC microseconds, dates,
//! counts, text); and Parquet outputs do not depend on the thread count.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use chrono::{DateTime, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{DecimalType, LogicalType, TimeUnit, TimestampType, Type as Physical};
use rust_decimal::Decimal;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
/// Every file below `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The type SPEC §8 gives a column, by its name in Appendix B (kept here apart from the
/// writer's declarations, so the test checks them).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Text,
    Amount,
    Count,
    Instant,
    Date,
}

fn expected(column: &str) -> Expected {
    match column {
        "row" | "source_row" | "rejected_lines" => Expected::Count,
        "trade_time" | "expires_at" => Expected::Instant,
        "expires_on" => Expected::Date,
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
        | "annual_new_resource_amount" => Expected::Amount,
        _ => Expected::Text,
    }
}

/// Checks each column's Parquet type (what DuckDB, polars and pyarrow read) against SPEC §8.
fn check_schema(path: &Path, builder: &ParquetRecordBatchReaderBuilder<fs::File>) {
    for column in builder.parquet_schema().columns() {
        let name = column.name();
        let (physical, logical) = (column.physical_type(), column.logical_type_ref().cloned());
        let ok = match expected(name) {
            Expected::Text => {
                physical == Physical::BYTE_ARRAY && logical == Some(LogicalType::String)
            }
            Expected::Amount => {
                physical == Physical::FIXED_LEN_BYTE_ARRAY
                    && logical
                        == Some(LogicalType::Decimal(DecimalType {
                            scale: 8,
                            precision: 38,
                        }))
            }
            Expected::Count => physical == Physical::INT64,
            Expected::Instant => {
                physical == Physical::INT64
                    && logical
                        == Some(LogicalType::Timestamp(TimestampType {
                            is_adjusted_to_u_t_c: true,
                            unit: TimeUnit::MICROS,
                        }))
            }
            Expected::Date => physical == Physical::INT32 && logical == Some(LogicalType::Date),
        };
        assert!(ok, "{} {name}: {physical:?} {logical:?}", path.display());
    }
}

/// A cell read back, as what the CSV must hold.
#[derive(Debug, PartialEq)]
enum Cell {
    Text(String),
    Amount(Decimal),
    Count(i64),
    /// The instant, written as the CSV writes it (ISO 8601 UTC).
    Instant(String),
    Date(NaiveDate),
    Null,
}

fn cell(array: &ArrayRef, r: usize) -> Cell {
    if array.is_null(r) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(r).to_string()),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(r).to_string()),
        DataType::Decimal128(38, 8) => Cell::Amount(Decimal::from_i128_with_scale(
            array.as_primitive::<Decimal128Type>().value(r),
            8,
        )),
        DataType::Int64 => Cell::Count(array.as_primitive::<Int64Type>().value(r)),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(_)) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(r);
            let t = DateTime::from_timestamp_micros(micros).unwrap();
            Cell::Instant(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(r);
            Cell::Date(DateTime::UNIX_EPOCH.date_naive() + chrono::Duration::days(i64::from(days)))
        }
        other => panic!("unexpected Arrow type {other:?}"),
    }
}

/// A Parquet file's column names and rows, after checking its schema.
fn read_parquet(path: &Path) -> (Vec<String>, Vec<Vec<Cell>>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    check_schema(path, &builder);
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        for r in 0..batch.num_rows() {
            rows.push(batch.columns().iter().map(|a| cell(a, r)).collect());
        }
    }
    (columns, rows)
}

#[test]
fn every_table_in_parquet_holds_the_csv_cells_exactly() {
    let csv = tempfile::tempdir().unwrap();
    let pq = tempfile::tempdir().unwrap();
    assert_eq!(common::run_demo(csv.path(), &[]).status, 0);
    let run = common::run_demo(pq.path(), &["--format", "parquet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let (csv_dir, pq_dir) = (csv.path().join("2026-10"), pq.path().join("2026-10"));

    let csv_files: Vec<PathBuf> = files(&csv_dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "csv"))
        .collect();
    let pq_files: Vec<PathBuf> = files(&pq_dir)
        .into_iter()
        .filter(|f| f != Path::new("manifest.json"))
        .collect();
    // The same tables (ledger, ledgers/<partner>, line_outcomes, ...), each as .parquet only.
    assert_eq!(
        pq_files,
        csv_files
            .iter()
            .map(|f| f.with_extension("parquet"))
            .collect::<Vec<_>>()
    );
    assert!(csv_files.len() >= 9, "{csv_files:?}");

    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for f in &csv_files {
        let (columns, rows) = read_parquet(&pq_dir.join(f.with_extension("parquet")));
        let mut reader = csv::Reader::from_path(csv_dir.join(f)).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(columns, header, "{}", f.display());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), records.len(), "{}", f.display());
        for (row, record) in rows.iter().zip(&records) {
            for ((cell, text), column) in row.iter().zip(record.iter()).zip(&header) {
                let at = || format!("{} {column}: {cell:?} vs {text:?}", f.display());
                match cell {
                    Cell::Text(t) => assert_eq!(t, text, "{}", at()),
                    // 12.30 in the CSV is 12.30000000 in Parquet: the same value. A rejected
                    // line's raw amount is neutralised in the CSV (`'-5.00`).
                    Cell::Amount(a) => {
                        *seen.entry("amount").or_default() += 1;
                        let value = Decimal::from_str(text.strip_prefix('\'').unwrap_or(text));
                        assert_eq!(Ok(*a), value, "{}", at());
                    }
                    Cell::Count(n) => {
                        *seen.entry("count").or_default() += 1;
                        assert_eq!(n.to_string(), text, "{}", at());
                    }
                    Cell::Instant(t) => {
                        *seen.entry("instant").or_default() += 1;
                        assert_eq!(t, text, "{}", at());
                    }
                    Cell::Date(d) => {
                        *seen.entry("date").or_default() += 1;
                        assert_eq!(d.to_string(), text, "{}", at());
                    }
                    Cell::Null => {
                        *seen.entry("null").or_default() += 1;
                        assert!(
                            text.is_empty() || Decimal::from_str(text).is_err(),
                            "{} written as null",
                            at()
                        )
                    }
                }
            }
        }
    }
    // Every type was compared on real rows of the demo.
    for (kind, least) in [("amount", 100), ("count", 10), ("instant", 2), ("date", 2)] {
        assert!(seen.get(kind).copied().unwrap_or(0) >= least, "{seen:?}");
    }

    // The manifest names the Parquet files, with their row counts.
    let manifest = common::manifest_without_timings(&pq_dir.join("manifest.json"));
    let text = manifest.to_string();
    assert!(text.contains("\"ledger.parquet\""), "{text}");
    assert!(!text.contains("\"ledger.csv\""), "{text}");
}

#[test]
fn repeated_values_are_dictionary_encoded_and_filter_columns_keep_statistics() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let pq = tempfile::tempdir().unwrap();
    let run = common::run_demo(pq.path(), &["--format", "parquet"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let path = pq.path().join("2026-10/ledger.parquet");
    let reader = SerializedFileReader::new(fs::File::open(&path).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let chunk = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_descr().name() == name)
            .unwrap()
    };
    for name in ["partner_id", "customer_id", "line_id", "credit_cycle"] {
        assert!(
            chunk(name).statistics().is_some(),
            "{name} keeps statistics"
        );
    }
    // Amounts carry none either: their statistics would keep each row group's decimals in
    // memory until the file closes (write/table.rs, Column::amount).
    for name in ["entry_id", "order_id", "base", "amount"] {
        assert!(chunk(name).statistics().is_none(), "{name}: no statistics");
        assert!(
            chunk(name).dictionary_page_offset().is_none(),
            "{name}: plain"
        );
    }
    for name in [
        "lever",
        "kind",
        "credit_cycle",
        "currency",
        "rule_id",
        "ruleset_hash",
    ] {
        assert!(
            chunk(name).dictionary_page_offset().is_some(),
            "{name}: dictionary"
        );
    }
}

#[test]
fn parquet_outputs_do_not_depend_on_the_thread_count() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for (dir, threads) in [(&one, "1"), (&two, "2")] {
        let run = common::run_demo(dir.path(), &["--format", "parquet", "--threads", threads]);
        assert_eq!(run.status, 0, "{}", run.stderr);
    }
    let (a, b) = (one.path().join("2026-10"), two.path().join("2026-10"));
    let names = files(&a);
    assert_eq!(names, files(&b));
    for f in names.iter().filter(|f| *f != Path::new("manifest.json")) {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{}",
            f.display()
        );
    }
    assert_eq!(
        common::manifest_without_timings(&a.join("manifest.json")),
        common::manifest_without_timings(&b.join("manifest.json"))
    );
}

#[test]
fn explain_answers_on_a_parquet_cycle() {
    let pq = tempfile::tempdir().unwrap();
    assert_eq!(
        common::run_demo(pq.path(), &["--format", "parquet"]).status,
        0
    );
    let mut cmd = common::incentives();
    cmd.args(["explain", "--cycle", "2026-10", "--out"])
        .arg(pq.path())
        .args(["--partner", "SP001"]);
    let out = common::run(&mut cmd);
    // Read through polars (SPEC §10): no longer refused.
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("= incentive credited this cycle"),
        "{}",
        out.stdout
    );
}
