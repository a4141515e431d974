//! Each rule feature of SPEC §3, on a tiny inline bundle, with the expected cents worked by hand.

use super::*;
use crate::load::load_bundle;
use crate::rules::load_rules;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PARTNERS: &str =
    "partner_id,name,partner_type,business_region,market,programme,joined_on,exited_on
SP1,Alpha,solution_provider,cn,cn,solution_provider,2024-01-01,
SP2,Leaver,solution_provider,cn,cn,solution_provider,2024-01-01,2026-10-15
SP3,Overseas,solution_provider,ap,intl,solution_provider,2024-01-01,
DS1,Dist One,distributor,cn,cn,distribution,2024-01-01,
DS2,Dist Two,distributor,cn,cn,distribution,2024-01-01,
DS3,Dist Gone,distributor,cn,cn,distribution,2024-01-01,2026-09-01
RS1,Reseller One,reseller,cn,cn,distribution,2024-01-01,
RS2,Reseller Two,reseller,cn,cn,distribution,2024-01-01,
RS3,Reseller Gone,reseller,cn,cn,distribution,2024-01-01,2026-10-15
";
const LINKS: &str = "reseller_id,distributor_id,valid_from,valid_to
RS1,DS1,2025-01-01,2026-10-15
RS1,DS2,2026-10-16,
RS2,DS3,2025-01-01,
RS3,DS1,2025-01-01,
";
const TAGS: &str = "partner_id,tag,valid_from,valid_to
SP1,ai_platform,2026-10-10,2026-10-20
";
const HEADER: &str = "line_id,bill_cycle,partner_id,customer_id,sales_mode,market,service_type_code,charge_mode,bill_type,trade_time,order_id,original_order_id,official_amount,payable_amount,coupon_amount,currency\n";

/// A line: id, partner, sales mode, service (short name), charge mode, bill type, trade time,
/// order, original order, payable, coupon, currency.
struct L<'a> {
    id: &'a str,
    partner: &'a str,
    mode: &'a str,
    service: &'a str,
    charge: &'a str,
    bill: &'a str,
    at: &'a str,
    order: &'a str,
    original: &'a str,
    payable: &'a str,
    coupon: &'a str,
    currency: &'a str,
}

const BASE: L<'static> = L {
    id: "L1",
    partner: "SP1",
    mode: "resale",
    service: "ec2",
    charge: "yearly_monthly",
    bill: "new",
    at: "2026-10-05T10:00:00+08:00",
    order: "O1",
    original: "",
    payable: "1000.00",
    coupon: "",
    currency: "CNY",
};

fn csv_lines(lines: &[L<'_>]) -> String {
    let mut text = String::from(HEADER);
    for l in lines {
        let market = if l.currency == "CNY" { "cn" } else { "intl" };
        writeln!(
            text,
            "{},2026-10,{},C-{},{},{market},hws.service.type.{},{},{},{},{},{},{},{},{},{}",
            l.id,
            l.partner,
            l.id,
            l.mode,
            l.service,
            l.charge,
            l.bill,
            l.at,
            l.order,
            l.original,
            l.payable,
            l.payable,
            l.coupon,
            l.currency
        )
        .unwrap();
    }
    text
}

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/reference")
}

/// A bundle and a rule set in temporary folders. `rules` = None uses `rules/reference`;
/// otherwise the given files replace the reference files of the same name.
struct World {
    bundle: Bundle,
    rules: RuleSet,
    prior: Prior,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn world(lines: &[L<'_>], extra: &[(&str, &str)], rules: &[(&str, &str)]) -> World {
    let input = tempfile::tempdir().unwrap();
    let mut files = vec![
        ("partners.csv", PARTNERS.to_string()),
        ("distributor_links.csv", LINKS.to_string()),
        ("capability_tags.csv", TAGS.to_string()),
        ("bill_lines.csv", csv_lines(lines)),
    ];
    files.extend(extra.iter().map(|(n, t)| (*n, t.to_string())));
    for (name, text) in files {
        std::fs::write(input.path().join(name), text).unwrap();
    }
    let rules_dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(reference()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, rules_dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in rules {
        std::fs::write(rules_dir.path().join(name), text).unwrap();
    }
    let bundle = load_bundle(input.path(), cycle()).unwrap();
    assert!(bundle.rejects.is_empty(), "{:?}", bundle.rejects);
    let rules = load_rules(rules_dir.path()).unwrap_or_else(|p| panic!("{p}"));
    World {
        bundle,
        rules,
        prior: Prior::default(),
        _dirs: (input, rules_dir),
    }
}

fn cycle() -> Cycle {
    "2026-10".parse().unwrap()
}

/// Rows as (partner, line, lever, kind, credit cycle, amount) for comparison.
fn rows(w: &World) -> Vec<(String, String, String, &'static str, String, String)> {
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    e.journal
        .iter()
        .map(|&i| {
            let r = &e.rows[i as usize];
            (
                w.bundle.partners.at(r.partner).partner_id.to_string(),
                r.line.get().map_or("*".to_string(), |l| {
                    w.bundle.bill_lines[l as usize].line_id.to_string()
                }),
                w.rules.levers[r.lever as usize].name.clone(),
                r.kind.as_str(),
                r.credit_cycle.to_string(),
                r.amount.to_string(),
            )
        })
        .collect()
}

fn row(
    p: &str,
    l: &str,
    lever: &str,
    kind: &'static str,
    credit: &str,
    amount: &str,
) -> (String, String, String, &'static str, String, String) {
    (
        p.into(),
        l.into(),
        lever.into(),
        kind,
        credit.into(),
        amount.into(),
    )
}

/// (line id, fate, reason) per line.
fn fates(w: &World) -> Vec<(String, &'static str, String)> {
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    w.bundle
        .bill_lines
        .iter()
        .zip(&e.outcomes)
        .map(|(l, o)| {
            (
                l.line_id.to_string(),
                o.fate.as_str(),
                e.reason(o).to_string(),
            )
        })
        .collect()
}

#[test]
fn base_levers_flat_rates_on_payable_minus_coupon() {
    let w = world(
        &[
            // resale prepaid: (1000.00 − 100.00) × 8 % = 72.00, this cycle
            L {
                coupon: "100.00",
                ..BASE
            },
            // resale on-demand: 1000.00 × 5 % = 50.00, next cycle
            L {
                id: "L2",
                charge: "on_demand",
                bill: "usage",
                order: "",
                ..BASE
            },
            // referral prepaid: 1000.00 × 5 % = 50.00
            L {
                id: "L3",
                mode: "referral",
                order: "O3",
                ..BASE
            },
            // referral on-demand: 1000.00 × 3 % = 30.00, next cycle
            L {
                id: "L4",
                mode: "referral",
                charge: "on_demand",
                bill: "usage",
                order: "",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    assert_eq!(
        rows(&w),
        vec![
            row("SP1", "L1", "resale_base", "earn", "2026-10", "72.00"),
            row("SP1", "L3", "referral_base", "earn", "2026-10", "50.00"),
            row("SP1", "L2", "resale_base", "earn", "2026-11", "50.00"),
            row("SP1", "L4", "referral_base", "earn", "2026-11", "30.00"),
        ]
    );
    let f = fates(&w);
    assert_eq!(f[1], ("L2".into(), "deferred", "on_demand".into()));
}

#[test]
fn cutoff_is_20_00_shanghai_on_the_last_day_inclusive() {
    let w = world(
        &[
            L {
                id: "A",
                at: "2026-10-31T19:59:59+08:00",
                ..BASE
            },
            // 12:00Z is 20:00 in Shanghai: at the cut-off, so next cycle.
            L {
                id: "B",
                at: "2026-10-31T12:00:00Z",
                order: "O2",
                ..BASE
            },
            L {
                id: "C",
                at: "2026-10-31T23:30:00+08:00",
                order: "O3",
                ..BASE
            },
            // 20:00 on the 30th is not the last day.
            L {
                id: "D",
                at: "2026-10-30T20:00:00+08:00",
                order: "O4",
                ..BASE
            },
            // Traded in September, billed in October: same rule, credited now.
            L {
                id: "E",
                at: "2026-09-30T21:00:00+08:00",
                order: "O5",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    let credit: Vec<(String, String)> = rows(&w).into_iter().map(|r| (r.1, r.4)).collect();
    assert!(credit.contains(&("A".into(), "2026-10".into())));
    assert!(credit.contains(&("B".into(), "2026-11".into())));
    assert!(credit.contains(&("C".into(), "2026-11".into())));
    assert!(credit.contains(&("D".into(), "2026-10".into())));
    assert!(credit.contains(&("E".into(), "2026-10".into())));
    assert!(fates(&w).contains(&("B".into(), "deferred", "after_cutoff".into())));
}

#[test]
fn exclusions_give_their_reason_and_unmatched_lines_no_matching_rule() {
    let w = world(
        &[
            L {
                id: "M",
                service: "marketplace",
                ..BASE
            },
            L {
                id: "S",
                service: "support",
                order: "O2",
                ..BASE
            },
            L {
                id: "A",
                bill: "adjustment",
                order: "O3",
                ..BASE
            },
            // SP2 left on 2026-10-15: in on the 14th, out on the 15th (joined ≤ d < exited).
            L {
                id: "IN",
                partner: "SP2",
                at: "2026-10-14T23:59:59+08:00",
                order: "O4",
                ..BASE
            },
            L {
                id: "OUT",
                partner: "SP2",
                at: "2026-10-15T00:00:00+08:00",
                order: "O5",
                ..BASE
            },
            // A distributor's own resale line earns nothing.
            L {
                id: "D",
                partner: "DS1",
                order: "O6",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    assert_eq!(
        fates(&w),
        vec![
            ("M".into(), "excluded", "marketplace_product".into()),
            ("S".into(), "excluded", "support_plan".into()),
            ("A".into(), "excluded", "adjustment".into()),
            ("IN".into(), "earned", "".into()),
            ("OUT".into(), "excluded", "not_in_programme".into()),
            ("D".into(), "excluded", "no_matching_rule".into()),
        ]
    );
}

#[test]
fn promo_stacks_on_a_base_lever_only_with_a_tag_held_at_trade_time() {
    let w = world(
        &[
            // Tag ai_platform held 10-10..10-20: 1000 × 8 % = 80.00 base + 1000 × 3 % = 30.00 promo.
            L {
                id: "P1",
                service: "modelarts",
                at: "2026-10-15T10:00:00+08:00",
                ..BASE
            },
            // On-demand: both deferred together.
            L {
                id: "P2",
                service: "gaussdb",
                charge: "on_demand",
                bill: "usage",
                order: "",
                at: "2026-10-20T23:00:00+08:00",
                ..BASE
            },
            // After the tag ended: base only.
            L {
                id: "P3",
                service: "modelarts",
                at: "2026-10-21T00:00:00+08:00",
                order: "O3",
                ..BASE
            },
            // A distributor's own resale line earns no base, so no promo either.
            L {
                id: "P4",
                partner: "DS1",
                service: "modelarts",
                at: "2026-10-15T10:00:00+08:00",
                order: "O4",
                ..BASE
            },
        ],
        &[(
            "capability_tags.csv",
            "partner_id,tag,valid_from,valid_to\nSP1,ai_platform,2026-10-10,2026-10-20\nDS1,ai_platform,2026-01-01,\n",
        )],
        &[],
    );
    assert_eq!(
        rows(&w),
        vec![
            row("SP1", "P1", "resale_base", "earn", "2026-10", "80.00"),
            row("SP1", "P1", "strategic_promo", "earn", "2026-10", "30.00"),
            row("SP1", "P3", "resale_base", "earn", "2026-10", "80.00"),
            row("SP1", "P2", "resale_base", "earn", "2026-11", "50.00"),
            row("SP1", "P2", "strategic_promo", "earn", "2026-11", "30.00"),
        ]
    );
}

#[test]
fn effective_window_is_inclusive_on_trade_dates() {
    let promo = r#"
[[rule]]
id = "strategic_promo.first_ten_days"
lever = "strategic_promo"
priority = 10
rate = "0.03"
window = { from = "2026-10-01", to = "2026-10-10" }
when = { service_type_code = ["hws.service.type.ec2"] }
"#;
    let w = world(
        &[
            // 2026-10-10 23:59 Shanghai is inside; 2026-10-10T16:00Z is 10-11 00:00 Shanghai: outside.
            L {
                id: "W1",
                at: "2026-10-10T23:59:00+08:00",
                ..BASE
            },
            L {
                id: "W2",
                at: "2026-10-10T16:00:00Z",
                order: "O2",
                ..BASE
            },
        ],
        &[],
        &[("strategic_promo.toml", promo)],
    );
    let promo_lines: Vec<String> = rows(&w)
        .into_iter()
        .filter(|r| r.2 == "strategic_promo")
        .map(|r| r.1)
        .collect();
    assert_eq!(promo_lines, vec!["W1".to_string()]);
}

#[test]
fn override_goes_to_the_distributor_linked_on_the_trade_date() {
    let w = world(
        &[
            // RS1 → DS1 until 10-15, → DS2 from 10-16: 1000 × 1 % = 10.00 each.
            L {
                id: "R1",
                partner: "RS1",
                at: "2026-10-15T12:00:00+08:00",
                ..BASE
            },
            L {
                id: "R2",
                partner: "RS1",
                at: "2026-10-16T12:00:00+08:00",
                order: "O2",
                ..BASE
            },
            // RS2's distributor DS3 left its programme: no override, and the reseller earns nothing.
            L {
                id: "R3",
                partner: "RS2",
                order: "O3",
                ..BASE
            },
            // Referral lines of a reseller earn the reseller referral base (5 %), no override.
            L {
                id: "R4",
                partner: "RS1",
                mode: "referral",
                order: "O4",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    assert_eq!(
        rows(&w),
        vec![
            row(
                "DS1",
                "R1",
                "distributor_override",
                "override",
                "2026-10",
                "10.00"
            ),
            row(
                "DS2",
                "R2",
                "distributor_override",
                "override",
                "2026-10",
                "10.00"
            ),
            row("RS1", "R4", "referral_base", "earn", "2026-10", "50.00"),
        ]
    );
    let f = fates(&w);
    assert_eq!(f[0].1, "earned");
    assert_eq!(f[2], ("R3".into(), "excluded", "no_matching_rule".into()));
    // The override row names the reseller's customer.
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    let first = &e.rows[e.journal[0] as usize];
    assert_eq!(
        w.bundle.bill_lines[first.line.get().unwrap() as usize].customer_id,
        "C-R1"
    );
}

#[test]
fn marginal_tier_per_currency_on_gross_resale_base() {
    let w = world(
        &[
            // CNY base 1,100,000: (1,000,000 − 100,000) × 1 % + 100,000 × 2 % = 9,000 + 2,000 = 11,000.00
            L {
                id: "T1",
                payable: "600000.00",
                ..BASE
            },
            L {
                id: "T2",
                payable: "500000.00",
                charge: "on_demand",
                bill: "usage",
                order: "",
                ..BASE
            },
            // A refund does not lower the tier base.
            L {
                id: "T3",
                bill: "refund",
                payable: "-100000.00",
                order: "U1",
                original: "O1",
                ..BASE
            },
            // USD base 130,000: (125,000 − 12,500) × 1 % + 5,000 × 2 % = 1,125 + 100 = 1,225.00
            L {
                id: "T4",
                partner: "SP3",
                payable: "130000.00",
                currency: "USD",
                order: "O4",
                ..BASE
            },
            // EUR has no bands: no tier.
            L {
                id: "T5",
                partner: "SP3",
                payable: "500000.00",
                currency: "EUR",
                order: "O5",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    let tiers: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "tier").collect();
    assert_eq!(
        tiers,
        vec![
            row("SP1", "*", "growth_tier", "tier", "2026-10", "11000.00"),
            row("SP3", "*", "growth_tier", "tier", "2026-10", "1225.00"),
        ]
    );
}

#[test]
fn tier_below_the_first_band_writes_no_row_and_whole_tiers_rate_everything() {
    let whole = r#"
[[rule]]
id = "growth_tier.whole"
lever = "growth_tier"
priority = 10
[rule.tiers]
mode = "whole"
CNY = [
    { from = "0", to = "100000", rate = "0" },
    { from = "100000", rate = "0.01" },
]
"#;
    // SP1 150,000 whole: 150,000 × 1 % = 1,500.00 (marginal would give 500.00); SP3 50,000 CNY: 0.
    let lines = [
        L {
            id: "T1",
            payable: "150000.00",
            ..BASE
        },
        L {
            id: "T2",
            partner: "SP3",
            payable: "50000.00",
            order: "O2",
            ..BASE
        },
    ];
    let w = world(&lines, &[], &[("growth_tier.toml", whole)]);
    let tiers: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "tier").collect();
    assert_eq!(
        tiers,
        vec![row("SP1", "*", "growth_tier", "tier", "2026-10", "1500.00")]
    );
    let w = world(&lines, &[], &[]);
    let tiers: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "tier").collect();
    assert_eq!(
        tiers,
        vec![row("SP1", "*", "growth_tier", "tier", "2026-10", "500.00")]
    );
}

#[test]
fn cap_holds_a_levers_net_credited_total_per_partner_and_currency() {
    let levers = std::fs::read_to_string(reference().join("levers.toml"))
        .unwrap()
        .replace(
            "credit = \"standard\"\ndescription = \"Base incentive on resale lines of solution providers\"",
            "credit = \"standard\"\ncap = { CNY = \"100.00\" }\ndescription = \"capped\"",
        );
    let w = world(
        &[
            // 72.00 + 40.00 = 112.00 credited this cycle → cap row −12.00; the deferred 50.00 is
            // credited (and capped) next cycle.
            L {
                id: "C1",
                payable: "900.00",
                ..BASE
            },
            L {
                id: "C2",
                payable: "500.00",
                order: "O2",
                ..BASE
            },
            L {
                id: "C3",
                charge: "on_demand",
                bill: "usage",
                order: "",
                ..BASE
            },
        ],
        &[],
        &[("levers.toml", &levers)],
    );
    let caps: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "cap").collect();
    assert_eq!(
        caps,
        vec![row("SP1", "*", "resale_base", "cap", "2026-10", "-12.00")]
    );
}

#[test]
fn rounding_is_once_per_row_half_up_or_half_even() {
    // 100.0625 × 8 % = 8.005: half-up 8.01; refund −100.0625 × 8 % = −8.005 → −8.01 (away from 0).
    let lines = [
        L {
            id: "R1",
            payable: "100.0625",
            ..BASE
        },
        L {
            id: "R2",
            payable: "100.0625",
            bill: "renew",
            order: "O2",
            ..BASE
        },
        L {
            id: "R3",
            bill: "refund",
            payable: "-100.0625",
            order: "U1",
            original: "O2",
            ..BASE
        },
    ];
    let w = world(&lines, &[], &[]);
    let amounts: Vec<String> = rows(&w).into_iter().map(|r| r.5).collect();
    assert_eq!(amounts, vec!["8.01", "8.01", "-8.01"]);
    let even = std::fs::read_to_string(reference().join("ruleset.toml"))
        .unwrap()
        .replace("\"half_up\"", "\"half_even\"");
    let w = world(&lines, &[], &[("ruleset.toml", &even)]);
    let amounts: Vec<String> = rows(&w).into_iter().map(|r| r.5).collect();
    // half-even: 8.005 → 8.00, −8.005 → −8.00 (a clawback row at 0-ish still written).
    assert_eq!(amounts, vec!["8.00", "8.00", "-8.00"]);
}

#[test]
fn first_matching_rule_by_priority_wins_and_conditions_combine() {
    let rules = r#"
[[rule]]
id = "resale_base.rds_big"
lever = "resale_base"
priority = 5
rate = "0.10"
when = { service_type_code = { prefix = ["hws.service.type.rds"] }, payable_amount = { min = "1000.00" }, order_type = ["new"] }

[[rule]]
id = "resale_base.cn_other"
lever = "resale_base"
priority = 20
rate = "0.02"
when = { partner_type = ["solution_provider"], partner_market = ["cn"], programme = ["solution_provider"], service_type_code = { not_in = ["hws.service.type.obs"] } }

[[rule]]
id = "resale_base.everything"
lever = "resale_base"
priority = 30
rate = "0.01"
when = { sales_mode = ["resale"] }
"#;
    let orders = "order_id,partner_id,customer_id,order_type,created_at,paid_at,amount,currency,project_id,original_order_id
O1,SP1,C-A,new,2026-10-01T00:00:00Z,,1000.00,CNY,,
O2,SP1,C-B,renew,2026-10-01T00:00:00Z,,1000.00,CNY,,
O3,SP1,C-C,new,2026-10-01T00:00:00Z,,999.99,CNY,,
O4,SP1,C-D,new,2026-10-01T00:00:00Z,,1000.00,CNY,,
";
    let w = world(
        &[
            // rds, ≥ 1000, order new: priority 5 → 10 % = 100.00
            L {
                id: "A",
                service: "rds.vm",
                order: "O1",
                ..BASE
            },
            // order renew: falls to priority 20 → 2 % = 20.00
            L {
                id: "B",
                service: "rds.vm",
                order: "O2",
                ..BASE
            },
            // below 1000: 2 % of 999.99 = 20.00 (19.9998)
            L {
                id: "C",
                service: "rds.vm",
                order: "O3",
                payable: "999.99",
                ..BASE
            },
            // obs is not_in the cn rule: falls to 1 % = 10.00
            L {
                id: "D",
                service: "obs",
                order: "O4",
                ..BASE
            },
        ],
        &[("orders.csv", orders)],
        &[("resale_base.toml", rules)],
    );
    let got: Vec<(String, String)> = rows(&w).into_iter().map(|r| (r.1, r.5)).collect();
    assert_eq!(
        got,
        vec![
            ("A".into(), "100.00".into()),
            ("B".into(), "20.00".into()),
            ("C".into(), "20.00".into()),
            ("D".into(), "10.00".into()),
        ]
    );
}

#[test]
fn refunds_claw_back_at_the_orders_rate_up_to_what_it_earned() {
    let orders = "order_id,partner_id,customer_id,order_type,created_at,paid_at,amount,currency,project_id,original_order_id
U3,SP1,C-x,unsubscribe,2026-10-01T00:00:00Z,,-1.00,CNY,,O1
";
    let w = world(
        &[
            // O1 earns 1000 × 8 % = 80.00.
            L { id: "A1", ..BASE },
            // −250 × 8 % = −20.00; then −2000 × 8 % = −160.00 capped at the 60.00 left; then 0.00.
            L {
                id: "R1",
                bill: "refund",
                payable: "-250.00",
                order: "U1",
                original: "O1",
                at: "2026-10-20T10:00:00+08:00",
                ..BASE
            },
            L {
                id: "R2",
                bill: "refund",
                payable: "-2000.00",
                order: "U2",
                original: "O1",
                at: "2026-10-21T10:00:00+08:00",
                ..BASE
            },
            // Found through orders.csv (U3 → O1): nothing left, a 0.00 row.
            L {
                id: "R3",
                bill: "refund",
                payable: "-10.00",
                order: "U3",
                at: "2026-10-22T10:00:00+08:00",
                ..BASE
            },
            // An order that never earned.
            L {
                id: "R4",
                bill: "refund",
                payable: "-10.00",
                order: "U4",
                original: "O-OLD",
                ..BASE
            },
            // An excluded service claws nothing back.
            L {
                id: "R5",
                bill: "refund",
                service: "marketplace",
                payable: "-10.00",
                order: "U5",
                original: "O1",
                ..BASE
            },
        ],
        &[("orders.csv", orders)],
        &[],
    );
    let claws: Vec<(String, String)> = rows(&w)
        .into_iter()
        .filter(|r| r.3 == "clawback")
        .map(|r| (r.1, r.5))
        .collect();
    assert_eq!(
        claws,
        vec![
            ("R1".into(), "-20.00".into()),
            ("R2".into(), "-60.00".into()),
            ("R3".into(), "0.00".into())
        ]
    );
    let f = fates(&w);
    assert_eq!(f[1].1, "clawed_back");
    assert_eq!(f[3].1, "clawed_back");
    assert_eq!(
        f[4],
        (
            "R4".into(),
            "refund_not_earned",
            "order_never_earned".into()
        )
    );
    assert_eq!(
        f[5],
        (
            "R5".into(),
            "refund_not_earned",
            "marketplace_product".into()
        )
    );
}

#[test]
fn refunds_use_the_earliest_rows_rate_and_claw_overrides_from_the_distributor() {
    let w = world(
        &[
            // One order, two lines: A0 on-demand 5 % (earliest line id), B0 prepaid 8 %.
            L {
                id: "A0",
                charge: "on_demand",
                bill: "usage",
                payable: "100.00",
                ..BASE
            },
            L {
                id: "B0",
                payable: "100.00",
                ..BASE
            },
            // Pool: 5.00 + 8.00 = 13.00; refund −100 at 5 % = −5.00.
            L {
                id: "R1",
                bill: "refund",
                payable: "-100.00",
                order: "U1",
                original: "O1",
                ..BASE
            },
            // Reseller: override 1000 × 1 % = 10.00 to DS1; refund −500 → −5.00 from DS1.
            L {
                id: "S1",
                partner: "RS1",
                order: "O9",
                at: "2026-10-02T10:00:00+08:00",
                ..BASE
            },
            L {
                id: "S2",
                partner: "RS1",
                bill: "refund",
                payable: "-500.00",
                order: "U9",
                original: "O9",
                at: "2026-10-03T10:00:00+08:00",
                ..BASE
            },
            // A refund on the last evening is credited next cycle.
            L {
                id: "S3",
                partner: "RS1",
                bill: "refund",
                payable: "-100.00",
                order: "U8",
                original: "O9",
                at: "2026-10-31T21:00:00+08:00",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    let claws: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "clawback").collect();
    assert_eq!(
        claws,
        vec![
            row(
                "DS1",
                "S2",
                "distributor_override",
                "clawback",
                "2026-10",
                "-5.00"
            ),
            row(
                "DS1",
                "S3",
                "distributor_override",
                "clawback",
                "2026-11",
                "-1.00"
            ),
            row("SP1", "R1", "resale_base", "clawback", "2026-10", "-5.00"),
        ]
    );
}

/// A pool an earlier cycle left: `earned` at `rate` on `order`, for `recipient`'s `lever`.
fn prior_pool(order: &str, lever: &str, recipient: &str, earned: &str, rate: &str) -> PriorPool {
    PriorPool {
        order_id: order.into(),
        lever: lever.into(),
        recipient: recipient.into(),
        currency: crate::model::Currency::parse("CNY").unwrap(),
        earned: earned.parse().unwrap(),
        clawed: Decimal::ZERO,
        first_cycle: "2026-08".parse().unwrap(),
        first_line: format!("{order}-L1"),
        rate: Some(rate.parse().unwrap()),
        rule_id: format!("{lever}.old"),
    }
}

#[test]
fn refunds_are_clawed_back_after_the_partner_or_its_distributor_left() {
    let mut w = world(
        &[
            // SP2 exits 2026-10-15. O1 on 10-05 earns 1,000.00 × 8 % = 80.00 (in programme).
            L {
                id: "A1",
                partner: "SP2",
                ..BASE
            },
            // After the exit: −250.00 × 8 % = −20.00, still clawed back.
            L {
                id: "R1",
                partner: "SP2",
                bill: "refund",
                payable: "-250.00",
                order: "U1",
                original: "O1",
                at: "2026-10-20T10:00:00+08:00",
                ..BASE
            },
            // An excluded service of the leaver: nothing clawed, the service's reason.
            L {
                id: "R2",
                partner: "SP2",
                service: "marketplace",
                bill: "refund",
                payable: "-100.00",
                order: "U2",
                original: "O1",
                at: "2026-10-21T10:00:00+08:00",
                ..BASE
            },
            // RS3 (linked to DS1) exits 2026-10-15. S1 on 10-02 earns DS1 1,000.00 × 1 % = 10.00.
            L {
                id: "S1",
                partner: "RS3",
                order: "O3",
                at: "2026-10-02T10:00:00+08:00",
                ..BASE
            },
            // After RS3's exit: −400.00 × 1 % = −4.00 from DS1.
            L {
                id: "S2",
                partner: "RS3",
                bill: "refund",
                payable: "-400.00",
                order: "U3",
                original: "O3",
                at: "2026-10-25T10:00:00+08:00",
                ..BASE
            },
            // RS2's distributor DS3 exited 2026-09-01; O7 earned it 10.00 at 1 % in 2026-08.
            // −300.00 × 1 % = −3.00, still clawed back from DS3.
            L {
                id: "S3",
                partner: "RS2",
                bill: "refund",
                payable: "-300.00",
                order: "U7",
                original: "O7",
                at: "2026-10-26T10:00:00+08:00",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    w.prior.pools = vec![prior_pool(
        "O7",
        "distributor_override",
        "DS3",
        "10.00",
        "0.01",
    )];
    let claws: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "clawback").collect();
    assert_eq!(
        claws,
        vec![
            row(
                "DS1",
                "S2",
                "distributor_override",
                "clawback",
                "2026-10",
                "-4.00"
            ),
            row(
                "DS3",
                "S3",
                "distributor_override",
                "clawback",
                "2026-10",
                "-3.00"
            ),
            row("SP2", "R1", "resale_base", "clawback", "2026-10", "-20.00"),
        ]
    );
    let f = fates(&w);
    let fate = |id: &str| f.iter().find(|x| x.0 == id).cloned().unwrap();
    assert_eq!(fate("R1"), ("R1".into(), "clawed_back", "".into()));
    assert_eq!(
        fate("R2"),
        (
            "R2".into(),
            "refund_not_earned",
            "marketplace_product".into()
        )
    );
    assert_eq!(fate("S2"), ("S2".into(), "clawed_back", "".into()));
    assert_eq!(fate("S3"), ("S3".into(), "clawed_back", "".into()));
}

#[test]
fn an_exclusion_that_stops_clawbacks_is_the_rule_files_choice() {
    // The same leaver's refund under a programme exclusion that stops clawbacks (the old
    // reading): refund_not_earned, not_in_programme, no row.
    let exclusions = std::fs::read_to_string(reference().join("exclusions.toml"))
        .unwrap()
        .replace("stops_clawback = false", "stops_clawback = true");
    let w = world(
        &[
            L {
                id: "A1",
                partner: "SP2",
                ..BASE
            },
            L {
                id: "R1",
                partner: "SP2",
                bill: "refund",
                payable: "-250.00",
                order: "U1",
                original: "O1",
                at: "2026-10-20T10:00:00+08:00",
                ..BASE
            },
        ],
        &[],
        &[("exclusions.toml", &exclusions)],
    );
    assert!(rows(&w).iter().all(|r| r.3 != "clawback"));
    assert_eq!(
        fates(&w)[1],
        ("R1".into(), "refund_not_earned", "not_in_programme".into())
    );
}

#[test]
fn an_exclusion_holds_only_in_its_window_of_trade_dates() {
    let windowed = r#"
[[exclusion]]
id = "exclude.ec2_mid_october"
reason = "vendor_policy"
explanation = "ec2 earns nothing from 10 to 20 October"
when = { service_type_code = ["hws.service.type.ec2"] }
window = { from = "2026-10-10", to = "2026-10-20" }
"#;
    let w = world(
        &[
            // 10-05: before the window, 1,000.00 × 8 % = 80.00.
            L { id: "A1", ..BASE },
            // 10-10 and 10-20 (Shanghai dates, both ends inclusive): excluded.
            L {
                id: "A2",
                at: "2026-10-10T00:00:00+08:00",
                order: "O2",
                ..BASE
            },
            L {
                id: "A3",
                at: "2026-10-20T23:59:59+08:00",
                order: "O3",
                ..BASE
            },
            // 10-20T16:00Z is 10-21 in Shanghai: after the window, earns 80.00.
            L {
                id: "A4",
                at: "2026-10-20T16:00:00Z",
                order: "O4",
                ..BASE
            },
        ],
        &[],
        &[("zz_window.toml", windowed)],
    );
    let f: Vec<(String, &str)> = fates(&w).into_iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(
        f,
        vec![
            ("A1".to_string(), "earned"),
            ("A2".to_string(), "excluded"),
            ("A3".to_string(), "excluded"),
            ("A4".to_string(), "earned"),
        ]
    );
    assert_eq!(fates(&w)[1].2, "vendor_policy");
}

#[test]
fn an_excluded_base_that_counts_toward_the_tier_raises_it() {
    let lines = [
        // 100,000.00 of resale_base base: exactly the top of the 0 % band, no tier on its own.
        L {
            id: "T1",
            payable: "100000.00",
            ..BASE
        },
        // 50,000.00 of an excluded service that a resale_base rule would have earned on.
        L {
            id: "T2",
            service: "marketplace",
            payable: "50000.00",
            order: "O2",
            ..BASE
        },
        // A referral line of that service: resale_base has no rule for it, so it never counts.
        L {
            id: "T3",
            mode: "referral",
            service: "marketplace",
            payable: "70000.00",
            order: "O3",
            ..BASE
        },
    ];
    let plain = world(&lines, &[], &[]);
    assert!(rows(&plain).iter().all(|r| r.3 != "tier"));
    let counting = std::fs::read_to_string(reference().join("exclusions.toml"))
        .unwrap()
        .replacen(
            "when = { service_type_code = [\"hws.service.type.marketplace\"] }",
            "when = { service_type_code = [\"hws.service.type.marketplace\"] }\ncounts_toward_tier = true",
            1,
        );
    let w = world(&lines, &[], &[("exclusions.toml", &counting)]);
    // Total 150,000.00: (150,000 − 100,000) × 1 % = 500.00. T2 stays excluded.
    let tiers: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "tier").collect();
    assert_eq!(
        tiers,
        vec![row("SP1", "*", "growth_tier", "tier", "2026-10", "500.00")]
    );
    assert_eq!(
        fates(&w)[1],
        ("T2".into(), "excluded", "marketplace_product".into())
    );
}

#[test]
fn every_line_gets_exactly_one_outcome_and_rows_stay_with_their_line() {
    let w = world(
        &[
            L { id: "A", ..BASE },
            L {
                id: "B",
                partner: "RS1",
                order: "O2",
                ..BASE
            },
            L {
                id: "C",
                bill: "refund",
                payable: "-1.00",
                order: "U1",
                original: "O1",
                ..BASE
            },
            L {
                id: "D",
                service: "domain",
                order: "O4",
                ..BASE
            },
        ],
        &[],
        &[],
    );
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    assert_eq!(e.outcomes.len(), 4);
    for (i, o) in e.outcomes.iter().enumerate() {
        for r in &e.rows[o.rows.start as usize..o.rows.end as usize] {
            assert_eq!(r.line.get(), Some(i as u32));
        }
    }
    let mut journal = e.journal.clone();
    journal.sort();
    assert_eq!(journal, (0..e.rows.len() as u32).collect::<Vec<_>>());
}

#[test]
fn ranges_on_coupon_and_settlement_amounts() {
    let rules = r#"
[[rule]]
id = "resale_base.no_coupon_large"
lever = "resale_base"
priority = 5
rate = "0.10"
when = { coupon_amount = { max = "0" }, settlement_amount = { min = "500.00" } }

[[rule]]
id = "resale_base.rest"
lever = "resale_base"
priority = 10
rate = "0.01"
when = { sales_mode = ["resale"] }
"#;
    let w = world(
        &[
            // No coupon, settlement 1,000.00 ≥ 500: 10 % of 1,000.00 = 100.00.
            L { id: "A", ..BASE },
            // A 100.00 coupon: 1 % of (1,000 − 100) = 9.00.
            L {
                id: "B",
                coupon: "100.00",
                order: "O2",
                ..BASE
            },
            // Settlement 400.00 < 500: 1 % of 400.00 = 4.00.
            L {
                id: "C",
                payable: "400.00",
                order: "O3",
                ..BASE
            },
        ],
        &[],
        &[("resale_base.toml", rules)],
    );
    let got: Vec<(String, String)> = rows(&w).into_iter().map(|r| (r.1, r.5)).collect();
    assert_eq!(
        got,
        vec![
            ("A".into(), "100.00".into()),
            ("B".into(), "9.00".into()),
            ("C".into(), "4.00".into())
        ]
    );
}

#[test]
fn clawbacks_name_the_retired_rules_of_more_than_65536_pools() {
    // 70,000 pools from earlier cycles, each 8.00 at 8 % under a rule the set no longer has:
    // even orders share one id, odd ones have their own (35,001 distinct ids, kept once each).
    const POOLS: usize = 70_000;
    let retired = |k: usize| {
        if k.is_multiple_of(2) {
            "resale_base.retired".to_string()
        } else {
            format!("resale_base.retired.{k}")
        }
    };
    // Refunds of −10.00 (−0.80 each) on every 97th order and the last ten.
    let refunded: Vec<usize> = (0..POOLS)
        .filter(|k| k.is_multiple_of(97) || *k >= POOLS - 10)
        .collect();
    let ids: Vec<String> = refunded.iter().map(|k| format!("R{k}")).collect();
    let orders: Vec<String> = refunded.iter().map(|k| format!("O{k}")).collect();
    let lines: Vec<L<'_>> = refunded
        .iter()
        .enumerate()
        .map(|(n, _)| L {
            id: &ids[n],
            bill: "refund",
            payable: "-10.00",
            order: "U1",
            original: &orders[n],
            ..BASE
        })
        .collect();
    let mut w = world(&lines, &[], &[]);
    w.prior.pools = (0..POOLS)
        .map(|k| PriorPool {
            rule_id: retired(k),
            ..prior_pool(&format!("O{k}"), "resale_base", "SP1", "8.00", "0.08")
        })
        .collect();
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    assert_eq!(e.external_rules.len(), POOLS / 2 + 1);
    let mut named = 0;
    for row in e.rows.iter().filter(|r| r.kind == Kind::Clawback) {
        let line = &w.bundle.bill_lines[row.line.get().unwrap() as usize];
        let k: usize = line.line_id[1..].parse().unwrap();
        assert_eq!(
            e.rule_id(&w.rules, row),
            retired(k),
            "line {}",
            line.line_id
        );
        assert_eq!(row.amount.to_string(), "-0.80");
        named += 1;
    }
    assert_eq!(named, refunded.len());
}

#[test]
fn pools_a_cycle_cannot_use_are_counted_not_silently_dropped() {
    // Three earlier pools: one usable, one of a lever no longer in the rule set, one of a
    // partner missing from partners.csv. The refund of O1 claws −0.80 from the usable one.
    let mut w = world(
        &[L {
            id: "R1",
            bill: "refund",
            payable: "-10.00",
            order: "U1",
            original: "O1",
            ..BASE
        }],
        &[],
        &[],
    );
    w.prior.pools = vec![
        prior_pool("O1", "resale_base", "SP1", "8.00", "0.08"),
        prior_pool("O1", "retired_lever", "SP1", "8.00", "0.08"),
        prior_pool("O1", "resale_base", "GONE", "8.00", "0.08"),
    ];
    let e = evaluate(&w.bundle, &w.rules, cycle(), &w.prior);
    assert_eq!(e.unusable_prior_pools(), 2);
    let claws: Vec<_> = rows(&w).into_iter().filter(|r| r.3 == "clawback").collect();
    assert_eq!(
        claws,
        vec![row(
            "SP1",
            "R1",
            "resale_base",
            "clawback",
            "2026-10",
            "-0.80"
        )]
    );
}

#[test]
fn a_rule_reference_keeps_its_origin_and_index() {
    for origin in [
        RuleOrigin::Rule(0),
        RuleOrigin::Rule(70_000),
        RuleOrigin::External(0),
        RuleOrigin::External((1 << 29) - 1),
    ] {
        let r = match origin {
            RuleOrigin::Rule(i) => RuleRef::rule(i as usize),
            RuleOrigin::External(i) => RuleRef::external(i as usize),
            _ => unreachable!(),
        };
        assert_eq!(r.origin(), origin);
    }
    assert_eq!(RuleRef::CAP.origin(), RuleOrigin::Cap);
    assert_eq!(RuleRef::SUBSIDY.origin(), RuleOrigin::Subsidy);
    assert_eq!(RuleRef::WITHDRAWAL.origin(), RuleOrigin::Withdrawal);
    assert_eq!(RuleRef::EXPIRY.origin(), RuleOrigin::Expiry);
}

#[test]
fn a_rate_is_kept_once_as_given_and_none_has_no_value() {
    let d = |s: &str| crate::money::parse_decimal(s, 8).unwrap();
    let mut rates = Rates::default();
    let five = rates.id(Some(d("0.05")));
    // The same rate again is the same id; an equal value written otherwise is its own entry,
    // so a row writes the rate as its rule gave it.
    assert_eq!(rates.id(Some(d("0.05"))), five);
    let five_again = rates.id(Some(d("0.050")));
    assert_ne!(five_again, five);
    assert_eq!(rates.get(five_again).unwrap().to_string(), "0.050");
    assert_eq!(rates.get(five), Some(d("0.05")));
    assert_eq!(rates.id(None), RateId::NONE);
    assert_eq!(rates.get(RateId::NONE), None);
}

#[test]
fn an_optional_index_is_its_value_or_none() {
    assert_eq!(OptionalIndex::some(0).get(), Some(0));
    assert_eq!(OptionalIndex::some(u32::MAX - 1).get(), Some(u32::MAX - 1));
    assert_eq!(OptionalIndex::NONE.get(), None);
}
