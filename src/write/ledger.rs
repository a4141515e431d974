//! `ledger.csv`, `ledgers/<partner_id>.csv` and `line_outcomes.csv` (SPEC §5, Appendix B).

use super::error::WriteError;
use super::{Batch, Column, Encoded, Format, Out, Staging};
use crate::calendar::Cycle;
use crate::chain::{CarriedRow, DeferredSink};
use crate::evaluate::{Evaluation, LedgerRow, RuleOrigin};
use crate::load::Bundle;
use crate::rules::RuleSet;
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

/// The columns of `ledger` and `ledgers/<partner_id>` (SPEC Appendix B; the names are
/// [`crate::chain::LEDGER_COLUMNS`], which the state's carried rows hold).
pub const LEDGER: &[Column] = &[
    Column::unique("entry_id"),
    Column::text("partner_id"),
    Column::text("customer_id"),
    Column::unique("line_id").filtered(),
    Column::unique("order_id"),
    Column::text("lever"),
    Column::text("rule_id"),
    Column::text("kind"),
    Column::text("ref_id"),
    Column::text("earned_cycle"),
    Column::text("credit_cycle"),
    Column::amount("base"),
    Column::amount("rate").repeating(),
    Column::amount("amount"),
    Column::text("currency"),
    Column::text("ruleset_hash"),
];

/// The columns of `line_outcomes` (SPEC Appendix B).
pub const OUTCOME_COLUMNS: &[Column] = &[
    Column::unique("line_id").filtered(),
    Column::text("partner_id"),
    Column::text("customer_id"),
    Column::text("bill_type"),
    Column::amount("payable_amount"),
    Column::text("currency"),
    Column::text("fate"),
    Column::text("reason"),
    Column::text("rule_ids"),
    Column::amount("base"),
    Column::amount("incentive"),
    Column::text("credit_cycle"),
    Column::count("source_row"),
];

/// Partners whose statements are formatted in parallel at a time: bounds the bytes held.
const PARTNERS_PER_WINDOW: usize = 64;

/// Writes the journal (`ledger`, this run's rows) and every partner's statement
/// (`ledgers/<partner_id>`: its journal rows plus earlier runs' rows credited this cycle), and
/// hands the journal rows credited to later cycles, as written, to `deferred` (the state's).
///
/// The journal is in partner-id order, so each partner's rows are one range of it: partners are
/// formatted in parallel, a window at a time, and written in order; each row is formatted once
/// for the journal, the statement and the state.
pub fn write_ledgers(
    staging: &Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
    carried: &[CarriedRow],
    cycle: Cycle,
    deferred: &mut dyn DeferredSink,
) -> Result<(), WriteError> {
    let format = staging.format();
    // A partition's journal: statements and the rows credited later are made in the merge,
    // where entry ids are numbered over the whole journal.
    let partition = format == Format::Spill;
    let names = RowNames::new(rules, evaluation);
    // Each partner's range of the journal, with its carried rows, in partner-id order.
    let carried_by_partner = carried_by_partner(rules, if partition { &[] } else { carried });
    let partner_of = |n: usize| {
        let row = &evaluation.rows[evaluation.journal[n] as usize];
        bundle.partners.at(row.partner).partner_id.as_str()
    };
    let mut statements: Vec<(&str, Range<usize>, Vec<CarriedText<'_>>)> = Vec::new();
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
        let carried_rows = match next_carried {
            Some(c) if c == partner => pending.next().map(|(_, rows)| rows).unwrap_or_default(),
            _ => Vec::new(),
        };
        let start = n;
        while n < evaluation.journal.len() && partner_of(n) == partner {
            n += 1;
        }
        statements.push((partner, start..n, carried_rows));
    }

    let mut journal = staging.table("ledger", LEDGER)?;
    for window in statements.chunks(PARTNERS_PER_WINDOW) {
        let formatted: Vec<Statement> = window
            .par_iter()
            .map(|(partner, range, carried_rows)| {
                let mut journal = Batch::new(LEDGER, format);
                // A statement differs from the journal only by carried rows, merged by the
                // statement's sort keys (a carried row before a journal row of equal keys).
                let mut statement = (!carried_rows.is_empty()).then(|| Batch::new(LEDGER, format));
                let mut carried_next = 0;
                // Rows credited to a later cycle, by that cycle, as CSV for the state store.
                let mut later: BTreeMap<String, Batch> = BTreeMap::new();
                let mut cells = LedgerCells::default();
                for n in range.clone() {
                    let row = &evaluation.rows[evaluation.journal[n] as usize];
                    cells.fill(bundle, rules, evaluation, &names, row, n);
                    let row_cells = cells.cells();
                    if let Some(st) = statement.as_mut() {
                        while let Some(c) = carried_rows
                            .get(carried_next)
                            .filter(|c| c.key() <= cells.key())
                        {
                            st.row(&c.cells());
                            carried_next += 1;
                        }
                        st.row(&row_cells);
                    }
                    journal.row(&row_cells);
                    if row.credit_cycle > cycle {
                        if !later.contains_key(cells.credit_cycle.as_str()) {
                            later.insert(
                                cells.credit_cycle.clone(),
                                Batch::new(LEDGER, Format::Csv),
                            );
                        }
                        if let Some(b) = later.get_mut(cells.credit_cycle.as_str()) {
                            b.row(&row_cells);
                        }
                    }
                }
                if let Some(st) = statement.as_mut() {
                    for c in &carried_rows[carried_next..] {
                        st.row(&c.cells());
                    }
                }
                // The statement's file is written here, so its encoding and hashing run on
                // every core; only the journal is written in order.
                let journal = journal.encode()?;
                if partition {
                    return Ok(Statement {
                        journal,
                        later: Vec::new(),
                    });
                }
                let mut out = staging.table(&format!("ledgers/{partner}"), LEDGER)?;
                match statement {
                    Some(st) => out.write(&st.encode()?)?,
                    None => out.write(&journal)?,
                }
                staging.finish(out)?;
                Ok(Statement {
                    journal,
                    later: later.into_iter().collect(),
                })
            })
            .collect::<Result<_, WriteError>>()?;
        for statement in formatted {
            journal.write(&statement.journal)?;
            for (credit, rows) in &statement.later {
                deferred
                    .csv_rows(credit, rows.csv_bytes(), rows.rows() as u64)
                    .map_err(|e| {
                        WriteError::Io(format!("the state's rows credited to {credit}: {e}"))
                    })?;
            }
        }
    }
    staging.finish(journal)?;
    Ok(())
}

/// Earlier runs' rows credited now, by partner, each partner's in statement order.
fn carried_by_partner<'c>(
    rules: &RuleSet,
    carried: &'c [CarriedRow],
) -> BTreeMap<&'c str, Vec<CarriedText<'c>>> {
    let mut by_partner: BTreeMap<&str, Vec<CarriedText<'_>>> = BTreeMap::new();
    for c in carried {
        by_partner
            .entry(c.partner_id.as_str())
            .or_default()
            .push(CarriedText::new(c, rules.rounding.scale(c.currency)));
    }
    for list in by_partner.values_mut() {
        list.sort_by(|a, b| a.key().cmp(&b.key()));
    }
    by_partner
}

/// A partitioned run's journal and statements, merged from the partitions' `ledger` files
/// (SPEC §8): entry ids numbered over the whole journal as it passes, each partner's statement
/// (with the rows earlier runs credited now) written from it, and the rows credited later handed
/// to `deferred` as the journal wrote them. Returns the journal's rows.
pub fn merge_ledgers(
    staging: &Staging,
    dirs: &[std::path::PathBuf],
    rules: &RuleSet,
    carried: &[CarriedRow],
    cycle: Cycle,
    deferred: &mut dyn DeferredSink,
) -> Result<u64, WriteError> {
    use super::merge::{KeyPart, cells_array, open_merge};
    let mut pending = carried_by_partner(rules, carried);
    let mut merge = open_merge(dirs, "ledger", &[KeyPart::Text(1)])?;
    let mut journal = staging.table("ledger", LEDGER)?;
    let format = journal.format();
    let later_cycle = cycle.to_string();
    let mut statement: Option<PartnerStatement<'_>> = None;
    let mut n: u64 = 0;
    let mut entry_id = String::new();
    while let Some(record) = merge.next_record().map_err(WriteError::Io)? {
        let partner = record.get(1).unwrap_or("");
        if statement.as_ref().is_none_or(|s| s.partner != partner) {
            if let Some(s) = statement.take() {
                s.finish(staging, &mut journal, deferred)?;
            }
            // Partners with only carried rows come first, in partner-id order.
            while let Some(p) = pending.keys().next().copied().filter(|p| *p < partner) {
                let rows = pending.remove(p).unwrap_or_default();
                PartnerStatement::open(staging, p.to_string(), rows)?.finish(
                    staging,
                    &mut journal,
                    deferred,
                )?;
            }
            let rows = pending.remove(partner).unwrap_or_default();
            statement = Some(PartnerStatement::open(staging, partner.to_string(), rows)?);
        }
        n += 1;
        entry_id.clear();
        entry_id.push_str(record.get(9).unwrap_or(""));
        entry_id.push('-');
        entry_id.push_str(itoa::Buffer::new().format(n));
        let mut cells: [Out<'_>; 16] = cells_array(record, LEDGER, format)?;
        cells[0] = Out::Text(&entry_id);
        let key: StatementKey<'_> = (
            &record[10],
            &record[2],
            &record[3],
            &record[5],
            &record[7],
            &record[8],
            &record[14],
        );
        if let Some(s) = statement.as_mut() {
            s.row(key, &cells, &mut journal)?;
            if record[10] > *later_cycle {
                let mut csv: [Out<'_>; 16] = cells_array(record, LEDGER, Format::Csv)?;
                csv[0] = Out::Text(&entry_id);
                s.later(&record[10], &csv);
            }
        }
    }
    if let Some(s) = statement.take() {
        s.finish(staging, &mut journal, deferred)?;
    }
    for (p, rows) in pending {
        PartnerStatement::open(staging, p.to_string(), rows)?.finish(
            staging,
            &mut journal,
            deferred,
        )?;
    }
    staging.finish(journal)?;
    Ok(n)
}

/// One partner's statement being merged. Its journal rows are formatted once, a batch at a
/// time, and written to the journal and (without carried rows) to the statement as they are;
/// with carried rows, the statement is its own batch, carried rows put in among the journal
/// rows by the statement's keys (a carried row before a journal row of equal keys). Its rows
/// credited to later cycles are kept as CSV for the state.
struct PartnerStatement<'c> {
    partner: String,
    table: super::Table,
    rows: Batch,
    merged: Option<Batch>,
    carried: Vec<CarriedText<'c>>,
    carried_next: usize,
    later: BTreeMap<String, Batch>,
}

impl<'c> PartnerStatement<'c> {
    fn open(
        staging: &Staging,
        partner: String,
        carried: Vec<CarriedText<'c>>,
    ) -> Result<PartnerStatement<'c>, WriteError> {
        let table = staging.table(&format!("ledgers/{partner}"), LEDGER)?;
        let format = table.format();
        Ok(PartnerStatement {
            partner,
            table,
            rows: Batch::new(LEDGER, format),
            merged: (!carried.is_empty()).then(|| Batch::new(LEDGER, format)),
            carried,
            carried_next: 0,
            later: BTreeMap::new(),
        })
    }

    fn row(
        &mut self,
        key: StatementKey<'_>,
        cells: &[Out<'_>],
        journal: &mut super::Table,
    ) -> Result<(), WriteError> {
        if let Some(merged) = self.merged.as_mut() {
            while let Some(c) = self
                .carried
                .get(self.carried_next)
                .filter(|c| c.key() <= key)
            {
                merged.row(&c.cells());
                self.carried_next += 1;
            }
            merged.row(cells);
            if merged.rows() >= super::merge::MERGE_BATCH {
                let format = self.table.format();
                let full = std::mem::replace(merged, Batch::new(LEDGER, format));
                self.table.write(&full.encode()?)?;
            }
        }
        self.rows.row(cells);
        if self.rows.rows() >= super::merge::MERGE_BATCH {
            self.flush(journal)?;
        }
        Ok(())
    }

    /// The journal rows formatted so far, to the journal (and the statement without carried rows).
    fn flush(&mut self, journal: &mut super::Table) -> Result<(), WriteError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let format = self.table.format();
        let rows = std::mem::replace(&mut self.rows, Batch::new(LEDGER, format));
        let encoded = rows.encode()?;
        journal.write(&encoded)?;
        if self.merged.is_none() {
            self.table.write(&encoded)?;
        }
        Ok(())
    }

    fn later(&mut self, credit_cycle: &str, cells: &[Out<'_>]) {
        self.later
            .entry(credit_cycle.to_string())
            .or_insert_with(|| Batch::new(LEDGER, Format::Csv))
            .row(cells);
    }

    fn finish(
        mut self,
        staging: &Staging,
        journal: &mut super::Table,
        deferred: &mut dyn DeferredSink,
    ) -> Result<(), WriteError> {
        self.flush(journal)?;
        if let Some(mut merged) = self.merged.take() {
            for c in &self.carried[self.carried_next..] {
                merged.row(&c.cells());
            }
            self.table.write(&merged.encode()?)?;
        }
        staging.finish(self.table)?;
        for (credit, rows) in &self.later {
            deferred
                .csv_rows(credit, rows.csv_bytes(), rows.rows() as u64)
                .map_err(|e| {
                    WriteError::Io(format!("the state's rows credited to {credit}: {e}"))
                })?;
        }
        Ok(())
    }
}

/// One partner's rows, formatted (its statement already written): for the journal, and those
/// credited to later cycles (credit cycle, CSV, rows).
struct Statement {
    journal: Encoded,
    later: Vec<(String, Batch)>,
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

/// A carried row with the cells its typed fields are written as: the same text the run that
/// made it wrote (cycles `YYYY-MM`, the rate as given, amounts at the currency's scale).
struct CarriedText<'c> {
    row: &'c CarriedRow,
    earned_cycle: String,
    credit_cycle: String,
    rate: Option<Decimal>,
    scale: u32,
}

impl<'c> CarriedText<'c> {
    fn new(row: &'c CarriedRow, scale: u32) -> CarriedText<'c> {
        CarriedText {
            row,
            earned_cycle: row.earned_cycle.to_string(),
            credit_cycle: row.credit_cycle.to_string(),
            rate: row.rate.map(|r| r.normalize()),
            scale,
        }
    }

    fn key(&self) -> StatementKey<'_> {
        let c = self.row;
        (
            &self.credit_cycle,
            &c.customer_id,
            &c.line_id,
            &c.lever,
            c.kind.as_str(),
            &c.ref_id,
            c.currency.as_str(),
        )
    }

    fn cells(&self) -> [Out<'_>; 16] {
        let c = self.row;
        [
            Out::Text(&c.entry_id),
            Out::Text(&c.partner_id),
            Out::Text(&c.customer_id),
            Out::Text(&c.line_id),
            Out::Text(&c.order_id),
            Out::Text(&c.lever),
            Out::Text(&c.rule_id),
            Out::Text(c.kind.as_str()),
            Out::Text(&c.ref_id),
            Out::Text(&self.earned_cycle),
            Out::Text(&self.credit_cycle),
            Out::Amount(c.base, self.scale),
            self.rate.map_or(Out::Null, |r| Out::Amount(r, 0)),
            Out::Amount(c.amount, self.scale),
            Out::Text(c.currency.as_str()),
            Out::Text(crate::rules::short_hash(&c.ruleset_hash)),
        ]
    }
}

/// Each lever's cap id (`<lever>.cap`), made once: a ledger row names its rule without
/// formatting it again (every other id is borrowed from the rule set or the external ids).
struct RowNames {
    caps: Vec<String>,
}

impl RowNames {
    fn new(rules: &RuleSet, _evaluation: &Evaluation<'_>) -> RowNames {
        let caps = rules
            .levers
            .iter()
            .map(|lever| format!("{}.cap", lever.name))
            .collect();
        RowNames { caps }
    }

    fn rule_id<'a>(
        &'a self,
        evaluation: &'a Evaluation<'_>,
        rules: &'a RuleSet,
        row: &LedgerRow,
    ) -> Cow<'a, str> {
        match (row.rule.origin(), self.caps.get(row.lever as usize)) {
            (RuleOrigin::Cap, Some(cap)) => Cow::Borrowed(cap.as_str()),
            _ => evaluation.rule_id(rules, row),
        }
    }
}

/// A ledger row's cells as text, in buffers reused from row to row.
#[derive(Default)]
struct LedgerCells<'a> {
    entry_id: String,
    partner_id: &'a str,
    customer_id: &'a str,
    line_id: &'a str,
    order_id: &'a str,
    lever: &'a str,
    rule_id: Cow<'a, str>,
    kind: &'static str,
    earned_cycle: String,
    credit_cycle: String,
    base: Decimal,
    /// As given, without trailing zeros (written at its own scale).
    rate: Option<Decimal>,
    amount: Decimal,
    /// The currency's scale, the least number of places amounts are written with.
    scale: u32,
    currency: &'a str,
    hash: &'a str,
    ref_id: &'a str,
}

impl<'a> LedgerCells<'a> {
    /// Fills the cells of `row`, the journal's `n`-th (from 0).
    fn fill(
        &mut self,
        bundle: &'a Bundle,
        rules: &'a RuleSet,
        evaluation: &'a Evaluation<'_>,
        names: &'a RowNames,
        row: &'a LedgerRow,
        n: usize,
    ) {
        use std::fmt::Write as _;
        let line = row.line.get().map(|l| &bundle.bill_lines[l as usize]);
        let scale = rules.rounding.scale(row.currency);
        self.entry_id.clear();
        row.earned_cycle.push_to(&mut self.entry_id);
        let _ = write!(self.entry_id, "-{}", n + 1);
        self.partner_id = &bundle.partners.at(row.partner).partner_id;
        self.customer_id = line.map_or("*", |l| l.customer_id.as_str());
        self.line_id = line.map_or("", |l| l.line_id.as_str());
        self.order_id = line.and_then(|l| l.order_id.as_deref()).unwrap_or("");
        self.lever = evaluation.lever_name(rules, row);
        self.ref_id = evaluation.ref_id(row);
        self.rule_id = names.rule_id(evaluation, rules, row);
        self.kind = row.kind.as_str();
        self.earned_cycle.clear();
        row.earned_cycle.push_to(&mut self.earned_cycle);
        self.credit_cycle.clear();
        row.credit_cycle.push_to(&mut self.credit_cycle);
        self.base = row.base;
        self.scale = scale;
        self.rate = evaluation.rate(row).map(|r| r.normalize());
        self.amount = row.amount;
        self.currency = row.currency.as_str();
        self.hash = rules.short_hash();
    }

    /// The statement's sort keys after the partner (SPEC Appendix B).
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
            Out::Amount(self.base, self.scale),
            self.rate.map_or(Out::Null, |r| Out::Amount(r, 0)),
            Out::Amount(self.amount, self.scale),
            Out::Text(self.currency),
            Out::Text(self.hash),
        ]
    }
}

/// One row per input bill line of the bundle's partners, by line id then source row; the
/// rejected lines too when `rejected` (a partitioned run writes those once, in the merge).
pub fn write_outcomes(
    staging: &Staging,
    bundle: &Bundle,
    rules: &RuleSet,
    evaluation: &Evaluation<'_>,
    rejected: bool,
) -> Result<(), WriteError> {
    #[derive(Clone, Copy)]
    enum Entry {
        Accepted(u32),
        Rejected(u32),
    }
    let lines = &bundle.bill_lines;
    let owned = |l: &crate::model::BillLine| bundle.partners.owns(l.partner);
    let accepted = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| owned(l))
        .map(|(i, l)| {
            (
                l.line_id.as_str(),
                u64::from(l.source_row),
                Entry::Accepted(i as u32),
            )
        });
    let rejected_lines = if rejected {
        &bundle.rejected_lines[..]
    } else {
        &[]
    };
    let rejected = rejected_lines.iter().enumerate().map(|(i, r)| {
        (
            r.line_id.as_str(),
            r.source_row(),
            Entry::Rejected(i as u32),
        )
    });
    let mut entries: Vec<(&str, u64, Entry)> = accepted.chain(rejected).collect();
    in_line_order(&mut entries);
    let names = RowNames::new(rules, evaluation);

    let mut out = staging.table("line_outcomes", OUTCOME_COLUMNS)?;
    super::table::write_parallel(&mut out, &entries, |slice, batch| {
        let (mut credit, mut rule_ids) = (String::new(), String::new());
        let mut ids: Vec<Cow<'_, str>> = Vec::new();
        for &(_, row_number, entry) in slice {
            match entry {
                Entry::Accepted(i) => {
                    let line = &lines[i as usize];
                    let outcome = &evaluation.outcomes[i as usize];
                    let rows =
                        &evaluation.rows[outcome.rows.start as usize..outcome.rows.end as usize];
                    let scale = rules.rounding.scale(line.currency);
                    ids.clear();
                    ids.extend(rows.iter().map(|r| names.rule_id(evaluation, rules, r)));
                    ids.sort();
                    ids.dedup();
                    rule_ids.clear();
                    for (k, id) in ids.iter().enumerate() {
                        if k > 0 {
                            rule_ids.push(';');
                        }
                        rule_ids.push_str(id);
                    }
                    let base = match evaluation.line_base(line, outcome) {
                        Some(base) => Out::Amount(base, scale),
                        None => Out::Null,
                    };
                    let total: Decimal = rows.iter().map(|r| r.amount).sum();
                    credit.clear();
                    if let Some(c) = rows.iter().map(|r| r.credit_cycle).min() {
                        c.push_to(&mut credit);
                    }
                    batch.row(&[
                        Out::Text(&line.line_id),
                        Out::Text(&bundle.partners.at(line.partner).partner_id),
                        Out::Text(&line.customer_id),
                        Out::Text(line.bill_type.as_str()),
                        Out::Amount(line.payable_amount, scale),
                        Out::Text(line.currency.as_str()),
                        Out::Text(outcome.fate.as_str()),
                        Out::Text(evaluation.reason(outcome)),
                        Out::Text(&rule_ids),
                        base,
                        Out::Amount(total, scale),
                        Out::Text(&credit),
                        Out::Count(row_number),
                    ]);
                }
                Entry::Rejected(i) => {
                    batch.row(&rejected_outcome(&bundle.rejected_lines[i as usize]));
                }
            }
        }
    })?;
    staging.finish(out)
}

/// A rejected line's row of `line_outcomes`.
pub fn rejected_outcome(r: &crate::load::RejectedLine) -> [Out<'_>; 13] {
    [
        Out::Text(&r.line_id),
        Out::Text(&r.partner_id),
        Out::Text(&r.customer_id),
        Out::Text(&r.bill_type),
        Out::Raw(r.raw_payable(), r.payable_amount),
        Out::Text(&r.currency),
        Out::Text("rejected"),
        Out::Text(r.reject.code.as_str()),
        Out::Text(""),
        Out::Null,
        Out::Null,
        Out::Text(""),
        Out::Count(r.source_row()),
    ]
}

/// Sorts `(line_id, source_row, _)` entries by line id, then row. Exports usually come in
/// line-id order: putting the entries back in file order (integer keys) and finding them
/// sorted skips the sort on strings, 10 million of them at 10M lines.
fn in_line_order<T: Send>(entries: &mut [(&str, u64, T)]) {
    entries.par_sort_unstable_by_key(|e| e.1);
    if !entries.is_sorted_by(|a, b| (a.0, a.1) <= (b.0, b.1)) {
        entries.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
}

#[cfg(test)]
mod tests {
    use super::{CarriedText, in_line_order};
    use crate::write::table::Out;
    use proptest::prelude::*;

    #[test]
    fn a_carried_row_stored_with_the_full_digest_is_written_with_the_short_hash() {
        // A state of an earlier release stored deferred rows with the 64-digit hash.
        let full = "44d5e5c90015a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5";
        let row = crate::chain::CarriedRow {
            entry_id: "2026-09-1".into(),
            partner_id: "SP1".into(),
            customer_id: "C1".into(),
            line_id: "L1".into(),
            order_id: "O1".into(),
            lever: "resale_base".into(),
            rule_id: "resale_base.on_demand".into(),
            kind: crate::model::Kind::Earn,
            ref_id: String::new(),
            earned_cycle: "2026-09".parse().unwrap(),
            credit_cycle: "2026-10".parse().unwrap(),
            base: "100.00".parse().unwrap(),
            rate: Some("0.050".parse().unwrap()),
            amount: "5.00".parse().unwrap(),
            currency: crate::model::Currency::parse("CNY").unwrap(),
            ruleset_hash: full.into(),
        };
        let text = CarriedText::new(&row, 2);
        let cells = text.cells();
        match cells[15] {
            Out::Text(hash) => assert_eq!(hash, "44d5e5c90015a9b1"),
            _ => panic!("the hash is text"),
        }
        // The cycles, the rate (as the journal writes it) and the amounts at the scale.
        assert!(matches!(cells[10], Out::Text("2026-10")));
        assert!(matches!(cells[12], Out::Amount(r, 0) if r.to_string() == "0.05"));
        assert!(matches!(cells[13], Out::Amount(a, 2) if a.to_string() == "5.00"));
    }

    #[test]
    fn the_ledger_declares_the_columns_the_state_keeps() {
        let names: Vec<&str> = super::LEDGER.iter().map(|c| c.name).collect();
        assert_eq!(names, crate::chain::LEDGER_COLUMNS);
    }

    #[test]
    fn entries_end_in_line_id_order_whatever_the_file_order() {
        // File rows 2..5 hold L3, L1, L2, L1: by (line id, row) → L1@3, L1@5, L2@4, L3@2.
        let mut e = vec![("L1", 5, ()), ("L3", 2, ()), ("L2", 4, ()), ("L1", 3, ())];
        in_line_order(&mut e);
        let keys: Vec<(&str, u64)> = e.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(keys, [("L1", 3), ("L1", 5), ("L2", 4), ("L3", 2)]);
    }

    proptest! {
        #[test]
        fn the_order_is_the_full_sort(ids in prop::collection::vec(0u8..30, 0..200)) {
            let names: Vec<String> = ids.iter().map(|i| format!("L{i:02}")).collect();
            let mut e: Vec<(&str, u64, ())> =
                names.iter().enumerate().map(|(r, n)| (n.as_str(), r as u64 * 7 % 211, ())).collect();
            let mut expected: Vec<(&str, u64)> = e.iter().map(|x| (x.0, x.1)).collect();
            expected.sort();
            in_line_order(&mut e);
            let got: Vec<(&str, u64)> = e.iter().map(|x| (x.0, x.1)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
