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

/// Runs one step of a month in shards (SPEC §9); returns its output.
fn step(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = incentives();
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().unwrap()
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The chain run as `split`, `run --shard K/N` (in reverse order, the last one twice), `fold`
/// and `merge` in `root`; returns what [`run_chain`] returns.
fn run_sharded(input: &Path, root: &Path, shards: u32, args: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let rules = common::repo().join("rules/reference");
    let (state, out) = (root.join("state"), root.join("out"));
    for (i, cycle) in CYCLES.iter().enumerate() {
        let parts = root.join("parts").join(cycle);
        let first: &[&str] = if i == 0 { &["--first-cycle"] } else { &[] };
        let n = shards.to_string();
        let split = [&["split", "--cycle", cycle, "--shards", &n], first].concat();
        let paths = [
            ("--input", &*input.join(cycle)),
            ("--state", &state),
            ("--parts", &parts),
        ];
        succeeded(&step(&split, &paths), "split");
        for k in (1..=shards).rev() {
            let shard = format!("{k}/{shards}");
            let run = [&["run", "--shard", &shard], args].concat();
            let paths = [("--parts", &*parts), ("--rules", &rules)];
            succeeded(&step(&run, &paths), "run --shard");
            if k == 1 {
                let again = succeeded(&step(&run, &paths), "run --shard again");
                assert!(again.contains("already run"), "{again}");
            }
            succeeded(
                &step(&["fold", "--shard", &shard], &[("--parts", &parts)]),
                "fold",
            );
        }
        let merge = [&["merge", "--cycle", cycle], first, args].concat();
        let paths = [
            ("--parts", &*parts),
            ("--rules", &rules),
            ("--state", &state),
            ("--out", &out),
        ];
        succeeded(&step(&merge, &paths), "merge");
    }
    let mut files = BTreeMap::new();
    for cycle in CYCLES {
        collect(&out.join(cycle), cycle, &mut files);
    }
    files
}

#[test]
fn shards_give_the_bytes_of_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let input = chain(dir.path());
    let whole = run_chain(&input, &dir.path().join("p1"), &[]);
    let three = run_sharded(&input, &dir.path().join("s3"), 3, &[]);
    assert_same(&whole, &three, "3 shards");
    let five = run_sharded(&input, &dir.path().join("s5"), 5, &["--threads", "1"]);
    assert_same(&whole, &five, "5 shards, 1 thread");
    let parquet = run_chain(&input, &dir.path().join("q1"), &["--format", "parquet"]);
    let parquet4 = run_sharded(&input, &dir.path().join("q4"), 4, &["--format", "parquet"]);
    assert_same(&parquet, &parquet4, "Parquet, 4 shards");
}

/// A step whose input is missing exits 1 (an engine retries it) and publishes nothing; parts of
/// another rule set or made before the state changed are refused (exit 2), the state untouched.
#[test]
fn shard_steps_refuse_what_would_corrupt_the_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::fixture("demo/2026-10");
    let (state, out, parts) = (
        dir.path().join("state"),
        dir.path().join("out"),
        dir.path().join("parts"),
    );
    let rules = common::repo().join("rules/reference");
    let code = |o: &std::process::Output| o.status.code().unwrap_or(-1);

    let early = step(
        &["run", "--shard", "1/2"],
        &[("--parts", &parts), ("--rules", &rules)],
    );
    assert_eq!(
        code(&early),
        1,
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let split = [
        "split",
        "--cycle",
        "2026-10",
        "--shards",
        "2",
        "--first-cycle",
    ];
    let paths = [
        ("--input", &*input),
        ("--state", &state),
        ("--parts", &parts),
    ];
    succeeded(&step(&split, &paths), "split");
    let again = succeeded(&step(&split, &paths), "split again");
    assert!(again.contains("changed nothing"), "{again}");
    let wrong = step(
        &["run", "--shard", "1/3"],
        &[("--parts", &parts), ("--rules", &rules)],
    );
    assert_eq!(
        code(&wrong),
        2,
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    for k in ["1/2", "2/2"] {
        succeeded(
            &step(
                &["run", "--shard", k],
                &[("--parts", &parts), ("--rules", &rules)],
            ),
            k,
        );
    }
    succeeded(
        &step(&["fold", "--shard", "1/2"], &[("--parts", &parts)]),
        "fold 1",
    );
    let merge = ["merge", "--cycle", "2026-10", "--first-cycle"];
    let merge_paths = [("--parts", &*parts), ("--state", &state), ("--out", &out)];
    let unsealed = step(
        &merge,
        &[merge_paths.as_slice(), &[("--rules", &rules)]].concat(),
    );
    assert_eq!(
        code(&unsealed),
        1,
        "{}",
        String::from_utf8_lossy(&unsealed.stderr)
    );
    assert!(!out.join("2026-10").exists(), "nothing published");
    succeeded(
        &step(&["fold", "--shard", "2/2"], &[("--parts", &parts)]),
        "fold 2",
    );

    // Another rule set (the reference with one more comment line hashes otherwise).
    let other = dir.path().join("rules");
    fs::create_dir(&other).unwrap();
    for entry in fs::read_dir(&rules).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, other.join(path.file_name().unwrap())).unwrap();
    }
    let toml = fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "toml"))
        .unwrap();
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(&toml, text.replacen("[", "# another set\n[", 1)).unwrap();
    let refused = step(
        &merge,
        &[merge_paths.as_slice(), &[("--rules", &other)]].concat(),
    );
    assert_eq!(
        code(&refused),
        2,
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!out.join("2026-10").exists(), "nothing published");

    // The state changes between the split and the merge: the parts are refused.
    let direct = step(
        &["run", "--cycle", "2026-10", "--first-cycle"],
        &[
            ("--input", &input),
            ("--state", &state),
            ("--out", &dir.path().join("o2")),
            ("--rules", &rules),
        ],
    );
    succeeded(&direct, "a run on the state");
    let stale = step(
        &merge,
        &[merge_paths.as_slice(), &[("--rules", &rules)]].concat(),
    );
    assert_eq!(
        code(&stale),
        2,
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("state version"),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );
}

/// `whatif` in partitions (SPEC §8: `--memory-budget` on whatif) compares the same numbers as
/// on the whole cycle, on the chain's last month (carried rows, earlier pools, refunds across
/// partitions): the unchanged rule set proposes exactly what the run paid, and a rate change
/// writes the same comparison whatever the partition count.
#[test]
fn whatif_in_partitions_compares_what_the_whole_cycle_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = chain(dir.path());
    let root = dir.path().join("p1");
    run_chain(&input, &root, &[]);
    let reference = common::repo().join("rules/reference");
    let proposal = dir.path().join("proposal");
    fs::create_dir_all(&proposal).unwrap();
    for entry in fs::read_dir(&reference).unwrap() {
        let path = entry.unwrap().path();
        let mut text = fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "referral_base.toml" {
            // The referral base rate, 5 % → 7 %.
            assert!(text.contains("rate = \"0.05\""));
            text = text.replacen("rate = \"0.05\"", "rate = \"0.07\"", 1);
        }
        fs::write(proposal.join(path.file_name().unwrap()), text).unwrap();
    }
    let whatif = |rules: &Path, partitions: &str| {
        let write = dir.path().join(format!("whatif-{partitions}.csv"));
        let out = incentives()
            .args(["whatif", "--cycle", "2026-12", "--partitions", partitions])
            .arg("--input")
            .arg(input.join("2026-12"))
            .arg("--rules")
            .arg(rules)
            .arg("--state")
            .arg(root.join("state"))
            .arg("--out")
            .arg(root.join("out"))
            .arg("--write")
            .arg(&write)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "whatif --partitions {partitions}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read(&write).unwrap()
    };
    let same = whatif(&reference, "1");
    let rows_same = rows(&same);
    assert!(rows_same.len() > 10, "{} rows", rows_same.len());
    for r in &rows_same {
        assert_eq!(r["paid"], r["proposed"], "{r:?}");
    }
    assert_eq!(
        whatif(&reference, "3"),
        same,
        "3 partitions, rules unchanged"
    );
    let moved = whatif(&proposal, "1");
    assert_ne!(moved, same, "the rate change moves something");
    assert_eq!(whatif(&proposal, "3"), moved, "3 partitions");
    assert_eq!(whatif(&proposal, "8"), moved, "8 partitions");
}
