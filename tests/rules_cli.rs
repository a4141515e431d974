//! `incentives check` on the reference policy and on one broken rule set per class of problem,
//! `run` refusing a broken set, and the demo cycle's ledger and line outcomes under snapshot.

mod common;

use common::{fixture, incentives, run};
use std::collections::HashMap;
use std::fs;

#[test]
fn reference_policy_passes_check() {
    let mut cmd = incentives();
    cmd.args(["check", "--rules", "rules/reference"]);
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    insta::assert_snapshot!("check_reference", outcome.stdout);
}

/// Every class of rule-set problem: exit 2, and the file, line and column named.
#[test]
fn broken_rule_sets() {
    let mut names: Vec<String> = fs::read_dir(fixture("rules"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    for name in names {
        let mut cmd = incentives();
        cmd.args(["check", "--rules", &format!("fixtures/rules/{name}")]);
        let outcome = run(&mut cmd);
        let expected = if name == "valid" { 0 } else { 2 };
        assert_eq!(outcome.status, expected, "{name}: {}", outcome.stderr);
        insta::assert_snapshot!(
            format!("check__{name}"),
            format!(
                "status: {}\n--- stdout\n{}--- stderr\n{}",
                outcome.status, outcome.stdout, outcome.stderr
            )
        );
    }
}

#[test]
fn run_refuses_a_rule_set_that_fails_check() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = common::run_demo(tmp.path(), &["--rules", "fixtures/rules/tier_gap"]);
    assert_eq!(outcome.status, 2);
    assert!(
        outcome.stderr.contains("tier.toml:6:1"),
        "{}",
        outcome.stderr
    );
    assert!(!tmp.path().join("2026-10").exists());
}

#[test]
fn demo_ledger_and_outcomes() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = common::run_demo(tmp.path(), &[]);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    let out = tmp.path().join("2026-10");
    let ledger = fs::read_to_string(out.join("ledger.csv")).unwrap();
    let outcomes = fs::read_to_string(out.join("line_outcomes.csv")).unwrap();
    insta::assert_snapshot!("demo_ledger", ledger);
    insta::assert_snapshot!("demo_line_outcomes", outcomes);
    for file in [
        "voucher_deductions.csv",
        "voucher_balances.csv",
        "expiry_report.csv",
        "subsidies.csv",
    ] {
        insta::assert_snapshot!(
            format!("demo_{file}"),
            fs::read_to_string(out.join(file)).unwrap()
        );
    }

    // Every input line exactly once.
    let input = fs::read_to_string(fixture("demo/2026-10/bill_lines.csv")).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in outcomes.lines().skip(1) {
        *seen
            .entry(line.split(',').next().unwrap().to_string())
            .or_default() += 1;
    }
    for line in input.lines().skip(1) {
        let id = line.split(',').next().unwrap();
        assert_eq!(seen.get(id), Some(&1), "{id}");
    }
    assert_eq!(seen.len(), input.lines().count() - 1);

    // Each partner's statement is its part of the journal.
    let sp001 = fs::read_to_string(out.join("ledgers/SP001.csv")).unwrap();
    let from_journal: Vec<&str> = ledger
        .lines()
        .filter(|l| l.split(',').nth(1) == Some("SP001"))
        .collect();
    assert_eq!(sp001.lines().skip(1).collect::<Vec<_>>(), from_journal);
}

#[test]
fn as_of_moves_the_expiry_report_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = common::run_demo(tmp.path(), &["--as-of", "2027-10-01T00:00:00+08:00"]);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    let report = fs::read_to_string(tmp.path().join("2026-10/expiry_report.csv")).unwrap();
    // SP004 left on 2026-10-15: its lot expires 2027-10-15, 14 days after the as-of date (not
    // `later`, as counted from bill generation); V006 (2027-05-15) has expired by then.
    assert!(
        report.contains("SP004,incentive,OB004,CNY,800.00,2027-10-15,30,"),
        "{report}"
    );
    assert!(
        report.contains("SP003,voucher,V006,USD,500.00,2027-05-15,expired,"),
        "{report}"
    );
}

/// A rate of 8 places runs in both formats; a rate above 1 is accepted with a warning naming
/// its file and line, by `check` and by `run`.
#[test]
fn rates_check_accepts_always_run() {
    let rules = tempfile::tempdir().unwrap();
    for entry in fs::read_dir("rules/reference").unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, rules.path().join(path.file_name().unwrap())).unwrap();
    }
    let edit = |file: &str, from: &str, to: &str| {
        let path = rules.path().join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from));
        fs::write(&path, text.replace(from, to)).unwrap();
    };
    edit(
        "resale_base.toml",
        "rate = \"0.08\"",
        "rate = \"0.12345678\"",
    );
    edit("strategic_promo.toml", "rate = \"0.03\"", "rate = \"1.5\"");
    let mut cmd = incentives();
    cmd.args(["check", "--rules"]).arg(rules.path());
    let check = run(&mut cmd);
    assert_eq!(check.status, 0, "{}", check.stderr);
    assert!(
        check.stderr.contains("strategic_promo.toml:5:8")
            && check.stderr.contains("above 1 (100 %)"),
        "{}",
        check.stderr
    );
    assert!(
        !check.stderr.contains("resale_base.toml"),
        "{}",
        check.stderr
    );
    for format in ["csv", "parquet"] {
        let out = tempfile::tempdir().unwrap();
        let rules_arg = rules.path().to_str().unwrap();
        let outcome = common::run_demo(out.path(), &["--rules", rules_arg, "--format", format]);
        assert_eq!(outcome.status, 0, "{format}: {}", outcome.stderr);
        assert!(
            outcome.stderr.contains("above 1 (100 %)"),
            "{}",
            outcome.stderr
        );
    }
    let out = tempfile::tempdir().unwrap();
    let outcome = common::run_demo(out.path(), &["--rules", rules.path().to_str().unwrap()]);
    let ledger = fs::read_to_string(out.path().join("2026-10/ledger.csv")).unwrap();
    assert!(
        ledger.contains(",0.12345678,"),
        "the rate is written exactly"
    );
    assert_eq!(outcome.status, 0);
}
