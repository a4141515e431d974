//! Stage: partner vouchers (代金券, seed 19). At bill generation G (the first instant of the next
//! cycle in the rule set's zone) vouchers are deducted from the settlement amounts of eligible
//! lines, line by line in (trade time, line id) order; a line's candidates (same partner and
//! currency, usable at G, balance left, restriction and scope admitting the line) are taken in
//! the rule set's order, each drained before the next. Refunds never give voucher money back.
//! Partners are independent, so they are matched in parallel.

use crate::calendar::Cycle;
use crate::evaluate::bound::{LineFacts, bind};
use crate::load::Bundle;
use crate::model::Voucher;
use crate::rules::{RuleSet, VoucherKey};
use chrono::{DateTime, TimeZone, Utc};
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// A voucher as this cycle sees it: the attributes and the balance it opens with.
#[derive(Debug, Clone, PartialEq)]
pub struct VoucherState {
    pub voucher: Voucher,
    pub partner_id: String,
}

/// One deduction: which voucher paid which part of which line.
#[derive(Debug, Clone, PartialEq)]
pub struct Deduction {
    pub line: u32,
    pub voucher: usize,
    pub amount: Decimal,
    pub balance_after: Decimal,
}

/// One row of `voucher_balances.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct VoucherBalance {
    pub voucher: usize,
    pub opening: Decimal,
    pub deducted: Decimal,
    pub expired: Decimal,
    pub closing: Decimal,
}

#[derive(Debug, Default)]
pub struct VoucherOutcome {
    /// In `voucher_deductions.csv` order: partner, trade time, line, deduction order.
    pub deductions: Vec<Deduction>,
    /// One per voucher, by voucher id.
    pub balances: Vec<VoucherBalance>,
}

/// One partner's deductions and the balances its usable vouchers are left with.
type PartnerMatch = (Vec<Deduction>, Vec<(usize, Decimal)>);

/// Bill generation: the first instant of the cycle after `cycle` in the rule set's zone.
pub fn bill_generation(rules: &RuleSet, cycle: Cycle) -> DateTime<Utc> {
    let midnight = cycle
        .next()
        .first_day()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    rules
        .time_zone
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| midnight.and_utc())
}

fn candidate_order(keys: &[VoucherKey], a: &Voucher, b: &Voucher) -> Ordering {
    for key in keys {
        let o = match key {
            VoucherKey::RestrictedFirst => b
                .restricted_customer_id
                .is_some()
                .cmp(&a.restricted_customer_id.is_some()),
            VoucherKey::ExpiresAt => a.expires_at.cmp(&b.expires_at),
            VoucherKey::IssuedAt => a.issued_at.cmp(&b.issued_at),
            VoucherKey::VoucherId => a.voucher_id.cmp(&b.voucher_id),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Matches the cycle's vouchers against its lines. `vouchers` are sorted by voucher id.
pub fn match_vouchers(
    bundle: &Bundle,
    rules: &RuleSet,
    cycle: Cycle,
    vouchers: &[VoucherState],
) -> VoucherOutcome {
    let Some(policy) = &rules.vouchers else {
        return VoucherOutcome::default();
    };
    let g = bill_generation(rules, cycle);
    let eligible = bind(&policy.eligible, &bundle.codes, &bundle.partners);
    let lines = &bundle.bill_lines;

    // Each partner's capability tags, for conditions on tags held at the trade time.
    let mut tags: Vec<&crate::model::CapabilityTag> = bundle.capability_tags.iter().collect();
    tags.sort_by_key(|t| t.partner);
    let tags: Vec<crate::model::CapabilityTag> = tags.into_iter().cloned().collect();
    let tags_of = |p| {
        let start = tags.partition_point(|t| t.partner < p);
        let end = tags.partition_point(|t| t.partner <= p);
        &tags[start..end]
    };
    // The eligible lines per partner (sorted in (trade time, line id) order below).
    let eligible_line = |line: &crate::model::BillLine| {
        if line.settlement_amount <= Decimal::ZERO {
            return false;
        }
        let trade_date = line.trade_time.with_timezone(&rules.time_zone).date_naive();
        let partner = bundle.partners.at(line.partner);
        eligible.holds(&LineFacts {
            line,
            partner: line.partner,
            trade_date,
            in_programme: partner.in_programme_on(trade_date),
            // `check` refuses `order_type` here: vouchers are matched on the bill's lines.
            order_type: None,
            tags: tags_of(line.partner),
        })
    };
    let is_eligible: Vec<bool> = lines.par_iter().map(eligible_line).collect();
    let partners = bundle.partners.len();
    let by_partner = crate::group::Grouped::new(partners, lines.len(), |i| {
        is_eligible[i].then_some(lines[i].partner.0 as usize)
    });
    let vouchers_by_partner = crate::group::Grouped::new(partners, vouchers.len(), |v| {
        bundle
            .partners
            .get(&vouchers[v].partner_id)
            .map(|(p, _)| p.0 as usize)
    });

    let mut balances: Vec<Decimal> = vouchers.iter().map(|v| v.voucher.opening_balance).collect();
    let results: Vec<PartnerMatch> = (0..partners as u32)
        .into_par_iter()
        .map(|p| {
            let mut line_ids: Vec<u32> = by_partner.of(p).to_vec();
            let mut own: Vec<usize> = vouchers_by_partner
                .of(p)
                .iter()
                .map(|&v| v as usize)
                .collect();
            own.sort_by(|&a, &b| {
                candidate_order(
                    &policy.candidate_order,
                    &vouchers[a].voucher,
                    &vouchers[b].voucher,
                )
            });
            let usable: Vec<usize> = own
                .into_iter()
                .filter(|&v| {
                    vouchers[v].voucher.valid_from <= g && g < vouchers[v].voucher.expires_at
                })
                .collect();
            let mut left: Vec<(usize, Decimal)> = usable
                .iter()
                .map(|&v| (v, vouchers[v].voucher.opening_balance))
                .collect();
            line_ids.sort_by(|&a, &b| {
                let (a, b) = (&lines[a as usize], &lines[b as usize]);
                (a.trade_time, &a.line_id).cmp(&(b.trade_time, &b.line_id))
            });
            let mut deductions = Vec::new();
            for &l in line_ids.iter() {
                let line = &lines[l as usize];
                let mut due = line.settlement_amount;
                for (v, balance) in left.iter_mut() {
                    if due.is_zero() {
                        break;
                    }
                    let voucher = &vouchers[*v].voucher;
                    let admits = voucher.currency == line.currency
                        && voucher
                            .restricted_customer_id
                            .as_ref()
                            .is_none_or(|c| *c == line.customer_id)
                        && (voucher.service_scope.is_empty()
                            || voucher
                                .service_scope
                                .iter()
                                .any(|s| s.as_str() == bundle.codes.name(line.service_type_code)));
                    if !admits || *balance <= Decimal::ZERO {
                        continue;
                    }
                    let amount = due.min(*balance);
                    *balance -= amount;
                    due -= amount;
                    deductions.push(Deduction {
                        line: l,
                        voucher: *v,
                        amount,
                        balance_after: *balance,
                    });
                }
            }
            (deductions, left)
        })
        .collect();

    let mut outcome = VoucherOutcome::default();
    for (deductions, left) in results {
        for (v, balance) in left {
            balances[v] = balance;
        }
        outcome.deductions.extend(deductions);
    }
    for (v, state) in vouchers.iter().enumerate() {
        let opening = state.voucher.opening_balance;
        let expired = if state.voucher.expires_at <= g {
            balances[v]
        } else {
            Decimal::ZERO
        };
        let closing = balances[v] - expired;
        outcome.balances.push(VoucherBalance {
            voucher: v,
            opening,
            deducted: opening - balances[v],
            expired,
            closing,
        });
    }
    // voucher_deductions.csv order: partner id, trade time, line id, deduction order.
    let key = |d: &Deduction| {
        let line = &lines[d.line as usize];
        (
            &bundle.partners.at(line.partner).partner_id,
            line.trade_time,
            &line.line_id,
        )
    };
    outcome.deductions.sort_by(|a, b| key(a).cmp(&key(b)));
    outcome
}

/// The cycle's vouchers: those the state carries from the previous cycle (with their closing
/// balance as opening) and those listed in `vouchers.csv`. A listed voucher the state already
/// holds must open with the state's closing balance; if not, the row is rejected and the state's
/// balance stands.
pub fn cycle_vouchers(
    bundle: &Bundle,
    stored: Vec<crate::chain::StoredVoucher>,
    cycle: Cycle,
) -> (Vec<VoucherState>, Vec<crate::reject::Reject>) {
    use crate::reject::{Reject, RejectCode};
    let mut by_id: std::collections::BTreeMap<String, VoucherState> = stored
        .into_iter()
        .map(|s| {
            (
                s.voucher.voucher_id.to_string(),
                VoucherState {
                    voucher: s.voucher,
                    partner_id: s.partner_id,
                },
            )
        })
        .collect();
    let mut rejects = Vec::new();
    for v in &bundle.vouchers {
        match by_id.get(v.voucher_id.as_str()) {
            Some(held) if held.voucher.opening_balance != v.opening_balance => rejects.push(Reject {
                file: "vouchers.csv",
                row: v.source_row,
                column: "opening_balance",
                value: v.opening_balance.to_string(),
                code: RejectCode::OpeningDisagrees,
                detail: format!(
                    "opening balance {} disagrees with the closing balance {} of cycle {}; the state's balance stands",
                    v.opening_balance,
                    held.voucher.opening_balance,
                    cycle.previous()
                ),
            }),
            Some(_) => {}
            None => {
                let partner_id = bundle.partners.at(v.partner).partner_id.to_string();
                by_id.insert(v.voucher_id.to_string(), VoucherState { voucher: v.clone(), partner_id });
            }
        }
    }
    (by_id.into_values().collect(), rejects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{LINE_HEADER, bundle, cycle, reference};
    use proptest::prelude::*;

    const VOUCHER_HEADER: &str = "voucher_id,partner_id,voucher_type,face_value,opening_balance,currency,issued_at,valid_from,expires_at,restricted_customer_id,service_scope\n";

    fn line(
        id: &str,
        customer: &str,
        service: &str,
        at: &str,
        settlement: &str,
        currency: &str,
    ) -> String {
        let market = if currency == "CNY" { "cn" } else { "intl" };
        format!(
            "{id},2026-10,SP1,{customer},resale,{market},hws.service.type.{service},on_demand,usage,{at},,{settlement},{settlement},{settlement},{currency}\n"
        )
    }

    fn voucher(
        id: &str,
        balance: &str,
        issued: &str,
        expires: &str,
        restricted: &str,
        scope: &str,
        currency: &str,
    ) -> String {
        format!(
            "{id},SP1,poc_test,{balance},{balance},{currency},{issued},{issued},{expires},{restricted},{scope}\n"
        )
    }

    /// (line, voucher, amount) of a deduction; (voucher, deducted, expired, closing) of a balance.
    type Deducted = (String, String, String);
    type Balanced = (String, String, String, String);

    fn run(lines: &str, vouchers: &str) -> (Vec<Deducted>, Vec<Balanced>) {
        let b = bundle(&[
            ("bill_lines.csv", &format!("{LINE_HEADER}{lines}")),
            ("vouchers.csv", &format!("{VOUCHER_HEADER}{vouchers}")),
        ]);
        let rules = reference();
        let (states, rejects) = cycle_vouchers(&b, Vec::new(), cycle());
        assert!(rejects.is_empty());
        let out = match_vouchers(&b, &rules, cycle(), &states);
        let deductions = out
            .deductions
            .iter()
            .map(|d| {
                (
                    b.bill_lines[d.line as usize].line_id.to_string(),
                    states[d.voucher].voucher.voucher_id.to_string(),
                    d.amount.to_string(),
                )
            })
            .collect();
        let balances = out
            .balances
            .iter()
            .map(|x| {
                (
                    states[x.voucher].voucher.voucher_id.to_string(),
                    x.deducted.to_string(),
                    x.expired.to_string(),
                    x.closing.to_string(),
                )
            })
            .collect();
        (deductions, balances)
    }

    const T: &str = "2026-10-05T10:00:00+08:00";

    #[test]
    fn eligibility_can_ask_for_a_tag_held_at_the_trade_time() {
        // SP1 holds `poc_partner` from 10-01 to 10-10. Only the line of 10-05 may use the
        // 150.00 voucher: it takes 100.00 of it; the line of 10-20 takes nothing; 50.00 left.
        let b = bundle(&[
            (
                "bill_lines.csv",
                &format!(
                    "{LINE_HEADER}{}{}",
                    line("L1", "C1", "ec2", T, "100.00", "CNY"),
                    line(
                        "L2",
                        "C1",
                        "ec2",
                        "2026-10-20T10:00:00+08:00",
                        "80.00",
                        "CNY"
                    )
                ),
            ),
            (
                "vouchers.csv",
                &format!(
                    "{VOUCHER_HEADER}{}",
                    voucher(
                        "V1",
                        "150.00",
                        "2026-01-01T00:00:00Z",
                        "2027-01-31T00:00:00Z",
                        "",
                        "",
                        "CNY"
                    )
                ),
            ),
            (
                "capability_tags.csv",
                "partner_id,tag,valid_from,valid_to\nSP1,poc_partner,2026-10-01,2026-10-10\n",
            ),
        ]);
        let mut rules = reference();
        if let Some(policy) = rules.vouchers.as_mut() {
            policy.eligible.partner_tags = Some(vec!["poc_partner".into()]);
        }
        let (states, _) = cycle_vouchers(&b, Vec::new(), cycle());
        let out = match_vouchers(&b, &rules, cycle(), &states);
        let deducted: Vec<(String, String)> = out
            .deductions
            .iter()
            .map(|d| {
                (
                    b.bill_lines[d.line as usize].line_id.to_string(),
                    d.amount.to_string(),
                )
            })
            .collect();
        assert_eq!(deducted, vec![("L1".to_string(), "100.00".to_string())]);
        assert_eq!(out.balances[0].closing.to_string(), "50.00");
    }

    #[test]
    fn candidates_restricted_first_then_soonest_expiry_then_earliest_issue_then_id() {
        // One line of 100.00 and five vouchers of 10.00: drained in the order B (restricted to
        // C1), D (expires 2026-12, issued earlier), V0 and VC (same expiry and issue: by id), A.
        let vouchers = [
            voucher(
                "VA",
                "10.00",
                "2026-01-01T00:00:00Z",
                "2027-01-31T00:00:00Z",
                "",
                "",
                "CNY",
            ),
            voucher(
                "VB",
                "10.00",
                "2026-01-01T00:00:00Z",
                "2027-06-30T00:00:00Z",
                "C1",
                "",
                "CNY",
            ),
            voucher(
                "VC",
                "10.00",
                "2026-03-01T00:00:00Z",
                "2026-12-31T00:00:00Z",
                "",
                "",
                "CNY",
            ),
            voucher(
                "VD",
                "10.00",
                "2026-02-01T00:00:00Z",
                "2026-12-31T00:00:00Z",
                "",
                "",
                "CNY",
            ),
            voucher(
                "V0",
                "10.00",
                "2026-03-01T00:00:00Z",
                "2026-12-31T00:00:00Z",
                "",
                "",
                "CNY",
            ),
        ]
        .concat();
        let (d, _) = run(&line("L1", "C1", "ec2", T, "100.00", "CNY"), &vouchers);
        let order: Vec<&str> = d.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(order, vec!["VB", "VD", "V0", "VC", "VA"]);
    }

    #[test]
    fn lines_in_trade_time_order_drain_each_voucher_before_the_next() {
        // V1 30.00, V2 30.00 (later expiry). L2 trades first: takes 25.00 of V1; L1 then takes
        // V1's last 5.00 and 15.00 of V2. Ties on trade time go by line id (L3 before L4).
        let vouchers = [
            voucher(
                "V1",
                "30.00",
                "2026-01-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                "",
                "",
                "CNY",
            ),
            voucher(
                "V2",
                "30.00",
                "2026-01-01T00:00:00Z",
                "2027-12-01T00:00:00Z",
                "",
                "",
                "CNY",
            ),
        ]
        .concat();
        let lines = [
            line(
                "L1",
                "C1",
                "ec2",
                "2026-10-06T10:00:00+08:00",
                "20.00",
                "CNY",
            ),
            line(
                "L2",
                "C1",
                "ec2",
                "2026-10-05T10:00:00+08:00",
                "25.00",
                "CNY",
            ),
            line(
                "L4",
                "C1",
                "ec2",
                "2026-10-07T10:00:00+08:00",
                "1.00",
                "CNY",
            ),
            line(
                "L3",
                "C1",
                "ec2",
                "2026-10-07T10:00:00+08:00",
                "1.00",
                "CNY",
            ),
        ]
        .concat();
        let (d, b) = run(&lines, &vouchers);
        let got: Vec<(&str, &str, &str)> = d
            .iter()
            .map(|x| (x.0.as_str(), x.1.as_str(), x.2.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("L2", "V1", "25.00"),
                ("L1", "V1", "5.00"),
                ("L1", "V2", "15.00"),
                ("L3", "V2", "1.00"),
                ("L4", "V2", "1.00"),
            ]
        );
        assert_eq!(
            b[1],
            ("V2".into(), "17.00".into(), "0".into(), "13.00".into())
        );
    }

    #[test]
    fn restriction_scope_and_currency_must_admit_the_line() {
        let vouchers = [
            voucher(
                "VR",
                "50.00",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "C9",
                "",
                "CNY",
            ),
            voucher(
                "VS",
                "50.00",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "",
                "hws.service.type.rds",
                "CNY",
            ),
            voucher(
                "VU",
                "50.00",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "",
                "",
                "USD",
            ),
            voucher(
                "VOK",
                "50.00",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "",
                "hws.service.type.rds;hws.service.type.ec2",
                "CNY",
            ),
        ]
        .concat();
        let (d, _) = run(&line("L1", "C1", "ec2", T, "10.00", "CNY"), &vouchers);
        assert_eq!(d, vec![("L1".into(), "VOK".into(), "10.00".into())]);
    }

    #[test]
    fn expiry_and_validity_are_judged_at_bill_generation() {
        // G = 2026-11-01T00:00:00+08:00 = 2026-10-31T16:00:00Z.
        let vouchers = [
            // expires exactly at G: not usable, its 40.00 expire.
            voucher(
                "VX",
                "40.00",
                "2026-01-01T00:00:00Z",
                "2026-10-31T16:00:00Z",
                "",
                "",
                "CNY",
            ),
            // one second later: usable.
            voucher(
                "VY",
                "40.00",
                "2026-01-01T00:00:00Z",
                "2026-10-31T16:00:01Z",
                "",
                "",
                "CNY",
            ),
        ]
        .concat();
        let not_yet = "VN,SP1,poc_test,40.00,40.00,CNY,2026-10-01T00:00:00Z,2026-11-05T00:00:00Z,2027-01-01T00:00:00Z,,\n";
        let (d, b) = run(
            &line("L1", "C1", "ec2", T, "10.00", "CNY"),
            &format!("{vouchers}{not_yet}"),
        );
        assert_eq!(d, vec![("L1".into(), "VY".into(), "10.00".into())]);
        assert_eq!(
            b[0],
            ("VN".into(), "0.00".into(), "0".into(), "40.00".into())
        );
        assert_eq!(
            b[1],
            ("VX".into(), "0.00".into(), "40.00".into(), "0.00".into())
        );
        assert_eq!(
            b[2],
            ("VY".into(), "10.00".into(), "0".into(), "30.00".into())
        );
    }

    #[test]
    fn refunds_never_restore_a_voucher() {
        let vouchers = voucher(
            "V1",
            "30.00",
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "",
            "",
            "CNY",
        );
        let lines = format!(
            "{}L2,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,yearly_monthly,refund,2026-10-06T10:00:00+08:00,O1,-10.00,-10.00,-10.00,CNY\n",
            line("L1", "C1", "ec2", T, "10.00", "CNY")
        );
        let (_, b) = run(&lines, &vouchers);
        assert_eq!(
            b[0],
            ("V1".into(), "10.00".into(), "0".into(), "20.00".into())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// No voucher goes below zero, a line never gets more than its settlement amount, and
        /// opening − deducted − expired = closing for every voucher.
        #[test]
        fn voucher_identities(
            balances in prop::collection::vec(1u32..5_000, 1..5),
            settlements in prop::collection::vec(1u32..3_000, 1..8),
            restricted in prop::collection::vec(any::<bool>(), 5),
        ) {
            let vouchers: String = balances.iter().enumerate().map(|(i, cents)| {
                let r = if restricted[i % 5] { "C1" } else { "" };
                voucher(&format!("V{i}"), &format!("{}.{:02}", cents / 100, cents % 100), "2026-01-01T00:00:00Z",
                    &format!("2027-0{}-01T00:00:00Z", 1 + i % 9), r, "", "CNY")
            }).collect();
            let lines: String = settlements.iter().enumerate().map(|(i, cents)| {
                line(&format!("L{i}"), if i % 2 == 0 { "C1" } else { "C2" }, "ec2",
                    &format!("2026-10-{:02}T10:00:00+08:00", 1 + i), &format!("{}.{:02}", cents / 100, cents % 100), "CNY")
            }).collect();
            let b = bundle(&[
                ("bill_lines.csv", &format!("{LINE_HEADER}{lines}")),
                ("vouchers.csv", &format!("{VOUCHER_HEADER}{vouchers}")),
            ]);
            let (states, _) = cycle_vouchers(&b, Vec::new(), cycle());
            let out = match_vouchers(&b, &reference(), cycle(), &states);
            for x in &out.balances {
                prop_assert!(x.closing >= Decimal::ZERO);
                prop_assert_eq!(x.opening - x.deducted - x.expired, x.closing);
            }
            for d in &out.deductions {
                prop_assert!(d.balance_after >= Decimal::ZERO);
            }
            for (i, l) in b.bill_lines.iter().enumerate() {
                let taken: Decimal = out.deductions.iter().filter(|d| d.line as usize == i).map(|d| d.amount).sum();
                prop_assert!(taken <= l.settlement_amount);
            }
        }
    }
}
