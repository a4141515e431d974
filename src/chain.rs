//! What one cycle of the chain leaves to the next (SPEC §4), typed: what each order earned (for
//! later clawbacks), ledger rows credited to a later cycle, incentive lots and their negative
//! remainders, applications applied, and the vouchers' closing balances. The state store reads
//! and writes these; the stages take and return them. It imports no stage.

use crate::calendar::Cycle;
use crate::model::{Currency, Kind, Voucher};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// The columns of a ledger row, in `ledger.csv`'s order (SPEC Appendix B): the journal, the
/// statements and the state's carried rows all hold them.
pub const LEDGER_COLUMNS: &[&str] = &[
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

/// What earlier cycles left that this one needs (from the state store; empty for a first cycle).
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// What each order earned in earlier cycles, net of their clawbacks.
    pub pools: Vec<PriorPool>,
    /// Rows created by earlier runs and credited to this cycle.
    pub carried: Vec<CarriedRow>,
}

/// What an order earned in earlier cycles for one recipient, lever and currency, and the rate
/// and rule of its earliest row (what a refund claws back at).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriorPool {
    pub order_id: String,
    pub lever: String,
    pub recipient: String,
    pub currency: Currency,
    pub earned: Decimal,
    pub clawed: Decimal,
    pub first_cycle: Cycle,
    pub first_line: String,
    pub rate: Option<Decimal>,
    pub rule_id: String,
}

/// A ledger row of an earlier run credited to this cycle. Its ids are as that run wrote them
/// (its lever or rule may be gone from today's rule set); its amounts and cycles typed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CarriedRow {
    pub entry_id: String,
    pub partner_id: String,
    pub customer_id: String,
    pub line_id: String,
    pub order_id: String,
    pub lever: String,
    pub rule_id: String,
    pub kind: Kind,
    pub ref_id: String,
    pub earned_cycle: Cycle,
    pub credit_cycle: Cycle,
    pub base: Decimal,
    pub rate: Option<Decimal>,
    pub amount: Decimal,
    pub currency: Currency,
    pub ruleset_hash: String,
}

/// What this cycle changed in one pool, by name (for the state store).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolDelta<'a> {
    pub order_id: &'a str,
    pub lever: &'a str,
    pub recipient: &'a str,
    pub currency: Currency,
    pub earned: Decimal,
    /// Clawed back this cycle, as a positive amount.
    pub clawed: Decimal,
    /// This cycle's earliest row of the pool: (earned cycle, line id, rate, rule id).
    pub first: Option<(Cycle, &'a str, Option<Decimal>, Cow<'a, str>)>,
}

/// A notified incentive balance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lot {
    pub partner_id: String,
    pub lot_id: String,
    pub currency: Currency,
    pub notified_on: NaiveDate,
    pub balance: Decimal,
}

/// What earlier cycles left: lots, negative remainders, applications already applied.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PriorBalances {
    pub lots: Vec<Lot>,
    /// Per (partner, currency): a negative net not yet offset.
    #[serde(with = "crate::serial::pairs")]
    pub carry: BTreeMap<(String, Currency), Decimal>,
    pub applied: BTreeSet<String>,
}

/// A voucher read back from the state, with its owner's id (resolved against this cycle's
/// partners by the voucher stage).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredVoucher {
    pub voucher: Voucher,
    pub partner_id: String,
}

/// What a cycle closes with, for the next: vouchers (with owner id and closing balance), lots,
/// carries, applications applied.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ClosingBalances {
    pub vouchers: Vec<(Voucher, String, Decimal)>,
    pub lots: Vec<Lot>,
    #[serde(with = "crate::serial::pairs")]
    pub carry: BTreeMap<(String, Currency), Decimal>,
    pub applied: Vec<String>,
}

/// Where the writer hands the journal's rows credited to later cycles, formatted once as CSV
/// records of [`LEDGER_COLUMNS`] exactly as the journal wrote them (the state store keeps them
/// compressed as they come, so they are never all held as text).
pub trait DeferredSink {
    /// Adds `rows` rows credited to `credit_cycle`; a failure is said in words (the sink's own
    /// error, e.g. a full disk under the state folder).
    fn csv_rows(&mut self, credit_cycle: &str, csv: &[u8], rows: u64) -> Result<(), String>;
}
