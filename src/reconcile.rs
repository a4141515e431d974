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
