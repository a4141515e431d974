//! Bill cycles, instants and calendar dates, parsed strictly.
//!
//! Instants are kept in UTC (`DateTime<Utc>`); the offset an export wrote them with is only a way of
//! writing the instant. Calendar dates of an instant are taken in a named time zone by the stage that
//! needs them (the rule set names it), never in the machine's local zone.

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;
use std::str::FromStr;

/// A bill cycle (账期), `YYYY-MM`. Three bytes, aligned to one: every ledger row holds two. The
/// year is kept big-endian so the derived order (year bytes, then month) is the calendar's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cycle {
    year: [u8; 2],
    month: u8,
}

impl Cycle {
    /// 0001-01: the earliest cycle there is.
    pub const FIRST: Cycle = Cycle {
        year: [0, 1],
        month: 1,
    };

    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1..=9999).contains(&year))
            .then(|| Cycle::of(year as u16, month as u8))
    }

    fn of(year: u16, month: u8) -> Cycle {
        Cycle {
            year: year.to_be_bytes(),
            month,
        }
    }

    fn year_u16(self) -> u16 {
        u16::from_be_bytes(self.year)
    }

    pub fn year(self) -> i32 {
        i32::from(self.year_u16())
    }

    /// Appends `YYYY-MM` to `out`, as `Display` writes it, without the formatting machinery
    /// (two cycles are written on each of millions of ledger rows).
    pub fn push_to(self, out: &mut String) {
        let digit = |n: u16| char::from(b'0' + (n % 10) as u8);
        let (y, m) = (self.year_u16(), u16::from(self.month));
        for c in [
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            '-',
        ] {
            out.push(c);
        }
        out.push(digit(m / 10));
        out.push(digit(m));
    }

    pub fn month(self) -> u32 {
        u32::from(self.month)
    }

    pub fn first_day(self) -> NaiveDate {
        // `new` guarantees a valid month, so the first of it always exists.
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn next(self) -> Cycle {
        if self.month == 12 {
            Cycle::of(self.year_u16().saturating_add(1), 1)
        } else {
            Cycle::of(self.year_u16(), self.month + 1)
        }
    }

    pub fn previous(self) -> Cycle {
        if self.month == 1 {
            Cycle::of(self.year_u16().saturating_sub(1), 12)
        } else {
            Cycle::of(self.year_u16(), self.month - 1)
        }
    }

    /// The cycle's last calendar day.
    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or(NaiveDate::MIN)
    }
}

crate::serial::as_text!(Cycle);

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year_u16(), self.month)
    }
}

/// A cycle must be written `YYYY-MM` exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a bill cycle: expected YYYY-MM, e.g. 2026-10")]
pub struct CycleParseError(pub String);

impl FromStr for Cycle {
    type Err = CycleParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || CycleParseError(text.to_string());
        let b = text.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(err());
        }
        let year = text[..4].parse().map_err(|_| err())?;
        let month = text[5..].parse().map_err(|_| err())?;
        Cycle::new(year, month).ok_or_else(err)
    }
}

/// Parses an ISO 8601 date-time that carries an offset (`2026-10-31T16:05:00Z`,
/// `2026-11-01T00:05:00+08:00`, optional fractional seconds). A time without an offset is refused:
/// it would name a different instant on every machine.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    // chrono's RFC 3339 reader also takes a space or a lower-case `t` between date and time;
    // the contract says ISO 8601, so insist on `T`.
    if b.len() < 20 || b[10] != b'T' || !is_strict_date(&b[..10]) {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How many fractional-second digits an instant as written has (`…:00.250Z` → 3). An input
/// instant has at most 6 (SPEC §8: outputs keep microseconds; a finer input is rejected).
pub fn fraction_digits(text: &str) -> usize {
    // After `YYYY-MM-DDThh:mm:ss`, a fraction starts with '.' (or ',') and runs to the offset.
    text.get(19..)
        .filter(|rest| rest.starts_with(['.', ',']))
        .map_or(0, |rest| {
            rest[1..].bytes().take_while(u8::is_ascii_digit).count()
        })
}

/// The finest an input instant may be written: microseconds.
pub const INSTANT_DIGITS_MAX: usize = 6;

/// Parses a calendar date written `YYYY-MM-DD` exactly.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    if !is_strict_date(text.as_bytes()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn is_strict_date(b: &[u8]) -> bool {
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Writes an instant as ISO 8601 UTC, to the second when it has no fraction.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The date `years` years after `date`; 29 February maps to 28 February when the target year
/// has none.
pub fn one_year_after_n(date: NaiveDate, years: u32) -> NaiveDate {
    use chrono::Datelike;
    let year = date.year() + years as i32;
    NaiveDate::from_ymd_opt(year, date.month(), date.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, date.month(), 28))
        .unwrap_or(date)
}

/// `--as-of TS`: an ISO 8601 instant with an offset (clap's value parser).
pub fn parse_as_of(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    parse_instant(text).ok_or_else(|| {
        format!(
            "{text:?} is not an ISO 8601 date-time with an offset, e.g. 2026-11-15T00:00:00+08:00"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_pushed_as_it_displays() {
        for (year, month) in [(2026, 10), (2026, 1), (1, 12), (999, 7), (9999, 12)] {
            let c = Cycle::new(year, month).unwrap();
            let mut out = String::from("x");
            c.push_to(&mut out);
            assert_eq!(out, format!("x{c}"));
        }
        // 0999-07: the year padded to four digits.
        let mut out = String::new();
        Cycle::new(999, 7).unwrap().push_to(&mut out);
        assert_eq!(out, "0999-07");
    }

    #[test]
    fn cycles_order_as_the_calendar_across_byte_boundaries() {
        let c = |t: &str| t.parse::<Cycle>().unwrap();
        let sorted = [
            "0255-12", "0256-01", "0999-12", "2026-09", "2026-10", "2026-12", "2027-01",
        ];
        assert!(sorted.windows(2).all(|w| c(w[0]) < c(w[1])));
        assert_eq!(std::mem::size_of::<Cycle>(), 3);
    }

    #[test]
    fn cycles_parse_strictly_and_step() {
        let c: Cycle = "2026-10".parse().unwrap();
        assert_eq!(c.to_string(), "2026-10");
        assert_eq!(c.next().to_string(), "2026-11");
        assert_eq!(
            "2026-12".parse::<Cycle>().unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(
            "2026-01".parse::<Cycle>().unwrap().previous().to_string(),
            "2025-12"
        );
        assert_eq!(c.last_day(), NaiveDate::from_ymd_opt(2026, 10, 31).unwrap());
        assert_eq!(
            "2024-02".parse::<Cycle>().unwrap().last_day().to_string(),
            "2024-02-29"
        );
        for bad in [
            "2026-13", "2026-00", "2026-1", "26-10", "2026/10", "2026-10 ", "",
        ] {
            assert!(bad.parse::<Cycle>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants_need_an_offset_and_a_real_date() {
        let t = parse_instant("2026-11-01T00:05:00+08:00").unwrap();
        assert_eq!(format_instant(t), "2026-10-31T16:05:00Z");
        assert!(parse_instant("2026-10-31T16:05:00Z").is_some());
        assert!(parse_instant("2026-10-31T16:05:00.250Z").is_some());
        for bad in [
            "2026-10-32T10:00:00+08:00",
            "2026-10-31T16:05:00",
            "2026-10-31 16:05:00Z",
            "2026-10-31t16:05:00Z",
            "2026-10-31T25:05:00Z",
            "2026-10-31",
            "31/10/2026 16:05",
        ] {
            assert!(parse_instant(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fraction_digits_are_counted_as_written() {
        assert_eq!(fraction_digits("2026-10-31T16:05:00Z"), 0);
        assert_eq!(fraction_digits("2026-10-31T16:05:00.250Z"), 3);
        assert_eq!(fraction_digits("2026-10-31T16:05:00.123456+08:00"), 6);
        assert_eq!(fraction_digits("2026-10-31T16:05:00.1234567Z"), 7);
        assert_eq!(fraction_digits("2026-10-31T16:05:00.000000000Z"), 9);
        assert_eq!(fraction_digits("2026"), 0);
    }

    #[test]
    fn a_year_after_a_leap_day_is_the_28th() {
        let leap = NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
        assert_eq!(one_year_after_n(leap, 1).to_string(), "2029-02-28");
        assert_eq!(one_year_after_n(leap, 4).to_string(), "2032-02-29");
        let plain = NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
        assert_eq!(one_year_after_n(plain, 1).to_string(), "2027-10-20");
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2026-02-28").is_some());
        for bad in [
            "2026-02-30",
            "2026-2-28",
            "2026-02-28T00:00:00Z",
            "20260228",
            "",
        ] {
            assert!(parse_date(bad).is_none(), "{bad:?}");
        }
    }
}
