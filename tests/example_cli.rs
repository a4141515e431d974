//! The worked first cycle (`fixtures/example/first-cycle`, a copy of the contract's
//! `../shared/examples/first-cycle`): totals, fates, vouchers, lots,
//! subsidies and rejects must match what an independent implementation of the reference policy
//! computed. Rule ids, reason codes and row order are free; amounts and decisions are not.

mod common;

use common::{incentives, repo, run};
use incentives::explain::AMOUNT_COLUMNS;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

fn example() -> PathBuf {
    repo().join("fixtures/example/first-cycle")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[test]
fn first_cycle_matches_the_worked_example() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.args(["run", "--first-cycle", "--cycle", "2026-10", "--input"])
        .arg(example().join("bundle"))
        .arg("--out")
        .arg(tmp.path())
        .arg("--state")
        .arg(tmp.path().join(".state"));
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    let out = tmp.path().join("2026-10");
    let expected = example().join("expected");

    // Σ ledger amounts per partner × credit cycle × lever × kind × currency.
    let key = |r: &BTreeMap<String, String>| {
        ["partner_id", "credit_cycle", "lever", "kind", "currency"].map(|k| r[k].clone())
    };
    let mut want: BTreeMap<[String; 5], Decimal> = BTreeMap::new();
    for r in common::csv_rows(&expected.join("expected_totals.csv")) {
        *want.entry(key(&r)).or_default() += dec(&r["amount"]);
    }
    let mut got: BTreeMap<[String; 5], Decimal> = BTreeMap::new();
    for r in common::csv_rows(&out.join("ledger.csv")) {
        *got.entry(key(&r)).or_default() += dec(&r["amount"]);
    }
    assert_eq!(got, want);

    // Every line's fate and credit cycle.
    let fates = |rows: Vec<BTreeMap<String, String>>| -> BTreeMap<String, (String, String)> {
        rows.into_iter()
            .map(|r| {
                (
                    r["line_id"].clone(),
                    (r["fate"].clone(), r["credit_cycle"].clone()),
                )
            })
            .collect()
    };
    assert_eq!(
        fates(common::csv_rows(&out.join("line_outcomes.csv"))),
        fates(common::csv_rows(&expected.join("expected_outcomes.csv")))
    );

    // Vouchers: balances and their report window; deductions per (line, voucher).
    let report: BTreeMap<(String, String), BTreeMap<String, String>> =
        common::csv_rows(&out.join("expiry_report.csv"))
            .into_iter()
            .map(|r| ((r["kind"].clone(), r["lot_id"].clone()), r))
            .collect();
    let balances: BTreeMap<String, BTreeMap<String, String>> =
        common::csv_rows(&out.join("voucher_balances.csv"))
            .into_iter()
            .map(|r| (r["voucher_id"].clone(), r))
            .collect();
    let want_vouchers = common::csv_rows(&expected.join("expected_vouchers.csv"));
    assert_eq!(balances.len(), want_vouchers.len());
    for w in want_vouchers {
        let g = &balances[&w["voucher_id"]];
        for f in ["opening", "deducted", "expired", "closing"] {
            assert_eq!(dec(&g[f]), dec(&w[f]), "{} {f}", w["voucher_id"]);
        }
        let r = &report[&("voucher".to_string(), w["voucher_id"].clone())];
        assert_eq!(
            (&r["expires_on"], &r["window"]),
            (&w["expires_on"], &w["window"]),
            "{}",
            w["voucher_id"]
        );
    }
    let deductions = |rows: Vec<BTreeMap<String, String>>| -> BTreeMap<(String, String), Decimal> {
        let mut m = BTreeMap::new();
        for r in rows {
            *m.entry((r["line_id"].clone(), r["voucher_id"].clone()))
                .or_default() += dec(&r["amount"]);
        }
        m
    };
    assert_eq!(
        deductions(common::csv_rows(&out.join("voucher_deductions.csv"))),
        deductions(common::csv_rows(
            &expected.join("expected_voucher_deductions.csv")
        ))
    );

    // Incentive lots after withdrawals and expiry, with their windows.
    let want_lots = common::csv_rows(&expected.join("expected_lots.csv"));
    assert_eq!(
        report.keys().filter(|k| k.0 == "incentive").count(),
        want_lots.len()
    );
    for w in want_lots {
        let r = &report[&("incentive".to_string(), w["lot_id"].clone())];
        assert_eq!(dec(&r["balance"]), dec(&w["balance"]), "{}", w["lot_id"]);
        assert_eq!(
            (&r["expires_on"], &r["window"]),
            (&w["expires_on"], &w["window"]),
            "{}",
            w["lot_id"]
        );
    }

    // One decision per project.
    let decisions = |rows: Vec<BTreeMap<String, String>>| -> BTreeMap<String, (String, Decimal)> {
        rows.into_iter()
            .map(|r| {
                (
                    r["project_id"].clone(),
                    (r["decision"].clone(), dec(&r["amount"])),
                )
            })
            .collect()
    };
    assert_eq!(
        decisions(common::csv_rows(&out.join("subsidies.csv"))),
        decisions(common::csv_rows(&expected.join("expected_subsidies.csv")))
    );

    // Every figure of every explanation row (reason codes and paragraphs are free).
    let figures =
        |rows: Vec<BTreeMap<String, String>>| -> BTreeMap<(String, String, String), Vec<Decimal>> {
            rows.into_iter()
                .map(|r| {
                    let key = (
                        r["partner_id"].clone(),
                        r["customer_id"].clone(),
                        r["currency"].clone(),
                    );
                    let values = AMOUNT_COLUMNS.map(|c| dec(&r[c])).to_vec();
                    (key, values)
                })
                .collect()
        };
    assert_eq!(
        figures(common::csv_rows(&out.join("explanations.csv"))),
        figures(common::csv_rows(
            &expected.join("expected_explanations.csv")
        ))
    );

    // The rows rejected, by file, row and column.
    let rejects = |rows: Vec<BTreeMap<String, String>>| -> Vec<(String, String, String)> {
        rows.into_iter()
            .map(|r| (r["file"].clone(), r["row"].clone(), r["column"].clone()))
            .collect()
    };
    assert_eq!(
        rejects(common::csv_rows(&out.join("rejects.csv"))),
        rejects(common::csv_rows(&expected.join("expected_rejects.csv")))
    );
}
