//! Stage: incentive balances (seeds 3, 11). Credited incentive becomes a lot when it is notified;
//! approved and paid withdrawals draw the oldest notified lots first; once a partner has left its
//! programme its lots expire after the grace term; the expiry report shows every lot and voucher
//! with its window. Lots carry from cycle to cycle through the state store.

use crate::calendar::{Cycle, one_year_after_n};
use crate::evaluate::{CarriedRow, Evaluation, Kind, RULE_EXPIRY, RULE_WITHDRAWAL};
use crate::load::Bundle;
use crate::model::{Currency, WithdrawalStatus};
use crate::reject::{Reject, RejectCode};
use crate::rules::RuleSet;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// A notified incentive balance.
#[derive(Debug, Clone, PartialEq)]
pub struct Lot {
    pub partner_id: String,
    pub lot_id: String,
    pub currency: Currency,
    pub notified_on: NaiveDate,
    pub balance: Decimal,
}

/// What earlier cycles left: lots, negative remainders, applications already applied.
#[derive(Debug, Clone, Default)]
pub struct PriorBalances {
    pub lots: Vec<Lot>,
    /// Per (partner, currency): a negative net not yet offset.
    pub carry: BTreeMap<(String, Currency), Decimal>,
    pub applied: BTreeSet<String>,
}

/// One row of `expiry_report.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub partner_id: String,
    pub kind: &'static str,
    pub lot_id: String,
    pub currency: Currency,
    pub balance: Decimal,
    pub expires_on: Option<NaiveDate>,
    pub window: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct BalanceOutcome {
    /// Closing lots, for the state (lot M included).
    pub lots: Vec<Lot>,
    pub carry: BTreeMap<(String, Currency), Decimal>,
    /// Applications applied this cycle.
    pub applied: Vec<String>,
    /// Withdrawals larger than the balance available, and opening balances outside a first cycle.
    pub rejects: Vec<Reject>,
    /// Submitted applications not yet decided: (partner, application, amount, currency).
    pub pending: Vec<(String, String, Decimal, Currency)>,
    pub report: Vec<ReportRow>,
}

/// The date a partner's lots expire, if it has left its programme.
fn lot_expiry(
    bundle: &Bundle,
    partner_id: &str,
    grace_years: u32,
) -> Option<(NaiveDate, NaiveDate)> {
    let (_, partner) = bundle.partners.get(partner_id)?;
    let exited = partner.exited_on?;
    Some((exited, one_year_after_n(exited, grace_years)))
}

/// The report window of a date `days` after bill generation.
fn window(windows: &[u32], expires_on: NaiveDate, g_date: NaiveDate) -> String {
    if expires_on <= g_date {
        return "expired".to_string();
    }
    let days = (expires_on - g_date).num_days();
    windows
        .iter()
        .find(|&&w| days <= i64::from(w))
        .map_or_else(|| "later".to_string(), |w| w.to_string())
}

#[allow(clippy::too_many_arguments)]
pub fn settle(
    bundle: &Bundle,
    rules: &RuleSet,
    cycle: Cycle,
    first_cycle: bool,
    g_date: NaiveDate,
    prior: &PriorBalances,
    carried: &[CarriedRow],
    evaluation: &mut Evaluation<'_>,
) -> BalanceOutcome {
    let mut out = BalanceOutcome {
        carry: prior.carry.clone(),
        ..Default::default()
    };
    let Some(policy) = &rules.balances else {
        return out;
    };
    let mut lots = prior.lots.clone();
    for ob in &bundle.opening_balances {
        let partner_id = bundle.partners.at(ob.partner).partner_id.to_string();
        if first_cycle {
            lots.push(Lot {
                partner_id,
                lot_id: ob.lot_id.to_string(),
                currency: ob.currency,
                notified_on: ob.notified_on,
                balance: ob.balance,
            });
        } else {
            out.rejects.push(Reject {
                file: "opening_balances.csv",
                row: ob.source_row,
                column: "lot_id",
                value: ob.lot_id.to_string(),
                code: RejectCode::NotFirstCycle,
                detail: format!("opening balances are read in a chain's first cycle only; {cycle} follows an earlier cycle"),
            });
        }
    }
    lots.sort_by(|a, b| {
        (&a.partner_id, a.notified_on, &a.lot_id).cmp(&(&b.partner_id, b.notified_on, &b.lot_id))
    });

    // Withdrawals, in (submitted_at, application_id) order, before expiry.
    let mut withdrawals: Vec<_> = bundle.withdrawals.iter().collect();
    withdrawals.sort_by(|a, b| {
        (a.submitted_at, &a.application_id).cmp(&(b.submitted_at, &b.application_id))
    });
    for w in withdrawals {
        let partner_id = bundle.partners.at(w.partner).partner_id.to_string();
        if prior.applied.contains(w.application_id.as_str()) {
            continue;
        }
        match w.status {
            WithdrawalStatus::Submitted => {
                out.pending.push((
                    partner_id,
                    w.application_id.to_string(),
                    w.amount,
                    w.currency,
                ));
                continue;
            }
            WithdrawalStatus::Rejected | WithdrawalStatus::Revoked => continue,
            WithdrawalStatus::Approved | WithdrawalStatus::Paid => {}
        }
        let on = w.submitted_at.with_timezone(&rules.time_zone).date_naive();
        let expiry = lot_expiry(bundle, &partner_id, policy.exit_grace_years).map(|(_, e)| e);
        let usable = |lot: &Lot| {
            lot.partner_id == partner_id
                && lot.currency == w.currency
                && lot.notified_on <= on
                && expiry.is_none_or(|e| on < e)
                && lot.balance > Decimal::ZERO
        };
        let available: Decimal = lots.iter().filter(|l| usable(l)).map(|l| l.balance).sum();
        if w.amount > available {
            out.rejects.push(Reject {
                file: "withdrawals.csv",
                row: w.source_row,
                column: "amount",
                value: w.amount.to_string(),
                code: RejectCode::OverWithdrawal,
                detail: format!(
                    "amount {} > available {} {} (lots notified by {on}, not expired)",
                    w.amount, available, w.currency
                ),
            });
            continue;
        }
        let mut due = w.amount;
        for lot in lots.iter_mut().filter(|l| usable(l)) {
            let take = due.min(lot.balance);
            lot.balance -= take;
            due -= take;
            if due.is_zero() {
                break;
            }
        }
        evaluation.push_balance_row(
            w.partner,
            Kind::Withdrawal,
            RULE_WITHDRAWAL,
            cycle,
            w.amount,
            None,
            -w.amount,
            w.currency,
            &w.application_id,
        );
        out.applied.push(w.application_id.to_string());
    }

    // Expiry: a lot of a partner that left expires once its date is on or before G's date.
    for lot in lots.iter_mut() {
        let Some((_, expires)) = lot_expiry(bundle, &lot.partner_id, policy.exit_grace_years)
        else {
            continue;
        };
        if expires <= g_date && lot.balance > Decimal::ZERO {
            if let Some((partner, _)) = bundle.partners.get(&lot.partner_id) {
                evaluation.push_balance_row(
                    partner,
                    Kind::Expiry,
                    RULE_EXPIRY,
                    cycle,
                    lot.balance,
                    None,
                    -lot.balance,
                    lot.currency,
                    &lot.lot_id,
                );
            }
            lot.balance = Decimal::ZERO;
        }
    }

    // The report: lots notified on or before G's date, with their closing balances.
    for lot in lots.iter().filter(|l| l.notified_on <= g_date) {
        let (expires_on, window, reason) = match lot_expiry(
            bundle,
            &lot.partner_id,
            policy.exit_grace_years,
        ) {
            None => (
                None,
                "none".to_string(),
                "no term while the partner is in its programme".to_string(),
            ),
            Some((exited, expires)) => (
                Some(expires),
                window(&policy.report_windows, expires, g_date),
                if expires <= g_date {
                    format!(
                        "expired on {expires}, {} year(s) after the partner left its programme on {exited}",
                        policy.exit_grace_years
                    )
                } else {
                    format!(
                        "the partner left its programme on {exited}; unwithdrawn incentive expires on {expires}"
                    )
                },
            ),
        };
        out.report.push(ReportRow {
            partner_id: lot.partner_id.clone(),
            kind: "incentive",
            lot_id: lot.lot_id.clone(),
            currency: lot.currency,
            balance: lot.balance,
            expires_on,
            window,
            reason,
        });
    }

    // Lot M: what was credited to the cycle, notified on the policy's day of M+1. A negative net
    // reduces the partner's open lots, newest first; what is left is carried forward.
    let mut nets: BTreeMap<(String, Currency), Decimal> = out.carry.clone();
    for row in evaluation.rows.iter().filter(|r| r.credit_cycle == cycle) {
        if row.kind.is_incentive() || row.kind == Kind::Subsidy {
            let partner_id = bundle.partners.at(row.partner).partner_id.to_string();
            *nets.entry((partner_id, row.currency)).or_default() += row.amount;
        }
    }
    for c in carried {
        if let Some(currency) = Currency::parse(&c.currency) {
            *nets.entry((c.partner_id.clone(), currency)).or_default() += c.amount;
        }
    }
    out.carry.clear();
    let notified_on =
        cycle.next().first_day() + chrono::Days::new(u64::from(policy.notification_day - 1));
    for ((partner_id, currency), net) in nets {
        if net > Decimal::ZERO {
            lots.push(Lot {
                partner_id,
                lot_id: cycle.to_string(),
                currency,
                notified_on,
                balance: net,
            });
        } else if net < Decimal::ZERO {
            let mut owed = -net;
            let mut open: Vec<&mut Lot> = lots
                .iter_mut()
                .filter(|l| {
                    l.partner_id == partner_id
                        && l.currency == currency
                        && l.balance > Decimal::ZERO
                })
                .collect();
            open.sort_by(|a, b| (b.notified_on, &b.lot_id).cmp(&(a.notified_on, &a.lot_id)));
            for lot in open {
                let take = owed.min(lot.balance);
                lot.balance -= take;
                owed -= take;
            }
            if owed > Decimal::ZERO {
                out.carry.insert((partner_id, currency), -owed);
            }
        }
    }
    lots.sort_by(|a, b| {
        (&a.partner_id, a.notified_on, &a.lot_id).cmp(&(&b.partner_id, b.notified_on, &b.lot_id))
    });
    out.lots = lots;
    out
}
