//! explanations.csv in both languages, the figures in each paragraph, `incentives explain`, and a
//! broken identity stopping the run with exit 4 before anything is published.

mod common;

use common::{fixture, incentives, run};
use incentives::explain::AMOUNT_COLUMNS;
use std::fs;

/// Every decimal number written in `text` (e.g. `1234.56`, `-20.00`).
fn figures(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        if chars[i] == '-' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
            i += 1;
        }
        if chars[i].is_ascii_digit() && (start == 0 || !chars[start - 1].is_alphanumeric()) {
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || (chars[i] == ',' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())))
            {
                i += 1;
            }
            // Thousands separators are for reading: the figure is the digits.
            let token: String = chars[start..i].iter().filter(|c| **c != ',').collect();
            let token = token.trim_end_matches('.').to_string();
            if token.contains('.') {
                found.push(token);
            }
        } else {
            i = start + 1;
        }
    }
    found
}

#[test]
fn explanations_in_both_languages_and_every_figure_is_a_column() {
    for lang in ["en", "zh"] {
        let tmp = tempfile::tempdir().unwrap();
        let outcome = common::run_demo(tmp.path(), &["--lang", lang]);
        assert_eq!(outcome.status, 0, "{}", outcome.stderr);
        let path = tmp.path().join("2026-10/explanations.csv");
        insta::assert_snapshot!(
            format!("demo_explanations_{lang}"),
            fs::read_to_string(&path).unwrap()
        );
        // Every figure in a paragraph is a column of its row (or a sum of two, the consumption
        // credited next cycle, or a deferral's part), at the currency's scale, without sign.
        let prose = |s: &str| {
            let d: rust_decimal::Decimal = s.parse().unwrap();
            incentives::analyst::prose(d.abs(), 2).replace(',', "")
        };
        for row in common::csv_rows(&path) {
            let mut columns: Vec<String> = AMOUNT_COLUMNS.iter().map(|c| prose(&row[*c])).collect();
            let by_reason = row["excluded_by_reason"]
                .split(';')
                .filter_map(|p| p.split('=').nth(1))
                .map(prose);
            columns.extend(by_reason);
            let deferred: rust_decimal::Decimal = row["deferred_out_base"]
                .parse::<rust_decimal::Decimal>()
                .unwrap()
                + row["deferred_out_non_base"]
                    .parse::<rust_decimal::Decimal>()
                    .unwrap();
            columns.push(prose(&deferred.to_string()));
            let paragraph = &row["explanation"];
            assert!(
                !paragraph.contains(" -") && !paragraph.contains("（-"),
                "{paragraph}"
            );
            let found = figures(paragraph);
            assert!(!found.is_empty(), "{paragraph}");
            for f in found {
                // A deferral's part is a sum of lines: checked by the identities, not here.
                if paragraph.contains("next cycle (") || paragraph.contains("计入下一账期（")
                {
                    continue;
                }
                assert!(
                    columns.contains(&f),
                    "{lang}: {f} in {paragraph:?} is no column of its row"
                );
            }
        }
    }
}

#[test]
fn explain_shows_the_waterfall_the_lines_and_a_lines_story() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(common::run_demo(tmp.path(), &[]).status, 0);
    let explain = |args: &[&str]| {
        let mut cmd = incentives();
        cmd.args(["explain", "--cycle", "2026-10", "--out"])
            .arg(tmp.path())
            .args(args);
        run(&mut cmd)
    };
    let customer = explain(&["--partner", "SP001", "--customer", "C101"]);
    assert_eq!(customer.status, 0, "{}", customer.stderr);
    insta::assert_snapshot!("explain_sp001_c101", customer.stdout);
    let line = explain(&["--partner", "SP001", "--line", "L010"]);
    assert_eq!(line.status, 0, "{}", line.stderr);
    insta::assert_snapshot!("explain_line_l010", line.stdout);
    let partner = explain(&["--partner", "SP002", "--limit", "2"]);
    assert_eq!(partner.status, 0, "{}", partner.stderr);
    insta::assert_snapshot!("explain_sp002", partner.stdout);
    assert_eq!(explain(&["--partner", "NOPE"]).status, 2);
}

#[test]
fn a_broken_identity_fails_with_exit_4_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.env("INCENTIVES_BREAK_IDENTITY", "1")
        .args(["run", "--first-cycle", "--cycle", "2026-10", "--input"])
        .arg(fixture("demo/2026-10"))
        .arg("--out")
        .arg(tmp.path())
        .arg("--state")
        .arg(tmp.path().join(".state"));
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 4, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("consumption = eligible_base"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("difference -0.01"),
        "{}",
        outcome.stderr
    );
    assert!(!tmp.path().join("2026-10").exists());
    let mut status = incentives();
    status
        .args(["status", "--state"])
        .arg(tmp.path().join(".state"));
    assert!(!run(&mut status).stdout.contains("2026-10"));
}
