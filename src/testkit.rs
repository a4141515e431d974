//! Test helpers shared by the stages' unit tests: bundles written from inline CSV text and the
//! reference rule set.

use crate::calendar::Cycle;
use crate::load::{Bundle, load_bundle};
use crate::rules::{RuleSet, load_rules};
use std::path::Path;

pub const PARTNERS: &str =
    "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on
SP1,Alpha,solution_provider,cn,cn,solution_provider,2024-01-01,
SP2,Leaver,solution_provider,cn,cn,solution_provider,2024-01-01,2025-10-20
SP3,Leap Leaver,solution_provider,cn,cn,solution_provider,2020-01-01,2024-02-29
SP4,Overseas,solution_provider,ap,intl,solution_provider,2024-01-01,
";

pub const LINE_HEADER: &str = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,charge_mode,bill_type,trade_time,order_id,official_amount,payable_amount,settlement_amount,currency\n";

pub fn cycle() -> Cycle {
    "2026-10".parse().unwrap()
}

/// A bundle from inline files (partners.csv defaults to [`PARTNERS`], bill_lines.csv to a header).
pub fn bundle(files: &[(&str, &str)]) -> Bundle {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<(&str, &str)> =
        vec![("partners.csv", PARTNERS), ("bill_lines.csv", LINE_HEADER)];
    for f in files {
        all.retain(|(n, _)| n != &f.0);
        all.push(*f);
    }
    for (name, text) in all {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let bundle = load_bundle(dir.path(), cycle()).unwrap();
    assert!(bundle.rejects.is_empty(), "{:?}", bundle.rejects);
    bundle
}

pub fn reference() -> RuleSet {
    load_rules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/reference")).unwrap()
}
