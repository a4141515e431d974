//! Rejected input rows: where (file, row, column), what (the raw value) and why (a stable code).
//!
//! Codes are stable snake_case names that scripts may match on; the detail after them is for people.
//! Within one row the first failing check wins, checks running in the column order of SPEC
//! Appendix A, so a row is rejected once, at its first fault.

use std::fmt;
use strum::IntoStaticStr;

/// Why a row was rejected. The table in `README.md` ("Reject codes") documents each code.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    IntoStaticStr,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The row has more or fewer fields than the header.
    FieldCount,
    /// A required cell is blank.
    MissingValue,
    /// An id does not match `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    BadId,
    /// Not a decimal of the form `-?[0-9]+(\.[0-9]{1,8})?`.
    BadDecimal,
    /// More decimal places than the column allows.
    TooManyDecimals,
    /// 10^12 or more in magnitude: beyond any real bill line, and a bound that keeps sums exact.
    AmountOutOfRange,
    /// Not an ISO 8601 date-time with an offset.
    BadTimestamp,
    /// An instant written finer than a microsecond (more than 6 fractional-second digits).
    TimestampTooPrecise,
    /// Not a `YYYY-MM-DD` calendar date.
    BadDate,
    /// `bill_cycle` is not `YYYY-MM` or not the cycle being run.
    WrongCycle,
    /// Not one of the words (or vendor codes) the column takes.
    UnknownCode,
    /// Not an ISO 4217 currency code in use.
    BadCurrency,
    /// The partner is missing from, or rejected in, `partners.csv`.
    UnknownPartner,
    /// The id was already used by an earlier row of the same file.
    DuplicateId,
    /// The amount has a sign the bill type does not allow.
    WrongSign,
    /// The customer-coupon amount has the other sign or exceeds the payable amount.
    CouponExceedsPayable,
    /// An amount that must be greater than zero is not.
    NotPositive,
    /// A voucher balance below zero or above its face value.
    BalanceOutOfRange,
    /// A period that ends before it starts.
    WindowReversed,
    /// A voucher held by a partner that cannot hold vouchers (only solution providers and resellers).
    VoucherOwnerInvalid,
    /// The reseller side of a link is not a reseller.
    NotAReseller,
    /// The distributor side of a link is not a distributor.
    NotADistributor,
    /// A link between partners of different business regions (seed 2).
    CrossRegionLink,
    /// A reseller linked to two distributors at once (seed 2); the later-starting link is rejected.
    OverlappingLink,
    /// A `service_scope` entry is blank (e.g. `a;;b`).
    BadServiceScope,
    /// A withdrawal larger than the balance available when it was submitted.
    OverWithdrawal,
    /// An opening balance outside a chain's first cycle.
    NotFirstCycle,
    /// A voucher whose opening balance disagrees with the previous cycle's closing balance.
    OpeningDisagrees,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One rejected row, as written to `rejects.csv`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// Input file name, e.g. `bill_lines.csv`.
    pub file: &'static str,
    /// Record number, the header being row 1.
    pub row: u64,
    pub column: &'static str,
    /// The cell as read, unaltered.
    pub value: String,
    pub code: RejectCode,
    /// Words for the analyst, naming the figures involved.
    pub detail: String,
}

/// A [`Reject`] as read back from a shard's part (its names interned).
#[derive(serde::Deserialize)]
struct RejectRecord {
    file: String,
    row: u64,
    column: String,
    value: String,
    code: RejectCode,
    detail: String,
}

impl<'de> serde::Deserialize<'de> for Reject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reject, D::Error> {
        let r = RejectRecord::deserialize(d)?;
        Ok(Reject {
            file: crate::serial::intern(&r.file),
            row: r.row,
            column: crate::serial::intern(&r.column),
            value: r.value,
            code: r.code,
            detail: r.detail,
        })
    }
}

impl Reject {
    /// The `reason` column: the code, then the detail.
    pub fn reason(&self) -> String {
        if self.detail.is_empty() {
            self.code.as_str().to_string()
        } else {
            format!("{}: {}", self.code.as_str(), self.detail)
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} row {}, column {}, value {:?}: {}",
            self.file,
            self.row,
            self.column,
            self.value,
            self.reason()
        )
    }
}
