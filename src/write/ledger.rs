//! `ledger.csv`, `ledgers/<partner_id>.csv` and `line_outcomes.csv` (SPEC §5, Appendix B).

use super::{Out, Staging};
use crate::calendar::Cycle;
use crate::error::RunError;
use crate::evaluate::{CarriedRow, Evaluation, LedgerRow};
use crate::load::Bundle;
use crate::money::format_amount;
use crate::rules::RuleSet;
use std::collections::BTreeMap;

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

/// Writes the journal (`ledger.csv`, this run's rows) and every partner's statement
/// (`ledgers/<partner_id>.csv`: its journal rows plus earlier runs' rows credited this cycle).
pub fn write_ledgers(
    staging: &mut Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
    carried: &[CarriedRow],
) -> Result<(), RunError> {
    let cells_of = |n: usize| {
        let row = &evaluation.rows[evaluation.journal[n] as usize];
        LedgerCells::new(
            bundle,
            rules,
            evaluation,
            row,
            format!("{}-{}", row.earned_cycle, n + 1),
        )
    };
    // One pass: each journal row is formatted once and written to the journal and to its
    // partner's statement. The journal is in partner-id order, so each partner's rows are
    // together; the carried rows are merged into the statements by the same keys.
    let mut journal = staging.csv("ledger.csv", LEDGER_COLUMNS)?;
    let mut carried_by_partner: BTreeMap<&str, Vec<&CarriedRow>> = BTreeMap::new();
    for c in carried {
        carried_by_partner
            .entry(c.partner_id.as_str())
            .or_default()
            .push(c);
    }
    for list in carried_by_partner.values_mut() {
        list.sort_by(|a, b| carried_key(a).cmp(&carried_key(b)));
    }
    let partner_of = |n: usize| {
        let row = &evaluation.rows[evaluation.journal[n] as usize];
        bundle.partners.at(row.partner).partner_id.as_str()
    };
    let mut n = 0;
    let mut pending = carried_by_partner.into_iter().peekable();
    loop {
        let next_journal = (n < evaluation.journal.len()).then(|| partner_of(n));
        let next_carried = pending.peek().map(|(p, _)| *p);
        let partner = match (next_journal, next_carried) {
            (None, None) => break,
            (Some(j), Some(c)) => j.min(c),
            (Some(j), None) => j,
            (None, Some(c)) => c,
        };
        let mut carried_rows: Vec<&CarriedRow> = match next_carried {
            Some(c) if c == partner => pending.next().map(|(_, rows)| rows).unwrap_or_default(),
            _ => Vec::new(),
        };
        carried_rows.reverse();
        let mut out = staging.csv(&format!("ledgers/{partner}.csv"), LEDGER_COLUMNS)?;
        while n < evaluation.journal.len() && partner_of(n) == partner {
            let cells = cells_of(n);
            while let Some(c) = carried_rows
                .last()
                .filter(|c| carried_key(c) <= cells.key())
            {
                out.row(&carried_cells(c))?;
                carried_rows.pop();
            }
            out.row(&cells.cells())?;
            journal.row(&cells.cells())?;
            n += 1;
        }
        while let Some(c) = carried_rows.pop() {
            out.row(&carried_cells(c))?;
        }
        staging.finish_csv(out)?;
    }
    staging.finish_csv(journal)
}

type StatementKey<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

fn carried_key(c: &CarriedRow) -> StatementKey<'_> {
    (
        &c.credit_cycle,
        &c.customer_id,
        &c.line_id,
        &c.lever,
        &c.kind,
        &c.ref_id,
        &c.currency,
    )
}

fn carried_cells(c: &CarriedRow) -> [Out<'_>; 16] {
    [
        Out::Text(&c.entry_id),
        Out::Text(&c.partner_id),
        Out::Text(&c.customer_id),
        Out::Text(&c.line_id),
        Out::Text(&c.order_id),
        Out::Text(&c.lever),
        Out::Text(&c.rule_id),
        Out::Text(&c.kind),
        Out::Text(&c.ref_id),
        Out::Text(&c.earned_cycle),
        Out::Text(&c.credit_cycle),
        Out::Number(&c.base),
        Out::Number(&c.rate),
        Out::Number(&c.amount_text),
        Out::Text(&c.currency),
        Out::Text(&c.ruleset_hash),
    ]
}

/// The cells of the journal rows in order, for the state store (rows credited to later cycles).
pub fn deferred_rows(
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
    cycle: Cycle,
) -> Vec<CarriedRow> {
    evaluation
        .journal
        .iter()
        .enumerate()
        .filter_map(|(n, &i)| {
            let row = &evaluation.rows[i as usize];
            (row.credit_cycle > cycle).then(|| {
                let c = LedgerCells::new(
                    bundle,
                    rules,
                    evaluation,
                    row,
                    format!("{}-{}", row.earned_cycle, n + 1),
                );
                CarriedRow {
                    entry_id: c.entry_id,
                    partner_id: c.partner_id.to_string(),
                    customer_id: c.customer_id.to_string(),
                    line_id: c.line_id.to_string(),
                    order_id: c.order_id.to_string(),
                    lever: c.lever.to_string(),
                    rule_id: c.rule_id,
                    kind: c.kind.to_string(),
                    ref_id: c.ref_id.to_string(),
                    earned_cycle: c.earned_cycle,
                    credit_cycle: c.credit_cycle,
                    base: c.base,
                    rate: c.rate,
                    amount: row.amount,
                    amount_text: c.amount,
                    currency: c.currency.to_string(),
                    ruleset_hash: c.hash.to_string(),
                }
            })
        })
        .collect()
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
    ref_id: &'a str,
}

impl<'a> LedgerCells<'a> {
    fn new(
        bundle: &'a Bundle,
        rules: &'a RuleSet,
        evaluation: &'a Evaluation<'_>,
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
            lever: evaluation.lever_name(rules, row),
            ref_id: evaluation.ref_id(row),
            rule_id: evaluation.rule_id(rules, row),
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

    fn key(&self) -> StatementKey<'_> {
        (
            &self.credit_cycle,
            self.customer_id,
            self.line_id,
            self.lever,
            self.kind,
            self.ref_id,
            self.currency,
        )
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
            Out::Text(self.ref_id),
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
                let mut rule_ids: Vec<String> =
                    rows.iter().map(|r| evaluation.rule_id(rules, r)).collect();
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
