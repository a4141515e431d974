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

use crate::calendar::Cycle;
pub use crate::chain::{CarriedRow, PoolDelta, Prior, PriorPool};
use crate::load::Bundle;
pub use crate::model::Kind;
use crate::model::{Currency, PartnerIdx};
use crate::rules::{LeverKind, RuleSet};
use context::Context;
pub use context::OrdersById;
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::ops::Range;

/// The lever of rows that no lever of the rule set made: subsidies, withdrawals, expiry.
pub const NO_LEVER: u16 = u16::MAX;

/// Which rule made a ledger row: one of its lever's rules, the lever's cap, a rule of an earlier
/// rule set that a clawback's pool still names, or a policy section (subsidy, withdrawal,
/// expiry). Four bytes, a row holding one: the origin in the top three bits, an index in the
/// other 29. No index can reach that bound: a lever's rules are a rule file's, and an earlier
/// set's ids are kept once each ([`ExternalRules`]), so 2^29 of them would be gigabytes of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef(u32);

/// What a [`RuleRef`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOrigin {
    /// Index into the row's lever's rules.
    Rule(u32),
    /// The row's lever's cap.
    Cap,
    /// Index into [`Evaluation::external_rules`].
    External(u32),
    Subsidy,
    Withdrawal,
    Expiry,
}

impl RuleRef {
    const INDEX_BITS: u32 = 29;
    const INDEX_MASK: u32 = (1 << Self::INDEX_BITS) - 1;
    pub const CAP: RuleRef = RuleRef(1 << Self::INDEX_BITS);
    pub const SUBSIDY: RuleRef = RuleRef(3 << Self::INDEX_BITS);
    pub const WITHDRAWAL: RuleRef = RuleRef(4 << Self::INDEX_BITS);
    pub const EXPIRY: RuleRef = RuleRef(5 << Self::INDEX_BITS);

    fn indexed(tag: u32, index: usize) -> RuleRef {
        debug_assert!(
            index <= Self::INDEX_MASK as usize,
            "rule index {index} out of range"
        );
        RuleRef(tag << Self::INDEX_BITS | (index as u32 & Self::INDEX_MASK))
    }

    /// Rule `index` of the row's lever.
    pub fn rule(index: usize) -> RuleRef {
        Self::indexed(0, index)
    }

    /// Earlier rule set's rule `index` of [`Evaluation::external_rules`].
    pub fn external(index: usize) -> RuleRef {
        Self::indexed(2, index)
    }

    pub fn origin(self) -> RuleOrigin {
        let index = self.0 & Self::INDEX_MASK;
        match self.0 >> Self::INDEX_BITS {
            0 => RuleOrigin::Rule(index),
            1 => RuleOrigin::Cap,
            2 => RuleOrigin::External(index),
            3 => RuleOrigin::Subsidy,
            4 => RuleOrigin::Withdrawal,
            _ => RuleOrigin::Expiry,
        }
    }

    /// The index into the lever's rules, for a row one of them made.
    pub fn rule_index(self) -> Option<usize> {
        match self.origin() {
            RuleOrigin::Rule(i) => Some(i as usize),
            _ => None,
        }
    }
}

/// Rule ids of earlier rule sets that pools (and so clawbacks) still name, each kept once.
#[derive(Debug, Default)]
pub struct ExternalRules {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl ExternalRules {
    /// The reference of `id`, added if new.
    pub fn add(&mut self, id: &str) -> RuleRef {
        if let Some(&i) = self.index.get(id) {
            return RuleRef::external(i as usize);
        }
        let i = self.ids.len();
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i as u32);
        RuleRef::external(i)
    }

    pub fn get(&self, i: u32) -> Option<&str> {
        self.ids.get(i as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The id of the rule (or cap, or policy section) that made a row: borrowed from the rule set
/// or the external ids, except a cap's (`<lever>.cap`).
pub fn rule_name<'r>(
    rules: &'r RuleSet,
    external: &'r ExternalRules,
    lever: u16,
    rule: RuleRef,
) -> Cow<'r, str> {
    let lever = rules.levers.get(lever as usize);
    match (rule.origin(), lever) {
        (RuleOrigin::Subsidy, _) => Cow::Borrowed("subsidy"),
        (RuleOrigin::Withdrawal, _) => Cow::Borrowed("balances.withdrawal"),
        (RuleOrigin::Expiry, _) => Cow::Borrowed("balances.expiry"),
        (RuleOrigin::External(i), _) => Cow::Borrowed(external.get(i).unwrap_or("")),
        (RuleOrigin::Cap, Some(lever)) => Cow::Owned(format!("{}.cap", lever.name)),
        (RuleOrigin::Rule(i), Some(lever)) => {
            Cow::Borrowed(lever.rules.get(i as usize).map_or("", |r| r.id.as_str()))
        }
        (_, None) => Cow::Borrowed(""),
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    /// The bill line it comes from (index into `Bundle::bill_lines`); none for partner-level rows.
    pub line: OptionalIndex,
    /// Who is credited.
    pub partner: PartnerIdx,
    /// Index into `RuleSet::levers`, or [`NO_LEVER`].
    pub lever: u16,
    /// Which rule (or cap, or policy section) made it.
    pub rule: RuleRef,
    pub kind: Kind,
    pub earned_cycle: Cycle,
    pub credit_cycle: Cycle,
    /// What the rate applied to (a tier's: the partner total; a cap's: the net before the cap).
    pub base: Decimal,
    /// The rate, in [`Evaluation::rates`] (see [`Evaluation::rate`]).
    pub rate: RateId,
    /// Rounded once, by the rule set's policy.
    pub amount: Decimal,
    pub currency: Currency,
    /// What a balance row concerns (project, lot, application): index into `Evaluation::refs`.
    pub ref_id: OptionalIndex,
}

// 7.7M rows at 10M lines: line, partner, rule, rate, ref (5 x 4), base and amount (2 x 16), two
// cycles (2 x 3), lever (2), kind (1), currency (3): 64 bytes.
const _: () = assert!(std::mem::size_of::<LedgerRow>() <= 64);

/// An index or none, in 4 bytes where `Option<u32>` takes 8 (two per ledger row, 7.7M rows at
/// 10M lines). `u32::MAX` stands for none: no index reaches it, the loader refusing a file of
/// that many records and references being a few per partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalIndex(u32);

impl OptionalIndex {
    pub const NONE: OptionalIndex = OptionalIndex(u32::MAX);

    pub fn some(index: u32) -> OptionalIndex {
        debug_assert!(index != u32::MAX);
        OptionalIndex(index)
    }

    pub fn get(self) -> Option<u32> {
        (self != Self::NONE).then_some(self.0)
    }
}

/// A rate in a [`Rates`] table, or none (tiers, caps, expiry and withdrawal rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateId(u32);

impl RateId {
    pub const NONE: RateId = RateId(u32::MAX);
}

/// The rates ledger rows apply, each kept once: a row holds a 4-byte [`RateId`] instead of a
/// 20-byte `Option<Decimal>`, 16 bytes less on each of 7.7M rows at 10M lines. A rate keeps the
/// exact representation it was given (0.05 and 0.050 are two entries).
#[derive(Debug, Clone, Default)]
pub struct Rates {
    values: Vec<Decimal>,
    ids: std::collections::HashMap<[u8; 16], u32>,
}

impl Rates {
    /// The id of `rate`, added if new.
    pub fn id(&mut self, rate: Option<Decimal>) -> RateId {
        let Some(rate) = rate else {
            return RateId::NONE;
        };
        let next = self.values.len() as u32;
        let id = *self.ids.entry(rate.serialize()).or_insert(next);
        if id == next {
            self.values.push(rate);
        }
        RateId(id)
    }

    pub fn get(&self, id: RateId) -> Option<Decimal> {
        self.values.get(id.0 as usize).copied()
    }
}

/// A line's fate (SPEC §5, `line_outcomes.csv`); `rejected` lines never reach evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Earned,
    Deferred,
    Excluded,
    ClawedBack,
    RefundNotEarned,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Earned => "earned",
            Fate::Deferred => "deferred",
            Fate::Excluded => "excluded",
            Fate::ClawedBack => "clawed_back",
            Fate::RefundNotEarned => "refund_not_earned",
        }
    }
}

/// The outcome of one accepted bill line: its fate, why, and the ledger rows it wrote (a range
/// of `Evaluation::rows`, which keeps each line's rows together).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub fate: Fate,
    /// Index into [`Evaluation::reasons`] (see [`Evaluation::reason`]): 12 bytes a line, not 32.
    pub reason: u16,
    pub rows: Range<u32>,
}

/// Reason codes the engine gives itself (the others come from the rule files).
pub mod reason {
    pub const NO_MATCHING_RULE: &str = "no_matching_rule";
    pub const ORDER_NEVER_EARNED: &str = "order_never_earned";
    pub const NO_ORDER: &str = "no_order";
}

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
    /// How many pools there are.
    pub fn pool_count(&self) -> usize {
        self.pools.pools.len()
    }

    /// What this cycle added to the pools in `range` (of [`Evaluation::pool_count`]), by name,
    /// in pool order, for the state store; ranges let the state encode them in parallel.
    pub fn pool_deltas_in(
        &self,
        bundle: &'a Bundle,
        rules: &'a RuleSet,
        range: Range<usize>,
    ) -> impl Iterator<Item = PoolDelta<'_>> + '_ {
        self.pools.pools
            [range.start.min(self.pools.pools.len())..range.end.min(self.pools.pools.len())]
            .iter()
            .filter(|p| !p.earned_now.is_zero() || !p.clawed_now.is_zero() || p.first_now != NO_ROW)
            .map(move |p| {
                let lever = &rules.levers[p.key.lever as usize];
                let first = (p.first_now != NO_ROW).then(|| {
                    let row = &self.rows[p.first_now as usize];
                    let line = row
                        .line
                        .get()
                        .map_or("", |l| bundle.bill_lines[l as usize].line_id.as_str());
                    let id = self.rule_id(rules, row);
                    (row.earned_cycle, line, self.rate(row), id)
                });
                PoolDelta {
                    order_id: p.key.order,
                    lever: lever.name.as_str(),
                    recipient: bundle.partners.at(p.key.partner).partner_id.as_str(),
                    currency: p.key.currency,
                    earned: p.earned_now,
                    clawed: p.clawed_now,
                    first,
                }
            })
    }

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

    /// Frees the pools once refunds are matched and [`Evaluation::pool_deltas_in`] was taken.
    pub fn free_pools(&mut self) {
        self.pools = Pools {
            pools: Vec::new(),
            index: Vec::new(),
        };
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

    /// Adds a partner-level balance row (subsidy, withdrawal, expiry) about `reference`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_balance_row(
        &mut self,
        partner: PartnerIdx,
        kind: Kind,
        rule: RuleRef,
        cycle: Cycle,
        base: Decimal,
        rate: Option<Decimal>,
        amount: Decimal,
        currency: Currency,
        reference: &str,
    ) {
        self.refs.push(reference.to_string());
        self.rows.push(LedgerRow {
            line: OptionalIndex::NONE,
            partner,
            lever: NO_LEVER,
            rule,
            kind,
            earned_cycle: cycle,
            credit_cycle: cycle,
            base,
            rate: self.rates.id(rate),
            amount,
            currency,
            ref_id: OptionalIndex::some(self.refs.len() as u32 - 1),
        });
    }

    /// Puts the rows in journal order: SPEC Appendix B's keys (partner, credit cycle, customer,
    /// line, lever, kind, ref, currency), then generation order. Each partner's rows are sorted
    /// on their own, in parallel, and partners follow in id order.
    pub fn order_journal(&mut self, bundle: &Bundle, rules: &RuleSet) {
        // Lever names, kinds and ref ids ranked once, so the sort compares small integers
        // where it can and strings (customer, line) only within a partner.
        let subsidy_lever = rules
            .subsidy
            .as_ref()
            .map_or("project_subsidy", |s| s.lever.as_str());
        let mut lever_names: Vec<&str> = rules.levers.iter().map(|l| l.name.as_str()).collect();
        lever_names.extend([subsidy_lever, "withdrawal", "expiry"]);
        lever_names.sort_unstable();
        lever_names.dedup();
        let mut kinds: Vec<&str> = [
            Kind::Earn,
            Kind::Clawback,
            Kind::Tier,
            Kind::Cap,
            Kind::Override,
            Kind::Subsidy,
            Kind::Expiry,
            Kind::Withdrawal,
        ]
        .map(Kind::as_str)
        .to_vec();
        kinds.sort_unstable();
        let mut ref_order: Vec<u32> = (0..self.refs.len() as u32).collect();
        ref_order.sort_by(|&a, &b| self.refs[a as usize].cmp(&self.refs[b as usize]));
        let ref_rank = ranks(&ref_order, 1);
        let rank_in = |list: &[&str], name: &str| list.binary_search(&name).unwrap_or(0) as u8;
        let this = &*self;
        let partners = bundle.partners.len();
        let by_partner = crate::group::Grouped::new(partners, this.rows.len(), |i| {
            Some(this.rows[i].partner.0 as usize)
        });
        let partner_order = bundle.partners.in_id_order();
        let lines = &bundle.bill_lines;
        let sorted: Vec<Vec<u32>> = partner_order
            .par_iter()
            .map(|&p| {
                // (credit cycle, customer, line id, source row, lever, kind, ref, currency), row.
                let mut keyed: Vec<(JournalKey<'_>, u32)> = by_partner
                    .of(p)
                    .iter()
                    .map(|&i| {
                        let row = &this.rows[i as usize];
                        let line = row.line.get().map(|l| &lines[l as usize]);
                        (
                            (
                                row.credit_cycle,
                                line.map_or("*", |l| l.customer_id.as_str()),
                                line.map_or("", |l| l.line_id.as_str()),
                                line.map_or(0, |l| l.source_row),
                                rank_in(&lever_names, this.lever_name(rules, row)),
                                rank_in(&kinds, row.kind.as_str()),
                                row.ref_id.get().map_or(0, |r| ref_rank[r as usize]),
                                row.currency.code(),
                            ),
                            i,
                        )
                    })
                    .collect();
                keyed.sort_unstable();
                keyed.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        self.journal = sorted.concat();
    }
}

/// A row's journal sort key within its partner: credit cycle, customer, line id (and source
/// row), lever, kind, ref, currency, each as a value, a rank or a small integer.
type JournalKey<'a> = (Cycle, &'a str, &'a str, u32, u8, u8, u32, [u8; 3]);

/// The rank of each item, given the items in sorted order.
fn ranks(sorted: &[u32], first: u32) -> Vec<u32> {
    let mut rank = vec![0; sorted.len()];
    for (r, &item) in sorted.iter().enumerate() {
        rank[item as usize] = r as u32 + first;
    }
    rank
}

/// Partners evaluated in parallel at a time.
const PARTNERS_PER_WINDOW: usize = 64;

/// One partner's rows and the outcomes of its lines (by line index).
type Partition = (Vec<LedgerRow>, Vec<(u32, Outcome)>);

/// Which pool a row belongs to: (order, lever, recipient, currency), with the order id's hash
/// first so that sorting and searching compare integers, and strings only on a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PoolKey<'a> {
    hash: u64,
    order: &'a str,
    lever: u16,
    partner: PartnerIdx,
    currency: Currency,
}

/// A fixed hash of an order id (the same in every run: it orders the state's pool rows).
fn order_hash(order: &str) -> u64 {
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(order)
}

/// One pool of what an order earned: per (order, lever, recipient, currency).
#[derive(Debug, Clone)]
pub(crate) struct Pool<'a> {
    key: PoolKey<'a>,
    pub(crate) earned: Decimal,
    pub(crate) clawed: Decimal,
    /// The earliest earn or override row by (earned cycle, line id): its rate and rule apply.
    first: (Cycle, &'a str),
    pub(crate) rate: Option<Decimal>,
    pub(crate) rule: RuleRef,
    earned_now: Decimal,
    pub(crate) clawed_now: Decimal,
    /// This cycle's earliest row of the pool (index into the rows), or [`NO_ROW`].
    first_now: u32,
}

/// No row of this cycle.
const NO_ROW: u32 = u32::MAX;

/// Every pool, recipient by recipient (partner index order, each by key), and an index of them
/// sorted by key: what a refund's original order earned is one range of the index.
#[derive(Debug)]
pub(crate) struct Pools<'a> {
    pools: Vec<Pool<'a>>,
    /// (order-id hash, pool) sorted by the pools' keys.
    index: Vec<(u64, u32)>,
}

impl<'a> Pools<'a> {
    /// The pools of `order`, in (lever, recipient, currency) order.
    pub(crate) fn of_order(&self, order: &str) -> Vec<usize> {
        let hash = order_hash(order);
        // The hash decides nearly every step of the search; a pool (a random place in a large
        // vector) is read only where hashes are equal.
        let order_of = |i: u32| self.pools[i as usize].key.order;
        let start = self
            .index
            .partition_point(|&(h, i)| h < hash || (h == hash && order_of(i) < order));
        self.index[start..]
            .iter()
            .take_while(|&&(h, i)| h == hash && order_of(i) == order)
            .map(|&(_, i)| i as usize)
            .collect()
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Pool<'a>> {
        self.pools.get_mut(i)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Pool<'a>> {
        self.pools.get(i)
    }
}

impl Pool<'_> {
    pub(crate) fn lever(&self) -> u16 {
        self.key.lever
    }
    pub(crate) fn recipient(&self) -> PartnerIdx {
        self.key.partner
    }
    pub(crate) fn currency(&self) -> Currency {
        self.key.currency
    }
}

/// What each order earned, per (lever, recipient, currency): earlier cycles' pools from the
/// state, then this cycle's earn and override rows. Every row of a pool has the pool's
/// recipient, so pools are built recipient by recipient (a window of partners in parallel,
/// each from its own rows), then indexed by key for the refunds.
fn build_pools<'a>(
    bundle: &'a Bundle,
    rules: &'a RuleSet,
    prior: &'a Prior,
    rows: &[LedgerRow],
    rates: &Rates,
    external_rules: &mut ExternalRules,
) -> Pools<'a> {
    let lines = &bundle.bill_lines;
    let partners = bundle.partners.len();
    let mut prior_of: Vec<Vec<Pool<'a>>> = vec![Vec::new(); partners];
    let mut prior_count = 0;
    for p in &prior.pools {
        let (Some(lever), Some((partner, _)), Some(currency)) = (
            rules.lever_index(&p.lever),
            bundle.partners.get(&p.recipient),
            Some(p.currency),
        ) else {
            continue;
        };
        let rule = match rules.levers[lever]
            .rules
            .iter()
            .position(|r| r.id == p.rule_id)
        {
            Some(r) => RuleRef::rule(r),
            None => external_rules.add(&p.rule_id),
        };
        prior_count += 1;
        prior_of[partner.0 as usize].push(Pool {
            key: PoolKey {
                hash: order_hash(&p.order_id),
                order: p.order_id.as_str(),
                lever: lever as u16,
                partner,
                currency,
            },
            earned: p.earned,
            clawed: p.clawed,
            first: (p.first_cycle, p.first_line.as_str()),
            rate: p.rate,
            rule,
            earned_now: Decimal::ZERO,
            clawed_now: Decimal::ZERO,
            first_now: NO_ROW,
        });
    }

    // This cycle's earn and override rows with an order, by recipient.
    let order_of = |i: u32| {
        let row = &rows[i as usize];
        match (row.line.get(), row.kind) {
            (Some(l), Kind::Earn | Kind::Override) => lines[l as usize].order_id.as_deref(),
            _ => None,
        }
    };
    let earning = crate::group::Grouped::new(partners, rows.len(), |i| {
        order_of(i as u32).map(|_| rows[i].partner.0 as usize)
    });
    let first_key = |i: u32| {
        let row = &rows[i as usize];
        let line = row
            .line
            .get()
            .map_or("", |l| lines[l as usize].line_id.as_str());
        (row.earned_cycle, line)
    };
    let one_recipient = |p: u32, mut prior: Vec<Pool<'a>>| -> Vec<Pool<'a>> {
        // (key, first-row key, row), sorted: each run of equal keys is one pool, its first
        // element the pool's earliest row of this cycle.
        let mut items: Vec<(PoolKey<'a>, (Cycle, &'a str), u32)> = earning
            .of(p)
            .iter()
            .filter_map(|&i| {
                let order = order_of(i)?;
                let row = &rows[i as usize];
                Some((
                    PoolKey {
                        hash: order_hash(order),
                        order,
                        lever: row.lever,
                        partner: row.partner,
                        currency: row.currency,
                    },
                    first_key(i),
                    i,
                ))
            })
            .collect();
        items.sort_unstable();
        prior.sort_unstable_by_key(|pool| pool.key);
        let mut out: Vec<Pool<'a>> = Vec::with_capacity(prior.len() + items.len());
        let mut prior = prior.into_iter().peekable();
        let mut k = 0;
        while k < items.len() {
            let (key, first, earliest) = items[k];
            let mut earned = Decimal::ZERO;
            while k < items.len() && items[k].0 == key {
                earned += rows[items[k].2 as usize].amount;
                k += 1;
            }
            while let Some(old) = prior.next_if(|old| old.key < key) {
                out.push(old);
            }
            let row = &rows[earliest as usize];
            // A pool of both keeps the earlier cycles' sums and the earliest first row.
            let mut pool = match prior.next_if(|old| old.key == key) {
                Some(mut old) => {
                    old.earned += earned;
                    if first < old.first {
                        old.first = first;
                        old.rate = rates.get(row.rate);
                        old.rule = row.rule;
                    }
                    old
                }
                None => Pool {
                    key,
                    earned,
                    clawed: Decimal::ZERO,
                    first,
                    rate: rates.get(row.rate),
                    rule: row.rule,
                    earned_now: Decimal::ZERO,
                    clawed_now: Decimal::ZERO,
                    first_now: NO_ROW,
                },
            };
            pool.earned_now = earned;
            pool.first_now = earliest;
            out.push(pool);
        }
        out.extend(prior);
        out
    };
    let mut pools: Vec<Pool<'a>> = Vec::with_capacity(
        prior_count
            + (0..partners as u32)
                .map(|p| earning.of(p).len())
                .sum::<usize>(),
    );
    let recipients: Vec<u32> = (0..partners as u32).collect();
    for window in recipients.chunks(PARTNERS_PER_WINDOW) {
        let priors: Vec<Vec<Pool<'a>>> = window
            .iter()
            .map(|&p| std::mem::take(&mut prior_of[p as usize]))
            .collect();
        let built: Vec<Vec<Pool<'a>>> = window
            .par_iter()
            .zip(priors)
            .map(|(&p, prior)| one_recipient(p, prior))
            .collect();
        for b in built {
            pools.extend(b);
        }
    }
    let mut index: Vec<(u64, u32)> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key.hash, i as u32))
        .collect();
    index.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| pools[a.1 as usize].key.cmp(&pools[b.1 as usize].key))
    });
    Pools { pools, index }
}

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
    let mut by_partner: Vec<Vec<u32>> = vec![Vec::new(); bundle.partners.len()];
    for i in 0..lines.len() {
        if !lines[i].is_negative() {
            by_partner[lines[i].partner.0 as usize].push(i as u32);
        }
    }
    let positives: usize = by_partner.iter().map(Vec::len).sum();
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
    let evaluate_window = |window: &[Vec<u32>]| -> Vec<Partition> {
        window
            .par_iter()
            .map(|indices| {
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
    for window in by_partner.chunks(PARTNERS_PER_WINDOW) {
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

/// Σ of amounts per key, for tiers and caps.
fn sum_by<K: Ord>(items: impl Iterator<Item = (K, Decimal)>) -> BTreeMap<K, Decimal> {
    let mut sums = BTreeMap::new();
    for (k, v) in items {
        *sums.entry(k).or_insert(Decimal::ZERO) += v;
    }
    sums
}

impl<'a> Context<'a, '_> {
    /// Tier rows: one per partner and currency on the gross base of the lever it is on, plus
    /// the base of lines excluded by an exclusion that counts toward the tier.
    fn tiers(&self, rows: &mut Vec<LedgerRow>, outcomes: &[Outcome]) {
        let lines = &self.bundle.bill_lines;
        let any_counts = self.rules.exclusions.iter().any(|e| e.counts_toward_tier);
        for (li, lever) in self.rules.levers.iter().enumerate() {
            let (LeverKind::Tier, Some(of)) = (lever.kind, lever.total_of) else {
                continue;
            };
            let excluded: Vec<((PartnerIdx, Currency), Decimal)> = if any_counts {
                (0..lines.len() as u32)
                    .into_par_iter()
                    .filter(|&i| {
                        outcomes[i as usize].fate == Fate::Excluded
                            && !lines[i as usize].is_negative()
                    })
                    .filter_map(|i| {
                        let line = &lines[i as usize];
                        let base = self.excluded_tier_base(i, of)?;
                        Some(((line.partner, line.currency), base))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let totals = sum_by(
                rows.iter()
                    .filter(|r| {
                        r.lever as usize == of && r.kind == Kind::Earn && r.line.get().is_some()
                    })
                    .map(|r| ((r.partner, r.currency), r.base))
                    .chain(excluded),
            );
            for ((partner, currency), total) in totals {
                let Some((ri, rule)) = lever
                    .rules
                    .iter()
                    .enumerate()
                    .find(|(ri, _)| self.partner_rule_holds(li, *ri, partner))
                else {
                    continue;
                };
                let Some(raw) = rule.tiers.as_ref().and_then(|t| t.amount(total, currency)) else {
                    continue;
                };
                let amount = self.rules.rounding.round(raw, currency);
                if amount.is_zero() {
                    continue;
                }
                rows.push(LedgerRow {
                    line: OptionalIndex::NONE,
                    partner,
                    lever: li as u16,
                    rule: RuleRef::rule(ri),
                    kind: Kind::Tier,
                    earned_cycle: self.cycle,
                    credit_cycle: self.cycle,
                    base: total,
                    rate: RateId::NONE,
                    amount,
                    currency,
                    ref_id: OptionalIndex::NONE,
                });
            }
        }
    }

    /// Cap rows: a lever's net credited total this cycle, per partner and currency, held to
    /// its cap by one negative row.
    fn caps(&self, rows: &mut Vec<LedgerRow>, carried: &[CarriedRow]) {
        for (li, lever) in self.rules.levers.iter().enumerate() {
            if lever.cap.is_empty() {
                continue;
            }
            let carried_in = carried
                .iter()
                .filter(|c| c.lever == lever.name)
                .filter(|c| {
                    matches!(
                        c.kind,
                        Kind::Earn | Kind::Clawback | Kind::Override | Kind::Tier
                    )
                })
                .filter_map(|c| {
                    let (partner, _) = self.bundle.partners.get(&c.partner_id)?;
                    Some(((partner, c.currency), c.amount))
                });
            let nets = sum_by(
                carried_in.chain(
                    rows.iter()
                        .filter(|r| r.lever as usize == li && r.credit_cycle == self.cycle)
                        .filter(|r| {
                            matches!(
                                r.kind,
                                Kind::Earn | Kind::Clawback | Kind::Override | Kind::Tier
                            )
                        })
                        .map(|r| ((r.partner, r.currency), r.amount)),
                ),
            );
            for ((partner, currency), net) in nets {
                let Some(&cap) = lever.cap.get(&currency) else {
                    continue;
                };
                if net > cap {
                    rows.push(LedgerRow {
                        line: OptionalIndex::NONE,
                        partner,
                        lever: li as u16,
                        rule: RuleRef::CAP,
                        kind: Kind::Cap,
                        earned_cycle: self.cycle,
                        credit_cycle: self.cycle,
                        base: net,
                        rate: RateId::NONE,
                        amount: self.rules.rounding.round(cap - net, currency),
                        currency,
                        ref_id: OptionalIndex::NONE,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
