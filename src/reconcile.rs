//! Reconciliation: the control totals that tie a run's outputs back to its inputs.
//!
//! Every bill line read is counted, accepted or rejected, and its payable amount summed per currency
//! (for a rejected line, where the amount parsed), so finance can tie the run to the export's own
//! totals before trusting anything computed from it.

use crate::load::Bundle;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Lines and Σ `payable_amount` in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub lines: u64,
    #[serde(serialize_with = "exact")]
    pub payable_amount: Decimal,
}

fn exact<S: serde::Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::money::format_amount(*amount, 0))
}

/// Control totals of `bill_lines.csv`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BillLineTotals {
    /// Per currency code.
    pub accepted: BTreeMap<String, CurrencyTotal>,
    /// Per currency cell as written (a rejected line's currency may itself be what was wrong),
    /// over the rejected lines whose payable amount parsed.
    pub rejected: BTreeMap<String, CurrencyTotal>,
    /// Rejected lines whose payable amount did not parse, so are in no sum.
    pub rejected_without_amount: u64,
}

pub fn bill_line_totals(bundle: &Bundle) -> BillLineTotals {
    let mut totals = BillLineTotals::default();
    for line in &bundle.bill_lines {
        let t = totals
            .accepted
            .entry(line.currency.to_string())
            .or_default();
        t.lines += 1;
        t.payable_amount += line.payable_amount;
    }
    for line in &bundle.rejected_lines {
        match line.payable_amount {
            Some(amount) => {
                let t = totals.rejected.entry(line.currency.clone()).or_default();
                t.lines += 1;
                t.payable_amount += amount;
            }
            None => totals.rejected_without_amount += 1,
        }
    }
    totals
}

/// Control totals of the outputs: Σ ledger amounts per currency and kind, lines per fate,
/// Σ voucher deductions and granted subsidies per currency, Σ explained incentive per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputTotals {
    pub ledger: BTreeMap<String, BTreeMap<String, String>>,
    pub line_outcomes: BTreeMap<String, u64>,
    pub voucher_deductions: BTreeMap<String, String>,
    pub subsidies_granted: BTreeMap<String, String>,
    pub explained_incentive: BTreeMap<String, String>,
}

pub fn output_totals(
    bundle: &Bundle,
    evaluation: &crate::evaluate::Evaluation<'_>,
    vouchers: &crate::vouchers::VoucherOutcome,
    explanations: &[crate::explain::Explanation],
) -> OutputTotals {
    let text = |m: BTreeMap<String, Decimal>| -> BTreeMap<String, String> {
        m.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    };
    let mut ledger: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    let mut subsidies: BTreeMap<String, Decimal> = BTreeMap::new();
    for row in &evaluation.rows {
        *ledger
            .entry(row.currency.to_string())
            .or_default()
            .entry(row.kind.as_str().to_string())
            .or_default() += row.amount;
        if row.kind == crate::evaluate::Kind::Subsidy {
            *subsidies.entry(row.currency.to_string()).or_default() += row.amount;
        }
    }
    let mut fates: BTreeMap<String, u64> = BTreeMap::new();
    for o in &evaluation.outcomes {
        *fates.entry(o.fate.as_str().to_string()).or_default() += 1;
    }
    if !bundle.rejected_lines.is_empty() {
        fates.insert("rejected".into(), bundle.rejected_lines.len() as u64);
    }
    let mut deducted: BTreeMap<String, Decimal> = BTreeMap::new();
    for d in &vouchers.deductions {
        *deducted
            .entry(bundle.bill_lines[d.line as usize].currency.to_string())
            .or_default() += d.amount;
    }
    let mut explained: BTreeMap<String, Decimal> = BTreeMap::new();
    for e in explanations {
        *explained.entry(e.currency.to_string()).or_default() += e.incentive;
    }
    OutputTotals {
        ledger: ledger.into_iter().map(|(c, m)| (c, text(m))).collect(),
        line_outcomes: fates,
        voucher_deductions: text(deducted),
        subsidies_granted: text(subsidies),
        explained_incentive: text(explained),
    }
}
