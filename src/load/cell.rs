//! Per-cell checks of SPEC Appendix A. Each returns the typed value or a [`Fault`] naming the
//! column, the raw text and the reason; the file and row are added by the caller.

use super::table::Cell;
use crate::calendar::{INSTANT_DIGITS_MAX, fraction_digits, parse_date, parse_instant};
use crate::model::{Currency, Id};
use crate::money::{DecimalError, INPUT_SCALE_MAX, parse_decimal};
use crate::reject::{Reject, RejectCode};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

/// A failed check on one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub column: &'static str,
    pub value: String,
    pub code: RejectCode,
    pub detail: String,
}

impl Fault {
    pub fn new(cell: Cell<'_>, code: RejectCode, detail: impl Into<String>) -> Fault {
        Fault {
            column: cell.column,
            value: cell.text.to_string(),
            code,
            detail: detail.into(),
        }
    }

    pub fn at(self, file: &'static str, row: u64) -> Reject {
        Reject {
            file,
            row,
            column: self.column,
            value: self.value,
            code: self.code,
            detail: self.detail,
        }
    }
}

pub type Checked<T> = Result<T, Fault>;

/// Whether `text` may serve as an id: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. Ids become file names
/// (`ledgers/<partner_id>.csv`) and spreadsheet cells, so nothing else is let through.
pub fn is_valid_id(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl<'a> Cell<'a> {
    pub fn is_blank(&self) -> bool {
        self.text.is_empty()
    }

    fn missing(self) -> Fault {
        Fault::new(
            self,
            RejectCode::MissingValue,
            format!("{} is required", self.column),
        )
    }

    /// Non-blank text, taken as it is.
    pub fn text(self) -> Checked<&'a str> {
        if self.is_blank() {
            Err(self.missing())
        } else {
            Ok(self.text)
        }
    }

    pub fn id(self) -> Checked<Id> {
        if self.is_blank() {
            return Err(self.missing());
        }
        if !is_valid_id(self.text) {
            return Err(Fault::new(
                self,
                RejectCode::BadId,
                "an id is 1 to 64 of A-Z a-z 0-9 . _ - and starts with a letter or digit",
            ));
        }
        Ok(Id::from(self.text))
    }

    pub fn optional_id(self) -> Checked<Option<Id>> {
        if self.is_blank() {
            Ok(None)
        } else {
            self.id().map(Some)
        }
    }

    /// A word of the column's vocabulary (or a vendor code standing for one).
    pub fn code<T: FromStr>(self, allowed: &str) -> Checked<T> {
        if self.is_blank() {
            return Err(self.missing());
        }
        self.text.parse().map_err(|_| {
            Fault::new(
                self,
                RejectCode::UnknownCode,
                format!("expected one of {allowed}"),
            )
        })
    }

    pub fn decimal(self) -> Checked<Decimal> {
        self.decimal_places(INPUT_SCALE_MAX)
    }

    /// A decimal with at most `max_places` places (withdrawals and lots are whole cents).
    pub fn decimal_places(self, max_places: u32) -> Checked<Decimal> {
        if self.is_blank() {
            return Err(self.missing());
        }
        parse_decimal(self.text, max_places).map_err(|e| match e {
            DecimalError::NotDecimal => Fault::new(
                self,
                RejectCode::BadDecimal,
                "not a decimal: digits with an optional leading '-' and '.', no spaces, separators or exponent",
            ),
            DecimalError::TooManyPlaces { places, max } => Fault::new(
                self,
                RejectCode::TooManyDecimals,
                format!("{places} decimal places; at most {max} allowed"),
            ),
            DecimalError::OutOfRange => {
                Fault::new(self, RejectCode::AmountOutOfRange, "amounts must be below 1,000,000,000,000 in magnitude")
            }
        })
    }

    /// A decimal that may be blank, taking `default` then.
    pub fn decimal_or(self, default: Decimal) -> Checked<Decimal> {
        if self.is_blank() {
            Ok(default)
        } else {
            self.decimal()
        }
    }

    pub fn instant(self) -> Checked<DateTime<Utc>> {
        if self.is_blank() {
            return Err(self.missing());
        }
        let t = parse_instant(self.text).ok_or_else(|| {
            Fault::new(
                self,
                RejectCode::BadTimestamp,
                "not an ISO 8601 date-time with an offset, e.g. 2026-10-31T16:05:00Z or 2026-11-01T00:05:00+08:00",
            )
        })?;
        // Even trailing zeros: the export claims a precision the outputs cannot keep.
        let digits = fraction_digits(self.text);
        if digits > INSTANT_DIGITS_MAX {
            return Err(Fault::new(
                self,
                RejectCode::TimestampTooPrecise,
                format!(
                    "{digits} fractional-second digits; at most {INSTANT_DIGITS_MAX} (microseconds) allowed"
                ),
            ));
        }
        Ok(t)
    }

    pub fn optional_instant(self) -> Checked<Option<DateTime<Utc>>> {
        if self.is_blank() {
            Ok(None)
        } else {
            self.instant().map(Some)
        }
    }

    pub fn date(self) -> Checked<NaiveDate> {
        if self.is_blank() {
            return Err(self.missing());
        }
        parse_date(self.text).ok_or_else(|| {
            Fault::new(
                self,
                RejectCode::BadDate,
                "not a calendar date written YYYY-MM-DD",
            )
        })
    }

    pub fn optional_date(self) -> Checked<Option<NaiveDate>> {
        if self.is_blank() {
            Ok(None)
        } else {
            self.date().map(Some)
        }
    }

    pub fn currency(self) -> Checked<Currency> {
        if self.is_blank() {
            return Err(self.missing());
        }
        Currency::parse(self.text).ok_or_else(|| {
            Fault::new(
                self,
                RejectCode::BadCurrency,
                "not an ISO 4217 currency code in use (e.g. CNY, USD)",
            )
        })
    }
}

/// A period must not end before it starts.
pub fn check_window<T: PartialOrd + std::fmt::Display>(
    end_cell: Cell<'_>,
    start: T,
    end: Option<T>,
    start_column: &str,
) -> Checked<()> {
    match end {
        Some(end) if end < start => Err(Fault::new(
            end_cell,
            RejectCode::WindowReversed,
            format!("{} {end} is before {start_column} {start}", end_cell.column),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_finer_than_a_microsecond_are_rejected() {
        let cell = |text| Cell {
            column: "trade_time",
            text,
        };
        for ok in [
            "2026-10-31T16:05:00Z",
            "2026-10-31T16:05:00.5Z",
            "2026-11-01T00:05:00.123456+08:00",
        ] {
            assert!(cell(ok).instant().is_ok(), "{ok}");
        }
        for fine in [
            "2026-10-31T16:05:00.1234567Z",
            "2026-11-01T00:05:00.123456789+08:00",
            "2026-10-31T16:05:00.000000000Z",
        ] {
            let fault = cell(fine).instant().unwrap_err();
            assert_eq!(fault.code, RejectCode::TimestampTooPrecise, "{fine}");
            assert_eq!(fault.value, fine);
        }
        // A time that is no instant at all stays a bad timestamp.
        let fault = cell("2026-10-31T16:05:00.1234567").instant().unwrap_err();
        assert_eq!(fault.code, RejectCode::BadTimestamp);
    }

    #[test]
    fn ids_are_safe_file_names() {
        for good in ["P00001", "a", "L2026.10_x-1", &"x".repeat(64)] {
            assert!(is_valid_id(good), "{good:?}");
        }
        for bad in [
            "",
            "-P1",
            ".hidden",
            "../etc",
            "a/b",
            "a b",
            "=cmd",
            "P\u{e9}",
            "a\\b",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}
