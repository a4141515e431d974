//! `ledger.csv`, `ledgers/<partner_id>.csv` and `line_outcomes.csv` (SPEC §5, Appendix B).

use super::{Out, Staging};
use crate::calendar::Cycle;
use crate::error::RunError;
use crate::evaluate::{CAP_RULE, Evaluation, LedgerRow};
use crate::load::Bundle;
use crate::money::format_amount;
use crate::rules::RuleSet;

const LEDGER_COLUMNS: &[&str] = &[
    "entry_id",
    "partner_id",
    "customer_id",
    "line_id",
    "order_id",
    "lever",
    "rule_id",
    "kind",
    "ref_id",
    "earned_cycle",
    "credit_cycle",
    "base",
    "rate",
    "amount",
    "currency",
    "ruleset_hash",
];

const OUTCOME_COLUMNS: &[&str] = &[
    "line_id",
    "partner_id",
    "customer_id",
    "bill_type",
    "payable_amount",
    "currency",
    "fate",
    "reason",
    "rule_ids",
    "base",
    "incentive",
    "credit_cycle",
    "source_row",
];

/// The id of the rule (or cap) that made a row.
pub fn rule_id(rules: &RuleSet, row: &LedgerRow) -> String {
    let lever = &rules.levers[row.lever as usize];
    if row.rule == CAP_RULE {
        format!("{}.cap", lever.name)
    } else {
        lever
            .rules
            .get(row.rule as usize)
            .map_or_else(String::new, |r| r.id.clone())
    }
}

/// Writes the journal and every partner's statement.
pub fn write_ledgers(
    staging: &mut Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
) -> Result<(), RunError> {
    let mut journal = staging.csv("ledger.csv", LEDGER_COLUMNS)?;
    let mut statement: Option<(u32, super::CsvOut)> = None;
    for (n, &index) in evaluation.journal.iter().enumerate() {
        let row = &evaluation.rows[index as usize];
        let entry_id = format!("{}-{}", row.earned_cycle, n + 1);
        let cells = LedgerCells::new(bundle, rules, row, entry_id);
        journal.row(&cells.cells())?;
        // Journal order is by partner first, so each partner's rows come together.
        if statement.as_ref().is_none_or(|(p, _)| *p != row.partner.0) {
            if let Some((_, done)) = statement.take() {
                staging.finish_csv(done)?;
            }
            let partner_id = &bundle.partners.at(row.partner).partner_id;
            statement = Some((
                row.partner.0,
                staging.csv(&format!("ledgers/{partner_id}.csv"), LEDGER_COLUMNS)?,
            ));
        }
        if let Some((_, out)) = statement.as_mut() {
            out.row(&cells.cells())?;
        }
    }
    if let Some((_, done)) = statement.take() {
        staging.finish_csv(done)?;
    }
    staging.finish_csv(journal)
}

/// A ledger row's cells as text.
struct LedgerCells<'a> {
    entry_id: String,
    partner_id: &'a str,
    customer_id: &'a str,
    line_id: &'a str,
    order_id: &'a str,
    lever: &'a str,
    rule_id: String,
    kind: &'static str,
    earned_cycle: String,
    credit_cycle: String,
    base: String,
    rate: String,
    amount: String,
    currency: &'a str,
    hash: &'a str,
}

impl<'a> LedgerCells<'a> {
    fn new(
        bundle: &'a Bundle,
        rules: &'a RuleSet,
        row: &'a LedgerRow,
        entry_id: String,
    ) -> LedgerCells<'a> {
        let line = row.line.map(|l| &bundle.bill_lines[l as usize]);
        let scale = rules.rounding.scale(row.currency);
        LedgerCells {
            entry_id,
            partner_id: &bundle.partners.at(row.partner).partner_id,
            customer_id: line.map_or("*", |l| l.customer_id.as_str()),
            line_id: line.map_or("", |l| l.line_id.as_str()),
            order_id: line.and_then(|l| l.order_id.as_deref()).unwrap_or(""),
            lever: &rules.levers[row.lever as usize].name,
            rule_id: rule_id(rules, row),
            kind: row.kind.as_str(),
            earned_cycle: row.earned_cycle.to_string(),
            credit_cycle: row.credit_cycle.to_string(),
            base: format_amount(row.base, scale),
            rate: row
                .rate
                .map(|r| r.normalize().to_string())
                .unwrap_or_default(),
            amount: format_amount(row.amount, scale),
            currency: row.currency.as_str(),
            hash: &rules.hash,
        }
    }

    fn cells(&self) -> [Out<'_>; 16] {
        [
            Out::Text(&self.entry_id),
            Out::Text(self.partner_id),
            Out::Text(self.customer_id),
            Out::Text(self.line_id),
            Out::Text(self.order_id),
            Out::Text(self.lever),
            Out::Text(&self.rule_id),
            Out::Text(self.kind),
            Out::Text(""),
            Out::Text(&self.earned_cycle),
            Out::Text(&self.credit_cycle),
            Out::Number(&self.base),
            Out::Number(&self.rate),
            Out::Number(&self.amount),
            Out::Text(self.currency),
            Out::Text(self.hash),
        ]
    }
}

/// One row per input bill line, accepted or rejected, by line id then source row.
pub fn write_outcomes(
    staging: &mut Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
) -> Result<(), RunError> {
    enum Entry {
        Accepted(usize),
        Rejected(usize),
    }
    let lines = &bundle.bill_lines;
    let mut entries: Vec<(&str, u64, Entry)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.line_id.as_str(), l.source_row, Entry::Accepted(i)))
        .chain(
            bundle
                .rejected_lines
                .iter()
                .enumerate()
                .map(|(i, r)| (r.line_id.as_str(), r.source_row(), Entry::Rejected(i))),
        )
        .collect();
    entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    let mut out = staging.csv("line_outcomes.csv", OUTCOME_COLUMNS)?;
    for (_, source_row, entry) in entries {
        let source_row = source_row.to_string();
        match entry {
            Entry::Accepted(i) => {
                let line = &lines[i];
                let outcome = &evaluation.outcomes[i];
                let rows = &evaluation.rows[outcome.rows.start as usize..outcome.rows.end as usize];
                let scale = rules.rounding.scale(line.currency);
                let mut rule_ids: Vec<String> = rows.iter().map(|r| rule_id(rules, r)).collect();
                rule_ids.sort();
                rule_ids.dedup();
                let base = rows
                    .first()
                    .map(|r| format_amount(r.base, scale))
                    .unwrap_or_default();
                let incentive: rust_decimal::Decimal = rows.iter().map(|r| r.amount).sum();
                let credit: Option<Cycle> = rows.iter().map(|r| r.credit_cycle).min();
                out.row(&[
                    Out::Text(&line.line_id),
                    Out::Text(&bundle.partners.at(line.partner).partner_id),
                    Out::Text(&line.customer_id),
                    Out::Text(line.bill_type.as_str()),
                    Out::Number(&format_amount(line.payable_amount, scale)),
                    Out::Text(line.currency.as_str()),
                    Out::Text(outcome.fate.as_str()),
                    Out::Text(outcome.reason),
                    Out::Text(&rule_ids.join(";")),
                    Out::Number(&base),
                    Out::Number(&format_amount(incentive, scale)),
                    Out::Text(&credit.map(|c| c.to_string()).unwrap_or_default()),
                    Out::Number(&source_row),
                ])?;
            }
            Entry::Rejected(i) => {
                let r = &bundle.rejected_lines[i];
                out.row(&[
                    Out::Text(&r.line_id),
                    Out::Text(&r.partner_id),
                    Out::Text(&r.customer_id),
                    Out::Text(&r.bill_type),
                    Out::Text(r.raw_payable()),
                    Out::Text(&r.currency),
                    Out::Text("rejected"),
                    Out::Text(r.reject.code.as_str()),
                    Out::Text(""),
                    Out::Number(""),
                    Out::Number(""),
                    Out::Text(""),
                    Out::Number(&source_row),
                ])?;
            }
        }
    }
    staging.finish_csv(out)
}
