//! The analyst tools on polars (SPEC §10): explain, report, query and whatif read a published
//! cycle, CSV or Parquet alike; whatif re-runs a closed cycle read-only under a proposal.

mod common;

use common::{fixture, incentives, run};
use std::fs;
use std::path::Path;

/// The demo published twice into `tmp`: CSV in `csv/`, Parquet in `parquet/` (each with its
/// state in `<dir>/.state`).
fn demo_both(tmp: &Path) -> [std::path::PathBuf; 2] {
    let csv = tmp.join("csv");
    let parquet = tmp.join("parquet");
    assert_eq!(common::run_demo(&csv, &[]).status, 0);
    let o = common::run_demo(&parquet, &["--format", "parquet"]);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(parquet.join("2026-10/ledger.parquet").is_file());
    [csv, parquet]
}

fn tool(out: &Path, args: &[&str]) -> common::Outcome {
    let mut cmd = incentives();
    cmd.args(args)
        .args(["--cycle", "2026-10", "--out"])
        .arg(out)
        .arg("--state")
        .arg(out.join(".state"));
    run(&mut cmd)
}

#[test]
fn explain_answers_the_same_on_csv_and_parquet_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let [csv, parquet] = demo_both(tmp.path());
    for args in [
        &["explain", "--partner", "SP001", "--customer", "C101"][..],
        &["explain", "--partner", "SP002", "--limit", "2"][..],
        &["explain", "--partner", "SP001", "--line", "L010"][..],
        &["explain", "--partner", "DS001"][..],
        &["explain", "--partner", "SP003"][..],
    ] {
        let a = tool(&csv, args);
        let b = tool(&parquet, args);
        assert_eq!(a.status, 0, "{args:?}: {}", a.stderr);
        assert_eq!(b.status, 0, "{args:?}: {}", b.stderr);
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert!(a.stderr.is_empty(), "{}", a.stderr);
        // With a $HOME, polars reads the files in chunks instead of mapping them, and the
        // tool starts again once with the allocator's options (main.rs), also after a global
        // option: the same answers.
        for out in [&csv, &parquet] {
            let mut cmd = incentives();
            cmd.env("HOME", tmp.path())
                .args(["--log-format", "text"])
                .args(args)
                .args(["--cycle", "2026-10", "--out"])
                .arg(out);
            let c = run(&mut cmd);
            assert_eq!(c.status, 0, "{args:?}: {}", c.stderr);
            assert_eq!(c.stdout, a.stdout, "{args:?}");
        }
    }
    // The 8-decimal USD amount is read exactly (never through a float).
    let sp003 = tool(&parquet, &["explain", "--partner", "SP003"]);
    let exact = common::csv_rows(&csv.join("2026-10/line_outcomes.csv"))
        .into_iter()
        .filter(|r| r["partner_id"] == "SP003")
        .map(|r| r["payable_amount"].clone())
        .find(|p| p.split('.').nth(1).is_some_and(|f| f.len() == 8))
        .expect("an 8-decimal amount in the demo");
    assert!(sp003.stdout.contains(&exact), "{exact}: {}", sp003.stdout);
    assert_eq!(tool(&parquet, &["explain", "--partner", "NOPE"]).status, 2);
    // A line is told to its partner, or to the distributor it earned an override (L041 is
    // RS001's and earned DS001 an override); not to any other partner.
    for (format, out) in [("csv", &csv), ("parquet", &parquet)] {
        for p in ["RS001", "DS001"] {
            let o = tool(out, &["explain", "--partner", p, "--line", "L041"]);
            assert_eq!(o.status, 0, "{format} {p}: {}", o.stderr);
        }
        let o = tool(out, &["explain", "--partner", "SP001", "--line", "L041"]);
        assert_eq!(o.status, 2, "{format}: {}", o.stdout);
        assert!(o.stderr.contains("RS001"), "{}", o.stderr);
    }
    assert_eq!(
        tool(
            &parquet,
            &["explain", "--partner", "SP001", "--line", "NOPE"]
        )
        .status,
        2
    );
}

#[test]
fn query_runs_sql_over_the_tables_by_name_with_exact_decimals() {
    let tmp = tempfile::tempdir().unwrap();
    let [csv, parquet] = demo_both(tmp.path());
    let sql = "SELECT currency, kind, SUM(amount) AS amount, COUNT(*) AS n FROM ledger GROUP BY currency, kind ORDER BY currency, kind";
    let a = tool(&csv, &["query", sql]);
    let b = tool(&parquet, &["query", sql]);
    assert_eq!(a.status, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    insta::assert_snapshot!("query_ledger_by_kind", a.stdout);
    // The manifest's control totals, to the cent.
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(csv.join("2026-10/manifest.json")).unwrap())
            .unwrap();
    let earn = manifest["output_totals"]["ledger"]["CNY"]["earn"]
        .as_str()
        .unwrap();
    assert!(
        a.stdout.lines().any(|l| l.starts_with("CNY")
            && l.contains(" earn ")
            && l.contains(&format!(" {earn} "))),
        "{earn}: {}",
        a.stdout
    );
    // Written by extension: CSV amounts as the published tables write them; Parquet typed.
    let file = tmp.path().join("outcomes.csv");
    let o = tool(
        &parquet,
        &[
            "query",
            "SELECT line_id, payable_amount, currency FROM line_outcomes WHERE partner_id = 'SP003' ORDER BY line_id",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    let published: Vec<(String, String)> = common::csv_rows(&csv.join("2026-10/line_outcomes.csv"))
        .into_iter()
        .filter(|r| r["partner_id"] == "SP003")
        .map(|r| (r["line_id"].clone(), r["payable_amount"].clone()))
        .collect();
    let written: Vec<(String, String)> = common::csv_rows(&file)
        .into_iter()
        .map(|r| (r["line_id"].clone(), r["payable_amount"].clone()))
        .collect();
    assert_eq!(written, published);
    // A file already there is not written over.
    assert_eq!(
        tool(
            &parquet,
            &[
                "query",
                "SELECT 1 AS x FROM ledger",
                "--output",
                file.to_str().unwrap()
            ]
        )
        .status,
        2
    );
    let pq = tmp.path().join("explanations.parquet");
    let o = tool(
        &csv,
        &[
            "query",
            "SELECT partner_id, currency, SUM(incentive) AS incentive FROM explanations GROUP BY partner_id, currency",
            "--output",
            pq.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    let bytes = fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    // A query that does not parse: exit 2 with polars' message.
    let bad = tool(&csv, &["query", "SELEKT * FROM ledger"]);
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("sql parser error"), "{}", bad.stderr);
    let unknown = tool(&csv, &["query", "SELECT * FROM no_such_table"]);
    assert_eq!(unknown.status, 2, "{}", unknown.stderr);
}

/// A rule set like the reference one with one rate changed.
fn proposal(dir: &Path, file: &str, from: &str, to: &str) {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(common::repo().join("rules/reference")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == file {
            assert!(text.contains(from));
            text = text.replacen(from, to, 1);
        }
        fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
}

#[test]
fn whatif_prices_a_rate_change_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(common::run_demo(&out, &[]).status, 0);
    let rules = tmp.path().join("proposal");
    // referral_base.prepaid: 5 % → 7 %.
    proposal(
        &rules,
        "referral_base.toml",
        "rate = \"0.05\"",
        "rate = \"0.07\"",
    );
    let state_before = fs::read(out.join(".state/state.db")).unwrap();
    // whatif publishes nothing: it takes no lock in OUT (a run publishing beside it is not
    // kept waiting) and leaves OUT's entries as they are.
    let _ = fs::remove_file(out.join(".2026-10.lock"));
    let entries = |dir: &Path| {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let out_before = entries(&out);
    let published_before = fs::read(out.join("2026-10/ledger.csv")).unwrap();
    let write = tmp.path().join("whatif.csv");
    let whatif = |input: &Path| {
        let mut cmd = incentives();
        cmd.args(["whatif", "--cycle", "2026-10", "--input"])
            .arg(input)
            .arg("--rules")
            .arg(&rules)
            .arg("--state")
            .arg(out.join(".state"))
            .arg("--out")
            .arg(&out)
            .arg("--write")
            .arg(&write);
        run(&mut cmd)
    };
    // Nor does it wait for the state's lock: a run holding it (here this test process, as an
    // outside `flock` would) does not stop a whatif.
    let lock = fs::OpenOptions::new()
        .write(true)
        .open(out.join(".state/lock"))
        .unwrap();
    lock.lock().unwrap();
    let o = whatif(&fixture("demo/2026-10"));
    assert_eq!(o.status, 0, "{}", o.stderr);
    lock.unlock().unwrap();
    assert_eq!(entries(&out), out_before);
    // Read-only: the state and the published cycle are untouched.
    assert_eq!(fs::read(out.join(".state/state.db")).unwrap(), state_before);
    assert_eq!(
        fs::read(out.join("2026-10/ledger.csv")).unwrap(),
        published_before
    );
    let rows = common::csv_rows(&write);
    // Worked by hand from the demo's referral prepaid lines (base × 2 %):
    // DS001 L051 7,000.00 → +140.00; RS001 L043 4,000.00 → +80.00; SP001 L015 6,000.00 →
    // +120.00; SP003 L032 1,800.00 USD → +36.00; SP003 L036 120.00 EUR → +2.40.
    let moved: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| {
            !r["difference"]
                .parse::<rust_decimal::Decimal>()
                .unwrap()
                .is_zero()
        })
        .map(|r| {
            (
                r["partner_id"].clone(),
                r["lever"].clone(),
                r["currency"].clone(),
                r["difference"].clone(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        moved,
        vec![
            s("DS001", "referral_base", "CNY", "140.00"),
            s("RS001", "referral_base", "CNY", "80.00"),
            s("SP001", "referral_base", "CNY", "120.00"),
            s("SP003", "referral_base", "EUR", "2.40"),
            s("SP003", "referral_base", "USD", "36.00"),
        ]
    );
    // paid is what the published ledger holds, every kind, per partner × lever × currency.
    let ledger = common::csv_rows(&out.join("2026-10/ledger.csv"));
    for r in &rows {
        let paid: rust_decimal::Decimal = ledger
            .iter()
            .filter(|l| {
                l["partner_id"] == r["partner_id"]
                    && l["lever"] == r["lever"]
                    && l["currency"] == r["currency"]
            })
            .map(|l| l["amount"].parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        assert_eq!(
            r["paid"].parse::<rust_decimal::Decimal>().unwrap(),
            paid,
            "{r:?}"
        );
    }
    assert!(o.stdout.contains("largest movers"), "{}", o.stdout);
    assert!(o.stdout.contains("DS001"), "{}", o.stdout);
    // Its own file is replaced on a second run; inputs that are not the cycle's are exit 2.
    assert_eq!(whatif(&fixture("demo/2026-10")).status, 0);
    let changed = tmp.path().join("changed");
    fs::create_dir_all(&changed).unwrap();
    for entry in fs::read_dir(fixture("demo/2026-10")).unwrap() {
        let p = entry.unwrap().path();
        fs::copy(&p, changed.join(p.file_name().unwrap())).unwrap();
    }
    let mut lines = fs::read_to_string(changed.join("projects.csv")).unwrap();
    lines.push('\n');
    fs::write(changed.join("projects.csv"), lines).unwrap();
    let o = whatif(&changed);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(o.stderr.contains("projects.csv"), "{}", o.stderr);
}

#[test]
fn one_definition_of_credited_is_shared_by_summary_status_explain_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let o = common::run_demo(out, &[]);
    assert_eq!(o.status, 0);
    let summary_line = o
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("incentive credited to 2026-10"))
        .unwrap()
        .to_string();
    let mut status = incentives();
    status
        .args(["status", "--json", "--state"])
        .arg(out.join(".state"));
    let doc: serde_json::Value = serde_json::from_str(&run(&mut status).stdout).unwrap();
    let credited = &doc["cycles"][0]["credited"];
    let r = tool(out, &["report"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let html = fs::read_to_string(out.join("2026-10-report.html")).unwrap();
    for currency in ["CNY", "USD", "EUR"] {
        let total: rust_decimal::Decimal = credited[currency].as_str().unwrap().parse().unwrap();
        let shown = incentives::analyst::grouped(total, 2);
        assert!(
            html.contains(&format!("data-credited=\"{currency}\"><b>{shown}</b>")),
            "{currency} {shown}"
        );
        assert!(
            summary_line.contains(&incentives::money::format_amount(total, 2)),
            "{summary_line}"
        );
        // The explanations' incentive column sums to it.
        let explained: rust_decimal::Decimal =
            common::csv_rows(&out.join("2026-10/explanations.csv"))
                .iter()
                .filter(|e| e["currency"] == currency)
                .map(|e| e["incentive"].parse::<rust_decimal::Decimal>().unwrap())
                .sum();
        assert_eq!(explained, total, "{currency}");
    }
}

#[test]
fn report_pages_are_bounded_per_partner_and_translated() {
    let tmp = tempfile::tempdir().unwrap();
    let [csv, parquet] = demo_both(tmp.path());
    for out in [&csv, &parquet] {
        let mut cmd = incentives();
        cmd.args(["report", "--cycle", "2026-10", "--input"])
            .arg(fixture("demo/2026-10"))
            .arg("--out")
            .arg(out)
            .arg("--state")
            .arg(out.join(".state"));
        let o = run(&mut cmd);
        assert_eq!(o.status, 0, "{}", o.stderr);
    }
    let page = |dir: &Path, name: &str| fs::read_to_string(dir.join(name)).unwrap();
    // CSV and Parquet cycles give the same pages.
    for name in [
        "2026-10-report.html",
        "2026-10-report-DS001.html",
        "2026-10-report-SP001.html",
    ] {
        assert_eq!(page(&csv, name), page(&parquet, name), "{name}");
    }
    let cycle = page(&csv, "2026-10-report.html");
    assert!(cycle.contains("href=\"2026-10-report-SP001.html\""));
    assert!(cycle.contains("Hangzhou Cloudbridge"), "partner names");
    assert!(cycle.contains("32,246.01"), "thousands separated");
    assert!(cycle.contains("data-kind=\"subsidy\""), "subsidies apart");
    // A partner's page names no other partner, except a distributor's resellers.
    let partners: Vec<String> = common::csv_rows(&fixture("demo/2026-10/partners.csv"))
        .into_iter()
        .map(|r| r["partner_id"].clone())
        .collect();
    for p in &partners {
        let Ok(html) = fs::read_to_string(csv.join(format!("2026-10-report-{p}.html"))) else {
            continue;
        };
        let allowed: &[&str] = match p.as_str() {
            "DS001" => &["RS001", "RS002"],
            "DS002" => &["RS003"],
            _ => &[],
        };
        for other in partners.iter().filter(|o| *o != p) {
            if !allowed.contains(&other.as_str()) {
                assert!(!html.contains(other.as_str()), "{p}'s page names {other}");
            }
        }
    }
    let ds001 = page(&csv, "2026-10-report-DS001.html");
    assert!(ds001.contains("class=\"resellers\""), "{ds001}");
    assert!(ds001.contains("RS001") && ds001.contains("RS002"));
    // Chinese: the page's language, headings and labels.
    let zh = csv.join("zh.html");
    let mut cmd = incentives();
    cmd.args([
        "report",
        "--cycle",
        "2026-10",
        "--lang",
        "zh",
        "--partner",
        "SP001",
        "--out",
    ])
    .arg(&csv)
    .arg("--state")
    .arg(csv.join(".state"))
    .arg("--output")
    .arg(&zh);
    assert_eq!(run(&mut cmd).status, 0);
    let zh = fs::read_to_string(&zh).unwrap();
    assert!(zh.contains("lang=\"zh-CN\""));
    assert!(
        zh.contains("合作伙伴激励，账期") && zh.contains("退订扣回") && zh.contains("上期结转")
    );
    assert!(!zh.contains(">earned now<"));
    // Chinese punctuation in the page's own words too.
    assert!(
        zh.contains("（CNY）</b>：") && zh.contains("SP001 CNY：从消费"),
        "{zh}"
    );
    assert!(!zh.contains("</b>: ") && !zh.contains(" (CNY)"), "{zh}");
    // Labels never clipped: every label fits left of its bar.
    for svg in cycle
        .split("<svg")
        .skip(1)
        .chain(ds001.split("<svg").skip(1))
    {
        assert!(!svg.contains("x=\"-"), "{svg}");
    }
}

#[test]
fn query_writes_every_table_as_published_from_csv_and_parquet_cycles_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let [csv, parquet] = demo_both(tmp.path());
    // `explanations` is left out: an amount summed from 4-place inputs is published as `0.0000`
    // and read back as the exact value `0.00` (equal, not the same bytes).
    for table in [
        "ledger",
        "line_outcomes",
        "voucher_deductions",
        "voucher_balances",
        "expiry_report",
        "subsidies",
        "rejects",
    ] {
        let published = fs::read_to_string(csv.join(format!("2026-10/{table}.csv"))).unwrap();
        for (name, out) in [("csv", &csv), ("parquet", &parquet)] {
            let file = tmp.path().join(format!("{name}-{table}.csv"));
            let sql = format!("SELECT * FROM {table}");
            let o = tool(out, &["query", &sql, "--output", file.to_str().unwrap()]);
            assert_eq!(o.status, 0, "{table} {name}: {}", o.stderr);
            // Instants as ISO 8601 UTC (`2026-10-06T02:00:00Z`) from a TIMESTAMP column too.
            assert_eq!(
                fs::read_to_string(&file).unwrap(),
                published,
                "{table} {name}"
            );
        }
    }
}

#[test]
fn a_damaged_cycle_or_a_bad_output_is_named_with_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let [csv, parquet] = demo_both(tmp.path());
    let copy = |from: &Path, name: &str| {
        let to = tmp.path().join(name);
        let o = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(&to)
            .status()
            .unwrap();
        assert!(o.success());
        to
    };
    let explain = ["explain", "--partner", "SP001"];
    let expect = |out: &Path, args: &[&str], code: i32, names: &Path| {
        let o = tool(out, args);
        assert_eq!(o.status, code, "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.contains(&names.display().to_string()),
            "{args:?}: {}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    };
    // A table missing, empty, or not Parquet: exit 2 naming the file.
    let missing = copy(&csv, "missing");
    let file = missing.join("2026-10/line_outcomes.csv");
    fs::remove_file(&file).unwrap();
    expect(&missing, &explain, 2, &file);
    let empty = copy(&csv, "empty");
    let file = empty.join("2026-10/explanations.csv");
    fs::write(&file, "").unwrap();
    expect(&empty, &explain, 2, &file);
    expect(&empty, &["query", "SELECT * FROM explanations"], 2, &file);
    let foreign = copy(&parquet, "foreign");
    let file = foreign.join("2026-10/explanations.parquet");
    fs::write(&file, "partner_id\nSP001\n").unwrap();
    expect(&foreign, &explain, 2, &file);
    let foreign = copy(&parquet, "foreign-statement");
    let file = foreign.join("2026-10/ledgers/SP001.parquet");
    fs::write(&file, "x").unwrap();
    expect(&foreign, &["query", "SELECT * FROM statements"], 2, &file);
    // A cell that is not an amount: exit 1 naming the cycle and the column, without polars'
    // advice to its Python users.
    let bad = copy(&csv, "bad");
    let file = bad.join("2026-10/explanations.csv");
    let text = fs::read_to_string(&file).unwrap();
    // The first row is DS001's: explaining SP001 reads only SP001's rows (as on Parquet, where
    // row groups are skipped), so a damaged row of another partner does not stop it.
    let damage = |partner: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("2026-10,{partner},")))
            .unwrap();
        let mut cells: Vec<&str> = lines[at].splitn(6, ',').collect();
        cells[4] = "abc";
        lines[at] = cells.join(",");
        fs::write(&file, lines.join("\n") + "\n").unwrap();
    };
    damage("DS001");
    assert_eq!(tool(&bad, &explain).status, 0);
    damage("SP001");
    let o = tool(&bad, &explain);
    assert_eq!(o.status, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("consumption") && o.stderr.contains("abc"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("infer_schema_length"), "{}", o.stderr);
    // A hostile partner id is said escaped (exit 2), never sent to the terminal raw.
    let o = tool(&csv, &["explain", "--partner", "SP\"<b>\u{1b}[31m"]);
    assert_eq!(o.status, 2, "{}", o.stderr);
    assert!(!o.stderr.contains('\u{1b}'), "{}", o.stderr);
    // --output in a folder that does not exist, an existing file, a link: exit 2 naming it.
    let nowhere = tmp.path().join("nowhere");
    let sql = "SELECT 1 AS x FROM ledger";
    let file = nowhere.join("x.csv");
    expect(
        &csv,
        &["query", sql, "--output", file.to_str().unwrap()],
        2,
        &nowhere,
    );
    let file = nowhere.join("r.html");
    expect(
        &csv,
        &["report", "--output", file.to_str().unwrap()],
        2,
        &nowhere,
    );
    let there = tmp.path().join("there.csv");
    fs::write(&there, "keep").unwrap();
    expect(
        &csv,
        &["query", sql, "--output", there.to_str().unwrap()],
        2,
        &there,
    );
    let link = tmp.path().join("link.html");
    std::os::unix::fs::symlink(tmp.path().join("target.html"), &link).unwrap();
    expect(
        &csv,
        &["report", "--output", link.to_str().unwrap()],
        2,
        &link,
    );
    assert!(!tmp.path().join("target.html").exists());
    assert_eq!(fs::read_to_string(&there).unwrap(), "keep");
}

/// The second cycle of a generated chain (rows carried in from the first): the run's summary
/// per currency and lever, and the report's credited figures, are the same numbers.
#[test]
fn credited_per_lever_agrees_between_summary_and_report_with_rows_carried_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let generate = |extra: &[&str], out: &Path, cycle: &str| {
        let mut cmd = incentives();
        cmd.args([
            "generate", "--cycle", cycle, "--lines", "4000", "--seed", "7",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--quiet");
        assert_eq!(run(&mut cmd).status, 0);
    };
    generate(&[], &a, "2026-10");
    generate(&["--previous", a.to_str().unwrap()], &b, "2026-11");
    let out = tmp.path().join("out");
    let mut stdout = String::new();
    for (input, cycle) in [(&a, "2026-10"), (&b, "2026-11")] {
        let mut cmd = incentives();
        cmd.args(["run", "--cycle", cycle, "--input"])
            .arg(input)
            .arg("--rules")
            .arg(common::repo().join("rules/reference"))
            .arg("--out")
            .arg(&out)
            .arg("--state")
            .arg(out.join(".state"));
        if cycle == "2026-10" {
            cmd.arg("--first-cycle");
        }
        let o = run(&mut cmd);
        assert_eq!(o.status, 0, "{}", o.stderr);
        stdout = o.stdout;
    }
    assert!(!stdout.contains(" 0 carried in"), "{stdout}");
    // The summary's table: currencies, then the credited total and one row per lever.
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("per currency"))
        .unwrap();
    let currencies: Vec<&str> = lines[at].split_whitespace().skip(2).collect();
    assert!(lines[at + 1].contains("incentive credited to 2026-11"));
    let mut expected: Vec<String> = Vec::new();
    let totals: Vec<&str> = lines[at + 1].split_whitespace().skip(4).collect();
    for (c, t) in currencies.iter().zip(&totals) {
        let shown = incentives::analyst::grouped(t.parse().unwrap(), 2);
        expected.push(format!("data-credited=\"{c}\"><b>{shown}</b>"));
    }
    for l in lines[at + 2..].iter().take_while(|l| l.starts_with("    ")) {
        let cells: Vec<&str> = l.split_whitespace().collect();
        for (c, v) in currencies.iter().zip(&cells[1..]) {
            // A lever with no row in a currency: 0.00 in the summary, no row in the report.
            let v: rust_decimal::Decimal = v.parse().unwrap();
            if v.is_zero() {
                continue;
            }
            let shown = incentives::analyst::grouped(v, 2);
            expected.push(format!(
                "{c}</td><td class=\"l\">{0}</td><td data-lever=\"{0}\">{shown}<",
                cells[0]
            ));
        }
    }
    assert!(expected.len() > currencies.len() * 3, "{stdout}");
    let mut cmd = incentives();
    cmd.args(["report", "--cycle", "2026-11", "--out"])
        .arg(&out)
        .arg("--state")
        .arg(out.join(".state"));
    assert_eq!(run(&mut cmd).status, 0);
    let html = fs::read_to_string(out.join("2026-11-report.html")).unwrap();
    for e in &expected {
        assert!(html.contains(e.as_str()), "{e}");
    }
}
