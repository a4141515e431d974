//! Errors for people: the ten likeliest mistakes, each message naming what was wrong, where
//! (file, row, column) and what to do, with the exit code of SPEC §7.

mod common;

use common::{fixture, incentives, run};
use std::path::Path;

fn outcome_text(o: &common::Outcome, tmp: &Path) -> String {
    let stderr: String = o
        .stderr
        .lines()
        .filter(|l| !l.contains(" INFO "))
        .map(|l| l.to_string() + "\n")
        .collect();
    let mut text = format!("status: {}\n{}", o.status, common::filter(&stderr, tmp));
    // A pid and a start time vary from run to run.
    if let Some(i) = text.find("(pid ") {
        let end = text[i..].find(')').map_or(text.len(), |e| i + e + 1);
        text.replace_range(i..end, "(pid [PID] started [TIME])");
    }
    text
}

fn run_cycle(tmp: &Path, cycle: &str, input: &Path, extra: &[&str]) -> common::Outcome {
    let mut cmd = incentives();
    cmd.args(["run", "--cycle", cycle, "--input"])
        .arg(input)
        .arg("--out")
        .arg(tmp.join("out"))
        .arg("--state")
        .arg(tmp.join("state"))
        .args(extra);
    run(&mut cmd)
}

#[test]
fn the_ten_likeliest_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let demo = fixture("demo/2026-10");
    // 1. The right folder run as the wrong cycle.
    let mut cases: Vec<(&str, common::Outcome)> = vec![(
        "wrong cycle",
        run_cycle(t, "2026-11", &demo, &["--first-cycle"]),
    )];
    // 2. A cycle whose predecessor was never run.
    cases.push((
        "missing previous cycle",
        run_cycle(t, "2026-10", &demo, &[]),
    ));
    // 3. A folder that does not exist, and one that holds no exports.
    cases.push((
        "no such input folder",
        run_cycle(t, "2026-10", &t.join("nowhere"), &["--first-cycle"]),
    ));
    cases.push((
        "wrong folder",
        run_cycle(t, "2026-10", &fixture("rules"), &["--first-cycle"]),
    ));
    // 4. A typo in a rule file.
    cases.push((
        "rules typo",
        run_cycle(
            t,
            "2026-10",
            &demo,
            &["--first-cycle", "--rules", "fixtures/rules/unknown_field"],
        ),
    ));
    // 5. A GBK export and a missing column.
    cases.push((
        "GBK file",
        run_cycle(
            t,
            "2026-10",
            &fixture("bad/gbk_encoding"),
            &["--first-cycle"],
        ),
    ));
    cases.push((
        "missing column",
        run_cycle(
            t,
            "2026-10",
            &fixture("bad/missing_column"),
            &["--first-cycle"],
        ),
    ));
    // 6. A cycle written YYYY/MM.
    cases.push((
        "cycle format",
        run_cycle(t, "2026/10", &demo, &["--first-cycle"]),
    ));
    // 7. --first-cycle on a chain that already has an earlier cycle.
    assert_eq!(
        run_cycle(t, "2026-09", &fixture("chain/2026-09"), &["--first-cycle"]).status,
        0
    );
    cases.push((
        "first cycle twice",
        run_cycle(t, "2026-10", &fixture("chain/2026-10"), &["--first-cycle"]),
    ));
    // 8. A cycle after a stale one.
    assert_eq!(
        run_cycle(t, "2026-10", &fixture("chain/2026-10"), &[]).status,
        0
    );
    assert_eq!(
        run_cycle(t, "2026-09", &fixture("chain/2026-09"), &["--first-cycle"]).status,
        0
    );
    cases.push((
        "stale previous cycle",
        run_cycle(t, "2026-11", &fixture("chain/2026-11"), &[]),
    ));
    // 9. A second run while one holds the state.
    let mut holder = std::process::Command::new(assert_cmd::cargo::cargo_bin("incentives"));
    holder
        .env_clear()
        .env("INCENTIVES_PAUSE_AT", "loaded")
        .args(["run", "--cycle", "2026-10", "--input"])
        .arg(fixture("chain/2026-10"))
        .arg("--out")
        .arg(t.join("out"))
        .arg("--state")
        .arg(t.join("state"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = holder.spawn().unwrap();
    {
        use std::io::{BufRead, BufReader};
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && !line.contains("paused at") {
            line.clear();
        }
    }
    cases.push((
        "locked state",
        run_cycle(t, "2026-10", &fixture("chain/2026-10"), &[]),
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    // 10. Asking to explain a cycle that was never published there.
    let mut explain = incentives();
    explain
        .args(["explain", "--cycle", "2027-01", "--partner", "SP1", "--out"])
        .arg(t.join("out"));
    cases.push(("explain an unpublished cycle", run(&mut explain)));

    let mut text = String::new();
    for (name, o) in &cases {
        assert!(
            matches!(o.status, 2 | 3 | 5),
            "{name}: exit {}\n{}",
            o.status,
            o.stderr
        );
        assert!(o.stderr.contains("error:"), "{name}: {}", o.stderr);
        text.push_str(&format!("=== {name}\n{}\n", outcome_text(o, t)));
    }
    insta::assert_snapshot!("ten_mistakes", text);
}
