//! For the people who run it: the summary, plain log lines for cron (text and JSON), --quiet,
//! progress bars under a real terminal, the HTML report, completions and the man page.

mod common;

use common::{fixture, incentives, run};
use std::fs;

/// Log lines without their timestamps and durations.
fn plain_logs(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| {
            let l = l.split_once(" INFO ").map_or(l, |(_, rest)| rest);
            match l.rfind(" ms=") {
                Some(i) => format!("INFO {} ms=[TIME]", &l[..i]),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cron_gets_plain_log_lines_and_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let o = common::run_demo(tmp.path(), &[]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        !o.stdout.contains('\u{1b}') && !o.stderr.contains('\u{1b}'),
        "no colour when not a terminal"
    );
    insta::assert_snapshot!("cron_logs", plain_logs(&o.stderr));
    insta::assert_snapshot!("summary", common::filter(&o.stdout, tmp.path()));
}

#[test]
fn log_lines_can_be_json_and_quiet_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let o = common::run_demo(tmp.path(), &["--log-format", "json"]);
    assert_eq!(o.status, 0);
    let phases: Vec<String> = o
        .stderr
        .lines()
        // Every line is JSON; the start and finish events sit around the phases.
        .filter_map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["fields"]["phase"].as_str().map(String::from)
        })
        .collect();
    assert_eq!(
        phases,
        [
            "load",
            "evaluate",
            "balances",
            "reconcile",
            "write",
            "commit"
        ]
    );
    let quiet = tempfile::tempdir().unwrap();
    let o = common::run_demo(quiet.path(), &["--quiet"]);
    assert_eq!(
        (o.status, o.stdout.as_str(), o.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn a_terminal_gets_bars_and_a_coloured_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("incentives");
    let command = format!(
        "{} run --first-cycle --cycle 2026-10 --input {} --out {} --state {}",
        bin.display(),
        fixture("demo/2026-10").display(),
        tmp.path().display(),
        tmp.path().join(".state").display()
    );
    // `script` gives the run a pseudo-terminal, as a person at a terminal has.
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) runs");
    assert!(output.status.success());
    let raw = String::from_utf8_lossy(&output.stdout);
    assert!(
        raw.contains("\u{1b}[1mincentives: cycle 2026-10 done"),
        "bold summary header:\n{raw}"
    );
    // Strip escape sequences and spinner frames; keep each finished phase line and the summary.
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            text.push(c);
        }
    }
    // Redraws are joined by cursor movements, so a finished line may follow a spinner frame on
    // the same segment: take every "✓ " wherever it starts.
    let mut lines: Vec<String> = Vec::new();
    for segment in text.split(['\r', '\n']) {
        let s = segment.trim_end();
        for (at, _) in s.match_indices("✓ ") {
            let done = &s[at + "✓ ".len()..];
            let line = format!("✓ {}", done.split(" in ").next().unwrap_or(done));
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        if let Some(at) = s.find("incentives: cycle") {
            lines.push(s[at..].to_string());
        } else if s.starts_with("  ") {
            lines.push(s.to_string());
        }
    }
    insta::assert_snapshot!("terminal", common::filter(&lines.join("\n"), tmp.path()));
}

#[test]
fn the_html_report_draws_each_partner_waterfall_from_the_explanations() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(common::run_demo(tmp.path(), &[]).status, 0);
    let mut cmd = incentives();
    cmd.args(["report", "--cycle", "2026-10", "--out"])
        .arg(tmp.path());
    let o = run(&mut cmd);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let html = fs::read_to_string(tmp.path().join("2026-10-report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    // One section (two waterfalls) per partner and currency of explanations.csv, whose figures
    // are the sums of that partner's rows.
    let mut reader = csv::Reader::from_path(tmp.path().join("2026-10/explanations.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let mut sums: std::collections::BTreeMap<
        (String, String),
        std::collections::BTreeMap<String, rust_decimal::Decimal>,
    > = Default::default();
    for r in reader.records() {
        let r = r.unwrap();
        let key = (r[1].to_string(), r[3].to_string());
        let entry = sums.entry(key).or_default();
        for (h, v) in headers.iter().zip(r.iter()) {
            if let Ok(d) = v.parse::<rust_decimal::Decimal>() {
                *entry.entry(h.to_string()).or_default() += d;
            }
        }
    }
    // The cycle's page links one page per partner (all nine fit in the top 50); each partner's
    // page holds one section (two waterfalls) per currency of its explanation rows.
    assert_eq!(html.matches("<section id=").count(), 0);
    for ((partner, currency), s) in &sums {
        assert!(html.contains(&format!("href=\"2026-10-report-{partner}.html\"")));
        let page =
            fs::read_to_string(tmp.path().join(format!("2026-10-report-{partner}.html"))).unwrap();
        let start = page
            .find(&format!("<section id=\"{partner}-{currency}\""))
            .unwrap();
        let section = &page[start..start + page[start..].find("</section>").unwrap()];
        for (step, column) in [
            ("consumption", "consumption"),
            ("eligible base", "eligible_base"),
            ("earned now", "earned_now"),
            ("carried in", "carried_in"),
            ("clawed back", "clawed_back"),
            ("override", "override"),
            ("tier", "tier"),
            ("incentive", "incentive"),
        ] {
            let figure = format!(
                "data-step=\"{step}\">{}<",
                incentives::analyst::grouped(s[column], 2)
            );
            assert!(section.contains(&figure), "{partner} {currency}: {figure}");
        }
    }
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = incentives();
        cmd.args(["completions", shell]);
        let o = run(&mut cmd);
        assert_eq!(o.status, 0);
        assert!(
            o.stdout.contains("incentives") && o.stdout.contains("explain"),
            "{shell}"
        );
    }
    let mut cmd = incentives();
    cmd.arg("man");
    let o = run(&mut cmd);
    assert_eq!(o.status, 0);
    assert!(
        o.stdout.contains(".TH incentives"),
        "{}",
        &o.stdout[..200.min(o.stdout.len())]
    );
}
