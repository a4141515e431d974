//! The domain's records, as the loader hands them to every later stage: typed, validated, exact.
//!
//! Ids that occur once per bill line are `CompactString`s: ids of up to 24 bytes live inline, so ten
//! million lines do not mean tens of millions of small heap allocations.

use chrono::{DateTime, NaiveDate, Utc};
use compact_str::CompactString;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::fmt;
use strum::{EnumString, IntoStaticStr};

/// An id as it appears in the exports (`partner_id`, `line_id`, …), already checked against
/// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub type Id = CompactString;

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PartnerType {
    SolutionProvider,
    Distributor,
    Reseller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Programme {
    SolutionProvider,
    Distribution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Market {
    Cn,
    Intl,
}

/// How the customer came to the partner (seed 7): resale (代售/转售) or referral (顾问销售).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SalesMode {
    Resale,
    Referral,
}

/// Charging mode; the vendor's `charging_mode` codes are accepted too (`domain/huawei-fields.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ChargeMode {
    #[strum(to_string = "yearly_monthly", serialize = "1")]
    YearlyMonthly,
    #[strum(to_string = "on_demand", serialize = "3")]
    OnDemand,
    #[strum(to_string = "reserved", serialize = "10")]
    Reserved,
    #[strum(to_string = "savings_plan", serialize = "11")]
    SavingsPlan,
}

/// Bill/trade type; the vendor's `bill_detail_type` codes are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BillType {
    #[strum(to_string = "new", serialize = "1")]
    New,
    #[strum(
        to_string = "renew",
        serialize = "2",
        serialize = "8",
        serialize = "18",
        serialize = "103"
    )]
    Renew,
    #[strum(to_string = "change", serialize = "3")]
    Change,
    #[strum(
        to_string = "usage",
        serialize = "5",
        serialize = "14",
        serialize = "23"
    )]
    Usage,
    #[strum(
        to_string = "refund",
        serialize = "4",
        serialize = "20",
        serialize = "24"
    )]
    Refund,
    #[strum(
        to_string = "adjustment",
        serialize = "9",
        serialize = "16",
        serialize = "25"
    )]
    Adjustment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum OrderType {
    New,
    Renew,
    Change,
    Unsubscribe,
    Downgrade,
}

/// Status of an incentive application (提取激励, seed 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum WithdrawalStatus {
    Submitted,
    Approved,
    Rejected,
    Revoked,
    Paid,
}

display_as_str!(
    PartnerType,
    Programme,
    Market,
    SalesMode,
    ChargeMode,
    BillType,
    OrderType,
    WithdrawalStatus
);

/// An ISO 4217 currency code, known to be one of the codes in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// ISO 4217 codes in use (without `XTS` and `XXX`, which stand for "no real currency").
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD",
    "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST",
    "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF",
    "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG",
];

impl Currency {
    /// The code, if it is an ISO 4217 code in use.
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        ISO_4217.binary_search(&code).ok().map(|_| Currency(bytes))
    }

    /// The code's three bytes (they sort as the code does).
    pub fn code(&self) -> [u8; 3] {
        self.0
    }

    pub fn as_str(&self) -> &str {
        // Built only from entries of ISO_4217, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl std::str::FromStr for Currency {
    type Err = ();
    fn from_str(code: &str) -> Result<Currency, ()> {
        Currency::parse(code).ok_or(())
    }
}

crate::serial::as_text!(Currency);

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ledger row records (SPEC §5's `kind`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    Earn,
    Clawback,
    Tier,
    Cap,
    Override,
    Subsidy,
    Expiry,
    Withdrawal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Earn => "earn",
            Kind::Clawback => "clawback",
            Kind::Tier => "tier",
            Kind::Cap => "cap",
            Kind::Override => "override",
            Kind::Subsidy => "subsidy",
            Kind::Expiry => "expiry",
            Kind::Withdrawal => "withdrawal",
        }
    }

    /// Kinds that are incentive credited to a cycle (SPEC §6); the others move balances.
    pub fn is_incentive(self) -> bool {
        matches!(
            self,
            Kind::Earn | Kind::Clawback | Kind::Tier | Kind::Cap | Kind::Override
        )
    }
}

/// The lever of rows that no lever of the rule set made: subsidies, withdrawals, expiry.
pub const NO_LEVER: u16 = u16::MAX;

impl std::str::FromStr for Kind {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Kind::Earn,
            Kind::Clawback,
            Kind::Tier,
            Kind::Cap,
            Kind::Override,
            Kind::Subsidy,
            Kind::Expiry,
            Kind::Withdrawal,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or(())
    }
}

/// A partner, as its position among the accepted rows of `partners.csv` (see `load::Partners`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PartnerIdx(pub u32);

/// A low-cardinality code (region, service type, resource type), interned: four bytes a line
/// instead of a string, and cheap to compare and group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u32);

/// The interned codes of a bundle. Codes are numbered in order of first appearance in the file,
/// so the numbering is the same whatever the thread count.
#[derive(Debug, Default, Clone)]
pub struct Codes {
    names: Vec<CompactString>,
    index: FxHashMap<CompactString, Code>,
}

impl Codes {
    pub fn intern(&mut self, name: &str) -> Code {
        if let Some(&code) = self.index.get(name) {
            return code;
        }
        let code = Code(self.names.len() as u32);
        self.names.push(CompactString::from(name));
        self.index.insert(CompactString::from(name), code);
        code
    }

    pub fn name(&self, code: Code) -> &str {
        self.names.get(code.0 as usize).map_or("", |n| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `partners.csv`: a partner and its programme membership.
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    pub partner_id: Id,
    pub name: String,
    pub partner_type: PartnerType,
    pub business_region: String,
    pub market: Market,
    pub programme: Programme,
    pub joined_on: NaiveDate,
    pub exited_on: Option<NaiveDate>,
}

impl Partner {
    /// Programme membership on a date: `joined_on ≤ date < exited_on` (SPEC §3).
    pub fn in_programme_on(&self, date: NaiveDate) -> bool {
        self.joined_on <= date && self.exited_on.is_none_or(|exit| date < exit)
    }
}

/// `bill_lines.csv`: one charge to one customer in the cycle. `official_amount` and
/// `discount_amount` are validated on load but not kept: no stage uses them (SPEC §3). Ten
/// million of these are held at once, so the partner is an index and the codes are interned.
#[derive(Debug, Clone, PartialEq)]
pub struct BillLine {
    pub line_id: Id,
    pub customer_id: Id,
    pub order_id: Option<Id>,
    /// Boxed: set on few lines (refunds naming their order), so 16 bytes a line instead of an
    /// inline id's 24.
    pub original_order_id: Option<Box<str>>,
    pub payable_amount: Decimal,
    pub coupon_amount: Decimal,
    pub settlement_amount: Decimal,
    pub trade_time: DateTime<Utc>,
    /// Record number in `bill_lines.csv`, the header being 1 (32 bits: the loader refuses a
    /// file of more records).
    pub source_row: u32,
    pub partner: PartnerIdx,
    pub region: Code,
    pub service_type_code: Code,
    pub resource_type_code: Code,
    pub currency: Currency,
    pub sales_mode: SalesMode,
    pub market: Market,
    pub charge_mode: ChargeMode,
    pub bill_type: BillType,
}

// Ten million lines are held from load to write: each byte here is 10 MB (SPEC §8). Four ids
// (3 x 24 + 16 boxed), three amounts (3 x 16), the trade time (12), the source row (4), partner
// and codes (4 x 4), currency (3) and four one-byte enums: 175 bytes, aligned to 8.
const _: () = assert!(std::mem::size_of::<BillLine>() <= 176);

impl BillLine {
    /// A refund or a negative line: matched against what orders earned, never `excluded`.
    pub fn is_negative(&self) -> bool {
        self.bill_type == BillType::Refund || self.payable_amount < Decimal::ZERO
    }
}

/// `orders.csv`: the purchase a yearly/monthly line or a refund comes from. Partner, customer,
/// times, amount, currency and project are validated on load but not kept (millions of orders
/// a month): the rules read the order's type and a refund's original order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: Id,
    pub order_type: OrderType,
    pub original_order_id: Option<Id>,
}

/// `vouchers.csv`: a partner voucher (代金券) with its balance at the start of the cycle.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Voucher {
    /// Record number in its file, the header being 1.
    pub source_row: u64,
    pub voucher_id: Id,
    pub partner: PartnerIdx,
    pub voucher_type: String,
    pub face_value: Decimal,
    pub opening_balance: Decimal,
    pub currency: Currency,
    pub issued_at: DateTime<Utc>,
    pub valid_from: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub restricted_customer_id: Option<Id>,
    /// Service type codes the voucher may pay for; empty = any.
    pub service_scope: Vec<CompactString>,
}

/// `distributor_links.csv`: a period during which a reseller is linked to a distributor.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributorLink {
    pub reseller: PartnerIdx,
    pub distributor: PartnerIdx,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// `capability_tags.csv`: a capability tag (能力标签) held over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityTag {
    pub partner: PartnerIdx,
    pub tag: String,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// `projects.csv`: a registered project (项目报备).
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub project_id: Id,
    pub partner: PartnerIdx,
    pub market: Market,
    pub registered_on: NaiveDate,
    pub benefit_applied_on: Option<NaiveDate>,
    pub annual_new_resource_amount: Decimal,
    pub currency: Currency,
}

/// `opening_balances.csv`: an incentive lot notified before the engine's first cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningBalance {
    /// Record number in its file, the header being 1.
    pub source_row: u64,
    pub partner: PartnerIdx,
    pub lot_id: Id,
    pub notified_on: NaiveDate,
    pub currency: Currency,
    pub balance: Decimal,
}

/// `withdrawals.csv`: an incentive application and its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawal {
    /// Record number in its file, the header being 1.
    pub source_row: u64,
    pub application_id: Id,
    pub partner: PartnerIdx,
    pub amount: Decimal,
    pub currency: Currency,
    pub submitted_at: DateTime<Utc>,
    pub status: WithdrawalStatus,
    pub decided_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bill_line_fits_its_memory_budget() {
        // Checked at compile time beside `BillLine`; this names it among the tests.
        const { assert!(std::mem::size_of::<BillLine>() <= 176) };
    }

    #[test]
    fn iso_list_is_sorted_for_binary_search() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn currencies_are_real_iso_codes() {
        assert_eq!(Currency::parse("CNY").unwrap().to_string(), "CNY");
        for bad in ["cny", "CNX", "XXX", "RMB", "US", "USDD", ""] {
            assert!(Currency::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn bss_codes_map_to_words() {
        // domain/huawei-fields.md: charging_mode 1/3/10/11; bill_detail_type codes per type.
        assert_eq!("3".parse::<ChargeMode>(), Ok(ChargeMode::OnDemand));
        assert_eq!("11".parse::<ChargeMode>(), Ok(ChargeMode::SavingsPlan));
        assert_eq!("103".parse::<BillType>(), Ok(BillType::Renew));
        assert_eq!("24".parse::<BillType>(), Ok(BillType::Refund));
        assert_eq!("16".parse::<BillType>(), Ok(BillType::Adjustment));
        assert_eq!("23".parse::<BillType>(), Ok(BillType::Usage));
        assert!("7".parse::<BillType>().is_err());
        assert!("Refund".parse::<BillType>().is_err());
        assert_eq!(BillType::Refund.as_str(), "refund");
        assert_eq!(ChargeMode::YearlyMonthly.as_str(), "yearly_monthly");
    }
}
