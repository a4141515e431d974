//! Month-end as a chain (SPEC §4): carried-in incentive and clawbacks across cycles to the cent,
//! chain rules, re-runs and stale marks, determinism, the state lock, and crash safety.
//! The figures are worked by hand in `fixtures/chain/README.md`.

mod common;

use common::{Outcome, fixture, incentives, run};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

struct Chain {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    state: PathBuf,
}

impl Chain {
    fn new() -> Chain {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let state = tmp.path().join("state");
        Chain {
            _tmp: tmp,
            out,
            state,
        }
    }

    fn command(&self, cycle: &str, input: &str, first: bool) -> assert_cmd::Command {
        let mut cmd = incentives();
        cmd.args(["run", "--cycle", cycle, "--input"])
            .arg(fixture("chain").join(input))
            .arg("--out")
            .arg(&self.out)
            .arg("--state")
            .arg(&self.state);
        if first {
            cmd.arg("--first-cycle");
        }
        cmd
    }

    fn run(&self, cycle: &str, input: &str, first: bool) -> Outcome {
        run(&mut self.command(cycle, input, first))
    }

    fn ok(&self, cycle: &str, input: &str, first: bool) {
        let o = self.run(cycle, input, first);
        assert_eq!(o.status, 0, "{cycle}: {}", o.stderr);
    }

    /// Σ incentive credited to `cycle` per partner (earn, clawback, tier, cap, override rows),
    /// from the partners' statements of that cycle.
    fn credited(&self, cycle: &str) -> BTreeMap<String, String> {
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for entry in fs::read_dir(self.out.join(cycle).join("ledgers")).unwrap() {
            let mut reader = csv::Reader::from_path(entry.unwrap().path()).unwrap();
            for r in reader.records() {
                let r = r.unwrap();
                let incentive = matches!(&r[7], "earn" | "clawback" | "tier" | "cap" | "override");
                if &r[10] == cycle && incentive {
                    *sums.entry(r[1].to_string()).or_default() +=
                        Decimal::from_str(&r[13]).unwrap();
                }
            }
        }
        sums.into_iter().map(|(p, a)| (p, a.to_string())).collect()
    }

    /// Every output file of every cycle (manifest without timings) and every state row (without
    /// run times), for byte-for-byte and row-for-row comparisons.
    fn snapshot(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let mut files = BTreeMap::new();
        if self.out.exists() {
            for entry in fs::read_dir(&self.out).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                collect(&entry.path(), &name, &mut files);
            }
        }
        let mut rows = Vec::new();
        let db = self.state.join("state.db");
        if db.exists() {
            let conn = rusqlite::Connection::open(db).unwrap();
            for (table, order) in [
                ("cycles", "cycle"),
                ("cycle_rows", "cycle, name, credit_cycle, part"),
                ("pool_parts", "cycle, part"),
                ("publication", "cycle"),
            ] {
                let mut stmt = conn
                    .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
                    .unwrap();
                let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
                let mut q = stmt.query([]).unwrap();
                while let Some(r) = q.next().unwrap() {
                    let mut cells = vec![table.to_string()];
                    for (i, n) in names.iter().enumerate() {
                        if n != "run_at" {
                            cells.push(match r.get_ref(i).unwrap() {
                                rusqlite::types::ValueRef::Text(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                                other => format!("{other:?}"),
                            });
                        }
                    }
                    rows.push(cells.join("|"));
                }
            }
        }
        (files, rows)
    }
}

fn collect(path: &Path, name: &str, files: &mut BTreeMap<String, String>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            let entry = entry.unwrap();
            let child = format!("{name}/{}", entry.file_name().to_string_lossy());
            collect(&entry.path(), &child, files);
        }
    } else if name.ends_with("manifest.json") {
        let mut v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("timings");
        files.insert(name.to_string(), v.to_string());
    } else {
        files.insert(name.to_string(), fs::read_to_string(path).unwrap());
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn carried_in_and_clawbacks_across_cycles_to_the_cent() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    c.ok("2026-11", "2026-11", false);
    // 09: A1 800.00; A4's override 30.00 to DS1.
    assert_eq!(
        c.credited("2026-09"),
        map(&[("DS1", "30.00"), ("SP1", "800.00")])
    );
    // 10: carried in 100.00 (A2) + 400.00 (A3); B1 −200.00 (2,500 × 8 %); B2 −80.00 at O3's
    // rate; DS1 −30.00 (B4). SP1: 500 − 200 − 80 = 220.00.
    assert_eq!(
        c.credited("2026-10"),
        map(&[("DS1", "-30.00"), ("SP1", "220.00")])
    );
    // 11: carried in 50.00 (B3); C1 capped at O1's 600.00 left; C2 0.00; C3 80.00:
    // 50 − 600 + 0 + 80 = −470.00.
    assert_eq!(c.credited("2026-11"), map(&[("SP1", "-470.00")]));

    // carried_in of M = deferred_out_incentive of M−1, key by key (SPEC §6).
    for (m, previous) in [("2026-10", "2026-09"), ("2026-11", "2026-10")] {
        let column = |cycle: &str, col: &str| -> BTreeMap<(String, String, String), String> {
            common::csv_rows(&c.out.join(cycle).join("explanations.csv"))
                .into_iter()
                .map(|r| {
                    (
                        (
                            r["partner_id"].clone(),
                            r["customer_id"].clone(),
                            r["currency"].clone(),
                        ),
                        r[col].clone(),
                    )
                })
                .filter(|(_, v)| v != "0.00")
                .collect()
        };
        assert_eq!(
            column(m, "carried_in"),
            column(previous, "deferred_out_incentive"),
            "{m}"
        );
    }

    // Carried-in rows are in the statement of the cycle they are credited in, not its journal.
    let journal = fs::read_to_string(c.out.join("2026-10/ledger.csv")).unwrap();
    assert!(!journal.contains(",A2,"));
    let statement = fs::read_to_string(c.out.join("2026-10/ledgers/SP1.csv")).unwrap();
    let a2: Vec<&str> = statement.lines().filter(|l| l.contains(",A2,")).collect();
    assert_eq!(a2.len(), 1);
    assert!(
        a2[0].starts_with("2026-09-"),
        "keeps its entry id from 09's journal: {}",
        a2[0]
    );
    assert!(
        a2[0].contains(",2026-09,2026-10,"),
        "earned 09, credited 10: {}",
        a2[0]
    );
    // C2 is clawed back (a 0.00 row), not refund_not_earned.
    let outcomes = fs::read_to_string(c.out.join("2026-11/line_outcomes.csv")).unwrap();
    let c2 = outcomes.lines().find(|l| l.starts_with("C2,")).unwrap();
    assert!(c2.contains(",clawed_back,"), "{c2}");
    assert!(c2.contains(",0.00,2026-11,"), "{c2}");

    let mut status = incentives();
    status.args(["status", "--state"]).arg(&c.state);
    let s = run(&mut status);
    assert_eq!(s.status, 0);
    assert!(s.stdout.contains("2026-11  ok"), "{}", s.stdout);
    // Σ credited per currency as a figure in its column, not raw JSON.
    assert!(
        s.stdout
            .lines()
            .any(|l| l.starts_with("2026-11") && l.trim_end().ends_with(" -470.00")),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains("credited CNY"), "{}", s.stdout);
}

#[test]
fn chain_rules_need_the_previous_cycle() {
    let c = Chain::new();
    // Nothing in the state and no --first-cycle.
    let o = c.run("2026-09", "2026-09", false);
    assert_eq!(o.status, 2);
    assert!(o.stderr.contains("needs cycle 2026-08"), "{}", o.stderr);
    c.ok("2026-09", "2026-09", true);
    // 11 without 10.
    let o = c.run("2026-11", "2026-11", false);
    assert_eq!(o.status, 2);
    assert!(o.stderr.contains("needs cycle 2026-10"), "{}", o.stderr);
    // --first-cycle when an earlier cycle is in the state.
    let o = c.run("2026-10", "2026-10", true);
    assert_eq!(o.status, 2);
    assert!(
        o.stderr.contains("holds a chain that starts at 2026-09"),
        "{}",
        o.stderr
    );
    assert!(!c.out.join("2026-10").exists());
}

#[test]
fn first_cycle_never_rewrites_a_chain_from_another_month() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    let before = c.snapshot();
    // A month before the chain's first, and one inside it: exit 2, nothing changed, and the
    // message says how to start a new chain.
    for cycle in ["2026-08", "2026-10"] {
        let o = c.run(cycle, "2026-09", true);
        assert_eq!(o.status, 2, "{cycle}: {}", o.stderr);
        assert!(o.stderr.contains("new --state"), "{}", o.stderr);
        assert!(o.stderr.contains("Nothing was changed"), "{}", o.stderr);
        assert_eq!(c.snapshot(), before, "{cycle}");
    }
    // The chain's own first cycle may be re-run: the later cycle becomes stale.
    c.ok("2026-09", "2026-09", true);
    let mut status = incentives();
    status.args(["status", "--state"]).arg(&c.state);
    assert!(run(&mut status).stdout.contains("2026-10  STALE"));
}

#[test]
fn rerunning_a_cycle_replaces_it_and_marks_later_cycles_stale() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    c.ok("2026-11", "2026-11", false);
    c.ok("2026-10", "2026-10-corrected", false);
    // B1 corrected: −1,250 × 8 % = −100.00: 500 − 100 − 80 = 320.00.
    assert_eq!(
        c.credited("2026-10"),
        map(&[("DS1", "-30.00"), ("SP1", "320.00")])
    );
    let mut status = incentives();
    status.args(["status", "--state"]).arg(&c.state);
    assert!(run(&mut status).stdout.contains("2026-11  STALE"));
    // 12 follows a stale 11: refused until 11 is re-run.
    let o = c.run("2026-12", "2026-11", false);
    assert_eq!(o.status, 2);
    assert!(o.stderr.contains("2026-11 is stale"), "{}", o.stderr);
    c.ok("2026-11", "2026-11", false);
    // O1 now has 800 − 100 = 700.00 left: C1 −640.00, C2 −8.00 (60.00 left):
    // 50 − 640 − 8 + 80 = −518.00.
    assert_eq!(c.credited("2026-11"), map(&[("SP1", "-518.00")]));
    let mut status = incentives();
    status.args(["status", "--state"]).arg(&c.state);
    assert!(!run(&mut status).stdout.contains("STALE"));
}

#[test]
fn the_same_chain_twice_gives_identical_outputs_and_state() {
    let a = Chain::new();
    let b = Chain::new();
    for c in [&a, &b] {
        c.ok("2026-09", "2026-09", true);
        c.ok("2026-10", "2026-10", false);
        c.ok("2026-11", "2026-11", false);
    }
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(sa.0, sb.0);
    assert_eq!(sa.1, sb.1);
    assert!(sa.1.iter().any(|r| r.starts_with("pool_parts|")));
}

#[test]
fn a_second_run_on_the_same_state_exits_5_naming_the_holder() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    let mut holder = std::process::Command::new(assert_cmd::cargo::cargo_bin("incentives"));
    holder
        .env_clear()
        .env("INCENTIVES_PAUSE_AT", "loaded")
        .args(["run", "--cycle", "2026-10", "--input"])
        .arg(fixture("chain/2026-10"))
        .arg("--out")
        .arg(&c.out)
        .arg("--state")
        .arg(&c.state)
        .stderr(std::process::Stdio::piped());
    let mut child = holder.spawn().unwrap();
    wait_for_pause(&mut child);
    let o = c.run("2026-10", "2026-10", false);
    assert_eq!(o.status, 5, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("pid {}", child.id())),
        "{}",
        o.stderr
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed holder's lock died with it.
    let o = c.run("2026-10", "2026-10", false);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(o.stderr.contains("is gone"), "{}", o.stderr);
}

/// Reads the child's stderr until it says it paused.
fn wait_for_pause(child: &mut std::process::Child) {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stderr);
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.contains("paused at") {
            return;
        }
        line.clear();
    }
    panic!("the child ended without pausing");
}

/// A run killed at any phase leaves outputs and state as they were (or, after its commit, as the
/// finished run would have left them once the next run completes the publication), and the next
/// run succeeds with the same results as a run that was never interrupted.
#[test]
fn a_run_killed_at_any_phase_loses_nothing() {
    let clean = Chain::new();
    for (cycle, first) in [("2026-09", true), ("2026-10", false), ("2026-11", false)] {
        clean.ok(cycle, cycle, first);
    }
    let finished = clean.snapshot();

    for phase in ["loaded", "staged", "committed", "published"] {
        for sigkill in [false, true] {
            let c = Chain::new();
            c.ok("2026-09", "2026-09", true);
            c.ok("2026-10", "2026-10", false);
            let before = c.snapshot();
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("incentives"));
            cmd.env_clear()
                .env(
                    if sigkill {
                        "INCENTIVES_PAUSE_AT"
                    } else {
                        "INCENTIVES_ABORT_AT"
                    },
                    phase,
                )
                .args(["run", "--cycle", "2026-11", "--input"])
                .arg(fixture("chain/2026-11"))
                .arg("--out")
                .arg(&c.out)
                .arg("--state")
                .arg(&c.state)
                .stderr(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null());
            let mut child = cmd.spawn().unwrap();
            if sigkill {
                wait_for_pause(&mut child);
                child.kill().unwrap();
            }
            let status = child.wait().unwrap();
            assert!(!status.success(), "{phase}: the run was to die");
            let after = c.snapshot();
            match phase {
                "loaded" | "staged" => assert_eq!(after, before, "{phase}, sigkill {sigkill}"),
                _ => {
                    // Committed: the previous cycles' outputs are untouched.
                    for (name, text) in &before.0 {
                        assert_eq!(after.0.get(name), Some(text), "{phase}: {name}");
                    }
                }
            }
            // The next run completes any interrupted publication, then runs 11 again.
            c.ok("2026-11", "2026-11", false);
            assert_eq!(c.snapshot(), finished, "{phase}, sigkill {sigkill}");
            let debris: Vec<String> = fs::read_dir(&c.out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".2026-11.run-"))
                .collect();
            assert_eq!(
                debris.len(),
                1,
                "{phase}: only the published folder is left: {debris:?}"
            );
        }
    }
}

#[test]
fn vouchers_lots_and_withdrawals_carry_through_the_chain() {
    let c = Chain::new();
    c.ok("2026-09", "2026-09", true);
    c.ok("2026-10", "2026-10", false);
    c.ok("2026-11", "2026-11", false);
    let voucher = |cycle: &str| {
        common::csv_rows(&c.out.join(cycle).join("voucher_balances.csv"))
            .into_iter()
            .find(|r| r["voucher_id"] == "V1")
            .map(|r| {
                (
                    r["opening"].clone(),
                    r["deducted"].clone(),
                    r["closing"].clone(),
                )
            })
            .unwrap()
    };
    // 09: A2 (customer C2) 2,000.00 from 15,000.00. 10: B3 1,000.00 from the state's 13,000.00.
    assert_eq!(
        voucher("2026-09"),
        ("15000.00".into(), "2000.00".into(), "13000.00".into())
    );
    assert_eq!(
        voucher("2026-10"),
        ("13000.00".into(), "1000.00".into(), "12000.00".into())
    );
    assert_eq!(
        voucher("2026-11"),
        ("12000.00".into(), "0.00".into(), "12000.00".into())
    );
    // The stale opening balance listed again in 10 is a reject naming both figures.
    let rejects = fs::read_to_string(c.out.join("2026-10/rejects.csv")).unwrap();
    assert!(
        rejects.contains("vouchers.csv,2,opening_balance,15000.00"),
        "{rejects}"
    );
    assert!(
        rejects.contains("closing balance 13000.00 of cycle 2026-09"),
        "{rejects}"
    );

    let lot = |cycle: &str, id: &str| {
        common::csv_rows(&c.out.join(cycle).join("expiry_report.csv"))
            .into_iter()
            .find(|r| r["kind"] == "incentive" && r["lot_id"] == id && r["partner_id"] == "SP1")
            .map(|r| r["balance"].clone())
    };
    // Lot 2026-09 (800.00) is notified on 2026-10-10: W1 (500.00, submitted 10-12) takes it.
    assert_eq!(
        lot("2026-09", "2026-09"),
        None,
        "not notified yet at 09's bill generation"
    );
    assert_eq!(lot("2026-10", "2026-09"), Some("300.00".into()));
    // 11's report shows the lots at bill generation; 11's net −470.00 takes effect when lot
    // 2026-11 would be notified: it empties lot 2026-10 (220.00), then takes 250.00 of 2026-09.
    assert_eq!(lot("2026-11", "2026-10"), Some("220.00".into()));
    assert_eq!(lot("2026-11", "2026-09"), Some("300.00".into()));
    let conn = rusqlite::Connection::open(c.state.join("state.db")).unwrap();
    let closing: Vec<(String, String)> = conn
        .prepare("SELECT lot_id, balance FROM lot_state WHERE cycle = '2026-11' AND partner_id = 'SP1' ORDER BY lot_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        closing,
        vec![
            ("2026-09".into(), "50.00".into()),
            ("2026-10".into(), "0.00".into())
        ]
    );
    // W1 again (now paid) in 11's export changes nothing.
    let journal = fs::read_to_string(c.out.join("2026-11/ledger.csv")).unwrap();
    assert!(!journal.contains(",withdrawal,"), "{journal}");
    let journal = fs::read_to_string(c.out.join("2026-10/ledger.csv")).unwrap();
    assert!(
        journal.contains(",withdrawal,W1,2026-10,2026-10,500.00,,-500.00,CNY"),
        "{journal}"
    );
}
