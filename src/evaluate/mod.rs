//! Stage 3: evaluate incentives. Turns the cycle's accepted bill lines into ledger rows and one
//! outcome per line, by the rule set (SPEC §3 and its "Exact readings").
//!
//! Order of work: positive lines, partitioned by partner and evaluated in parallel (exclusions,
//! then each lever's first matching rule by priority, stacked levers, overrides); then the pools
//! of what each order earned; then refunds and negative adjustments in (trade time, line id)
//! order, clawing back from those pools; then tiers on partner totals; then caps. The journal
//! order is a sort by SPEC Appendix B's keys, so nothing depends on the thread count.

pub mod bound;
mod context;
mod journal;
mod partner_rows;
mod pools;
mod row;

use crate::calendar::Cycle;
pub use crate::chain::{CarriedRow, PoolDelta, Prior, PriorPool};
use crate::load::Bundle;
pub use crate::model::Kind;
use crate::rules::{LeverKind, RuleSet};
use context::Context;
pub use context::OrdersById;
use pools::{Pools, build_pools};
use rayon::prelude::*;
pub use row::{
    BalanceRow, ExternalRules, Fate, LedgerRow, NO_LEVER, OptionalIndex, Outcome, RateId, Rates,
    RuleOrigin, RuleRef, reason, rule_name,
};
use rust_decimal::Decimal;
use std::borrow::Cow;

/// Everything evaluation produced for the cycle.
#[derive(Debug)]
pub struct Evaluation<'a> {
    /// In generation order: each line's rows together, then tiers, then caps.
    pub rows: Vec<LedgerRow>,
    /// The rates the rows name.
    pub rates: Rates,
    /// One per accepted bill line, by index.
    pub outcomes: Vec<Outcome>,
    /// Every reason code an outcome can give (`""` first), in a fixed order.
    pub reasons: Vec<&'a str>,
    /// Row indices in journal order (SPEC Appendix B's sort keys).
    pub journal: Vec<u32>,
    /// Rule ids of earlier rule sets that clawback rows refer to (see [`RuleRef::external`]).
    pub external_rules: ExternalRules,
    /// What each order earned (earlier cycles and this one), for refunds and the state store.
    pools: Pools<'a>,
    /// Ids that balance rows refer to (projects, lots, applications).
    pub refs: Vec<String>,
}

impl<'a> Evaluation<'a> {
    /// The base a line's outcome and explanation show: the part of its payable that a lever's
    /// base covered. Levers may apply different bases (SPEC §6), so it is the largest base among
    /// the line's earn and override rows, held within 0 and the payable (`non_base`, the rest of
    /// the payable, is never negative); for a negative line, the clawback base largest in
    /// magnitude, held within the payable and 0. The same whatever the order of the levers;
    /// under the reference policy, where a line's rows share one base, that base.
    pub fn line_base(&self, line: &crate::model::BillLine, outcome: &Outcome) -> Option<Decimal> {
        let rows = &self.rows[outcome.rows.start as usize..outcome.rows.end as usize];
        let payable = line.payable_amount;
        if line.is_negative() {
            let base = rows.iter().map(|r| r.base).min()?;
            Some(base.max(payable).min(Decimal::ZERO))
        } else {
            let base = rows
                .iter()
                .filter(|r| matches!(r.kind, Kind::Earn | Kind::Override))
                .map(|r| r.base)
                .max()?;
            Some(base.min(payable).max(Decimal::ZERO))
        }
    }

    /// The reason code of an outcome (`""` for a line that earned).
    pub fn reason(&self, outcome: &Outcome) -> &'a str {
        self.reasons
            .get(outcome.reason as usize)
            .copied()
            .unwrap_or("")
    }

    pub fn rule_id<'s>(&'s self, rules: &'s RuleSet, row: &LedgerRow) -> Cow<'s, str> {
        rule_name(rules, &self.external_rules, row.lever, row.rule)
    }

    pub fn lever_name<'r>(&self, rules: &'r RuleSet, row: &LedgerRow) -> &'r str {
        match (row.lever, row.kind) {
            (NO_LEVER, Kind::Subsidy) => rules
                .subsidy
                .as_ref()
                .map_or("project_subsidy", |s| s.lever.as_str()),
            (NO_LEVER, Kind::Withdrawal) => "withdrawal",
            (NO_LEVER, _) => "expiry",
            (lever, _) => rules.levers[lever as usize].name.as_str(),
        }
    }

    /// The rows in journal order: in a partition's evaluation, only those of partners it owns
    /// (the others' rows were made to earn or claw back for its own, and are another's to write).
    pub fn journal_rows(&self) -> impl Iterator<Item = &LedgerRow> {
        self.journal.iter().map(|&i| &self.rows[i as usize])
    }

    /// The rate `row` applied, if any.
    pub fn rate(&self, row: &LedgerRow) -> Option<Decimal> {
        self.rates.get(row.rate)
    }

    pub fn ref_id(&self, row: &LedgerRow) -> &str {
        row.ref_id
            .get()
            .and_then(|r| self.refs.get(r as usize))
            .map_or("", |s| s.as_str())
    }

    /// Adds the partner-level rows a later stage returned (subsidies, withdrawals, expiry), in
    /// their order, credited in `cycle`.
    pub fn add_balance_rows(&mut self, rows: Vec<BalanceRow>, cycle: Cycle) {
        for row in rows {
            self.refs.push(row.reference);
            let rate = self.rates.id(row.rate);
            self.rows.push(LedgerRow {
                line: OptionalIndex::NONE,
                partner: row.partner,
                lever: NO_LEVER,
                rule: row.rule,
                kind: row.kind,
                earned_cycle: cycle,
                credit_cycle: cycle,
                base: row.base,
                rate,
                amount: row.amount,
                currency: row.currency,
                ref_id: OptionalIndex::some(self.refs.len() as u32 - 1),
            });
        }
    }
}

/// Partners evaluated in parallel at a time.
pub(crate) const PARTNERS_PER_WINDOW: usize = 64;

/// One partner's rows and the outcomes of its lines (by line index).
type Partition = (Vec<LedgerRow>, Vec<(u32, Outcome)>);

pub fn evaluate<'a>(
    bundle: &'a Bundle,
    rules: &'a RuleSet,
    cycle: Cycle,
    prior: &'a Prior,
) -> Evaluation<'a> {
    let orders = OrdersById::new(&bundle.orders);
    evaluate_with(bundle, orders, rules, cycle, prior, Journal::Order)
}

/// [`evaluate`] with the orders apart from the bundle: nothing after evaluation reads them, so
/// a run moves them out of the bundle and frees them as soon as this returns.
pub fn evaluate_with<'a>(
    bundle: &'a Bundle,
    orders: OrdersById<'_>,
    rules: &'a RuleSet,
    cycle: Cycle,
    prior: &'a Prior,
    journal: Journal,
) -> Evaluation<'a> {
    let ctx = Context::new(bundle, orders, rules, cycle);
    let lines = &bundle.bill_lines;

    // Positive lines by partner, in parallel; each partner's lines in file order.
    let partners = bundle.partners.len();
    let by_partner = crate::group::Grouped::new(partners, lines.len(), |i| {
        (!lines[i].is_negative()).then_some(lines[i].partner.0 as usize)
    });
    let positives = by_partner.len();
    // At most one row per line lever and override lever per positive line: reserved once,
    // so the run's largest vector never moves to grow (pages never written are never resident).
    let per_line = rules
        .levers
        .iter()
        .filter(|l| matches!(l.kind, LeverKind::Line | LeverKind::Override))
        .count()
        .max(1);
    let mut rows: Vec<LedgerRow> = Vec::with_capacity(positives * per_line);
    let mut outcomes: Vec<Outcome> = vec![
        Outcome {
            fate: Fate::Excluded,
            reason: ctx.reason_id(reason::NO_MATCHING_RULE),
            rows: 0..0
        };
        lines.len()
    ];
    // A window of partners at a time, each partner on its own; windows appended in partner
    // order, so rows are in the same order whatever the thread count, and what a window holds
    // apart from the result stays small. A window is appended while the next one is
    // evaluated: the copy into the run's largest vector (its first touch) is work of its own.
    let evaluate_window = |window: &[u32]| -> Vec<Partition> {
        window
            .par_iter()
            .map(|&p| {
                let indices = by_partner.of(p);
                let mut rows = Vec::new();
                let mut outcomes = Vec::with_capacity(indices.len());
                for &i in indices {
                    let (fate, reason, range) = ctx.positive_line(i, &mut rows);
                    outcomes.push((
                        i,
                        Outcome {
                            fate,
                            reason: ctx.reason_id(reason),
                            rows: range,
                        },
                    ));
                }
                (rows, outcomes)
            })
            .collect()
    };
    let append =
        |partitions: Vec<Partition>, rows: &mut Vec<LedgerRow>, outcomes: &mut [Outcome]| {
            for (part_rows, part_outcomes) in partitions {
                let offset = rows.len() as u32;
                rows.extend(part_rows);
                for (i, outcome) in part_outcomes {
                    let rows = outcome.rows.start + offset..outcome.rows.end + offset;
                    outcomes[i as usize] = Outcome { rows, ..outcome };
                }
            }
        };
    let mut evaluated: Vec<Partition> = Vec::new();
    let partner_indices: Vec<u32> = (0..partners as u32).collect();
    for window in partner_indices.chunks(PARTNERS_PER_WINDOW) {
        let previous = std::mem::take(&mut evaluated);
        let (next, ()) = rayon::join(
            || evaluate_window(window),
            || append(previous, &mut rows, &mut outcomes),
        );
        evaluated = next;
    }
    append(evaluated, &mut rows, &mut outcomes);

    let mut external_rules = ExternalRules::default();
    // The rule set's rates, then those of the pools' clawbacks as they come.
    let mut rates = ctx.rates().clone();
    let mut pools = build_pools(bundle, rules, prior, &rows, &rates, &mut external_rules);

    // Refunds and negative lines, after every positive line, in (trade time, line id) order.
    let mut negatives: Vec<u32> = (0..lines.len())
        .filter(|&i| lines[i].is_negative())
        .map(|i| i as u32)
        .collect();
    negatives.sort_by(|&a, &b| {
        let (a, b) = (&lines[a as usize], &lines[b as usize]);
        (a.trade_time, &a.line_id).cmp(&(b.trade_time, &b.line_id))
    });
    // Planned in parallel (lookups only), then carried out in order (each takes what the
    // refunds before it left in the pools).
    let plans: Vec<context::NegativePlan<'a>> = negatives
        .par_iter()
        .map(|&i| ctx.plan_negative(i, &pools))
        .collect();
    for (i, plan) in negatives.into_iter().zip(plans) {
        let start = rows.len() as u32;
        let (fate, why) = ctx.apply_negative(i, plan, &mut pools, &mut rows, &mut rates);
        outcomes[i as usize] = Outcome {
            fate,
            reason: ctx.reason_id(why),
            rows: start..rows.len() as u32,
        };
    }

    ctx.tiers(&mut rows, &outcomes);
    ctx.caps(&mut rows, &prior.carried);

    let mut evaluation = Evaluation {
        rows,
        rates,
        outcomes,
        journal: Vec::new(),
        external_rules,
        pools,
        reasons: ctx.reasons().to_vec(),
        refs: Vec::new(),
    };
    // A run orders the journal once, after the balance rows join it (`run.rs`).
    if journal == Journal::Order {
        evaluation.order_journal(bundle, rules);
    }
    evaluation
}

/// Whether [`evaluate_with`] puts the rows in journal order before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    Order,
    /// The caller adds rows and calls [`Evaluation::order_journal`] itself.
    Later,
}

#[cfg(test)]
mod tests;
