//! End to end: what an operator meets when inputs or folders are wrong (SPEC §2, §7): the exit
//! code, a message naming the path, and nothing lost or half-written.

mod common;

use common::{fixture, incentives, run};
use std::fs;
use std::path::Path;

const LINE_HEADER: &str = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,region,\
    service_type_code,resource_type_code,charge_mode,bill_type,trade_time,order_id,\
    original_order_id,official_amount,discount_amount,payable_amount,coupon_amount,\
    settlement_amount,currency\n";

/// A bundle of `partners.csv` (from `fixtures/bad/field_count`) and `n` good bill lines of SP1,
/// rows 2 to n + 1, each passed through `edit(row, text)`.
fn bundle(dir: &Path, n: usize, edit: impl Fn(usize, String) -> String) {
    fs::create_dir_all(dir).unwrap();
    fs::copy(
        fixture("bad/field_count/partners.csv"),
        dir.join("partners.csv"),
    )
    .unwrap();
    let mut text = String::from(LINE_HEADER);
    for row in 2..=n + 1 {
        let line = format!(
            "L{row},2026-10,SP1,C{row},resale,cn,cn-north-4,hws.service.type.ec2,,on_demand,usage,\
             2026-10-05T10:00:00+08:00,,,1.00,0,1.00,,,CNY\n"
        );
        text.push_str(&edit(row, line));
    }
    fs::write(dir.join("bill_lines.csv"), text).unwrap();
}

fn validate(input: &Path) -> common::Outcome {
    run(incentives()
        .args(["validate", "--cycle", "2026-10", "--input"])
        .arg(input))
}

#[test]
fn a_stray_quote_fails_run_and_validate_naming_the_line_and_the_lines_swallowed() {
    // The issue's case: a `"` before a cell of row 442 of a 2,000-line bill_lines.csv.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    bundle(&input, 1999, |row, line| {
        if row == 442 {
            line.replace(",C442,", ",\"C442,")
        } else {
            line
        }
    });
    let out = tmp.path().join("out");
    let ran = common::run_first_cycle(&input, &out, &[]);
    let validated = validate(&input);
    let expected = "error: bill_lines.csv: line 442, column customer_id: stray quote: a quoted field \
        opens here and is still open at the end of the file (line 2000), swallowing 1559 lines \
        (442 to 2000) into one cell";
    for outcome in [&ran, &validated] {
        assert_eq!(outcome.status, 3, "{}", outcome.stderr);
        assert!(outcome.stderr.starts_with(expected), "{}", outcome.stderr);
    }
    assert!(!out.join("2026-10").exists(), "nothing is published");

    // The same file without the quote: every row read and accepted.
    bundle(&input, 1999, |_, line| line);
    let validated = validate(&input);
    assert_eq!(validated.status, 0, "{}", validated.stderr);
    assert!(
        validated
            .stdout
            .contains("bill_lines.csv                 1999 read       1999 accepted"),
        "{}",
        validated.stdout
    );
}

#[test]
fn a_partner_name_may_span_lines_unless_it_swallowed_whole_records() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    bundle(&input, 3, |_, line| line);
    let partners = fs::read_to_string(input.join("partners.csv")).unwrap();
    // A trade name on two lines is a name.
    fs::write(
        input.join("partners.csv"),
        partners.replace("Alpha Cloud", "\"Alpha Cloud\nTrading (Shanghai)\""),
    )
    .unwrap();
    let validated = validate(&input);
    assert_eq!(validated.status, 0, "{}", validated.stderr);
    assert!(
        validated
            .stdout
            .contains("partners.csv                      4 read          4 accepted"),
        "{}",
        validated.stdout
    );
    // An opening quote that swallows the next partners: a stray quote.
    fs::write(
        input.join("partners.csv"),
        partners.replace("Beta Distribution", "\"Beta Distribution"),
    )
    .unwrap();
    let validated = validate(&input);
    assert_eq!(validated.status, 3, "{}", validated.stderr);
    assert!(
        validated
            .stderr
            .starts_with("error: partners.csv: line 3, column name: stray quote:"),
        "{}",
        validated.stderr
    );
}

/// Copies the files of `from` into `to`.
fn copy_bundle(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `inputs` of a published manifest, by file: (rows read, accepted, rejected).
fn manifest_counts(published: &Path) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    let manifest = common::manifest_without_timings(&published.join("manifest.json"));
    manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = |k: &str| f[k].as_u64().unwrap();
            (
                f["file"].as_str().unwrap().to_string(),
                (n("rows_read"), n("accepted"), n("rejected")),
            )
        })
        .collect()
}

#[test]
fn every_row_read_is_accepted_or_rejected_in_the_manifest_rejects_against_the_state_included() {
    let tmp = tempfile::tempdir().unwrap();
    let october = tmp.path().join("2026-10-in");
    copy_bundle(&fixture("demo/2026-10"), &october);
    // An approved withdrawal above anything the partner holds: over_withdrawal.
    let mut withdrawals = fs::read_to_string(october.join("withdrawals.csv")).unwrap();
    withdrawals.push_str(
        "W999,SP001,999999.00,CNY,2026-10-20T10:00:00+08:00,approved,2026-10-21T10:00:00+08:00\n",
    );
    fs::write(october.join("withdrawals.csv"), withdrawals).unwrap();
    let out = tmp.path().join("out");
    let ran = common::run_first_cycle(&october, &out, &[]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let counts = manifest_counts(&out.join("2026-10"));
    for (file, (read, accepted, rejected)) in &counts {
        assert_eq!(read, &(accepted + rejected), "{file}: {counts:?}");
    }
    assert_eq!(counts["withdrawals.csv"].2, 1, "{counts:?}");

    // November lists the opening balances again (not_first_cycle) and V001 with another
    // opening balance than October's closing (opening_disagrees).
    let november = tmp.path().join("2026-11-in");
    fs::create_dir_all(&november).unwrap();
    for file in ["partners.csv", "opening_balances.csv", "vouchers.csv"] {
        fs::copy(october.join(file), november.join(file)).unwrap();
    }
    let vouchers = fs::read_to_string(november.join("vouchers.csv")).unwrap();
    fs::write(
        november.join("vouchers.csv"),
        vouchers.replacen(
            "V001,SP001,poc_test,5000.00,5000.00",
            "V001,SP001,poc_test,5000.00,4999.00",
            1,
        ),
    )
    .unwrap();
    fs::write(november.join("bill_lines.csv"), LINE_HEADER).unwrap();
    let ran = run(incentives()
        .args(["run", "--cycle", "2026-11", "--input"])
        .arg(&november)
        .arg("--out")
        .arg(&out)
        .arg("--state")
        .arg(out.join(".state")));
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let counts = manifest_counts(&out.join("2026-11"));
    for (file, (read, accepted, rejected)) in &counts {
        assert_eq!(read, &(accepted + rejected), "{file}: {counts:?}");
    }
    let lots = fs::read_to_string(october.join("opening_balances.csv"))
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    assert_eq!(counts["opening_balances.csv"], (lots, 0, lots));
    // Each voucher whose listed opening is not the state's closing is a reject, V001 among them.
    let rejects = common::csv_rows(&out.join("2026-11/rejects.csv"));
    let disagreeing = rejects
        .iter()
        .filter(|r| r["file"] == "vouchers.csv" && r["reason"].starts_with("opening_disagrees"))
        .count() as u64;
    assert!(disagreeing >= 1);
    assert_eq!(counts["vouchers.csv"].2, disagreeing, "{counts:?}");
}

/// `incentives run --first-cycle --cycle 2026-10` with these paths.
fn run_with(input: &Path, out: &Path, state: &Path) -> common::Outcome {
    run(incentives()
        .args(["run", "--first-cycle", "--cycle", "2026-10", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(state))
}

#[test]
fn a_file_where_a_folder_must_be_is_exit_2_naming_the_flag_before_any_input_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    // The input is a stray-quote bundle: had it been read, the exit would be 3.
    let input = fixture("bad/stray_quote");
    let (out, state) = (tmp.path().join("out"), tmp.path().join("state"));
    for (args, flag) in [
        ((&input, &file, &state), "--out"),
        ((&input, &file.join("sub"), &state), "--out"),
        ((&input, &out, &file), "--state"),
        ((&file, &out, &state), "--input"),
    ] {
        let outcome = run_with(args.0, args.1, args.2);
        assert_eq!(outcome.status, 2, "{flag}: {}", outcome.stderr);
        assert!(
            outcome.stderr.starts_with(&format!("error: {flag} "))
                && outcome.stderr.contains("is a file"),
            "{}",
            outcome.stderr
        );
    }
    let validated = validate(&file);
    assert_eq!(validated.status, 2);
    assert!(validated.stderr.contains("--input"), "{}", validated.stderr);
    assert!(!out.exists() && !state.exists(), "nothing created");
}

#[test]
fn a_state_db_that_is_not_a_usable_state_is_exit_2_for_run_and_status_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = fixture("demo/2026-10");
    // A good state to damage.
    let good = tmp.path().join("good");
    let first = run_with(&demo, &tmp.path().join("out"), &good);
    assert_eq!(first.status, 0, "{}", first.stderr);
    let db = fs::read(good.join("state.db")).unwrap();

    let mut malformed = db.clone();
    malformed[100..3100].fill(0xff);
    let other = {
        let path = tmp.path().join("other.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE x (a)").unwrap();
        drop(conn);
        fs::read(path).unwrap()
    };
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty", Vec::new(), "is empty (0 bytes)"),
        (
            "text",
            b"not a database at all\n".to_vec(),
            "is not a SQLite database",
        ),
        ("malformed", malformed, "malformed"),
        ("other", other, "not an incentives state"),
    ];
    for (name, bytes, says) in cases {
        let state = tmp.path().join(name);
        fs::create_dir_all(&state).unwrap();
        fs::write(state.join("state.db"), &bytes).unwrap();
        let ran = run_with(&demo, &tmp.path().join(format!("out-{name}")), &state);
        let status = run(incentives().arg("status").arg("--state").arg(&state));
        for outcome in [&ran, &status] {
            assert_eq!(outcome.status, 2, "{name}: {}", outcome.stderr);
            let expected = format!("error: {}: ", state.join("state.db").display());
            assert!(
                outcome.stderr.starts_with(&expected) && outcome.stderr.contains(says),
                "{name}: {}",
                outcome.stderr
            );
        }
        assert_eq!(
            fs::read(state.join("state.db")).unwrap(),
            bytes,
            "{name}: left as it was"
        );
    }

    // Read-only: a run refuses it (it would write there), status reads it.
    let state = tmp.path().join("read-only");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("state.db"), &db).unwrap();
    let mut permissions = fs::metadata(state.join("state.db")).unwrap().permissions();
    permissions.set_readonly(true);
    fs::set_permissions(state.join("state.db"), permissions).unwrap();
    let ran = run_with(&demo, &tmp.path().join("out-ro"), &state);
    assert_eq!(ran.status, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("is read-only") && ran.stderr.contains("chmod u+w"),
        "{}",
        ran.stderr
    );
    let status = run(incentives().arg("status").arg("--state").arg(&state));
    assert_eq!(status.status, 0, "{}", status.stderr);
}

#[test]
fn a_file_under_another_case_or_with_another_separator_is_exit_3_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    bundle(&input, 2, |_, line| line);
    fs::rename(input.join("bill_lines.csv"), input.join("Bill_Lines.CSV")).unwrap();
    let validated = validate(&input);
    assert_eq!(validated.status, 3, "{}", validated.stderr);
    assert!(
        validated
            .stderr
            .contains("bill_lines.csv: not found under that name, but")
            && validated
                .stderr
                .contains("holds `Bill_Lines.CSV`: rename it to `bill_lines.csv`"),
        "{}",
        validated.stderr
    );
    // An optional file too: its rows would otherwise vanish.
    fs::rename(input.join("Bill_Lines.CSV"), input.join("bill_lines.csv")).unwrap();
    fs::write(input.join("Vouchers.csv"), "voucher_id\n").unwrap();
    let validated = validate(&input);
    assert_eq!(validated.status, 3, "{}", validated.stderr);
    assert!(
        validated.stderr.contains("`Vouchers.csv`"),
        "{}",
        validated.stderr
    );
    fs::remove_file(input.join("Vouchers.csv")).unwrap();

    // Semicolons (a European Excel's "CSV"): the separator is named.
    let text = fs::read_to_string(input.join("bill_lines.csv")).unwrap();
    fs::write(input.join("bill_lines.csv"), text.replace(',', ";")).unwrap();
    let out = tmp.path().join("out");
    let ran = common::run_first_cycle(&input, &out, &[]);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    assert!(
        ran.stderr.starts_with(
            "error: bill_lines.csv: line 1: the columns are separated by `;`, not `,`"
        ),
        "{}",
        ran.stderr
    );
}

#[test]
fn control_characters_from_an_input_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    bundle(&input, 2, |_, line| line);
    // A header name with an escape sequence (clear screen), quoted back in the error.
    let text = fs::read_to_string(input.join("bill_lines.csv")).unwrap();
    fs::write(
        input.join("bill_lines.csv"),
        text.replacen("payable_amount", "pay\u{1b}[2Jable", 1),
    )
    .unwrap();
    let validated = validate(&input);
    assert_eq!(validated.status, 3, "{}", validated.stderr);
    assert!(
        !validated.stderr.contains('\u{1b}'),
        "{:?}",
        validated.stderr
    );
    assert!(
        validated.stderr.contains("pay\\u{1b}[2Jable"),
        "{}",
        validated.stderr
    );
}

#[test]
fn one_man_page_per_subcommand_listing_its_options() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man");
    let wrote = run(incentives().args(["man", "--dir"]).arg(&dir));
    assert_eq!(wrote.status, 0, "{}", wrote.stderr);
    let pages: [(&str, &[&str]); 9] = [
        (
            "run",
            &[
                "cycle",
                "input",
                "first\\-cycle",
                "out",
                "state",
                "strict",
                "format",
                "quiet",
            ],
        ),
        ("generate", &["lines", "seed", "previous"]),
        ("validate", &["cycle", "input", "limit"]),
        ("check", &["rules"]),
        ("status", &["state"]),
        ("explain", &["partner", "customer", "line", "limit"]),
        ("report", &["partner", "output"]),
        ("completions", &["quiet"]),
        ("man", &["dir"]),
    ];
    for (name, options) in pages {
        let page = fs::read_to_string(dir.join(format!("incentives-{name}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH incentives-{name} 1")),
            "{name}: {}",
            &page[..200.min(page.len())]
        );
        assert!(
            page.contains(&format!("\\fBincentives {name}\\fR")),
            "{name}: synopsis"
        );
        for option in options {
            assert!(
                page.contains(&format!("\\fB\\-\\-{option}\\fR")),
                "incentives-{name}(1) lists --{option}"
            );
        }
        // The same page on stdout.
        let printed = run(incentives().args(["man", name]));
        assert_eq!(printed.stdout, page, "{name}");
    }
    let main = fs::read_to_string(dir.join("incentives.1")).unwrap();
    assert!(main.contains(".TH incentives 1") && main.contains("incentives\\-run(1)"));
}

#[test]
fn every_subcommand_ends_quietly_on_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let demo = fixture("demo/2026-10");
    assert_eq!(common::run_demo(&out, &[]).status, 0);
    let state = out.join(".state");
    let s = |p: &Path| p.display().to_string();
    let commands: Vec<Vec<String>> = vec![
        vec!["completions".into(), "zsh".into()],
        vec!["man".into()],
        vec!["man".into(), "run".into()],
        vec!["check".into()],
        vec!["status".into(), "--state".into(), s(&state)],
        vec![
            "validate".into(),
            "--cycle".into(),
            "2026-10".into(),
            "--input".into(),
            s(&demo),
        ],
        vec![
            "explain".into(),
            "--cycle".into(),
            "2026-10".into(),
            "--out".into(),
            s(&out),
            "--partner".into(),
            "SP001".into(),
        ],
        vec![
            "generate".into(),
            "--cycle".into(),
            "2026-10".into(),
            "--lines".into(),
            "20".into(),
            "--out".into(),
            s(&tmp.path().join("gen")),
        ],
        vec![
            "run".into(),
            "--first-cycle".into(),
            "--cycle".into(),
            "2026-10".into(),
            "--input".into(),
            s(&demo),
            "--out".into(),
            s(&tmp.path().join("out2")),
            "--state".into(),
            s(&tmp.path().join("state2")),
        ],
    ];
    for args in commands {
        // The reading end is closed before the command starts: its first write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_incentives"))
            .args(&args)
            .current_dir(common::repo())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn quiet_prints_nothing_on_success() {
    let check = run(incentives()
        .args(["check", "-q"])
        .current_dir(common::repo()));
    assert_eq!(
        (check.status, check.stdout.as_str(), check.stderr.as_str()),
        (0, "", "")
    );
    let tmp = tempfile::tempdir().unwrap();
    let ran = common::run_demo(tmp.path(), &["--quiet"]);
    assert_eq!(
        (ran.status, ran.stdout.as_str(), ran.stderr.as_str()),
        (0, "", "")
    );
    let validated = run(incentives()
        .args(["validate", "-q", "--cycle", "2026-10", "--input"])
        .arg(fixture("demo/2026-10")));
    assert_eq!((validated.status, validated.stdout.as_str()), (0, ""));
}

#[test]
fn the_readme_says_how_to_install_and_its_links_resolve() {
    let readme = fs::read_to_string(common::repo().join("README.md")).unwrap();
    assert!(
        readme.contains("cargo install --path ."),
        "how to put incentives on the PATH"
    );
    let mut links = 0;
    for (i, _) in readme.match_indices("](") {
        let target = &readme[i + 2..];
        let target = &target[..target.find(')').unwrap()];
        let path = target.split('#').next().unwrap();
        if path.is_empty() || path.contains("://") {
            continue;
        }
        // Links stay inside the repository (../shared is not beside every checkout).
        assert!(!path.starts_with(".."), "{target}: outside the repository");
        assert!(
            common::repo().join(path).exists(),
            "README links to {target}, which is missing"
        );
        links += 1;
    }
    assert!(links >= 8, "the fixtures are linked ({links} links)");
}

/// Every line of `text` as a JSON object with a timestamp.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value["timestamp"].is_string(), "no timestamp: {line}");
            value
        })
        .collect()
}

#[test]
fn log_format_json_writes_only_json_lines_from_start_to_finish() {
    let tmp = tempfile::tempdir().unwrap();
    // Rejected rows without --strict: a warning counting them.
    let ran = common::run_first_cycle(
        &fixture("bad/duplicate_id"),
        tmp.path(),
        &["--log-format", "json"],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let (stdout, stderr) = (json_lines(&ran.stdout), json_lines(&ran.stderr));
    let all: Vec<&serde_json::Value> = stderr.iter().chain(&stdout).collect();
    let events: Vec<&str> = all.iter().filter_map(|v| v["event"].as_str()).collect();
    assert_eq!(stderr[0]["event"], "start");
    assert_eq!(stderr[0]["cycle"], "2026-10");
    assert_eq!(stderr[0]["arguments"][0], "run");
    let phases = stderr
        .iter()
        .filter(|v| v["fields"]["message"] == "phase finished")
        .count();
    assert!(phases >= 5, "{}", ran.stderr);
    let rejects = all
        .iter()
        .find(|v| v["event"] == "rejects")
        .expect("a warning of rejects");
    assert_eq!(
        (rejects["level"].as_str(), rejects["count"].as_u64()),
        (Some("WARN"), Some(4))
    );
    let summary = all
        .iter()
        .find(|v| v["event"] == "summary")
        .expect("the summary");
    assert_eq!(summary["lines_read"], 4);
    assert_eq!(summary["credited"]["CNY"]["resale_base"], "16.00");
    let finish = all.last().unwrap();
    assert_eq!(
        (finish["event"].as_str(), finish["exit_code"].as_u64()),
        (Some("finish"), Some(0))
    );
    assert!(finish["elapsed_ms"].is_u64());
    assert!(events.contains(&"summary"));

    // A failure: the rejected rows under --strict, the error, and a finish with exit 3.
    let failed = common::run_first_cycle(
        &fixture("bad/duplicate_id"),
        &tmp.path().join("strict"),
        &["--log-format", "json", "--strict"],
    );
    assert_eq!(failed.status, 3);
    assert_eq!(failed.stdout, "");
    let lines = json_lines(&failed.stderr);
    assert!(lines.iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("rejected: "))
    }));
    let error = lines
        .iter()
        .find(|v| v["event"] == "error")
        .expect("the error");
    assert_eq!(error["exit_code"], 3);
    assert_eq!(lines.last().unwrap()["exit_code"], 3);

    // A usage error clap finds.
    let usage = run(incentives().args(["run", "--log-format", "json", "--bogus"]));
    assert_eq!(usage.status, 2);
    let lines = json_lines(&usage.stderr);
    assert_eq!(lines[0]["event"], "error");
}
