//! End to end: `incentives run` on the demo bundle and on every class of bad input in
//! `fixtures/bad/`, snapshotting exit status, messages and `rejects.csv`.

mod common;

use common::{fixture, incentives, manifest_without_timings, run};
use std::fs;

/// Every class of bad input: no panic, the exit code of SPEC §7, and file/row/column/value named.
#[test]
fn bad_bundles() {
    let mut names: Vec<String> = fs::read_dir(fixture("bad"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 15, "fixtures/bad has a bundle per class");
    for name in names {
        let tmp = tempfile::tempdir().unwrap();
        let outcome = common::run_first_cycle(&fixture("bad").join(&name), tmp.path(), &[]);
        assert!(
            matches!(outcome.status, 0 | 3),
            "{name}: exit {} (never a panic)\n{}",
            outcome.status,
            outcome.stderr
        );
        let mut text = outcome.render(tmp.path());
        let rejects = tmp.path().join("2026-10/rejects.csv");
        if outcome.status == 0 {
            text.push_str("--- rejects.csv\n");
            text.push_str(&fs::read_to_string(&rejects).unwrap());
        } else {
            assert!(!rejects.exists(), "{name}: a failed run publishes nothing");
        }
        insta::assert_snapshot!(format!("bad__{name}"), text);
    }
}

#[test]
fn demo_bundle_loads_with_zero_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = common::run_first_cycle(&fixture("demo/2026-10"), tmp.path(), &[]);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    let published = tmp.path().join("2026-10");
    assert_eq!(
        fs::read_to_string(published.join("rejects.csv")).unwrap(),
        "file,row,column,value,reason\n"
    );
    let manifest = manifest_without_timings(&published.join("manifest.json"));
    insta::assert_snapshot!(
        "demo_manifest",
        serde_json::to_string_pretty(&manifest).unwrap()
    );
}

#[test]
fn strict_fails_on_any_reject_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = common::run_first_cycle(&fixture("bad/wrong_cycle"), tmp.path(), &["--strict"]);
    assert_eq!(outcome.status, 3);
    assert!(!tmp.path().join("2026-10").exists());
    insta::assert_snapshot!("strict", outcome.render(tmp.path()));
}

#[test]
fn a_failed_run_leaves_the_previous_result_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let published = tmp.path().join("2026-10");
    assert_eq!(
        common::run_first_cycle(&fixture("bad/duplicate_id"), tmp.path(), &[]).status,
        0
    );
    let before = fs::read(published.join("rejects.csv")).unwrap();

    for failing in ["bad/missing_column", "bad/gbk_encoding", "bad/missing_file"] {
        assert_eq!(
            common::run_first_cycle(&fixture(failing), tmp.path(), &[]).status,
            3
        );
        assert_eq!(
            fs::read(published.join("rejects.csv")).unwrap(),
            before,
            "{failing}"
        );
    }
    assert_eq!(
        common::run_first_cycle(&fixture("bad/wrong_cycle"), tmp.path(), &["--strict"]).status,
        3
    );
    assert_eq!(fs::read(published.join("rejects.csv")).unwrap(), before);
}

#[test]
fn a_rerun_replaces_the_result_and_leaves_no_debris() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        common::run_first_cycle(&fixture("bad/duplicate_id"), tmp.path(), &[]).status,
        0
    );
    assert_eq!(
        common::run_first_cycle(&fixture("demo/2026-10"), tmp.path(), &[]).status,
        0
    );
    let entries: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The publisher's lock file stays (an flock dies with its holder, the file does not).
        .filter(|name| name.contains("2026-10") && name != ".2026-10.lock")
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "the link and the one folder it points at: {entries:?}"
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("2026-10/rejects.csv")).unwrap(),
        "file,row,column,value,reason\n"
    );
}

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for bundle in ["bad/bad_decimal", "demo/2026-10"] {
        assert_eq!(
            common::run_first_cycle(&fixture(bundle), one.path(), &["--threads", "1"]).status,
            0
        );
        assert_eq!(
            common::run_first_cycle(&fixture(bundle), two.path(), &["--threads", "2"]).status,
            0
        );
        let a = one.path().join("2026-10");
        let b = two.path().join("2026-10");
        assert_eq!(
            fs::read(a.join("rejects.csv")).unwrap(),
            fs::read(b.join("rejects.csv")).unwrap()
        );
        assert_eq!(
            manifest_without_timings(&a.join("manifest.json")),
            manifest_without_timings(&b.join("manifest.json"))
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.args(["run", "--cycle", "2026-13", "--input", "."]);
    let bad_cycle = run(&mut cmd);
    assert_eq!(bad_cycle.status, 2);
    let missing_dir = common::run_first_cycle(&tmp.path().join("nowhere"), tmp.path(), &[]);
    assert_eq!(missing_dir.status, 2);
    insta::assert_snapshot!(
        "usage_errors",
        format!(
            "{}\n{}",
            bad_cycle.render(tmp.path()),
            missing_dir.render(tmp.path())
        )
    );
}

#[test]
fn run_help() {
    let mut cmd = incentives();
    cmd.args(["run", "--help"]);
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 0);
    insta::assert_snapshot!("run_help", outcome.stdout);
}

#[test]
fn validate_checks_the_exports_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.current_dir(tmp.path())
        .args(["validate", "--cycle", "2026-10", "--strict", "--input"])
        .arg(fixture("demo/2026-10"));
    let ok = run(&mut cmd);
    assert_eq!(ok.status, 0, "{}", ok.stderr);
    assert!(
        ok.stdout
            .contains("bill_lines.csv                   58 read"),
        "{}",
        ok.stdout
    );
    let mut cmd = incentives();
    cmd.current_dir(tmp.path())
        .args(["validate", "--cycle", "2026-10", "--strict", "--input"])
        .arg(fixture("bad/wrong_cycle"));
    let bad = run(&mut cmd);
    assert_eq!(bad.status, 3);
    assert!(
        bad.stdout
            .contains("rejected: bill_lines.csv row 3, column bill_cycle"),
        "{}",
        bad.stdout
    );
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
