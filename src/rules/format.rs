//! The rule files as written: serde structures of the TOML format documented in
//! `rules/README.md`. Every table refuses unknown keys, and the values a check may need to point
//! at keep their position in the file (`Spanned`).

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One rule file. A rule set is every `*.toml` file of its folder; each may hold any sections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub ruleset: Option<Spanned<RulesetSection>>,
    pub rounding: Option<Spanned<RoundingSection>>,
    #[serde(default)]
    pub timing: BTreeMap<String, Spanned<TimingSection>>,
    #[serde(default)]
    pub exclusion: Vec<Spanned<ExclusionSection>>,
    #[serde(default)]
    pub lever: Vec<Spanned<LeverSection>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RuleSection>>,
    pub vouchers: Option<Spanned<VoucherSection>>,
    pub balances: Option<Spanned<BalanceSection>>,
    pub subsidy: Option<Spanned<SubsidySection>>,
}

/// Partner vouchers (代金券): which lines they pay for and in which order candidates are drawn.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherSection {
    /// Lines a voucher may pay for (besides settlement amount > 0, always required).
    pub eligible: Option<Spanned<Conditions>>,
    /// Keys ordering a line's candidate vouchers: `restricted_first`, `expires_at`, `issued_at`,
    /// `voucher_id`.
    pub candidate_order: Spanned<Vec<String>>,
}

/// Incentive balances: notification, the term after a partner exits, report windows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSection {
    /// Incentive credited in cycle M is notified on this day of M+1.
    pub notification_day: Spanned<u32>,
    /// After a partner exits its programme, its lots expire this many years later.
    pub exit_grace_years: u32,
    /// Upper bounds in days of the expiry report's windows, ascending.
    pub report_windows: Spanned<Vec<u32>>,
}

/// Project subsidies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsidySection {
    pub lever: String,
    pub rate: Spanned<String>,
    pub qualifying_tags: Vec<String>,
    pub thresholds: Vec<Spanned<Threshold>>,
    #[serde(default)]
    pub cap: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub market: String,
    pub currency: String,
    pub amount: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesetSection {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The zone whose calendar dates every date test uses (programme, tags, links, windows).
    pub time_zone: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundingSection {
    /// `half_up` (half away from zero) or `half_even`.
    pub mode: Spanned<String>,
    /// Decimal places of every currency not listed in `currency_scale`.
    pub scale: u32,
    #[serde(default)]
    pub currency_scale: BTreeMap<String, u32>,
}

/// When a credit moves to the next cycle: the first `next_cycle` entry that holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSection {
    #[serde(default)]
    pub next_cycle: Vec<Spanned<NextCycleSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextCycleSection {
    /// Reason code written on deferred lines, e.g. `on_demand`, `after_cutoff`.
    pub reason: String,
    /// The line matches these conditions.
    pub when: Option<Spanned<Conditions>>,
    /// The trade time is at or after this time of day (`HH:MM:SS`) on the cycle's last day.
    pub cutoff: Option<Spanned<String>>,
    /// The zone of the cut-off (default: the rule set's `time_zone`).
    pub zone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionSection {
    pub id: String,
    /// Stable reason code (e.g. `marketplace_product`).
    pub reason: String,
    /// Words for the analyst.
    pub explanation: String,
    pub when: Option<Spanned<Conditions>>,
    /// Effective window on the trade date, both ends inclusive (default: always).
    pub window: Option<Spanned<DateWindow>>,
    /// Whether a refund or negative line this exclusion matches claws nothing back (default
    /// true). Programme membership gates earning, not clawback: such exclusions say `false`.
    #[serde(default = "yes")]
    pub stops_clawback: bool,
    /// Whether the base of a line this exclusion matches still counts toward a tier lever's
    /// total when the tier's lever would otherwise have earned on it (the vendor's
    /// "performance credit, no rebate"; default false).
    #[serde(default)]
    pub counts_toward_tier: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeverSection {
    pub name: Spanned<String>,
    /// `line` (rows per bill line), `override` (rows for the reseller's distributor) or `tier`
    /// (one partner-level row per cycle and currency on the total of another lever's base).
    pub kind: Spanned<String>,
    /// Amount expression the rate applies to, e.g. `payable_amount - coupon_amount`.
    pub base: Option<Spanned<String>>,
    /// Timing name (a `[timing.NAME]` table) for lines of this lever.
    pub credit: Option<Spanned<String>>,
    /// Earns only on a line that earned one of these levers, for the same partner, and is
    /// credited with it.
    #[serde(default)]
    pub stacks_on: Vec<Spanned<String>>,
    /// For a tier lever: the lever whose gross base the tier applies to.
    pub total_of: Option<Spanned<String>>,
    /// Most a partner can be credited from this lever in one cycle, per currency.
    #[serde(default)]
    pub cap: BTreeMap<String, String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub id: Spanned<String>,
    pub lever: Spanned<String>,
    /// Lower first; the first matching rule of a lever wins. Ties are refused.
    pub priority: Spanned<i64>,
    /// Flat rate, a decimal string (`"0.08"`).
    pub rate: Option<Spanned<String>>,
    /// Tiered rates (tier levers).
    pub tiers: Option<Spanned<TiersSection>>,
    pub when: Option<Spanned<Conditions>>,
    /// Effective window on the trade date, both ends inclusive.
    pub window: Option<Spanned<DateWindow>>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateWindow {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub struct TiersSection {
    /// `marginal` (each band's rate on the part of the total inside it) or `whole` (the rate of
    /// the band the total falls in, on all of it).
    pub mode: String,
    /// Bands per currency; a currency without bands has no tier.
    #[serde(flatten)]
    pub bands: BTreeMap<String, Vec<Band>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub from: String,
    /// Blank on the last band (open above).
    pub to: Option<String>,
    pub rate: String,
}

/// Conditions on a line, its partner and its order; all must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub sales_mode: Option<TextCondition>,
    pub market: Option<TextCondition>,
    pub region: Option<TextCondition>,
    pub service_type_code: Option<TextCondition>,
    pub resource_type_code: Option<TextCondition>,
    pub charge_mode: Option<TextCondition>,
    pub bill_type: Option<TextCondition>,
    pub currency: Option<TextCondition>,
    pub customer_id: Option<TextCondition>,
    pub partner_id: Option<TextCondition>,
    pub partner_type: Option<TextCondition>,
    pub programme: Option<TextCondition>,
    pub partner_market: Option<TextCondition>,
    /// Whether the partner is in its programme on the trade date.
    pub partner_in_programme: Option<bool>,
    /// The partner holds at least one of these capability tags on the trade date.
    pub partner_tags: Option<Vec<String>>,
    /// The type of the line's order in `orders.csv` (a line without one matches no set).
    pub order_type: Option<TextCondition>,
    pub payable_amount: Option<AmountRange>,
    pub coupon_amount: Option<AmountRange>,
    pub settlement_amount: Option<AmountRange>,
}

/// A set of words (`["a", "b"]`) or a table of `in`, `not_in`, `prefix`, `not_prefix`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TextCondition {
    AnyOf(Vec<String>),
    Table(TextTable),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTable {
    #[serde(rename = "in")]
    pub any_of: Option<Vec<String>>,
    pub not_in: Option<Vec<String>>,
    pub prefix: Option<Vec<String>>,
    pub not_prefix: Option<Vec<String>>,
}

/// Inclusive bounds, decimal strings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountRange {
    pub min: Option<String>,
    pub max: Option<String>,
}
