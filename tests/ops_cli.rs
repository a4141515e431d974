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
