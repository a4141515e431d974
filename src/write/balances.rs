//! `voucher_deductions.csv`, `voucher_balances.csv`, `expiry_report.csv`, `subsidies.csv`.

use super::error::WriteError;
use super::{Column, Out, Staging};
use crate::balances::ReportRow;
use crate::calendar::format_instant;
use crate::load::Bundle;
use crate::rules::RuleSet;
use crate::subsidies::SubsidyDecision;
use crate::vouchers::{VoucherOutcome, VoucherState};
use chrono::{DateTime, Utc};

/// The columns of `voucher_deductions` (SPEC Appendix B).
pub const DEDUCTION_COLUMNS: &[Column] = &[
    Column::unique("line_id").filtered(),
    Column::text("voucher_id"),
    Column::text("partner_id"),
    Column::text("customer_id"),
    Column::instant("trade_time"),
    Column::amount("amount"),
    Column::text("currency"),
    Column::amount("voucher_balance_after"),
];

/// The columns of `voucher_balances` (SPEC Appendix B).
pub const BALANCE_COLUMNS: &[Column] = &[
    Column::unique("voucher_id"),
    Column::text("partner_id"),
    Column::text("currency"),
    Column::amount("opening"),
    Column::amount("deducted"),
    Column::amount("expired"),
    Column::amount("closing"),
    Column::instant("expires_at"),
];

/// The columns of `expiry_report` (SPEC Appendix B).
pub const EXPIRY_COLUMNS: &[Column] = &[
    Column::text("partner_id"),
    Column::text("kind"),
    Column::unique("lot_id"),
    Column::text("currency"),
    Column::amount("balance"),
    Column::date("expires_on"),
    Column::text("window"),
    Column::text("reason"),
];

/// The columns of `subsidies` (SPEC Appendix B).
pub const SUBSIDY_COLUMNS: &[Column] = &[
    Column::unique("project_id"),
    Column::text("partner_id"),
    Column::text("market"),
    Column::amount("annual_new_resource_amount"),
    Column::text("currency"),
    Column::text("decision"),
    Column::text("reason"),
    Column::text("qualifying_tag"),
    Column::amount("amount"),
];

pub fn write_vouchers(
    staging: &Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    vouchers: &[VoucherState],
    outcome: &VoucherOutcome,
) -> Result<(), WriteError> {
    let mut out = staging.table("voucher_deductions", DEDUCTION_COLUMNS)?;
    for d in &outcome.deductions {
        let line = &bundle.bill_lines[d.line as usize];
        let v = &vouchers[d.voucher];
        let scale = rules.rounding.scale(line.currency);
        out.row(&[
            Out::Text(&line.line_id),
            Out::Text(&v.voucher.voucher_id),
            Out::Text(&v.partner_id),
            Out::Text(&line.customer_id),
            Out::Instant(line.trade_time),
            Out::Amount(d.amount, scale),
            Out::Text(line.currency.as_str()),
            Out::Amount(d.balance_after, scale),
        ])?;
    }
    staging.finish(out)?;
    let mut out = staging.table("voucher_balances", BALANCE_COLUMNS)?;
    for b in &outcome.balances {
        let v = &vouchers[b.voucher];
        let scale = rules.rounding.scale(v.voucher.currency);
        out.row(&[
            Out::Text(&v.voucher.voucher_id),
            Out::Text(&v.partner_id),
            Out::Text(v.voucher.currency.as_str()),
            Out::Amount(b.opening, scale),
            Out::Amount(b.deducted, scale),
            Out::Amount(b.expired, scale),
            Out::Amount(b.closing, scale),
            Out::Instant(v.voucher.expires_at),
        ])?;
    }
    staging.finish(out)
}

/// Lots (already in `lots`) and every voucher, sorted by partner, kind, lot or voucher id,
/// currency; windows counted from `g` (bill generation, or `--as-of`).
pub fn write_expiry_report(
    staging: &Staging,
    rules: &RuleSet,
    lots: &[ReportRow],
    vouchers: &[VoucherState],
    outcome: &VoucherOutcome,
    g: DateTime<Utc>,
) -> Result<(), WriteError> {
    let g_date = g.with_timezone(&rules.time_zone).date_naive();
    let windows = rules
        .balances
        .as_ref()
        .map(|b| b.report_windows.clone())
        .unwrap_or_default();
    let mut rows: Vec<ReportRow> = lots.to_vec();
    for b in &outcome.balances {
        let v = &vouchers[b.voucher].voucher;
        let expires_on = v.expires_at.with_timezone(&rules.time_zone).date_naive();
        let (window, reason) = if v.expires_at <= g {
            (
                "expired".to_string(),
                format!(
                    "expired at {} (before bill generation)",
                    format_instant(v.expires_at)
                ),
            )
        } else {
            let days = (expires_on - g_date).num_days();
            let w = windows
                .iter()
                .find(|&&w| days <= i64::from(w))
                .map_or_else(|| "later".to_string(), |w| w.to_string());
            (
                w,
                format!(
                    "voucher valid until {}; {days} days after bill generation",
                    format_instant(v.expires_at)
                ),
            )
        };
        rows.push(ReportRow {
            partner_id: vouchers[b.voucher].partner_id.clone(),
            kind: "voucher",
            lot_id: v.voucher_id.to_string(),
            currency: v.currency,
            balance: b.closing,
            expires_on: Some(expires_on),
            window,
            reason,
        });
    }
    rows.sort_by(|a, b| {
        (&a.partner_id, a.kind, &a.lot_id, a.currency).cmp(&(
            &b.partner_id,
            b.kind,
            &b.lot_id,
            b.currency,
        ))
    });
    let mut out = staging.table("expiry_report", EXPIRY_COLUMNS)?;
    for r in &rows {
        out.row(&[
            Out::Text(&r.partner_id),
            Out::Text(r.kind),
            Out::Text(&r.lot_id),
            Out::Text(r.currency.as_str()),
            Out::Amount(r.balance, rules.rounding.scale(r.currency)),
            r.expires_on.map_or(Out::Null, Out::Date),
            Out::Text(&r.window),
            Out::Text(&r.reason),
        ])?;
    }
    staging.finish(out)
}

pub fn write_subsidies(
    staging: &Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    decisions: &[SubsidyDecision],
) -> Result<(), WriteError> {
    let mut out = staging.table("subsidies", SUBSIDY_COLUMNS)?;
    for d in decisions {
        let p = &bundle.projects[d.project];
        let scale = rules.rounding.scale(p.currency);
        out.row(&[
            Out::Text(&p.project_id),
            Out::Text(&bundle.partners.at(p.partner).partner_id),
            Out::Text(p.market.as_str()),
            Out::Amount(p.annual_new_resource_amount, scale),
            Out::Text(p.currency.as_str()),
            Out::Text(d.decision.as_str()),
            Out::Text(&d.reason),
            Out::Text(&d.qualifying_tag),
            Out::Amount(d.amount, scale),
        ])?;
    }
    staging.finish(out)
}
