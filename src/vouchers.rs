//! Stage: partner vouchers (代金券, seed 19). At bill generation G (the first instant of the next
//! cycle in the rule set's zone) vouchers are deducted from the settlement amounts of eligible
//! lines, line by line in (trade time, line id) order; a line's candidates (same partner and
//! currency, usable at G, balance left, restriction and scope admitting the line) are taken in
//! the rule set's order, each drained before the next. Refunds never give voucher money back.
//! Partners are independent, so they are matched in parallel.

use crate::calendar::Cycle;
use crate::load::Bundle;
use crate::model::Voucher;
use crate::rules::{LineFacts, RuleSet, VoucherKey};
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
    let eligible = policy.eligible.bind(&bundle.codes, &bundle.partners);
    let lines = &bundle.bill_lines;

    // Lines per partner, in (trade time, line id) order.
    let mut by_partner: Vec<Vec<u32>> = vec![Vec::new(); bundle.partners.len()];
    for (i, line) in lines.iter().enumerate() {
        if line.settlement_amount <= Decimal::ZERO {
            continue;
        }
        let trade_date = line.trade_time.with_timezone(&rules.time_zone).date_naive();
        let partner = bundle.partners.at(line.partner);
        let facts = LineFacts {
            line,
            partner: line.partner,
            trade_date,
            in_programme: partner.joined_on <= trade_date
                && partner.exited_on.is_none_or(|e| trade_date < e),
            order_type: None,
            tags: &[],
        };
        if eligible.holds(&facts) {
            by_partner[line.partner.0 as usize].push(i as u32);
        }
    }
    let mut vouchers_by_partner: Vec<Vec<usize>> = vec![Vec::new(); bundle.partners.len()];
    for (v, state) in vouchers.iter().enumerate() {
        if let Some((p, _)) = bundle.partners.get(&state.partner_id) {
            vouchers_by_partner[p.0 as usize].push(v);
        }
    }

    let mut balances: Vec<Decimal> = vouchers.iter().map(|v| v.voucher.opening_balance).collect();
    let results: Vec<PartnerMatch> = by_partner
        .par_iter_mut()
        .enumerate()
        .map(|(p, line_ids)| {
            let mut own: Vec<usize> = vouchers_by_partner[p].clone();
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
    stored: Vec<crate::state::StoredVoucher>,
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
