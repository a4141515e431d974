//! Ledger rows and line outcomes as evaluation makes them: compact (a row is 64 bytes, ids are
//! indices into the bundle and the rule set), named in full only when written.

use crate::calendar::Cycle;
use crate::model::{Currency, Kind, PartnerIdx};
use crate::rules::RuleSet;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::HashMap;
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

/// A partner-level row that a stage after evaluation returns for the journal: a subsidy, a
/// withdrawal, an expiry; credited in the run's cycle, about `reference` (project, application,
/// lot).
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceRow {
    pub partner: PartnerIdx,
    pub kind: Kind,
    pub rule: RuleRef,
    pub base: Decimal,
    pub rate: Option<Decimal>,
    pub amount: Decimal,
    pub currency: Currency,
    pub reference: String,
}
