//! Reading the vendor's JSON exactly: amounts from the text of the JSON number or string (never
//! through a float), codes from either form, instants as UTC and their Asia/Shanghai dates.
//!
//! Fields are captured as [`RawValue`] (serde_json's `raw_value` feature): the bytes of the value
//! as the file holds them, so `0.1` stays `0.1` and `5e+04` can be seen and refused.

use super::Refusal;
use crate::money::{DecimalError, INPUT_SCALE_MAX, parse_decimal};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// A field as the response holds it (absent and `null` are both `None`).
pub type Raw = Option<Box<RawValue>>;

/// The text of a raw value: a JSON string's contents (escapes decoded), a number's digits, or
/// `None` for an absent field or `null`.
pub fn text(raw: &Raw) -> Option<String> {
    let raw = raw.as_ref()?.get().trim();
    if raw == "null" {
        return None;
    }
    if raw.starts_with('"') {
        return serde_json::from_str::<String>(raw).ok();
    }
    Some(raw.to_string())
}

/// An amount from a number or a string, exactly: an exponent, more than 8 decimal places or
/// anything but `-?digits(.digits)?` is a [`Refusal`] naming the value.
pub fn amount(raw: &Raw, field: &str) -> Result<Option<Decimal>, Refusal> {
    let Some(text) = text(raw) else {
        return Ok(None);
    };
    let refuse = |why: &str| Refusal::value(field, &text, why);
    if text.contains(['e', 'E']) {
        return Err(refuse(
            "an amount written with an exponent (re-export it as plain decimals)",
        ));
    }
    match parse_decimal(&text, INPUT_SCALE_MAX) {
        Ok(d) => Ok(Some(d)),
        Err(DecimalError::TooManyPlaces { places, .. }) => Err(refuse(&format!(
            "{places} decimal places; at most {INPUT_SCALE_MAX}"
        ))),
        Err(DecimalError::OutOfRange) => Err(refuse("10^12 or more")),
        Err(DecimalError::NotDecimal) => Err(refuse("not a decimal amount")),
    }
}

/// An amount that must be there (blank is refused).
pub fn required_amount(raw: &Raw, field: &str) -> Result<Decimal, Refusal> {
    amount(raw, field)?.ok_or_else(|| Refusal::value(field, "", "missing"))
}

/// An amount that defaults to zero when absent.
pub fn amount_or_zero(raw: &Raw, field: &str) -> Result<Decimal, Refusal> {
    Ok(amount(raw, field)?.unwrap_or(Decimal::ZERO))
}

/// A code or id written as a number or a string; blank and absent are `None`.
pub fn code(raw: &Raw) -> Option<String> {
    text(raw).filter(|t| !t.is_empty())
}

/// A code or id that must be there.
pub fn required(raw: &Raw, field: &str) -> Result<String, Refusal> {
    code(raw).ok_or_else(|| Refusal::value(field, "", "missing"))
}

/// An instant (`2026-10-31T16:05:00Z`); blank is `None`, anything else unreadable is refused.
pub fn instant(raw: &Raw, field: &str) -> Result<Option<DateTime<Utc>>, Refusal> {
    let Some(text) = code(raw) else {
        return Ok(None);
    };
    crate::calendar::parse_instant(&text)
        .map(Some)
        .ok_or_else(|| Refusal::value(field, &text, "not an instant with an offset"))
}

/// An instant that must be there.
pub fn required_instant(raw: &Raw, field: &str) -> Result<DateTime<Utc>, Refusal> {
    instant(raw, field)?.ok_or_else(|| Refusal::value(field, "", "missing"))
}

/// The calendar date of an instant in Asia/Shanghai (huawei-fields.md: `2025-03-31T16:30:00Z`
/// is 2025-04-01 there).
pub fn shanghai_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
}

/// The money unit of a model that carries one: only 1 (yuan) is accepted; absent is yuan.
pub fn yuan(raw: &Raw, field: &str) -> Result<(), Refusal> {
    match code(raw) {
        None => Ok(()),
        Some(unit) if unit == "1" => Ok(()),
        Some(unit) => Err(Refusal::value(
            field,
            &unit,
            "a money unit other than 1 (yuan); jiao (2) and fen (3) are refused",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Raw {
        serde_json::from_str::<Raw>(json).unwrap()
    }

    #[test]
    fn amounts_are_read_from_the_text_exactly() {
        // 0.1 + 0.2 as floats is 0.30000000000000004; from the text it is 0.3 exactly.
        let a = amount(&raw("0.1"), "x").unwrap().unwrap();
        let b = amount(&raw("\"0.2\""), "x").unwrap().unwrap();
        assert_eq!((a + b).to_string(), "0.3");
        // 8 places are kept digit for digit.
        let c = amount(&raw("-1234.56789012"), "x").unwrap().unwrap();
        assert_eq!(c.to_string(), "-1234.56789012");
        assert_eq!(amount(&raw("null"), "x").unwrap(), None);
    }

    #[test]
    fn exponents_and_ninth_places_are_refused() {
        for bad in [
            "5e+04",
            "\"1E2\"",
            "0.123456789",
            "\"12,00\"",
            "\"\"",
            "true",
        ] {
            let err = amount(&raw(bad), "payment_amount").unwrap_err();
            assert_eq!(err.field, "payment_amount", "{bad}");
        }
    }

    #[test]
    fn shanghai_dates_of_instants() {
        // 16:30 UTC on 31 March is 00:30 on 1 April at UTC+8.
        let t = required_instant(&raw("\"2025-03-31T16:30:00Z\""), "t").unwrap();
        assert_eq!(shanghai_date(t).to_string(), "2025-04-01");
    }

    #[test]
    fn only_yuan_is_a_money_unit() {
        assert!(yuan(&raw("1"), "measure_id").is_ok());
        assert!(yuan(&raw("\"1\""), "measure_id").is_ok());
        assert!(yuan(&raw("3"), "measure_id").is_err());
    }
}
