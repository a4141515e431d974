//! `incentives import huawei` and `import huawei-policy` end to end (SPEC §11), on the responses
//! of `fixtures/huawei/` (what each holds: `fixtures/huawei/README.md`).

mod common;

use common::{csv_rows, fixture, incentives, run, run_first_cycle};
use std::collections::BTreeMap;
use std::path::Path;

fn import_month(tmp: &Path) -> common::Outcome {
    let mut cmd = incentives();
    cmd.args(["import", "huawei", "--cycle", "2026-10", "--from"])
        .arg(fixture("huawei/month"))
        .arg("--master")
        .arg(fixture("huawei/master"))
        .arg("--out")
        .arg(tmp.join("bundle"));
    run(&mut cmd)
}

fn by_id(
    rows: Vec<BTreeMap<String, String>>,
    key: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    rows.into_iter().map(|r| (r[key].clone(), r)).collect()
}

#[test]
fn a_month_imports_into_a_bundle_that_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = import_month(tmp.path());
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("refunds split    1 line(s) into 2 part(s)"),
        "{}",
        out.stdout
    );

    let lines = by_id(
        csv_rows(&tmp.path().join("bundle/bill_lines.csv")),
        "line_id",
    );
    // 19 fee records: 2 refunds without a documented link (types 20, 24) are for a person, and
    // L103 becomes two lines: 19 − 2 − 1 + 2 = 18.
    assert_eq!(lines.len(), 18);
    // The refund of U900 (−300.00) is split per negative entry in base_order_id order: O050
    // (−100.00) is part 1, O100 (−200.00) part 2. Coupon −30.00 is shared 1/3 : 2/3 → −10.00 and
    // −20.00; settlement −240.00 (settlements.csv) → −80.00 and −160.00.
    let p1 = &lines["L103-1"];
    assert_eq!(
        (
            p1["original_order_id"].as_str(),
            p1["payable_amount"].as_str()
        ),
        ("O050", "-100.00")
    );
    assert_eq!(
        (
            p1["coupon_amount"].as_str(),
            p1["settlement_amount"].as_str()
        ),
        ("-10.00", "-80.00")
    );
    let p2 = &lines["L103-2"];
    assert_eq!(
        (
            p2["original_order_id"].as_str(),
            p2["payable_amount"].as_str()
        ),
        ("O100", "-200.00")
    );
    assert_eq!(
        (
            p2["coupon_amount"].as_str(),
            p2["settlement_amount"].as_str()
        ),
        ("-20.00", "-160.00")
    );
    assert!(
        !lines.contains_key("L103") && !lines.contains_key("L212") && !lines.contains_key("L213")
    );
    // A reseller's line in the distributor's export is the reseller's; the other is the exporter's.
    assert_eq!(lines["L301"]["partner_id"], "RS01");
    assert_eq!(lines["L302"]["partner_id"], "DIST01");
    // Customer coupons: coupon 100.00 + flexi-purchase 0 and 0 + 50.00, exactly from the text.
    assert_eq!(lines["L101"]["coupon_amount"], "100.00");
    assert_eq!(lines["L102"]["coupon_amount"], "50.00");
    assert_eq!(lines["L104"]["payable_amount"], "0.1");
    // Prepaid lines of a transaction id get it as their order; on-demand lines need none.
    assert_eq!(lines["L204"]["order_id"], "T204");
    assert_eq!(lines["L206"]["order_id"], "");
    assert!(
        lines
            .values()
            .all(|l| l["currency"] == "CNY" && l["market"] == "cn")
    );

    // Vouchers: V1 rebuilt from history (500.00 issued − 100.00 reclaimed; the failed reclaim
    // of 50.00 left out) = 400.00; V2 from --master (150.00); V3 (no history), V4 (a discount
    // coupon) and V5 (use_limits) are for a person.
    let vouchers = by_id(
        csv_rows(&tmp.path().join("bundle/vouchers.csv")),
        "voucher_id",
    );
    assert_eq!(vouchers.keys().collect::<Vec<_>>(), ["V1", "V2"]);
    assert_eq!(vouchers["V1"]["opening_balance"], "400.00");
    assert_eq!(vouchers["V2"]["opening_balance"], "150.00");
    // The reseller's link from ListIndirectPartners: 2026-03-31T16:30:00Z is 1 April in Shanghai.
    let links = csv_rows(&tmp.path().join("bundle/distributor_links.csv"));
    assert_eq!(links[0]["valid_from"], "2026-04-01");
    // Orders: type 13 (trial) has no counterpart; an unpaid order (status 6) has no paid_at.
    let orders = by_id(csv_rows(&tmp.path().join("bundle/orders.csv")), "order_id");
    assert!(!orders.contains_key("O999"));
    assert_eq!(orders["O203"]["paid_at"], "");
    assert_eq!(orders["O301"]["partner_id"], "RS01");

    // The report beside the bundle, not in it.
    assert!(!tmp.path().join("bundle/import_report.json").exists());
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("import_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["read"]["ListSubCustomerBillDetail"], 19);
    assert_eq!(report["written"]["bill_lines.csv"], 18);
    assert_eq!(report["validation"]["rejected_rows"], 0);
    let for_person = report["for_person"].as_array().unwrap();
    assert_eq!(for_person.len(), 7, "{for_person:#?}");

    let mut validate = incentives();
    validate
        .args(["validate", "--strict", "--cycle", "2026-10", "--input"])
        .arg(tmp.path().join("bundle"));
    let v = run(&mut validate);
    assert_eq!(v.status, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn the_imported_month_runs_with_the_figures_worked_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(import_month(tmp.path()).status, 0);
    let out = run_first_cycle(&tmp.path().join("bundle"), &tmp.path().join("out"), &[]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let ledger = csv_rows(&tmp.path().join("out/2026-10/ledger.csv"));
    let amount = |line: &str, kind: &str| -> Vec<(String, String)> {
        ledger
            .iter()
            .filter(|r| r["line_id"] == line && r["kind"] == kind)
            .map(|r| (r["partner_id"].clone(), r["amount"].clone()))
            .collect()
    };
    let one = |p: &str, a: &str| vec![(p.to_string(), a.to_string())];
    // O100 earned 8 % of 1,000.00 − 100.00 coupons = 72.00; O050 8 % of 500.00 − 50.00 = 36.00.
    assert_eq!(amount("L101", "earn"), one("SP01", "72.00"));
    assert_eq!(amount("L102", "earn"), one("SP01", "36.00"));
    // Each part claws back its own order at 8 %: (−100.00 + 10.00) × 8 % = −7.20 from O050,
    // (−200.00 + 20.00) × 8 % = −14.40 from O100.
    assert_eq!(amount("L103-1", "clawback"), one("SP01", "-7.20"));
    assert_eq!(amount("L103-2", "clawback"), one("SP01", "-14.40"));
    // The reseller's resale line earns its distributor the override: 1 % of 1,000.00.
    assert_eq!(amount("L301", "override"), one("DIST01", "10.00"));
    // Partner vouchers pay the partner's settlement (800.00 on L101): V2 (earlier expiry) 150.00,
    // then V1 400.00; customer coupons never became vouchers.
    let deductions = csv_rows(&tmp.path().join("out/2026-10/voucher_deductions.csv"));
    let paid: Vec<_> = deductions
        .iter()
        .map(|r| {
            (
                r["line_id"].as_str(),
                r["voucher_id"].as_str(),
                r["amount"].as_str(),
            )
        })
        .collect();
    assert_eq!(paid, [("L101", "V2", "150.00"), ("L101", "V1", "400.00")]);
}

fn import_bad(case: &str) -> (common::Outcome, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.args([
        "import",
        "huawei",
        "--cycle",
        "2026-10",
        "--exporter-id",
        "SP01",
        "--from",
    ])
    .arg(fixture(&format!("huawei/bad/{case}")))
    .arg("--out")
    .arg(tmp.path().join("bundle"));
    (run(&mut cmd), tmp)
}

#[test]
fn bad_responses_stop_with_exit_3_and_leave_nothing() {
    for (case, names) in [
        (
            "unknown_code",
            "fee_records[0] (id \"L1\"): bill_detail_type = \"12\"",
        ),
        (
            "exponent",
            "fee_records[0] (id \"L1\"): payment_amount = \"1e+02\"",
        ),
        (
            "too_many_places",
            "payment_amount = \"100.000000001\": 9 decimal places",
        ),
        ("missing_page", "total_count = \"2\": 1 record(s) read"),
        (
            "empty_page",
            "ListSubCustomerBillDetail_C1_p2.json: *: total_count = \"2\": a page with no fee_records",
        ),
        (
            "amount_word",
            "fee_records[0] (id \"L1\"): payment_amount = \"true\": not a decimal amount",
        ),
        (
            "no_responses",
            "no response (*.json) in the exporter's folder",
        ),
        (
            "jiao",
            "ShowRefundOrderDetails_U1.json: refund_infos[0] (id \"R1\"): measure_id = \"2\"",
        ),
    ] {
        let (out, tmp) = import_bad(case);
        assert_eq!(out.status, 3, "{case}: {}", out.stderr);
        assert!(out.stderr.contains(names), "{case}: {}", out.stderr);
        // No bundle, no staging folder, no report.
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{case}: {left:?}");
    }
}

#[test]
fn the_international_site_and_an_existing_bundle_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = incentives();
    cmd.args([
        "import", "huawei", "--market", "intl", "--cycle", "2026-10", "--from",
    ])
    .arg(fixture("huawei/month"))
    .arg("--out")
    .arg(tmp.path().join("b"));
    let out = run(&mut cmd);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("--market intl"), "{}", out.stderr);

    std::fs::write(tmp.path().join("taken"), "x").unwrap();
    let mut cmd = incentives();
    cmd.args(["import", "huawei", "--cycle", "2026-10", "--from"])
        .arg(fixture("huawei/month"))
        .arg("--out")
        .arg(tmp.path().join("taken"));
    assert_eq!(run(&mut cmd).status, 2);
}

fn import_policy(out: &Path) -> common::Outcome {
    let mut cmd = incentives();
    cmd.args(["import", "huawei-policy", "--month", "2026-10"])
        .arg(fixture(
            "huawei/policy/ListIncentiveDiscountPolicies_p1.json",
        ))
        .arg(fixture(
            "huawei/policy/ListIncentiveDiscountPolicies_p2.json",
        ))
        .arg("--out")
        .arg(out);
    run(&mut cmd)
}

#[test]
fn policies_become_exclusions() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("huawei_policy.toml");
    let out = import_policy(&file);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(
        "when = { service_type_code = [\"hws.service.type.marketplace2\", \"hws.service.type.sms\"] }\nwindow = { from = \"2026-10-01\", to = \"2026-10-31\" }\nstops_clawback = false\ncounts_toward_tier = false"
    ), "{text}");
    assert!(text.contains(
        "when = { service_type_code = [\"hws.service.type.cdn\"] }\nwindow = { from = \"2026-10-01\", to = \"2026-10-31\" }\nstops_clawback = false\ncounts_toward_tier = true"
    ), "{text}");
    assert!(
        text.contains("#   hws.service.type.modelarts  ModelArts"),
        "{text}"
    );
    assert!(
        !text.contains("hws.service.type.ec2"),
        "policy 0 is the ordinary case: {text}"
    );
}

/// Needs `stops_clawback` and `counts_toward_tier` in the rule language (added on `main`).
#[test]
fn the_policy_file_passes_check_beside_the_reference_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for entry in std::fs::read_dir(common::repo().join("rules/reference")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
    }
    assert_eq!(
        import_policy(&rules.join("huawei_policy_2026_10.toml")).status,
        0
    );
    let mut cmd = incentives();
    cmd.args(["check", "--rules"]).arg(&rules);
    let out = run(&mut cmd);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
}

/// `fixtures/huawei/policy_month`: ec2 under policy 2, rds under 13, added to the reference rules
/// and run on the imported month.
#[test]
fn policy_exclusions_earn_nothing_and_stop_no_clawback() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(import_month(tmp.path()).status, 0);
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for entry in std::fs::read_dir(common::repo().join("rules/reference")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
    }
    let mut cmd = incentives();
    cmd.args(["import", "huawei-policy", "--month", "2026-10"])
        .arg(fixture(
            "huawei/policy_month/ListIncentiveDiscountPolicies.json",
        ))
        .arg("--out")
        .arg(rules.join("huawei_policy.toml"));
    assert_eq!(run(&mut cmd).status, 0);
    let rules_arg = rules.display().to_string();
    let out = run_first_cycle(
        &tmp.path().join("bundle"),
        &tmp.path().join("out"),
        &["--rules", &rules_arg],
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let outcomes = by_id(
        csv_rows(&tmp.path().join("out/2026-10/line_outcomes.csv")),
        "line_id",
    );
    let fate = |l: &str| {
        let r = &outcomes[l];
        (
            r["fate"].clone(),
            r["reason"].clone(),
            r["incentive"].clone(),
        )
    };
    let f = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    // L101 (ec2, order O100) earns nothing under policy 2; L201 (rds) nothing under 13.
    assert_eq!(
        fate("L101"),
        f("excluded", "no_performance_no_rebate", "0.00")
    );
    assert_eq!(fate("L201"), f("excluded", "performance_no_rebate", "0.00"));
    // L102 (ebs, O050) earned 36.00 at 8 %. L103-1, an ec2 refund of O050, matches policy 2,
    // which does not stop clawbacks: (−100.00 + 10.00) × 8 % = −7.20 is clawed back.
    assert_eq!(fate("L102"), f("earned", "", "36.00"));
    assert_eq!(fate("L103-1"), f("clawed_back", "", "-7.20"));
    // L103-2 refunds O100, which earned nothing: nothing to claw back.
    assert_eq!(outcomes["L103-2"]["fate"], "refund_not_earned");
}

/// One fee record of a resale new purchase, with `fields` replaced (JSON text of each value).
fn fee_record(fields: &[(&str, &str)]) -> String {
    let mut record: Vec<(String, String)> = [
        ("id", "\"L1\""),
        ("bill_cycle", "\"2026-10\""),
        ("customer_id", "\"C1\""),
        ("association_type", "\"2\""),
        ("service_type_code", "\"hws.service.type.ec2\""),
        ("charging_mode", "1"),
        ("trade_time", "\"2026-10-05T02:00:00Z\""),
        ("trade_id", "\"O1\""),
        ("bill_detail_type", "1"),
        ("official_amount", "100.00"),
        ("payment_amount", "100.00"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in fields {
        match record.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => record.push((k.to_string(), v.to_string())),
        }
    }
    let body: Vec<String> = record
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// `import huawei --exporter-id SP01` of the files given (name, text) in a fresh folder.
fn import_files(files: &[(&str, &str)]) -> (common::Outcome, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("from");
    std::fs::create_dir(&from).unwrap();
    for (name, text) in files {
        std::fs::write(from.join(name), text).unwrap();
    }
    let mut cmd = incentives();
    cmd.args([
        "import",
        "huawei",
        "--cycle",
        "2026-10",
        "--exporter-id",
        "SP01",
        "--from",
    ])
    .arg(&from)
    .arg("--out")
    .arg(tmp.path().join("bundle"));
    (run(&mut cmd), tmp)
}

fn bill_page(total: &str, records: &[String]) -> String {
    format!(
        "{{\"total_count\": {total}, \"currency\": \"CNY\", \"fee_records\": [{}]}}",
        records.join(", ")
    )
}

/// Only the response folder (and the test's own) is left: no bundle, staging folder or report.
fn nothing_written(tmp: &Path) -> bool {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| e.file_name() == "from")
}

#[test]
fn malformed_responses_stop_naming_file_record_and_value() {
    let bill = "ListSubCustomerBillDetail_C1_p1.json";
    let one = |fields: &[(&str, &str)]| bill_page("1", &[fee_record(fields)]);
    for (text, names) in [
        (String::new(), format!("{bill}: *: response")),
        (
            "{\"total_count\": 1,".to_string(),
            format!("{bill}: *: response"),
        ),
        (
            "{\"total_count\": 1, \"currency\": \"CNY\", \"fee_records\": \"x\"}".into(),
            format!("{bill}: *: response"),
        ),
        (
            one(&[("payment_amount", "{\"value\": 1}")]),
            "(id \"L1\"): payment_amount = \"{\\\"value\\\": 1}\": not a decimal amount".into(),
        ),
        (
            one(&[("payment_amount", "1E+2")]),
            "payment_amount = \"1E+2\": an amount written with an exponent".into(),
        ),
        (
            one(&[("official_amount", "0.1000000001")]),
            "official_amount = \"0.1000000001\": 10 decimal places".into(),
        ),
        (
            one(&[("payment_amount", "123456789012345678901234567890")]),
            "payment_amount = \"123456789012345678901234567890\": 10^12 or more".into(),
        ),
        (
            one(&[("payment_amount", "null")]),
            "(id \"L1\"): payment_amount = \"\": missing".into(),
        ),
        (
            one(&[("bill_detail_type", "\"12\"")]),
            "bill_detail_type = \"12\": a code".into(),
        ),
        (
            one(&[("charging_mode", "1.0")]),
            "charging_mode = \"1.0\": a code".into(),
        ),
        (
            one(&[("trade_time", "\"2026-10-05 02:00:00\"")]),
            "trade_time = \"2026-10-05 02:00:00\": not an instant".into(),
        ),
        (
            one(&[("bill_cycle", "\"2026-09\"")]),
            "bill_cycle = \"2026-09\": not the cycle imported".into(),
        ),
        (
            one(&[("id", "\"L 1\"")]),
            "(id \"L 1\"): id = \"L 1\": not an id".into(),
        ),
        (
            one(&[("bill_detail_type", "4"), ("payment_amount", "5.00")]),
            "payment_amount = \"5.00\": a refund that is not below zero".into(),
        ),
        (
            bill_page("-1", &[fee_record(&[])]),
            "*: total_count = \"-1\": not a count".into(),
        ),
        (
            bill_page("1.5", &[fee_record(&[])]),
            "*: total_count = \"1.5\": not a count".into(),
        ),
        (
            one(&[]).replace("\"CNY\"", "\"RMB\""),
            "*: currency = \"RMB\": not an ISO 4217 code".into(),
        ),
    ] {
        let (out, tmp) = import_files(&[(bill, &text)]);
        assert_eq!(out.status, 3, "{text}: {}", out.stderr);
        assert!(out.stderr.contains(&names), "{text}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(nothing_written(tmp.path()), "{text}");
    }
}

#[test]
fn a_byte_order_mark_and_an_upper_case_extension_are_still_read() {
    let page = format!("\u{feff}{}", bill_page("1", &[fee_record(&[])]));
    let (out, tmp) = import_files(&[("ListSubCustomerBillDetail_C1_p1.JSON", &page)]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines = csv_rows(&tmp.path().join("bundle/bill_lines.csv"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payable_amount"], "100.00");
}

#[test]
fn a_subfolder_not_named_by_a_partner_id_is_a_usage_error() {
    // Its responses would be skipped unread: say so rather than import the others alone.
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("from");
    std::fs::create_dir_all(from.join("SP01")).unwrap();
    std::fs::create_dir_all(from.join("SP 02")).unwrap();
    let page = bill_page("1", &[fee_record(&[])]);
    std::fs::write(
        from.join("SP01/ListSubCustomerBillDetail_C1_p1.json"),
        &page,
    )
    .unwrap();
    std::fs::write(
        from.join("SP 02/ListSubCustomerBillDetail_C1_p1.json"),
        &page,
    )
    .unwrap();
    let mut cmd = incentives();
    cmd.args(["import", "huawei", "--cycle", "2026-10", "--from"])
        .arg(&from)
        .arg("--out")
        .arg(tmp.path().join("bundle"));
    let out = run(&mut cmd);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("\"SP 02\""), "{}", out.stderr);
    assert!(nothing_written(tmp.path()));
}

#[test]
fn a_refund_detail_splits_one_line_once_and_never_onto_another_lines_id() {
    let refund = |id: &str, order: &str| {
        fee_record(&[
            ("id", &format!("\"{id}\"")),
            ("bill_detail_type", "4"),
            ("trade_id", &format!("\"{order}\"")),
            ("official_amount", "-300.00"),
            ("payment_amount", "-300.00"),
            ("coupon_amount", "-0.01"),
        ])
    };
    let bills = bill_page(
        "4",
        &[
            refund("L1", "U1"),
            refund("L2", "U1"),
            fee_record(&[("id", "\"L5-1\""), ("trade_id", "\"O5\"")]),
            refund("L5", "U5"),
        ],
    );
    let entry = |id: &str, amount: &str, base: &str| {
        format!(
            r#"{{"id": "{id}", "amount": {amount}, "base_order_id": "{base}", "measure_id": 1}}"#
        )
    };
    let detail = |entries: &[String]| {
        format!(
            r#"{{"total_count": {}, "refund_infos": [{}]}}"#,
            entries.len(),
            entries.join(", ")
        )
    };
    // U1's detail lists R2 twice: counted once, so −100.00 − 200.00 = −300.00 splits L1.
    let u1 = detail(&[
        entry("R1", "-100.00", "B1"),
        entry("R2", "-200.00", "B2"),
        entry("R2", "-200.00", "B2"),
    ]);
    let u5 = detail(&[entry("R5", "-100.00", "B5"), entry("R6", "-200.00", "B6")]);
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &bills),
        ("ShowRefundOrderDetails_U1.json", &u1),
        ("ShowRefundOrderDetails_U5.json", &u5),
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines = by_id(
        csv_rows(&tmp.path().join("bundle/bill_lines.csv")),
        "line_id",
    );
    // L1 in two parts; coupon −0.01 × 100/300 = −0.00333333 (rounded to 8 places), the last part
    // −0.01 + 0.00333333 = −0.00666667: together −0.01 exactly.
    assert_eq!(lines.keys().collect::<Vec<_>>(), ["L1-1", "L1-2", "L5-1"]);
    assert_eq!(lines["L1-1"]["coupon_amount"], "-0.00333333");
    assert_eq!(lines["L1-2"]["coupon_amount"], "-0.00666667");
    assert_eq!(lines["L1-2"]["original_order_id"], "B2");
    // L5-1 is a purchase of its own, so L5's first part cannot take its id.
    assert_eq!(lines["L5-1"]["bill_type"], "new");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("import_report.json")).unwrap(),
    )
    .unwrap();
    let for_person: Vec<String> = report["for_person"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {} {}", p["file"], p["record"], p["reason"]))
        .collect();
    // Three, and the note that no --master gave partners.csv.
    assert_eq!(for_person.len(), 4, "{for_person:#?}");
    assert!(
        for_person[0].contains("refund_infos[2] (id \\\"R2\\\")")
            && for_person[0].contains("seen twice"),
        "{for_person:#?}"
    );
    assert!(
        for_person[1].contains("(id \\\"L2\\\")")
            && for_person[1].contains("already split line L1"),
        "{for_person:#?}"
    );
    assert!(
        for_person[2].contains("(id \\\"L5\\\")") && for_person[2].contains("id of another line"),
        "{for_person:#?}"
    );
}

#[test]
fn a_policy_response_that_cannot_be_read_writes_no_rule_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, names) in [
        (
            r#"{"total_count": 1, "policies": [{"service_type_code": "hws.service.type.y\n[x]", "incentive_policy": "1"}]}"#,
            "policies[0]: service_type_code = \"hws.service.type.y\\n[x]\": not a service type code",
        ),
        (
            r#"{"total_count": 1, "policies": [{"service_type_code": "a", "incentive_policy": "3"}]}"#,
            "policies[0]: incentive_policy = \"3\": a code",
        ),
        (
            r#"{"total_count": 3, "policies": [{"service_type_code": "a", "incentive_policy": 2}]}"#,
            "total_count = \"3\": 1 policies read",
        ),
    ] {
        let file = tmp.path().join("p.json");
        std::fs::write(&file, text).unwrap();
        let out_file = tmp.path().join("rules.toml");
        let mut cmd = incentives();
        cmd.args(["import", "huawei-policy", "--month", "2026-10"])
            .arg(&file)
            .arg("--out")
            .arg(&out_file);
        let out = run(&mut cmd);
        assert_eq!(out.status, 3, "{text}: {}", out.stderr);
        assert!(out.stderr.contains(names), "{text}: {}", out.stderr);
        assert!(!out_file.exists());
    }
}

#[test]
fn orders_of_all_customers_are_complete_though_a_page_holds_one_customer() {
    let order = |id: &str, customer: &str| {
        format!(
            r#"{{"order_id": "{id}", "customer_id": "{customer}", "order_type": 1, "status": 5, "create_time": "2026-10-05T01:55:00Z", "payment_time": "2026-10-05T02:00:00Z", "amount_after_discount": 100.00, "currency": "CNY", "measure_id": 1}}"#
        )
    };
    let page = |total: u32, orders: &[String]| {
        format!(
            r#"{{"total_count": {total}, "order_infos": [{}]}}"#,
            orders.join(", ")
        )
    };
    let bills = bill_page("1", &[fee_record(&[])]);
    // One query of 3 orders of all customers, its second page holding C2's alone: complete.
    let p1 = page(3, &[order("O1", "C1"), order("O2", "C2")]);
    let p2 = page(3, &[order("O3", "C2")]);
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &bills),
        ("ListCustomerOrders_p1.json", &p1),
        ("ListCustomerOrders_p2.json", &p2),
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(csv_rows(&tmp.path().join("bundle/orders.csv")).len(), 3);
    // Without its first page the 3 orders stated are not all there: 1 read.
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &bills),
        ("ListCustomerOrders_p2.json", &p2),
    ]);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ListCustomerOrders_p2.json: *: total_count = \"3\": 1 record(s) read"),
        "{}",
        out.stderr
    );
    assert!(nothing_written(tmp.path()));
}

#[test]
fn a_doubled_page_stops_and_a_record_id_seen_twice_is_reported() {
    // The same page saved twice: 2 records read of the 1 stated.
    let page = bill_page("1", &[fee_record(&[])]);
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &page),
        ("ListSubCustomerBillDetail_C1_p1_copy.json", &page),
    ]);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("total_count = \"1\": 2 record(s) read"),
        "{}",
        out.stderr
    );
    assert!(nothing_written(tmp.path()));
    // One page stating 2 records, both with id L1: the first is written, the second reported.
    let page = bill_page(
        "2",
        &[
            fee_record(&[]),
            fee_record(&[("payment_amount", "50.00"), ("official_amount", "50.00")]),
        ],
    );
    let (out, tmp) = import_files(&[("ListSubCustomerBillDetail_C1_p1.json", &page)]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines = csv_rows(&tmp.path().join("bundle/bill_lines.csv"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payable_amount"], "100.00");
    assert!(
        out.stdout
            .contains("fee_records[1] (id \"L1\"): line id seen twice"),
        "{}",
        out.stdout
    );
}

#[test]
fn customer_coupons_never_become_vouchers() {
    let bills = bill_page("1", &[fee_record(&[])]);
    // Coupons SP01 issued to its customers, and one of its "own" coupons held by customer C1.
    let issued = r#"{"total_count": 2, "coupons": [
        {"coupon_id": "CC1", "customer_id": "C1", "face_value": 50.00},
        {"coupon_id": "CC2", "customer_id": "C2", "face_value": 20.00}]}"#;
    let own = r#"{"count": 1, "user_coupons": [
        {"coupon_id": "V1", "coupon_type": 1, "customer_id": "C1", "face_value": 100.00,
         "create_time": "2026-09-01T00:00:00Z", "valid_time": "2026-09-01T00:00:00Z",
         "expire_time": "2027-08-31T16:00:00Z", "currency": "CNY", "status": 2, "measure_id": 1}]}"#;
    let history = r#"{"total_count": 1, "records": [
        {"id": "H1", "coupon_id": "V1", "operation_type": "1", "operation_amount": 100.00,
         "operation_time": "2026-09-01T00:00:00Z", "result": "0"}]}"#;
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &bills),
        ("ListIssuedPartnerCoupons_p1.json", issued),
        ("ListSubCustomerCoupons_p1.json", own),
        ("ListPartnerCouponsRecord_p1.json", history),
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(!tmp.path().join("bundle/vouchers.csv").exists());
    assert!(
        out.stdout.contains(
            "ListIssuedPartnerCoupons_p1.json: *: 2 coupon(s) the partner issued to its customers"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "user_coupons[0] (coupon_id \"V1\"): a coupon of customer C1: customer coupons never become vouchers"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn an_order_status_the_field_page_does_not_list_stops_the_import() {
    let bills = bill_page("1", &[fee_record(&[])]);
    let orders = r#"{"total_count": 1, "order_infos": [
        {"order_id": "O1", "customer_id": "C1", "order_type": 1, "status": 3,
         "create_time": "2026-10-05T01:55:00Z", "payment_time": "2026-10-05T02:00:00Z",
         "amount_after_discount": 100.00, "currency": "CNY", "measure_id": 1}]}"#;
    let (out, tmp) = import_files(&[
        ("ListSubCustomerBillDetail_C1_p1.json", &bills),
        ("ListCustomerOrders_p1.json", orders),
    ]);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "ListCustomerOrders_p1.json: order_infos[0] (order_id \"O1\"): status = \"3\""
        ),
        "{}",
        out.stderr
    );
    assert!(nothing_written(tmp.path()));
}

#[test]
fn the_masters_links_of_a_reseller_replace_the_apis_and_its_other_files_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let master = tmp.path().join("master");
    std::fs::create_dir(&master).unwrap();
    for f in ["partners.csv", "vouchers.csv"] {
        std::fs::copy(fixture(&format!("huawei/master/{f}")), master.join(f)).unwrap();
    }
    // A settlement with an exponent and a second one of L101: neither applied, both reported.
    std::fs::write(
        master.join("settlements.csv"),
        "line_id,settlement_amount\nL101,800.00\nL103,-240.00\nL102,8e2\nL101,1\n",
    )
    .unwrap();
    // RS01's history: DIST01 from 2025-06-01 (ListIndirectPartners says only 2026-04-01).
    std::fs::write(
        master.join("distributor_links.csv"),
        "reseller_id,distributor_id,valid_from,valid_to\nRS01,DIST01,2025-06-01,\n",
    )
    .unwrap();
    std::fs::write(
        master.join("capability_tags.csv"),
        "partner_id,tag,valid_from,valid_to\nSP01,ai_platform,2026-01-01,\n",
    )
    .unwrap();
    let mut cmd = incentives();
    cmd.args(["import", "huawei", "--cycle", "2026-10", "--from"])
        .arg(fixture("huawei/month"))
        .arg("--master")
        .arg(&master)
        .arg("--out")
        .arg(tmp.path().join("bundle"));
    let out = run(&mut cmd);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let links = csv_rows(&tmp.path().join("bundle/distributor_links.csv"));
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0]["reseller_id"].as_str(),
            links[0]["valid_from"].as_str()
        ),
        ("RS01", "2025-06-01")
    );
    let lines = by_id(
        csv_rows(&tmp.path().join("bundle/bill_lines.csv")),
        "line_id",
    );
    assert_eq!(lines["L101"]["settlement_amount"], "800.00");
    assert_eq!(lines["L102"]["settlement_amount"], "");
    for reported in [
        "master/settlements.csv: row 4: settlement_amount \"8e2\": an amount written with an exponent",
        "master/settlements.csv: row 5: line L101 settled twice",
    ] {
        assert!(out.stdout.contains(reported), "{}", out.stdout);
    }
    let tags = csv_rows(&tmp.path().join("bundle/capability_tags.csv"));
    assert_eq!(tags.len(), 1);
    assert!(
        out.stdout
            .contains("reseller's links taken from --master's distributor_links.csv (1)"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_error_body_or_an_empty_object_saved_as_a_response_stops_the_import() {
    // Either would read as a page of no records: the orders or coupons would vanish unsaid.
    let bills = bill_page("1", &[fee_record(&[])]);
    let error = r#"{"error_code": "CBC.0150", "error_msg": "Access denied."}"#;
    for (file, text, names) in [
        (
            "ListCustomerOrders_p1.json",
            error,
            "ListCustomerOrders_p1.json: *: error_code = \"CBC.0150\": an error response (Access denied.)",
        ),
        (
            "ListSubCustomerCoupons_p1.json",
            "{}",
            "ListSubCustomerCoupons_p1.json: *: response = \"\": neither a total_count nor a list",
        ),
    ] {
        let (out, tmp) = import_files(&[
            ("ListSubCustomerBillDetail_C1_p1.json", &bills),
            (file, text),
        ]);
        assert_eq!(out.status, 3, "{file}: {}", out.stderr);
        assert!(out.stderr.contains(names), "{file}: {}", out.stderr);
        assert!(nothing_written(tmp.path()));
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("ListIncentiveDiscountPolicies.json");
    std::fs::write(&file, error).unwrap();
    let mut cmd = incentives();
    cmd.args(["import", "huawei-policy", "--month", "2026-10"])
        .arg(&file)
        .arg("--out")
        .arg(tmp.path().join("rules.toml"));
    let out = run(&mut cmd);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("error_code = \"CBC.0150\""),
        "{}",
        out.stderr
    );
    assert!(!tmp.path().join("rules.toml").exists());
}
