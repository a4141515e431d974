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
