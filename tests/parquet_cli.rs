//! `--format parquet`: every output table in Parquet holds what its CSV holds, cell for cell,
//! with amounts as exact decimals; and Parquet outputs do not depend on the thread count.

mod common;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
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

/// A Parquet file's column names and rows, each cell as (text, or exact decimal, or null).
#[derive(Debug, PartialEq)]
enum Cell {
    Text(String),
    Amount(Decimal),
    Null,
}

fn read_parquet(path: &Path) -> (Vec<String>, Vec<Vec<Cell>>) {
    let reader = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(_, field)| match field {
                    Field::Str(s) => Cell::Text(s.clone()),
                    Field::Long(n) => Cell::Amount(Decimal::from(*n)),
                    Field::Decimal(d) => {
                        let mut be = [0u8; 16];
                        be.copy_from_slice(d.data());
                        let value = i128::from_be_bytes(be);
                        assert_eq!(d.scale(), 8, "{}: amounts at scale 8", path.display());
                        Cell::Amount(Decimal::from_i128_with_scale(value, 8))
                    }
                    Field::Null => Cell::Null,
                    other => panic!("{}: unexpected cell {other:?}", path.display()),
                })
                .collect()
        })
        .collect();
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

    let mut amounts_seen = 0;
    for f in &csv_files {
        let (columns, rows) = read_parquet(&pq_dir.join(f.with_extension("parquet")));
        let mut reader = csv::Reader::from_path(csv_dir.join(f)).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(columns, header, "{}", f.display());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), records.len(), "{}", f.display());
        for (row, record) in rows.iter().zip(&records) {
            for ((cell, text), column) in row.iter().zip(record.iter()).zip(&header) {
                match cell {
                    Cell::Text(t) => assert_eq!(t, text, "{} {column}", f.display()),
                    // 12.30 in the CSV is 12.30000000 in Parquet: the same value.
                    Cell::Amount(a) => {
                        amounts_seen += 1;
                        assert_eq!(
                            *a,
                            Decimal::from_str(text).unwrap(),
                            "{} {column}",
                            f.display()
                        )
                    }
                    Cell::Null => assert!(
                        text.is_empty() || Decimal::from_str(text).is_err(),
                        "{} {column}: {text:?} written as null",
                        f.display()
                    ),
                }
            }
        }
    }
    assert!(amounts_seen > 100, "{amounts_seen} amounts compared");

    // The manifest names the Parquet files, with their row counts.
    let manifest = common::manifest_without_timings(&pq_dir.join("manifest.json"));
    let text = manifest.to_string();
    assert!(text.contains("\"ledger.parquet\""), "{text}");
    assert!(!text.contains("\"ledger.csv\""), "{text}");
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
