//! Dates as Poplar reads and lands them. The parsers, the delivery ledger and the loader's
//! supersession predicates all convert between calendar dates and Arrow's `Date32` (days
//! since 1970-01-01); doing it in one place keeps them from disagreeing about the epoch or
//! about which textual forms a source may send.

use chrono::{Datelike, NaiveDate};

/// A date in a `const` context: an impossible date fails the build, never a load.
pub const fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(d) => d,
        None => panic!("not a calendar date"),
    }
}

/// Day 0 of Arrow's `Date32`.
pub const EPOCH: NaiveDate = ymd(1970, 1, 1);

/// No record Poplar lands is dated before this: anything earlier is a data-entry fault.
pub const EARLIEST: NaiveDate = ymd(1900, 1, 1);

/// Days since 1970-01-01, Arrow's `Date32`.
pub fn date32(d: NaiveDate) -> i32 {
    d.signed_duration_since(EPOCH).num_days() as i32
}

/// The date an Arrow `Date32` value holds (`None` outside chrono's range).
pub fn from_date32(days: i32) -> Option<NaiveDate> {
    EPOCH.checked_add_signed(chrono::Duration::days(i64::from(days)))
}

/// The first day of `d`'s month: birth and death dates land at month precision.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("every month has a first day")
}

/// Parse `YYYY-MM-DD`, or the date part of a FHIR `dateTime`.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    let date_part = match raw.len() {
        10 => raw,
        n if n > 10 && raw.as_bytes()[10] == b'T' => &raw[..10],
        _ => return None,
    };
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_plain_and_fhir_forms_only() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2024-02-29T10:15:00Z").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("29/02/2024").is_none());
        assert!(parse_date("2024-2-1").is_none());
    }

    #[test]
    fn date32_counts_days_from_the_unix_epoch_and_round_trips() {
        assert_eq!(date32(EPOCH), 0);
        assert_eq!(date32(ymd(2024, 2, 29)), 19_782);
        assert_eq!(date32(ymd(1969, 12, 31)), -1);
        for d in [EARLIEST, EPOCH, ymd(2024, 2, 29), ymd(2026, 9, 30)] {
            assert_eq!(from_date32(date32(d)), Some(d));
        }
        assert_eq!(first_of_month(ymd(2024, 2, 29)), ymd(2024, 2, 1));
    }
}
