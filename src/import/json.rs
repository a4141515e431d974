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
    amount_text(&text, field).map(Some)
}

/// An amount from its text (a JSON number's, a string's or a CSV cell's), exactly.
pub fn amount_text(text: &str, field: &str) -> Result<Decimal, Refusal> {
    let refuse = |why: &str| Refusal::value(field, text, why);
    match parse_decimal(text, INPUT_SCALE_MAX) {
        Ok(d) => Ok(d),
        Err(DecimalError::TooManyPlaces { places, .. }) => Err(refuse(&format!(
            "{places} decimal places; at most {INPUT_SCALE_MAX}"
        ))),
        Err(DecimalError::OutOfRange) => Err(refuse("10^12 or more")),
        Err(DecimalError::NotDecimal) if has_exponent(text) => Err(refuse(
            "an amount written with an exponent (re-export it as plain decimals)",
        )),
        Err(DecimalError::NotDecimal) => Err(refuse("not a decimal amount")),
    }
}

/// A number written with an exponent (`5e+04`, `-1.5E-3`): a mantissa, `e` or `E`, an
/// optionally signed integer. `true` or `yes` hold an `e` but are not numbers.
fn has_exponent(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return false;
    };
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((i, f)) => digits(i) && (f.is_empty() || digits(f)),
        None => digits(mantissa),
    };
    mantissa_ok && digits(exponent)
}

/// A response body must be one: the vendor's error body (`error_code`, `error_msg`) saved in its
/// place, or an object with neither a total nor a list of records, would read as a page of no
/// records and its records would vanish without a word.
pub fn check_body(body: &str) -> Result<(), Refusal> {
    let Ok(fields) = serde_json::from_str::<std::collections::BTreeMap<String, Raw>>(body) else {
        return Ok(()); // not an object: the response's own reader says why
    };
    if let Some(code) = fields.get("error_code").and_then(text) {
        let message = fields.get("error_msg").and_then(text);
        return Err(Refusal::value(
            "error_code",
            &code,
            &format!(
                "an error response ({}), not the API's records: ask again",
                message.unwrap_or_default()
            ),
        ));
    }
    let is_list = |raw: &Raw| {
        raw.as_ref()
            .is_some_and(|r| r.get().trim_start().starts_with('['))
    };
    let has_total = ["total_count", "count"]
        .iter()
        .any(|k| fields.get(*k).is_some_and(|t| text(t).is_some()));
    if !has_total && !fields.values().any(is_list) {
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        return Err(Refusal::value(
            "response",
            &keys.join(", "),
            "neither a total_count nor a list of records: not a response of this API",
        ));
    }
    Ok(())
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
    fn amounts_at_the_edges_of_the_json_number_syntax() {
        // -0 and -0.00 are zero; a number and a string of the same text are the same amount.
        for zero in ["-0", "-0.00", "\"-0\"", "0"] {
            assert!(
                amount(&raw(zero), "x").unwrap().unwrap().is_zero(),
                "{zero}"
            );
        }
        assert_eq!(
            amount(&raw("100.10"), "x").unwrap(),
            amount(&raw("\"100.10\""), "x").unwrap()
        );
        // 0.1000000001 has 10 places: refused, not rounded to 0.1.
        let err = amount(&raw("0.1000000001"), "x").unwrap_err();
        assert!(err.why.contains("10 decimal places"), "{err:?}");
        // 999,999,999,999.99999999 is the largest amount; a long integer is refused, not wrapped
        // or read through a float (1e21 as f64 would be 1000000000000000000000).
        assert_eq!(
            amount(&raw("999999999999.99999999"), "x")
                .unwrap()
                .unwrap()
                .to_string(),
            "999999999999.99999999"
        );
        let err = amount(&raw("123456789012345678901234567890123456789"), "x").unwrap_err();
        assert_eq!(err.why, "10^12 or more");
        // Exponents in every form are named as exponents; words with an `e` are not numbers.
        for exp in ["1e2", "1E+2", "-1.5e-3", "\"5e+04\"", "\"1.e2\""] {
            assert!(
                amount(&raw(exp), "x").unwrap_err().why.contains("exponent"),
                "{exp}"
            );
        }
        for word in ["true", "\"yes\"", "\"e\"", "\"1e\"", "{\"e\": 1}"] {
            assert_eq!(
                amount(&raw(word), "x").unwrap_err().why,
                "not a decimal amount",
                "{word}"
            );
        }
    }

    #[test]
    fn shanghai_dates_of_instants() {
        // 16:30 UTC on 31 March is 00:30 on 1 April at UTC+8.
        let t = required_instant(&raw("\"2025-03-31T16:30:00Z\""), "t").unwrap();
        assert_eq!(shanghai_date(t).to_string(), "2025-04-01");
        // One second earlier is 23:59:59 on 31 March there.
        let t = required_instant(&raw("\"2025-03-31T15:59:59Z\""), "t").unwrap();
        assert_eq!(shanghai_date(t).to_string(), "2025-03-31");
        // An instant written with its own offset is the same instant.
        let t = required_instant(&raw("\"2025-04-01T00:30:00+08:00\""), "t").unwrap();
        assert_eq!(shanghai_date(t).to_string(), "2025-04-01");
    }

    #[test]
    fn only_yuan_is_a_money_unit() {
        assert!(yuan(&raw("1"), "measure_id").is_ok());
        assert!(yuan(&raw("\"1\""), "measure_id").is_ok());
        assert!(yuan(&raw("3"), "measure_id").is_err());
    }
}
