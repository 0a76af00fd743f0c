//! Feed status per source, from the delivery ledger and the quarantine as the served
//! snapshot sees them: the last delivery, the period it covers, rows landed, quarantined
//! rows by reason, and whether the source is late.
//!
//! Late means behind the region, not behind the calendar: a source is late when its newest
//! landed period ends more than `late_after_days` before the newest period any source
//! delivered (or it has never delivered). Synthetic and test regions are dated in the
//! future or the past, so the calendar alone would flag all of them or none; the days since
//! the last delivery are reported beside it for a steward to judge.

use std::collections::BTreeMap;

use chrono::NaiveDate;

/// The default for `late_after_days`: a monthly feed may miss one month and then some.
pub const DEFAULT_LATE_AFTER_DAYS: u32 = 45;

/// One row of the ledger, as the status needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source_org: String,
    pub delivery: String,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub loaded_at: Option<NaiveDate>,
    pub landed: bool,
    pub rows_landed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub source_org: String,
    pub last_delivery: Option<String>,
    pub last_loaded_at: Option<NaiveDate>,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub deliveries_landed: u64,
    pub deliveries_rejected: u64,
    pub rows_landed: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub days_behind: Option<i64>,
    pub days_since_last_delivery: Option<i64>,
    pub late: bool,
}

/// The status of every source in `sources` (the organisations the registry names) and of
/// any other source the ledger mentions, by ODS code.
pub fn status(
    sources: &[String],
    deliveries: &[Delivery],
    quarantined: &[(String, String, u64)],
    today: NaiveDate,
    late_after_days: u32,
) -> (Vec<Feed>, Option<NaiveDate>) {
    let mut feeds: BTreeMap<String, Feed> = BTreeMap::new();
    let empty = |source: &str| Feed {
        source_org: source.to_string(),
        last_delivery: None,
        last_loaded_at: None,
        period_start: None,
        period_end: None,
        deliveries_landed: 0,
        deliveries_rejected: 0,
        rows_landed: 0,
        quarantined: BTreeMap::new(),
        days_behind: None,
        days_since_last_delivery: None,
        late: false,
    };
    for source in sources {
        feeds.entry(source.clone()).or_insert_with(|| empty(source));
    }
    for d in deliveries {
        let feed = feeds
            .entry(d.source_org.clone())
            .or_insert_with(|| empty(&d.source_org));
        if !d.landed {
            feed.deliveries_rejected += 1;
            continue;
        }
        feed.deliveries_landed += 1;
        feed.rows_landed += d.rows_landed;
        // The newest landed delivery by the end of the period it covers (then its id).
        let newer = match (&feed.period_end, &feed.last_delivery) {
            (None, None) => true,
            (end, last) => (d.period_end, Some(&d.delivery)) > (*end, last.as_ref()),
        };
        if newer {
            feed.last_delivery = Some(d.delivery.clone());
            feed.period_start = d.period_start;
            feed.period_end = d.period_end;
            feed.last_loaded_at = d.loaded_at;
        }
    }
    for (source, reason, rows) in quarantined {
        let feed = feeds.entry(source.clone()).or_insert_with(|| empty(source));
        *feed.quarantined.entry(reason.clone()).or_default() += rows;
    }
    let region_end = feeds.values().filter_map(|f| f.period_end).max();
    for feed in feeds.values_mut() {
        feed.days_behind = match (region_end, feed.period_end) {
            (Some(region), Some(end)) => Some((region - end).num_days()),
            _ => None,
        };
        feed.days_since_last_delivery = feed.last_loaded_at.map(|at| (today - at).num_days());
        feed.late = match feed.days_behind {
            Some(days) => days > i64::from(late_after_days),
            None => true,
        };
    }
    (feeds.into_values().collect(), region_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn delivery(source: &str, end: &str, landed: bool, rows: u64) -> Delivery {
        Delivery {
            source_org: source.into(),
            delivery: end.into(),
            period_start: Some(date("2020-01-01")),
            period_end: Some(date(end)),
            loaded_at: Some(date(end)),
            landed,
            rows_landed: rows,
        }
    }

    #[test]
    fn a_source_that_stopped_delivering_is_late_and_the_others_are_not() {
        let sources: Vec<String> = ["A", "B", "C", "D"].map(String::from).to_vec();
        let deliveries = vec![
            delivery("A", "2026-08-31", true, 10),
            delivery("A", "2026-09-30", true, 20),
            delivery("B", "2026-09-30", true, 5),
            delivery("B", "2026-10-31", false, 0),
            delivery("C", "2026-03-31", true, 7),
        ];
        let quarantine = vec![
            ("C".to_string(), "future_date".to_string(), 3),
            ("C".to_string(), "invalid_nhs_number".to_string(), 2),
            ("C".to_string(), "future_date".to_string(), 1),
        ];
        let (feeds, region) = status(&sources, &deliveries, &quarantine, date("2026-10-15"), 45);
        assert_eq!(region, Some(date("2026-09-30")));
        let by = |s: &str| feeds.iter().find(|f| f.source_org == s).expect("feed").clone();
        let a = by("A");
        assert_eq!((a.deliveries_landed, a.rows_landed, a.late), (2, 30, false));
        assert_eq!(a.last_delivery.as_deref(), Some("2026-09-30"));
        assert_eq!(a.days_since_last_delivery, Some(15));
        let b = by("B");
        assert_eq!((b.deliveries_landed, b.deliveries_rejected, b.late), (1, 1, false));
        let c = by("C");
        assert!(c.late);
        assert_eq!(c.days_behind, Some(183));
        assert_eq!(c.quarantined.get("future_date"), Some(&4));
        assert_eq!(c.quarantined.get("invalid_nhs_number"), Some(&2));
        let d = by("D");
        assert!(d.late && d.last_delivery.is_none(), "never delivered");
    }
}
