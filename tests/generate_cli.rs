//! `incentives generate`: deterministic per seed whatever the thread count, loads with zero
//! rejects, and with `--bad-rows` exactly the planted rejects.

mod common;

use common::{incentives, run};
use std::fs;
use std::path::Path;

fn generate(out: &Path, threads: &str, extra: &[&str]) {
    let mut cmd = incentives();
    cmd.env("RAYON_NUM_THREADS", threads)
        .args([
            "generate", "--cycle", "2026-10", "--lines", "3000", "--seed", "11", "--out",
        ])
        .arg(out)
        .args(extra);
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
}

/// Runs a generated cycle as a first cycle with its own state.
fn load(input: &Path, out: &Path, cycle: &str) -> String {
    load_in_chain(
        input,
        out,
        cycle,
        &out.join(format!(".state-{cycle}")),
        true,
    )
}

/// Runs a generated cycle on `state`, as the chain's first cycle or after the previous one.
fn load_in_chain(input: &Path, out: &Path, cycle: &str, state: &Path, first: bool) -> String {
    let mut cmd = incentives();
    cmd.args(["run", "--cycle", cycle, "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(state);
    if first {
        cmd.arg("--first-cycle");
    }
    let outcome = run(&mut cmd);
    assert_eq!(outcome.status, 0, "{}", outcome.stderr);
    fs::read_to_string(out.join(cycle).join("rejects.csv")).unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn same_seed_same_bytes_whatever_the_threads_and_zero_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    generate(&a, "1", &[]);
    generate(&b, "2", &[]);
    assert_eq!(files(&a), files(&b));
    let names: Vec<String> = files(&a).into_iter().map(|(n, _)| n).collect();
    for required in [
        "bill_lines.csv",
        "partners.csv",
        "orders.csv",
        "vouchers.csv",
        "distributor_links.csv",
        "capability_tags.csv",
        "projects.csv",
        "withdrawals.csv",
        "opening_balances.csv",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} generated");
    }
    // Another seed gives another bundle.
    let mut cmd = incentives();
    cmd.args([
        "generate", "--cycle", "2026-10", "--lines", "3000", "--seed", "12", "--out",
    ])
    .arg(&c);
    assert_eq!(run(&mut cmd).status, 0);
    assert_ne!(
        fs::read(a.join("bill_lines.csv")).unwrap(),
        fs::read(c.join("bill_lines.csv")).unwrap()
    );

    assert_eq!(
        load(&a, &tmp.path().join("out"), "2026-10"),
        "file,row,column,value,reason\n"
    );
}

#[test]
fn bad_rows_are_exactly_the_listed_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    generate(&bundle, "2", &["--bad-rows", "0.01"]);
    let rejects = load(&bundle, &tmp.path().join("out"), "2026-10");
    let got: Vec<String> = csv::Reader::from_reader(rejects.as_bytes())
        .records()
        .map(|r| {
            let r = r.unwrap();
            let code = r[4].split(':').next().unwrap().to_string();
            format!("{},{},{}", &r[1], &r[2], code)
        })
        .collect();
    let planted: Vec<csv::StringRecord> =
        csv::Reader::from_path(bundle.join("expected_rejects.csv"))
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect();
    let expected: Vec<String> = planted
        .iter()
        .map(|r| format!("{},{},{}", &r[1], &r[2], &r[4]))
        .collect();
    assert!(
        expected.len() >= 10,
        "about 1 % of 3,000 lines planted: {}",
        expected.len()
    );
    assert_eq!(got, expected);
    // `validate` streams the files and decides duplicates through spilled buckets: the same
    // rejects, in the same order, within the smallest budget.
    let spill = tmp.path().join("spill");
    fs::create_dir(&spill).unwrap();
    let validate = |budget: &str| {
        let mut cmd = incentives();
        cmd.args(["validate", "--cycle", "2026-10", "--limit", "100000"])
            .args(["--memory-budget", budget, "--spill"])
            .arg(&spill)
            .arg("--input")
            .arg(&bundle);
        run(&mut cmd)
    };
    let o = validate("256MiB");
    assert_eq!(o.status, 0, "{}", o.stderr);
    let listed: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("rejected: "))
        .collect();
    let planted: Vec<String> = planted
        .iter()
        .map(|r| format!("{} row {}, column {}", &r[0], &r[1], &r[2]))
        .collect();
    assert_eq!(listed.len(), planted.len(), "{}", o.stdout);
    for (l, p) in listed.iter().zip(&planted) {
        assert!(l.starts_with(p.as_str()), "{l} / {p}");
    }
    assert_eq!(fs::read_dir(&spill).unwrap().count(), 0, "buckets removed");
    let o = validate("255MiB");
    assert_eq!(o.status, 2);
    assert!(o.stderr.contains("256MiB"), "{}", o.stderr);
}

#[test]
fn chains_refund_earlier_cycles_and_previous_continues_them() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = tmp.path().join("chain");
    generate(&chain, "2", &["--cycles", "3"]);
    // The chain runs cycle after cycle on one state with zero rejects (withdrawals stay within
    // the lots, vouchers carried by the state are not listed again).
    let state = tmp.path().join("state");
    for (cycle, first) in [("2026-10", true), ("2026-11", false), ("2026-12", false)] {
        assert_eq!(
            load_in_chain(
                &chain.join(cycle),
                &tmp.path().join("out"),
                cycle,
                &state,
                first
            ),
            "file,row,column,value,reason\n"
        );
    }
    // November refunds orders first bought in October.
    let october = fs::read_to_string(chain.join("2026-10/orders.csv")).unwrap();
    let november = fs::read_to_string(chain.join("2026-11/bill_lines.csv")).unwrap();
    let cross = november
        .lines()
        .filter(|l| l.contains(",refund,"))
        .filter_map(|l| l.split(',').nth(13).filter(|o| o.starts_with("O202610")))
        .filter(|o| october.contains(&format!("{o},")))
        .count();
    assert!(cross > 0, "some November refunds point at October orders");
    // --previous makes the same next cycle as --cycles did.
    let mut cmd = incentives();
    cmd.args(["generate", "--previous"])
        .arg(chain.join("2026-11"))
        .arg("--out")
        .arg(tmp.path().join("dec"));
    assert_eq!(run(&mut cmd).status, 0);
    assert_eq!(
        files(&chain.join("2026-12")),
        files(&tmp.path().join("dec"))
    );
}

/// `--top-share 0.25`: the largest partner (a solution provider holding vouchers) has a quarter
/// of the lines, give or take the draw; the bundle loads with zero rejects; the share is kept by
/// `--previous`.
#[test]
fn top_share_gives_one_partner_that_share_of_the_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("2026-10");
    let mut cmd = incentives();
    cmd.args([
        "generate", "--cycle", "2026-10", "--lines", "20000", "--seed", "5",
    ])
    .args(["--top-share", "0.25", "--out"])
    .arg(&first);
    assert_eq!(run(&mut cmd).status, 0);
    let lines = common::csv_rows(&first.join("bill_lines.csv"));
    let mut per_partner: std::collections::BTreeMap<String, usize> = Default::default();
    for l in &lines {
        *per_partner.entry(l["partner_id"].clone()).or_default() += 1;
    }
    let (top, n) = per_partner.iter().max_by_key(|(_, n)| **n).unwrap();
    let share = *n as f64 / lines.len() as f64; // a count's share, not money
    assert!((0.235..0.265).contains(&share), "{top}: {share}");
    let partners = common::csv_rows(&first.join("partners.csv"));
    let p = partners.iter().find(|p| &p["partner_id"] == top).unwrap();
    assert_eq!(p["partner_type"], "solution_provider");
    let vouchers = common::csv_rows(&first.join("vouchers.csv"));
    assert!(vouchers.iter().any(|v| &v["partner_id"] == top));
    let mut validate = incentives();
    validate
        .args(["validate", "--strict", "--cycle", "2026-10", "--input"])
        .arg(&first);
    assert_eq!(run(&mut validate).status, 0);
    let next = tmp.path().join("2026-11");
    let mut cmd = incentives();
    cmd.args(["generate", "--previous"])
        .arg(&first)
        .arg("--out")
        .arg(&next);
    assert_eq!(run(&mut cmd).status, 0);
    let record = std::fs::read_to_string(next.join("generator.json")).unwrap();
    assert!(record.contains("\"top_share_ppm\": 250000"), "{record}");
}
