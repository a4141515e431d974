//! Stage 2: the rule set. Reads every `*.toml` of a rules folder (format: `rules/README.md`),
//! checks it, and compiles it into typed policy for the evaluation stage. Policy numbers, product
//! codes and time zones live in the files, never here.

mod check;
pub(crate) mod condition;
mod format;

pub use condition::Condition;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::model::Currency;

/// A problem found in a rule set, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line and column; 0 when the problem concerns the whole set.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Every problem of a rule set that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// How amounts are rounded: once per ledger row, to the currency's scale.
#[derive(Debug, Clone)]
pub struct Rounding {
    pub mode_name: String,
    strategy: RoundingStrategy,
    default_scale: u32,
    per_currency: BTreeMap<Currency, u32>,
}

impl Rounding {
    pub fn scale(&self, currency: Currency) -> u32 {
        self.per_currency
            .get(&currency)
            .copied()
            .unwrap_or(self.default_scale)
    }

    /// The one place amounts are rounded. Zero is always +0, never −0.00.
    pub fn round(&self, amount: Decimal, currency: Currency) -> Decimal {
        let mut rounded = amount.round_dp_with_strategy(self.scale(currency), self.strategy);
        if rounded.is_zero() {
            rounded.set_sign_positive(true);
        }
        rounded
    }
}

/// An amount a rate applies to: a signed sum of bill-line amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseExpr {
    pub text: String,
    pub terms: Vec<(bool, AmountField)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountField {
    Payable,
    Coupon,
    Settlement,
}

impl AmountField {
    pub fn of(self, line: &crate::model::BillLine) -> Decimal {
        match self {
            AmountField::Payable => line.payable_amount,
            AmountField::Coupon => line.coupon_amount,
            AmountField::Settlement => line.settlement_amount,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AmountField::Payable => "payable_amount",
            AmountField::Coupon => "coupon_amount",
            AmountField::Settlement => "settlement_amount",
        }
    }
}

impl BaseExpr {
    pub fn of(&self, line: &crate::model::BillLine) -> Decimal {
        self.terms
            .iter()
            .fold(Decimal::ZERO, |sum, (negative, field)| {
                let value = field.of(line);
                if *negative { sum - value } else { sum + value }
            })
    }
}

/// When a credit moves to the next cycle.
#[derive(Debug, Clone)]
pub struct Timing {
    pub name: String,
    pub next_cycle: Vec<NextCycle>,
}

#[derive(Debug, Clone)]
pub struct NextCycle {
    pub reason: String,
    pub when: Option<Condition>,
    /// Time of day on the cycle's last day, and its zone.
    pub cutoff: Option<(NaiveTime, Tz)>,
}

#[derive(Debug, Clone)]
pub struct Exclusion {
    pub id: String,
    pub reason: String,
    pub explanation: String,
    pub when: Condition,
    /// Trade dates it holds on, both ends inclusive (None: open).
    pub window_from: Option<NaiveDate>,
    pub window_to: Option<NaiveDate>,
    /// A refund or negative line it matches claws nothing back.
    pub stops_clawback: bool,
    /// The base of a line it excludes still counts toward a tier on the lever that would
    /// have earned on it.
    pub counts_toward_tier: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeverKind {
    Line,
    Override,
    Tier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierMode {
    Marginal,
    Whole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub from: Decimal,
    pub to: Option<Decimal>,
    pub rate: Decimal,
}

#[derive(Debug, Clone)]
pub struct Tiers {
    pub mode: TierMode,
    pub bands: BTreeMap<Currency, Vec<Band>>,
}

impl Tiers {
    /// The unrounded tier amount on `total`, or None when the currency has no bands.
    pub fn amount(&self, total: Decimal, currency: Currency) -> Option<Decimal> {
        let bands = self.bands.get(&currency)?;
        Some(match self.mode {
            TierMode::Marginal => bands
                .iter()
                .filter(|b| total > b.from)
                .map(|b| (b.to.map_or(total, |to| total.min(to)) - b.from) * b.rate)
                .sum(),
            TierMode::Whole => bands
                .iter()
                .rev()
                .find(|b| total >= b.from)
                .map_or(Decimal::ZERO, |b| total * b.rate),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub priority: i64,
    pub rate: Option<Decimal>,
    pub tiers: Option<Tiers>,
    pub when: Condition,
    pub window_from: Option<NaiveDate>,
    pub window_to: Option<NaiveDate>,
}

impl Rule {
    pub fn in_window(&self, date: NaiveDate) -> bool {
        self.window_from.is_none_or(|f| f <= date) && self.window_to.is_none_or(|t| date <= t)
    }
}

impl Exclusion {
    pub fn in_window(&self, date: NaiveDate) -> bool {
        self.window_from.is_none_or(|f| f <= date) && self.window_to.is_none_or(|t| date <= t)
    }
}

#[derive(Debug, Clone)]
pub struct Lever {
    pub name: String,
    pub description: String,
    pub kind: LeverKind,
    pub base: Option<BaseExpr>,
    /// Index into `RuleSet::timings`.
    pub credit: Option<usize>,
    /// Indices into `RuleSet::levers`.
    pub stacks_on: Vec<usize>,
    pub total_of: Option<usize>,
    pub cap: BTreeMap<Currency, Decimal>,
    /// By priority, lowest first.
    pub rules: Vec<Rule>,
}

/// What orders a voucher's candidates for a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherKey {
    RestrictedFirst,
    ExpiresAt,
    IssuedAt,
    VoucherId,
}

#[derive(Debug, Clone)]
pub struct VoucherPolicy {
    pub eligible: Condition,
    pub candidate_order: Vec<VoucherKey>,
}

#[derive(Debug, Clone)]
pub struct BalancePolicy {
    pub notification_day: u32,
    pub exit_grace_years: u32,
    pub report_windows: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct SubsidyPolicy {
    pub lever: String,
    pub rate: Decimal,
    pub qualifying_tags: Vec<String>,
    /// Per market: (currency, threshold).
    pub thresholds: BTreeMap<crate::model::Market, (Currency, Decimal)>,
    pub cap: BTreeMap<Currency, Decimal>,
}

/// A checked, compiled rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: String,
    pub description: String,
    /// sha256 over the files' canonical content (see [`hash_files`]).
    pub hash: String,
    pub files: Vec<String>,
    pub time_zone: Tz,
    pub rounding: Rounding,
    pub timings: Vec<Timing>,
    pub exclusions: Vec<Exclusion>,
    pub levers: Vec<Lever>,
    pub vouchers: Option<VoucherPolicy>,
    pub balances: Option<BalancePolicy>,
    pub subsidy: Option<SubsidyPolicy>,
    /// What the check accepted but a person should look at (e.g. a rate above 100 %).
    pub warnings: Vec<Problem>,
}

/// Hex digits of the rule-set hash written on each ledger row (SPEC Appendix B); the full
/// digest is in `manifest.json`, `status` and the state.
pub const SHORT_HASH_DIGITS: usize = 16;

/// The first [`SHORT_HASH_DIGITS`] of a rule-set hash (the whole text if shorter), as ledger
/// rows carry it: also a carried row that an older release stored with the full digest.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..SHORT_HASH_DIGITS).unwrap_or(hash)
}

impl RuleSet {
    /// The hash as ledger rows carry it.
    pub fn short_hash(&self) -> &str {
        short_hash(&self.hash)
    }

    pub fn lever_index(&self, name: &str) -> Option<usize> {
        self.levers.iter().position(|l| l.name == name)
    }
}

/// Reads and checks the rule set in `dir`. Every problem found is returned, not only the first.
pub fn load_rules(dir: &Path) -> Result<RuleSet, Problems> {
    let display = dir.display().to_string();
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(Problems(vec![Problem {
                file: display,
                line: 0,
                column: 0,
                message: format!("cannot read the rules folder: {e}"),
            }]));
        }
    };
    entries.sort();
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((name, text)),
            Err(e) => problems.push(Problem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if sources.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: display.clone(),
            line: 0,
            column: 0,
            message: "no *.toml rule files in this folder".into(),
        });
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    check::compile(&display, &sources, hash_files(&sources))
}

/// The rule set's hash: sha256 over each file's name and content in name order, with line endings
/// normalised to `\n` and trailing whitespace of each line removed, so a re-saved file with the
/// same rules keeps its hash.
pub fn hash_files(sources: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, text) in sources {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        for line in text.lines() {
            hasher.update(line.trim_end().as_bytes());
            hasher.update(b"\n");
        }
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The one-screen summary `incentives check` prints.
pub fn summary(set: &RuleSet) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "rule set {:?}: ok", set.name);
    let _ = writeln!(out, "hash {}", set.hash);
    let _ = writeln!(out, "files: {}", set.files.join(", "));
    let _ = writeln!(
        out,
        "time zone {}; rounding {} to {} places{}",
        set.time_zone,
        set.rounding.mode_name,
        set.rounding.default_scale,
        set.rounding
            .per_currency
            .iter()
            .map(|(c, s)| format!(", {c} {s}"))
            .collect::<String>()
    );
    for t in &set.timings {
        let reasons: Vec<&str> = t.next_cycle.iter().map(|n| n.reason.as_str()).collect();
        let _ = writeln!(
            out,
            "timing {}: next cycle when {}",
            t.name,
            reasons.join(" or ")
        );
    }
    for e in &set.exclusions {
        let refunds = if e.stops_clawback {
            "refunds it matches claw nothing back"
        } else {
            "refunds it matches are still clawed back"
        };
        let tier = if e.counts_toward_tier {
            "; its base still counts toward the tier"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "exclusion {} ({}): {}; {refunds}{tier}",
            e.id, e.reason, e.explanation
        );
    }
    for lever in &set.levers {
        let kind = match lever.kind {
            LeverKind::Line => "line",
            LeverKind::Override => "override",
            LeverKind::Tier => "tier",
        };
        let mut extra = String::new();
        if !lever.stacks_on.is_empty() {
            let names: Vec<&str> = lever
                .stacks_on
                .iter()
                .map(|&i| set.levers[i].name.as_str())
                .collect();
            let _ = write!(extra, ", stacks on {}", names.join(", "));
        }
        if let Some(t) = lever.total_of {
            let _ = write!(extra, ", on the total of {}", set.levers[t].name);
        }
        if let Some(b) = &lever.base {
            let _ = write!(extra, ", base {}", b.text);
        }
        for (c, cap) in &lever.cap {
            let _ = write!(extra, ", cap {cap} {c}");
        }
        let _ = writeln!(out, "lever {} ({kind}{extra})", lever.name);
        for rule in &lever.rules {
            let rate = match (&rule.rate, &rule.tiers) {
                (Some(r), _) => format!("rate {r}"),
                (None, Some(t)) => format!(
                    "{} tiers in {}",
                    if t.mode == TierMode::Marginal {
                        "marginal"
                    } else {
                        "whole"
                    },
                    t.bands
                        .keys()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => String::new(),
            };
            let window = match (rule.window_from, rule.window_to) {
                (None, None) => String::new(),
                (f, t) => format!(
                    ", {} to {}",
                    f.map_or("…".to_string(), |d| d.to_string()),
                    t.map_or("…".to_string(), |d| d.to_string())
                ),
            };
            let _ = writeln!(out, "  {:>4}  {}  {rate}{window}", rule.priority, rule.id);
        }
    }
    out
}
