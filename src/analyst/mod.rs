//! The tools that read a published cycle (SPEC §10): `explain` (`explain::view`), `report`,
//! `query` and `whatif`, on polars' lazy scans of the cycle's tables (`cycle`).

pub mod cycle;
pub mod query;
pub mod whatif;

use rust_decimal::Decimal;

/// `amount` exactly, at least `scale` places, with thousands separators: `1,234,567.50`.
pub fn grouped(amount: Decimal, scale: u32) -> String {
    separate(&crate::money::format_amount(amount, scale))
}

/// `amount` rounded half away from zero to `scale` places, with thousands separators: how an
/// amount reads in prose (the exact figure stays in its column).
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

    #[test]
    fn thousands_are_separated_and_prose_is_at_the_scale() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(grouped(d("1234567.5"), 2), "1,234,567.50");
        assert_eq!(grouped(d("-1000"), 2), "-1,000.00");
        assert_eq!(grouped(d("999.99"), 2), "999.99");
        assert_eq!(grouped(d("0.12345678"), 2), "0.12345678");
        assert_eq!(prose(d("0.12345678"), 2), "0.12");
        assert_eq!(prose(d("1000.005"), 2), "1,000.01");
        assert_eq!(prose(d("-1000.005"), 2), "-1,000.01");
        assert_eq!(prose(d("123456"), 0), "123,456");
    }
}
