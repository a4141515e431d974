//! `run --partitions N` (SPEC §8): the partition count and the thread count never change a byte
//! of the outputs or of the state, on a chain whose months cross partitions every way: resale
//! lines earning distributors in other partitions, refunds clawing back from other partners'
//! pools, duplicate line ids whose rows name partners in different partitions, and one partner
//! holding a quarter of the lines.

mod common;

use common::incentives;
use incentives::partition::partition_of;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const CYCLES: [&str; 3] = ["2026-10", "2026-11", "2026-12"];

/// A generated three-month chain with planted bad rows and a top partner at 25 %, and in each
/// month duplicates of some lines appended under another partner (each must be rejected as a
/// duplicate wherever its partner's partition is).
fn chain(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    let ok = incentives()
        .args([
            "generate",
            "--cycle",
            "2026-10",
            "--lines",
            "3000",
            "--partners",
            "24",
        ])
        .args([
            "--cycles",
            "3",
            "--seed",
            "7",
            "--bad-rows",
            "0.01",
            "--top-share",
            "0.25",
        ])
        .arg("--out")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for cycle in CYCLES {
        let path = input.join(cycle).join("bill_lines.csv");
        let text = fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let partner = header.iter().position(|h| *h == "partner_id").unwrap();
        let rows: Vec<&str> = lines.collect();
        let ids: BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| r.split(',').nth(partner))
            .filter(|p| !p.starts_with("P-UNKNOWN"))
            .collect();
        let mut extra = String::new();
        for row in rows.iter().step_by(401) {
            let mut cells: Vec<&str> = row.split(',').collect();
            let other = ids
                .iter()
                .find(|p| partition_of(p, 3) != partition_of(cells[partner], 3))
                .unwrap();
            cells[partner] = other;
            extra.push_str(&cells.join(","));
            extra.push('\n');
        }
        if cycle == "2026-11" {
            extra.push_str(&moved_refund(&input, &header, &ids));
        }
        fs::write(&path, format!("{text}{extra}")).unwrap();
    }
    input
}

/// A refund in 2026-11 of a 2026-10 order whose customer has moved to a partner in another
/// partition: the order's pool (last month's earn row) belongs to the first partner, whose
/// partition must claw it back though the line is the second's.
fn moved_refund(input: &Path, header: &[&str], ids: &BTreeSet<&str>) -> String {
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let october = fs::read_to_string(input.join("2026-10/bill_lines.csv")).unwrap();
    let original: Vec<&str> = october
        .lines()
        .skip(1)
        .map(|r| r.split(',').collect::<Vec<_>>())
        .find(|c| {
            c[col("sales_mode")] == "referral"
                && c[col("bill_type")] == "new"
                && c[col("charge_mode")] == "yearly_monthly"
                && c[col("currency")] == "CNY"
                && !c[col("order_id")].is_empty()
                && c[col("payable_amount")]
                    .parse::<f64>()
                    .is_ok_and(|p| p > 10.0)
        })
        .unwrap();
    let first = original[col("partner_id")];
    let moved = ids
        .iter()
        .find(|p| partition_of(p, 3) != partition_of(first, 3))
        .unwrap();
    let mut cells = original.clone();
    cells[col("line_id")] = "LMOVED1";
    cells[col("bill_cycle")] = "2026-11";
    cells[col("partner_id")] = moved;
    cells[col("bill_type")] = "refund";
    cells[col("trade_time")] = "2026-11-10T10:00:00Z";
    cells[col("order_id")] = "UMOVED1";
    cells[col("original_order_id")] = original[col("order_id")];
    for amount in ["official_amount", "payable_amount"] {
        cells[col(amount)] = "-10.00";
    }
    for amount in ["discount_amount", "coupon_amount", "settlement_amount"] {
        cells[col(amount)] = "";
    }
    cells[col("discount_amount")] = "0";
    format!("{}\n", cells.join(","))
}

/// Runs the chain with `args` into `root`; returns every output file's bytes (the manifest
/// without its timings) and the state's tables (without run instants).
fn run_chain(input: &Path, root: &Path, args: &[&str]) -> BTreeMap<String, Vec<u8>> {
    for (k, cycle) in CYCLES.iter().enumerate() {
        let mut cmd = incentives();
        cmd.args(["run", "--cycle", cycle])
            .arg("--input")
            .arg(input.join(cycle))
            .arg("--rules")
            .arg(common::repo().join("rules/reference"))
            .arg("--state")
            .arg(root.join("state"))
            .arg("--out")
            .arg(root.join("out"))
            .args(args);
        if k == 0 {
            cmd.arg("--first-cycle");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cycle} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut files = BTreeMap::new();
    for cycle in CYCLES {
        collect(&root.join("out").join(cycle), cycle, &mut files);
    }
    // Nothing of the partitions is left behind.
    let left: Vec<String> = fs::read_dir(root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("spill"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    files
}

fn collect(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}/{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            collect(&path, &name, files);
        } else if name.ends_with("manifest.json") {
            let mut json: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            json.as_object_mut().unwrap().remove("timings");
            files.insert(name, json.to_string().into_bytes());
        } else {
            files.insert(name, fs::read(&path).unwrap());
        }
    }
}

fn assert_same(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: the same files"
    );
    for (name, bytes) in a {
        assert!(bytes == &b[name], "{what}: {name} differs");
    }
}

/// Rows of a CSV output as maps of column to cell.
fn rows(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn partitions_and_threads_never_change_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let input = chain(dir.path());
    let whole = run_chain(&input, &dir.path().join("p1"), &[]);

    // The months cross partitions every way, or the comparison proves little.
    let mut crossing = BTreeMap::new();
    for cycle in CYCLES {
        let outcomes = rows(&whole[&format!("{cycle}/line_outcomes.csv")]);
        let line_partner: BTreeMap<&str, &str> = outcomes
            .iter()
            .filter(|o| o["fate"] != "rejected")
            .map(|o| (o["line_id"].as_str(), o["partner_id"].as_str()))
            .collect();
        for row in rows(&whole[&format!("{cycle}/ledger.csv")]) {
            let Some(owner) = line_partner.get(row["line_id"].as_str()) else {
                continue;
            };
            if partition_of(owner, 3) != partition_of(&row["partner_id"], 3) {
                *crossing.entry(row["kind"].clone()).or_insert(0) += 1;
            }
        }
        let rejects = rows(&whole[&format!("{cycle}/rejects.csv")]);
        let duplicates = rejects
            .iter()
            .filter(|r| r["reason"].starts_with("duplicate_id"))
            .count();
        assert!(
            duplicates >= 5,
            "{cycle}: {duplicates} duplicate ids rejected"
        );
    }
    assert!(
        crossing.get("override").copied().unwrap_or(0) > 0,
        "{crossing:?}"
    );
    let moved = rows(&whole["2026-11/ledger.csv"])
        .into_iter()
        .filter(|r| r["line_id"] == "LMOVED1" && r["kind"] == "clawback")
        .count();
    assert_eq!(
        moved, 1,
        "the moved customer's refund claws back the first partner's pool"
    );
    assert!(
        crossing.get("clawback").copied().unwrap_or(0) > 0,
        "{crossing:?}"
    );

    let three = run_chain(
        &input,
        &dir.path().join("p3"),
        &["--partitions", "3", "--threads", "1"],
    );
    assert_same(&whole, &three, "3 partitions, 1 thread");
    let spill = dir.path().join("spill");
    let eight = run_chain(
        &input,
        &dir.path().join("p8"),
        &[
            "--partitions",
            "8",
            "--threads",
            "2",
            "--spill",
            spill.to_str().unwrap(),
        ],
    );
    assert_same(&whole, &eight, "8 partitions, 2 threads, --spill");
    assert_eq!(
        fs::read_dir(&spill).unwrap().count(),
        0,
        "the spill folder is emptied"
    );

    let parquet = run_chain(&input, &dir.path().join("q1"), &["--format", "parquet"]);
    let parquet8 = run_chain(
        &input,
        &dir.path().join("q8"),
        &["--format", "parquet", "--partitions", "8"],
    );
    assert_same(&parquet, &parquet8, "Parquet, 8 partitions");
}

/// A run in partitions killed after its ownership pass leaves its spill folder in --out; the
/// next run of the same state removes it (as it does a killed run's staging folder) and
/// publishes the cycle.
#[test]
fn a_killed_run_in_partitions_leaves_nothing_the_next_run_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |abort: bool| {
        let mut cmd = incentives();
        cmd.args([
            "run",
            "--first-cycle",
            "--cycle",
            "2026-10",
            "--partitions",
            "3",
        ])
        .arg("--input")
        .arg(common::fixture("demo/2026-10"))
        .arg("--rules")
        .arg(common::repo().join("rules/reference"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--out")
        .arg(&out);
        if abort {
            cmd.env("INCENTIVES_ABORT_AT", "loaded");
        }
        cmd.output().unwrap()
    };
    let spills = || -> Vec<String> {
        fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("spill"))
            .collect()
    };
    assert!(!run(true).status.success());
    assert_eq!(spills().len(), 1, "the killed run's spill folder is left");
    let next = run(false);
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(spills().is_empty(), "{:?}", spills());
    assert!(out.join("2026-10/ledger.csv").exists());
}
