//! Reconciliation: the control totals that tie a run's outputs back to its inputs.
//!
//! Every bill line read is counted, accepted or rejected, and its payable amount summed per currency
//! (for a rejected line, where the amount parsed), so finance can tie the run to the export's own
//! totals before trusting anything computed from it.

use crate::load::Bundle;
use crate::model::Currency;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Lines and Σ `payable_amount` in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CurrencyTotal {
    pub lines: u64,
    #[serde(serialize_with = "exact")]
    pub payable_amount: Decimal,
}

fn exact<S: serde::Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::money::format_amount(*amount, 0))
}

/// Control totals of `bill_lines.csv`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BillLineTotals {
    /// Per currency code.
    pub accepted: BTreeMap<String, CurrencyTotal>,
    /// Per currency cell as written (a rejected line's currency may itself be what was wrong),
    /// over the rejected lines whose payable amount parsed.
    pub rejected: BTreeMap<String, CurrencyTotal>,
    /// Rejected lines whose payable amount did not parse, so are in no sum.
    pub rejected_without_amount: u64,
}

impl BillLineTotals {
    /// Adds another part of the bundle's totals (a partition's).
    pub fn add(&mut self, other: BillLineTotals) {
        let add = |to: &mut BTreeMap<String, CurrencyTotal>,
                   from: BTreeMap<String, CurrencyTotal>| {
            for (currency, t) in from {
                let sum = to.entry(currency).or_default();
                sum.lines += t.lines;
                sum.payable_amount += t.payable_amount;
            }
        };
        add(&mut self.accepted, other.accepted);
        add(&mut self.rejected, other.rejected);
        self.rejected_without_amount += other.rejected_without_amount;
    }
}

pub fn bill_line_totals(bundle: &Bundle) -> BillLineTotals {
    let mut totals = BillLineTotals::default();
    // Keyed by the currency's code itself, not its text: one key made per currency, not per
    // line (10 million at 10M lines).
    let mut accepted: BTreeMap<Currency, CurrencyTotal> = BTreeMap::new();
    for line in bundle.owned_lines() {
        let t = accepted.entry(line.currency).or_default();
        t.lines += 1;
        t.payable_amount += line.payable_amount;
    }
    totals.accepted = by_text(accepted, |t| t);
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

/// [`OutputTotals`] as values, summed over a bundle or added up over partitions. Summed under
/// copyable keys and turned into text once per key: 17 million rows and outcomes at 10M lines
/// would otherwise make two strings each.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OutputSums {
    #[serde(with = "ledger_sums")]
    ledger: BTreeMap<Currency, BTreeMap<&'static str, Decimal>>,
    #[serde(with = "crate::serial::static_keys")]
    fates: BTreeMap<&'static str, u64>,
    deducted: BTreeMap<Currency, Decimal>,
    subsidies: BTreeMap<Currency, Decimal>,
    explained: BTreeMap<Currency, Decimal>,
}

/// The ledger's sums per currency and kind, in JSON (keys are text there).
mod ledger_sums {
    use crate::model::Currency;
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Sums = BTreeMap<Currency, BTreeMap<&'static str, Decimal>>;

    pub fn serialize<S: Serializer>(sums: &Sums, s: S) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<&str, &BTreeMap<&'static str, Decimal>> =
            sums.iter().map(|(c, v)| (c.as_str(), v)).collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sums, D::Error> {
        let text: BTreeMap<Currency, BTreeMap<String, Decimal>> = BTreeMap::deserialize(d)?;
        Ok(text
            .into_iter()
            .map(|(c, v)| {
                let v = v
                    .into_iter()
                    .map(|(k, a)| (crate::serial::intern(&k), a))
                    .collect();
                (c, v)
            })
            .collect())
    }
}

impl OutputSums {
    pub fn add(&mut self, other: OutputSums) {
        fn add_to<K: Ord, V: std::ops::AddAssign + Default>(
            to: &mut BTreeMap<K, V>,
            from: BTreeMap<K, V>,
        ) {
            for (k, v) in from {
                *to.entry(k).or_default() += v;
            }
        }
        for (currency, kinds) in other.ledger {
            add_to(self.ledger.entry(currency).or_default(), kinds);
        }
        add_to(&mut self.fates, other.fates);
        add_to(&mut self.deducted, other.deducted);
        add_to(&mut self.subsidies, other.subsidies);
        add_to(&mut self.explained, other.explained);
    }

    /// Line outcomes counted, whatever their fate.
    pub fn outcomes(&self) -> u64 {
        self.fates.values().sum()
    }

    pub fn totals(self) -> OutputTotals {
        let text = |m: BTreeMap<Currency, Decimal>| by_text(m, |v| v.to_string());
        OutputTotals {
            ledger: by_text(self.ledger, |kinds| {
                kinds
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            line_outcomes: self
                .fates
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            voucher_deductions: text(self.deducted),
            subsidies_granted: text(self.subsidies),
            explained_incentive: text(self.explained),
        }
    }
}

pub fn output_sums(
    bundle: &Bundle,
    evaluation: &crate::evaluate::Evaluation<'_>,
    vouchers: &crate::vouchers::VoucherOutcome,
    explanations: &[crate::explain::Explanation],
) -> OutputSums {
    let mut ledger: BTreeMap<Currency, BTreeMap<&'static str, Decimal>> = BTreeMap::new();
    let mut subsidies: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for row in evaluation.journal_rows() {
        *ledger
            .entry(row.currency)
            .or_default()
            .entry(row.kind.as_str())
            .or_default() += row.amount;
        if row.kind == crate::evaluate::Kind::Subsidy {
            *subsidies.entry(row.currency).or_default() += row.amount;
        }
    }
    let mut fates: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (line, o) in bundle.bill_lines.iter().zip(&evaluation.outcomes) {
        if bundle.partners.owns(line.partner) {
            *fates.entry(o.fate.as_str()).or_default() += 1;
        }
    }
    if !bundle.rejected_lines.is_empty() {
        *fates.entry("rejected").or_default() += bundle.rejected_lines.len() as u64;
    }
    let mut deducted: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for d in &vouchers.deductions {
        *deducted
            .entry(bundle.bill_lines[d.line as usize].currency)
            .or_default() += d.amount;
    }
    let mut explained: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for e in explanations {
        *explained.entry(e.currency).or_default() += e.incentive;
    }
    OutputSums {
        ledger,
        fates,
        deducted,
        subsidies,
        explained,
    }
}

/// A map by currency as a map by the currency's code, its values turned by `value`.
fn by_text<V, W>(m: BTreeMap<Currency, V>, value: impl Fn(V) -> W) -> BTreeMap<String, W> {
    m.into_iter()
        .map(|(c, v)| (c.as_str().to_string(), value(v)))
        .collect()
}
