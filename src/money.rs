//! Exact money: parsing decimal strings straight into `rust_decimal::Decimal` and writing them back.
//!
//! Amounts never pass through a float. The accepted grammar is SPEC §2's `-?[0-9]+(\.[0-9]{1,8})?`,
//! checked byte by byte so that `+1`, `.5`, `5.`, `1e3`, `1,000`, ` 1` and `NaN` are all refused.

use rust_decimal::Decimal;

/// Most decimal places an input amount may carry (SPEC Appendix A, `dec`).
pub const INPUT_SCALE_MAX: u32 = 8;

/// Most integer digits an input amount may carry: every amount is below 10^12 in magnitude, so a
/// sum of up to 10^8 of them still fits a 96-bit decimal at 8 places and can never overflow.
pub const INTEGER_DIGITS_MAX: usize = 12;

/// Why a cell is not an acceptable amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not of the form `-?[0-9]+(\.[0-9]+)?`.
    NotDecimal,
    /// Well formed, but with more decimal places than allowed.
    TooManyPlaces { places: u32, max: u32 },
    /// 10^12 or more in magnitude (see [`INTEGER_DIGITS_MAX`]).
    OutOfRange,
}

/// Parses an input amount exactly, allowing at most `max_places` decimal places.
pub fn parse_decimal(text: &str, max_places: u32) -> Result<Decimal, DecimalError> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let point = digits.iter().position(|&b| b == b'.');
    let (int_part, frac_part) = match point {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &[][..]),
    };
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if int_part.is_empty()
        || !all_digits(int_part)
        || (point.is_some() && frac_part.is_empty())
        || !all_digits(frac_part)
    {
        return Err(DecimalError::NotDecimal);
    }
    let places = frac_part.len() as u32;
    if places > max_places {
        return Err(DecimalError::TooManyPlaces {
            places,
            max: max_places,
        });
    }
    let significant = int_part.iter().skip_while(|&&b| b == b'0').count();
    if significant > INTEGER_DIGITS_MAX {
        return Err(DecimalError::OutOfRange);
    }
    let mut mantissa: i128 = 0;
    for &b in int_part.iter().chain(frac_part) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(b - b'0')))
            .ok_or(DecimalError::OutOfRange)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, places).map_err(|_| DecimalError::OutOfRange)
}

/// [`format_amount`] into a buffer that is reused from row to row.
pub fn write_amount(out: &mut String, amount: Decimal, min_scale: u32) {
    out.clear();
    push_amount(out, amount, min_scale);
}

/// Appends an amount to `out` as [`write_amount`] writes it: the text of `Decimal`'s `Display`,
/// made from the mantissa's digits (every output amount goes through here; `Display` through
/// `fmt` was a tenth of the writing's CPU at 10M lines).
pub fn push_amount(out: &mut String, amount: Decimal, min_scale: u32) {
    let value = padded(amount, min_scale);
    let scale = value.scale() as usize;
    let mantissa = value.mantissa();
    let mut buffer = itoa::Buffer::new();
    // Nearly every amount fits 64 bits, whose digits itoa writes faster than 128 bits'.
    let digits = match u64::try_from(mantissa.unsigned_abs()) {
        Ok(small) => buffer.format(small),
        Err(_) => buffer.format(mantissa.unsigned_abs()),
    };
    if mantissa < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (units, places) = digits.split_at(digits.len() - scale);
        out.push_str(units);
        out.push('.');
        out.push_str(places);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

/// The amount as written: at least `min_scale` places, zero without a sign.
fn padded(amount: Decimal, min_scale: u32) -> Decimal {
    let mut value = amount;
    if value.is_zero() {
        value.set_sign_positive(true);
    }
    if value.scale() < min_scale {
        value.rescale(min_scale);
    }
    value
}

/// Writes an amount exactly, padded with zeros to at least `min_scale` places (`12.3` → `12.30`,
/// `0.12345678` stays). Zero never prints as `-0`.
pub fn format_amount(amount: Decimal, min_scale: u32) -> String {
    let mut out = String::new();
    push_amount(&mut out, amount, min_scale);
    out
}

/// `amount` exactly, at least `scale` places, with thousands separators: `1,234,567.50`.
pub fn grouped(amount: Decimal, scale: u32) -> String {
    separate(&format_amount(amount, scale))
}

/// `amount` rounded half away from zero to `scale` places, with thousands separators: how an
/// amount reads in prose (display only: the exact figure stays in its column; ledger amounts are
/// rounded once, by `Rounding::round`, and are already at their scale here).
pub fn prose(amount: Decimal, scale: u32) -> String {
    let rounded =
        amount.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    grouped(rounded, scale)
}

/// Thousands separators in the integer part of a decimal text (`-1234.5` → `-1,234.5`).
pub fn separate(text: &str) -> String {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(text.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn thousands_are_separated_and_prose_is_at_the_scale() {
        let d = |s: &str| <Decimal as std::str::FromStr>::from_str(s).unwrap();
        assert_eq!(grouped(d("1234567.5"), 2), "1,234,567.50");
        assert_eq!(grouped(d("-1000"), 2), "-1,000.00");
        assert_eq!(grouped(d("999.99"), 2), "999.99");
        assert_eq!(grouped(d("0.12345678"), 2), "0.12345678");
        assert_eq!(prose(d("0.12345678"), 2), "0.12");
        assert_eq!(prose(d("1000.005"), 2), "1,000.01");
        assert_eq!(prose(d("-1000.005"), 2), "-1,000.01");
        assert_eq!(prose(d("123456"), 0), "123,456");
    }

    #[test]
    fn accepts_the_spec_grammar_exactly() {
        assert_eq!(parse_decimal("0", 8), Ok(dec("0")));
        assert_eq!(parse_decimal("1005.70", 8), Ok(dec("1005.70")));
        assert_eq!(parse_decimal("-12.5", 8), Ok(dec("-12.5")));
        assert_eq!(parse_decimal("0.12345678", 8), Ok(dec("0.12345678")));
        // The scale written is the scale kept: 1005.70 keeps two places.
        assert_eq!(parse_decimal("1005.70", 8).unwrap().scale(), 2);
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", "-", "+1", ".5", "5.", "1e3", "1E3", "1,000", "1 000", " 1", "1 ", "NaN", "inf",
            "12.5O", "12.3.4", "--1", "0x10", "１２",
        ] {
            assert_eq!(
                parse_decimal(bad, 8),
                Err(DecimalError::NotDecimal),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn counts_places_against_the_limit() {
        assert_eq!(
            parse_decimal("0.123456789", 8),
            Err(DecimalError::TooManyPlaces { places: 9, max: 8 })
        );
        assert_eq!(
            parse_decimal("10.005", 2),
            Err(DecimalError::TooManyPlaces { places: 3, max: 2 })
        );
        assert_eq!(parse_decimal("10.05", 2), Ok(dec("10.05")));
    }

    #[test]
    fn bounds_amounts_below_a_trillion() {
        assert_eq!(
            parse_decimal("999999999999.99999999", 8),
            Ok(dec("999999999999.99999999"))
        );
        assert_eq!(parse_decimal("000000000000001", 8), Ok(dec("1")));
        assert_eq!(
            parse_decimal("1000000000000", 8),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(
            parse_decimal("-99999999999999999999999999999999", 8),
            Err(DecimalError::OutOfRange)
        );
    }

    #[test]
    fn formats_padded_and_exact() {
        assert_eq!(format_amount(dec("12.3"), 2), "12.30");
        assert_eq!(format_amount(dec("12"), 2), "12.00");
        assert_eq!(format_amount(dec("0.12345678"), 2), "0.12345678");
        assert_eq!(format_amount(dec("-0.00"), 2), "0.00");
        assert_eq!(format_amount(dec("-5.1"), 2), "-5.10");
        // Fewer digits than places: zeros after the point.
        assert_eq!(format_amount(dec("-0.00012"), 2), "-0.00012");
        assert_eq!(format_amount(dec("7"), 0), "7");
        // A mantissa beyond u64 (20+ digits).
        assert_eq!(
            format_amount(dec("12345678901234567890.12345678"), 2),
            "12345678901234567890.12345678"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// (mantissa, scale) of an amount below 10^12 in magnitude with up to 8 places.
    fn amount() -> impl Strategy<Value = (i128, u32)> {
        (0u32..=8).prop_flat_map(|scale| {
            let bound = 10i128.pow(12 + scale) - 1;
            (-bound..=bound, Just(scale))
        })
    }

    proptest! {
        /// Any amount below 10^12 with up to 8 places, written as the grammar allows, parses back
        /// to itself exactly; padding to a scale never changes the value.
        #[test]
        fn parse_and_format_round_trip((mantissa, scale) in amount()) {
            let value = Decimal::from_i128_with_scale(mantissa, scale);
            let text = value.to_string();
            prop_assert_eq!(parse_decimal(&text, 8), Ok(value));
            let padded = format_amount(value, 2);
            prop_assert_eq!(parse_decimal(&padded, 8).map(|d| d == value), Ok(true));
        }

        /// The digits written are `Decimal`'s own text of the padded value, for any 96-bit
        /// mantissa and scale (sums and rates reach beyond the input grammar), sign included.
        #[test]
        fn written_as_decimal_displays_it(
            mantissa in -(1i128 << 96) + 1..(1i128 << 96),
            scale in 0u32..=28,
            min_scale in 0u32..=8,
        ) {
            let value = Decimal::from_i128_with_scale(mantissa, scale);
            prop_assert_eq!(format_amount(value, min_scale), padded(value, min_scale).to_string());
        }
    }
}
