//! The national data opt-out: excluded at load, removed retroactively.

use poplar_loaders::load::load;
use poplar_loaders::{NhsNumber, Table, landing};
use std::collections::{BTreeMap, HashSet};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_outs_are_excluded_at_load_and_removed_retroactively() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 1_000, 9);
    let ids = input_identifiers(&region);
    let mut numbers: Vec<&String> = ids.nhs_numbers.iter().filter(|n| NhsNumber::parse(n).is_ok()).collect();
    numbers.sort();
    let p = pseudonymiser();
    let pid = |n: &str| p.person_id(&NhsNumber::parse(n).expect("valid"));

    // At load: the first 20 people are never landed.
    let at_load: Vec<&String> = numbers[..20].to_vec();
    let list = dir.path().join("optout-1.txt");
    std::fs::write(
        &list,
        format!(
            "nhs_number\n{}\n",
            at_load.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        ),
    )
    .expect("write");
    let mut opts = options(&region, &dir.path().join("store"));
    opts.optout = Some(list);
    let report = load(&opts, &p).await.expect("load");
    assert!(
        report.optout_excluded > 20,
        "their rows were counted, {}",
        report.optout_excluded
    );
    let store = opts.store.clone();
    let landed: HashSet<i64> = person_ids(&store, Table::ClinicalEvents, "")
        .await
        .union(&person_ids(&store, Table::Patients, "").await)
        .copied()
        .collect();
    assert!(at_load.iter().all(|n| !landed.contains(&pid(n))));

    // Later: 30 more opt out; their landed rows go, and the counts say how many.
    let later: Vec<&String> = numbers[20..50].to_vec();
    let later_ids: HashSet<i64> = later.iter().map(|n| pid(n)).collect();
    let mut before = BTreeMap::new();
    for table in Table::PERSONAL {
        let all = rows(&store, table, "SELECT person_id FROM t").await;
        before.insert(
            table.name(),
            landing::int64_values(&all, 0)
                .iter()
                .filter(|id| later_ids.contains(id))
                .count() as u64,
        );
    }
    assert!(before["clinical_events"] > 0);
    let list = dir.path().join("optout-2.txt");
    std::fs::write(
        &list,
        later.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n") + "\nnot-a-number\n",
    )
    .expect("write");
    let applied = poplar_loaders::optout::apply(
        &store,
        &poplar_loaders::optout::OptOutList::read(&list, &p).expect("list"),
        "test",
    )
    .await
    .expect("apply");
    assert_eq!(applied.newly_opted_out, 30);
    assert_eq!(applied.invalid_entries, 1);
    assert_eq!(applied.rows_removed, before);
    for table in Table::PERSONAL {
        assert!(person_ids(&store, table, "").await.is_disjoint(&later_ids), "{table:?}");
    }
    // Applying again removes nothing more; reloading unchanged deliveries brings nobody back.
    let again = poplar_loaders::optout::apply(
        &store,
        &poplar_loaders::optout::OptOutList::read(&list, &p).expect("list"),
        "test",
    )
    .await
    .expect("apply");
    assert_eq!((again.newly_opted_out, again.already_recorded), (0, 30));
    let mut opts = options(&region, &dir.path().join("store"));
    opts.optout = None;
    load(&opts, &p).await.expect("reload");
    assert!(person_ids(&store, Table::Patients, "").await.is_disjoint(&later_ids));
}
