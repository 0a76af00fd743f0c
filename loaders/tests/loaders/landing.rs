//! Landing: re-delivery is idempotent and a new delivery supersedes only its period.

use poplar_loaders::Table;
use poplar_loaders::load::load;
use poplar_loaders::registry::FeedFormat;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_is_idempotent_and_a_new_delivery_supersedes_its_period_only() {
    let t = HandBuilt::new();
    t.registry(vec![source("C01", FeedFormat::Csv)]);
    let (a, b) = (nhs(400_000_300), nhs(400_000_400));
    let events = |rows: &[(&str, &str)]| -> String {
        let mut s = EVENTS_HEADER.to_string();
        for (who, when) in rows {
            s += &format!("{who},{when},SNOMED,44054006,,,\n");
        }
        s
    };
    let patients = |who: &[&str]| -> String {
        let mut s = PATIENTS_HEADER.to_string();
        for w in who {
            s += &patient_line(w, "1970-01-01", "1");
        }
        s
    };
    // Full extract: two people, events in 2018, 2020 and 2025.
    t.delivery(
        "C01",
        "2026-01-01",
        FeedFormat::Csv,
        ("1900-01-01", "2026-01-01"),
        &[
            ("patients.csv", patients(&[&a, &b])),
            (
                "events.csv",
                events(&[(&a, "2018-05-01"), (&a, "2020-05-01"), (&b, "2025-05-01")]),
            ),
        ],
    );
    let store = t.store();
    let first = load(&t.options(), &pseudonymiser()).await.expect("load");
    assert_eq!(first.landed_deliveries, 1);
    let snap = snapshot(&store).await;

    // The same delivery again changes nothing: skipped, no new snapshot or version.
    let again = load(&t.options(), &pseudonymiser()).await.expect("load");
    assert_eq!((again.landed_deliveries, again.skipped_unchanged), (0, 1));
    assert_eq!(snapshot(&store).await, snap);

    // A monthly extract for 2025 onwards: replaces 2025-26 events, keeps 2018 and 2020;
    // its patient list (only b) replaces the source's patients.
    t.delivery(
        "C01",
        "2026-02-01",
        FeedFormat::Csv,
        ("2025-01-01", "2026-02-01"),
        &[
            ("patients.csv", patients(&[&b])),
            ("events.csv", events(&[(&b, "2025-06-01"), (&b, "2026-01-15")])),
        ],
    );
    let second = load(&t.options(), &pseudonymiser()).await.expect("load");
    assert_eq!((second.landed_deliveries, second.skipped_unchanged), (1, 1));
    let dates = rows(
        &store,
        Table::ClinicalEvents,
        "SELECT CAST(event_date AS VARCHAR) AS d FROM t ORDER BY d",
    )
    .await;
    assert_eq!(
        texts(&dates, 0),
        vec!["2018-05-01", "2020-05-01", "2025-06-01", "2026-01-15"]
    );
    assert_eq!(count(&store, Table::Patients).await, 1);

    // An older delivery arriving late may not overwrite newer data.
    t.delivery(
        "C01",
        "2025-12-01",
        FeedFormat::Csv,
        ("1900-01-01", "2025-12-01"),
        &[("patients.csv", patients(&[&a]))],
    );
    let late = load(&t.options(), &pseudonymiser()).await.expect("load");
    assert_eq!(late.rejected.len(), 1);
    assert_eq!(late.rejected[0].problem.reason.code(), "stale_delivery");
    assert_eq!(count(&store, Table::Patients).await, 1);
}
