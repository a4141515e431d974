//! Stage: incentive balances (seeds 3, 11). Credited incentive becomes a lot when it is notified;
//! approved and paid withdrawals draw the oldest notified lots first; once a partner has left its
//! programme its lots expire after the grace term; the expiry report shows every lot and voucher
//! with its window. Lots carry from cycle to cycle through the state store.

use crate::calendar::{Cycle, one_year_after_n};
use crate::evaluate::{BalanceRow, CarriedRow, Evaluation, Kind, RuleRef};
use crate::load::Bundle;
use crate::model::{Currency, WithdrawalStatus};
use crate::reject::{Reject, RejectCode};
use crate::rules::RuleSet;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

pub use crate::chain::{Lot, PriorBalances};

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
    /// Withdrawal and expiry rows for the journal, in the order they were made.
    pub rows: Vec<BalanceRow>,
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

/// What balances need of the run beside the bundle and the rules.
pub struct BalanceInputs<'a> {
    pub cycle: Cycle,
    pub first_cycle: bool,
    /// Bill generation's date in the rule set's zone, and the date the report counts from.
    pub g_date: NaiveDate,
    pub report_date: NaiveDate,
    pub prior: &'a PriorBalances,
    pub carried: &'a [CarriedRow],
}

/// The cycle's balances: opening lots, withdrawals (before expiry), expiry after exit, the
/// report of the lots notified by G, then lot M from what was credited to the cycle (the
/// evaluation's rows, the balance rows `subsidies` returned, the carried rows). Returns the
/// withdrawal and expiry rows for the journal in `BalanceOutcome::rows`.
pub fn settle(
    bundle: &Bundle,
    rules: &RuleSet,
    run: &BalanceInputs<'_>,
    evaluation: &Evaluation<'_>,
    subsidies: &[BalanceRow],
) -> BalanceOutcome {
    let mut out = BalanceOutcome {
        carry: run.prior.carry.clone(),
        ..Default::default()
    };
    let Some(policy) = &rules.balances else {
        return out;
    };
    let mut lots = opening_lots(bundle, run, &mut out);
    apply_withdrawals(bundle, rules, policy, run, &mut lots, &mut out);
    expire_lots(bundle, policy, run.g_date, &mut lots, &mut out);
    report_lots(bundle, policy, run, &lots, &mut out);
    let credited = evaluation
        .rows
        .iter()
        .filter(|r| r.credit_cycle == run.cycle && bundle.partners.owns(r.partner))
        .filter(|r| r.kind.is_incentive() || r.kind == Kind::Subsidy)
        .map(|r| (r.partner, r.currency, r.amount))
        .chain(subsidies.iter().map(|r| (r.partner, r.currency, r.amount)))
        .map(|(p, currency, amount)| {
            let partner_id = bundle.partners.at(p).partner_id.to_string();
            ((partner_id, currency), amount)
        })
        .chain(
            run.carried
                .iter()
                .map(|c| ((c.partner_id.clone(), c.currency), c.amount)),
        );
    notify_lot_m(policy, run.cycle, credited, &mut lots, &mut out);
    lots.sort_by(|a, b| {
        (&a.partner_id, a.notified_on, &a.lot_id).cmp(&(&b.partner_id, b.notified_on, &b.lot_id))
    });
    out.lots = lots;
    out
}

/// The lots earlier cycles left, plus `opening_balances.csv` in a chain's first cycle (rejected
/// in any other), by partner, notification date and lot id.
fn opening_lots(bundle: &Bundle, run: &BalanceInputs<'_>, out: &mut BalanceOutcome) -> Vec<Lot> {
    let mut lots = run.prior.lots.clone();
    for ob in &bundle.opening_balances {
        let partner_id = bundle.partners.at(ob.partner).partner_id.to_string();
        if run.first_cycle {
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
                detail: format!(
                    "opening balances are read in a chain's first cycle only; {} follows an earlier cycle",
                    run.cycle
                ),
            });
        }
    }
    lots.sort_by(|a, b| {
        (&a.partner_id, a.notified_on, &a.lot_id).cmp(&(&b.partner_id, b.notified_on, &b.lot_id))
    });
    lots
}

/// Withdrawals in (submitted_at, application_id) order: an approved or paid one takes the
/// oldest lots notified by its submission date and not expired then, as one negative row; one
/// larger than that balance is a reject naming both figures; each applies once in the chain.
fn apply_withdrawals(
    bundle: &Bundle,
    rules: &RuleSet,
    policy: &crate::rules::BalancePolicy,
    run: &BalanceInputs<'_>,
    lots: &mut [Lot],
    out: &mut BalanceOutcome,
) {
    let mut withdrawals: Vec<_> = bundle.withdrawals.iter().collect();
    withdrawals.sort_by(|a, b| {
        (a.submitted_at, &a.application_id).cmp(&(b.submitted_at, &b.application_id))
    });
    for w in withdrawals {
        let partner_id = bundle.partners.at(w.partner).partner_id.to_string();
        if run.prior.applied.contains(w.application_id.as_str()) {
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
        out.rows.push(BalanceRow {
            partner: w.partner,
            kind: Kind::Withdrawal,
            rule: RuleRef::WITHDRAWAL,
            base: w.amount,
            rate: None,
            amount: -w.amount,
            currency: w.currency,
            reference: w.application_id.to_string(),
        });
        out.applied.push(w.application_id.to_string());
    }
}

/// Expiry: a lot of a partner that left expires once its date is on or before G's date, as one
/// negative row.
fn expire_lots(
    bundle: &Bundle,
    policy: &crate::rules::BalancePolicy,
    g_date: NaiveDate,
    lots: &mut [Lot],
    out: &mut BalanceOutcome,
) {
    for lot in lots.iter_mut() {
        let Some((_, expires)) = lot_expiry(bundle, &lot.partner_id, policy.exit_grace_years)
        else {
            continue;
        };
        if expires <= g_date && lot.balance > Decimal::ZERO {
            if let Some((partner, _)) = bundle.partners.get(&lot.partner_id) {
                out.rows.push(BalanceRow {
                    partner,
                    kind: Kind::Expiry,
                    rule: RuleRef::EXPIRY,
                    base: lot.balance,
                    rate: None,
                    amount: -lot.balance,
                    currency: lot.currency,
                    reference: lot.lot_id.clone(),
                });
            }
            lot.balance = Decimal::ZERO;
        }
    }
}

/// The report: lots notified on or before G's date, with their closing balances and windows.
fn report_lots(
    bundle: &Bundle,
    policy: &crate::rules::BalancePolicy,
    run: &BalanceInputs<'_>,
    lots: &[Lot],
    out: &mut BalanceOutcome,
) {
    let report_date = run.report_date;
    for lot in lots.iter().filter(|l| l.notified_on <= run.g_date) {
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
                window(&policy.report_windows, expires, report_date),
                if expires <= report_date {
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
}

/// Lot M: what was credited to the cycle (`credited`, per partner and currency), notified on
/// the policy's day of M+1. A negative net reduces the partner's open lots, newest first; what
/// is left is carried forward.
fn notify_lot_m(
    policy: &crate::rules::BalancePolicy,
    cycle: Cycle,
    credited: impl Iterator<Item = ((String, Currency), Decimal)>,
    lots: &mut Vec<Lot>,
    out: &mut BalanceOutcome,
) {
    let mut nets: BTreeMap<(String, Currency), Decimal> = out.carry.clone();
    for (key, amount) in credited {
        *nets.entry(key).or_default() += amount;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Prior, PriorPool, evaluate};
    use crate::testkit::{LINE_HEADER, PARTNERS, bundle, cycle, reference};

    const LOTS: &str = "partner_id,lot_id,notified_on,currency,balance\n";
    const WITHDRAWALS: &str =
        "application_id,partner_id,amount,currency,submitted_at,status,decided_at\n";
    // G = 2026-11-01T00:00:00+08:00, so G's date is 2026-11-01.
    fn g_date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
    }

    struct Settled {
        out: BalanceOutcome,
        /// (partner, kind, ref, amount) of the balance rows written.
        rows: Vec<(String, &'static str, String, String)>,
    }

    fn settle_with(files: &[(&str, &str)], prior: &Prior) -> Settled {
        let b = bundle(files);
        let rules = reference();
        let e = evaluate(&b, &rules, cycle(), prior);
        let balances = PriorBalances::default();
        let run = BalanceInputs {
            cycle: cycle(),
            first_cycle: true,
            g_date: g_date(),
            report_date: g_date(),
            prior: &balances,
            carried: &prior.carried,
        };
        let out = settle(&b, &rules, &run, &e, &[]);
        let rows = out
            .rows
            .iter()
            .map(|r| {
                (
                    b.partners.at(r.partner).partner_id.to_string(),
                    r.kind.as_str(),
                    r.reference.clone(),
                    r.amount.to_string(),
                )
            })
            .collect();
        Settled { out, rows }
    }

    fn lot<'a>(out: &'a BalanceOutcome, id: &str) -> &'a Lot {
        out.lots.iter().find(|l| l.lot_id == id).unwrap()
    }

    #[test]
    fn lots_have_no_term_while_the_partner_is_in_its_programme() {
        let s = settle_with(
            &[(
                "opening_balances.csv",
                &format!("{LOTS}SP1,OB1,2026-08-10,CNY,100.00\n"),
            )],
            &Prior::default(),
        );
        assert!(s.rows.is_empty());
        let r = &s.out.report[0];
        assert_eq!(
            (r.lot_id.as_str(), r.window.as_str(), r.expires_on),
            ("OB1", "none", None)
        );
        assert_eq!(r.balance.to_string(), "100.00");
    }

    #[test]
    fn after_exit_lots_expire_one_year_later_with_29_february_on_the_28th() {
        let partners = format!(
            "{PARTNERS}SP5,Soon,solution_provider,cn,cn,solution_provider,2020-01-01,2025-11-15\n"
        );
        let s = settle_with(
            &[
                ("partners.csv", &partners),
                (
                    "opening_balances.csv",
                    &format!(
                        "{LOTS}SP2,OB2,2025-09-10,CNY,70.00\nSP3,OB3,2024-01-10,CNY,30.00\nSP5,OB5,2025-08-10,CNY,12.00\n"
                    ),
                ),
            ],
            &Prior::default(),
        );
        // SP2 left 2025-10-20: expired 2026-10-20 ≤ 2026-11-01. SP3 left 2024-02-29: 2025-02-28.
        assert_eq!(
            s.rows,
            vec![
                ("SP2".into(), "expiry", "OB2".into(), "-70.00".into()),
                ("SP3".into(), "expiry", "OB3".into(), "-30.00".into()),
            ]
        );
        let report: Vec<(String, Option<NaiveDate>, String, String)> = s
            .out
            .report
            .iter()
            .map(|r| {
                (
                    r.lot_id.clone(),
                    r.expires_on,
                    r.window.clone(),
                    r.balance.to_string(),
                )
            })
            .collect();
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day);
        assert_eq!(
            report,
            vec![
                ("OB2".into(), d(2026, 10, 20), "expired".into(), "0".into()),
                ("OB3".into(), d(2025, 2, 28), "expired".into(), "0".into()),
                // SP5 left 2025-11-15: 2026-11-15 is 14 days after G's date.
                ("OB5".into(), d(2026, 11, 15), "30".into(), "12.00".into()),
            ]
        );
    }

    #[test]
    fn withdrawals_take_the_oldest_notified_lot_first_and_never_more_than_available() {
        let s = settle_with(
            &[
                (
                    "opening_balances.csv",
                    &format!(
                        "{LOTS}SP1,OB2,2026-09-10,CNY,50.00\nSP1,OB1,2026-08-10,CNY,100.00\nSP1,OB3,2026-10-10,CNY,500.00\n"
                    ),
                ),
                (
                    "withdrawals.csv",
                    &format!(
                        "{WITHDRAWALS}\
                         W1,SP1,120.00,CNY,2026-10-05T10:00:00+08:00,approved,2026-10-06T10:00:00+08:00\n\
                         W2,SP1,40.00,CNY,2026-10-06T10:00:00+08:00,paid,2026-10-07T10:00:00+08:00\n\
                         W3,SP1,9.00,CNY,2026-10-07T10:00:00+08:00,submitted,\n\
                         W4,SP1,9.00,CNY,2026-10-07T11:00:00+08:00,rejected,2026-10-08T10:00:00+08:00\n\
                         W5,SP1,9.00,CNY,2026-10-07T12:00:00+08:00,revoked,2026-10-08T10:00:00+08:00\n\
                         W6,SP1,100.00,CNY,2026-10-12T10:00:00+08:00,approved,2026-10-13T10:00:00+08:00\n"
                    ),
                ),
            ],
            &Prior::default(),
        );
        // W1 120.00: OB1 (oldest) 100.00 → 0, OB2 50.00 → 30.00. W2 40.00 > 30.00 available on
        // 10-06 (OB3 is notified only on 10-10): rejected. W6 on 10-12 may take OB3.
        assert_eq!(
            s.rows,
            vec![
                ("SP1".into(), "withdrawal", "W1".into(), "-120.00".into()),
                ("SP1".into(), "withdrawal", "W6".into(), "-100.00".into()),
            ]
        );
        assert_eq!(s.out.rejects.len(), 1);
        assert_eq!(s.out.rejects[0].row, 3);
        assert!(
            s.out.rejects[0]
                .detail
                .contains("amount 40.00 > available 30.00"),
            "{}",
            s.out.rejects[0].detail
        );
        assert_eq!(lot(&s.out, "OB1").balance.to_string(), "0.00");
        assert_eq!(lot(&s.out, "OB2").balance.to_string(), "0.00");
        assert_eq!(lot(&s.out, "OB3").balance.to_string(), "430.00");
        assert_eq!(s.out.pending.len(), 1);
        assert_eq!(s.out.applied, vec!["W1".to_string(), "W6".to_string()]);
    }

    #[test]
    fn credited_incentive_becomes_lot_m_and_a_negative_net_reduces_the_newest_lots() {
        // Order O1 earned 200.00 at 8 % in September. A refund of −2,500.00 claws −200.00 back,
        // so October's net is −200.00: OB2 (newest, 50.00) → 0, OB1 100.00 → 0, 50.00 carried.
        let prior = Prior {
            pools: vec![PriorPool {
                order_id: "O1".into(),
                lever: "resale_base".into(),
                recipient: "SP1".into(),
                currency: crate::model::Currency::parse("CNY").unwrap(),
                earned: "200.00".parse().unwrap(),
                clawed: Decimal::ZERO,
                first_cycle: "2026-09".parse().unwrap(),
                first_line: "X1".into(),
                rate: Some("0.08".parse().unwrap()),
                rule_id: "resale_base.prepaid".into(),
            }],
            carried: Vec::new(),
        };
        let refund = format!(
            "{LINE_HEADER}R1,2026-10,SP1,C1,resale,cn,hws.service.type.ec2,yearly_monthly,refund,2026-10-05T10:00:00+08:00,O1,-2500.00,-2500.00,-2500.00,CNY\n\
             P1,2026-10,SP4,C2,resale,intl,hws.service.type.ec2,yearly_monthly,new,2026-10-05T10:00:00+08:00,O2,1000.00,1000.00,1000.00,USD\n"
        );
        let s = settle_with(
            &[
                ("bill_lines.csv", &refund),
                (
                    "opening_balances.csv",
                    &format!("{LOTS}SP1,OB1,2026-08-10,CNY,100.00\nSP1,OB2,2026-09-10,CNY,50.00\n"),
                ),
            ],
            &prior,
        );
        assert_eq!(lot(&s.out, "OB1").balance.to_string(), "0.00");
        assert_eq!(lot(&s.out, "OB2").balance.to_string(), "0.00");
        let carry = s
            .out
            .carry
            .get(&("SP1".to_string(), Currency::parse("CNY").unwrap()));
        assert_eq!(carry.map(|c| c.to_string()), Some("-50.00".to_string()));
        // SP4 earned 1,000 × 8 % = 80.00 USD: lot 2026-10, notified 2026-11-10.
        let m = s.out.lots.iter().find(|l| l.partner_id == "SP4").unwrap();
        assert_eq!(
            (m.lot_id.as_str(), m.balance.to_string()),
            ("2026-10", "80.00".to_string())
        );
        assert_eq!(
            m.notified_on,
            NaiveDate::from_ymd_opt(2026, 11, 10).unwrap()
        );
        // Lot 2026-10 is notified after G: not in this cycle's report.
        assert!(s.out.report.iter().all(|r| r.lot_id != "2026-10"));
    }
}
