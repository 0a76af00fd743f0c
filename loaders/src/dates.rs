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

/// Parse `YYYY-MM-DD`, or a FHIR `dateTime`. A timestamp with an offset (`Z`, `+01:00`)
/// is an instant: it becomes the calendar date in England (Europe/London), because a
/// record made at 00:30 BST is that day's activity even though it is the day before in
/// UTC. A timestamp without an offset is already local: its date part is the date.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    match raw.len() {
        10 => parse_ymd(raw),
        n if n > 10 && raw.as_bytes()[10] == b'T' => {
            if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(raw) {
                return Some(london_date(instant.naive_utc()));
            }
            // No offset (or seconds left out): the sender's local date.
            raw.get(..10).and_then(parse_ymd)
        }
        _ => None,
    }
}

/// `YYYY-MM-DD` as chrono's `%Y-%m-%d` reads it. Every dated row passes through here, and
/// chrono walks its format string for each one (5% of a load's time in a profile), so the
/// plain form — four, two and two ASCII digits — is read directly; anything else goes to
/// chrono, so the two never disagree.
fn parse_ymd(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?
            .iter()
            .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10))
    {
        return NaiveDate::from_ymd_opt(y as i32, m, d);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

/// The calendar date in England at a UTC instant. British Summer Time (UTC+1) runs from
/// 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of October: the
/// rule since 1996, applied to every year. Written out rather than taken from the tz
/// database (`chrono-tz`) because it is one rule, and the dependency would change the
/// features the workspace builds DataFusion with. Before 1996 the October change could
/// fall a week earlier, so a timestamp within an hour of midnight in that week of an old
/// year may land a day late — far below the precision anything is queried at.
pub fn london_date(utc: chrono::NaiveDateTime) -> NaiveDate {
    let year = utc.date().year();
    let bst_from = last_sunday(year, 3).and_hms_opt(1, 0, 0);
    let bst_to = last_sunday(year, 10).and_hms_opt(1, 0, 0);
    let in_bst = matches!((bst_from, bst_to), (Some(from), Some(to)) if utc >= from && utc < to);
    if in_bst {
        (utc + chrono::Duration::hours(1)).date()
    } else {
        utc.date()
    }
}

/// The last Sunday of a month (March or October: both have 31 days).
fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let last = NaiveDate::from_ymd_opt(year, month, 31).unwrap_or(EPOCH);
    last - chrono::Duration::days(i64::from(last.weekday().num_days_from_sunday()))
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
    fn timestamps_with_offsets_become_dates_in_england() {
        // 23:30 UTC on 31 March 2024 is 00:30 BST on 1 April.
        assert_eq!(parse_date("2024-03-31T23:30:00Z"), Some(ymd(2024, 4, 1)));
        assert_eq!(parse_date("2024-03-31T23:30:00+00:00"), Some(ymd(2024, 4, 1)));
        // In winter London is on UTC.
        assert_eq!(parse_date("2024-01-15T23:30:00Z"), Some(ymd(2024, 1, 15)));
        // 01:00 in New York is 06:00 in London, the same day.
        assert_eq!(parse_date("2024-01-15T01:00:00-05:00"), Some(ymd(2024, 1, 15)));
        // 00:30 in Paris (summer) is 23:30 BST the day before.
        assert_eq!(parse_date("2024-07-02T00:30:00+02:00"), Some(ymd(2024, 7, 1)));
        // No offset: the date part as sent.
        assert_eq!(parse_date("2024-07-02T00:30:00"), Some(ymd(2024, 7, 2)));
        assert_eq!(parse_date("2024-07-02T00:30"), Some(ymd(2024, 7, 2)));
        // The changes themselves: 31 March 2024 and 27 October 2024, at 01:00 UTC.
        assert_eq!(parse_date("2024-03-31T00:59:00Z"), Some(ymd(2024, 3, 31)));
        assert_eq!(parse_date("2024-10-26T23:00:00Z"), Some(ymd(2024, 10, 27)));
        assert_eq!(parse_date("2024-10-27T23:00:00Z"), Some(ymd(2024, 10, 27)));
        assert_eq!(last_sunday(2025, 3), ymd(2025, 3, 30));
        assert_eq!(last_sunday(2025, 10), ymd(2025, 10, 26));
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

    #[test]
    fn the_direct_reading_of_plain_dates_agrees_with_chrono() {
        for raw in [
            "2024-02-29",
            "2023-02-29",
            "1900-01-01",
            "0000-01-01",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-1-011",
            "+202-01-01",
            "2024/01/01",
            "2024-01-0a",
            "२०२४-01-01",
            "9999-12-31",
        ] {
            assert_eq!(parse_ymd(raw), NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok(), "{raw}");
        }
    }
}
