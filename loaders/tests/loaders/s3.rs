//! The whole path against a real S3-compatible server (skipped unless ci/test provides one).

use poplar_loaders::load::load;
use poplar_loaders::{NhsNumber, Store, Table};
use std::collections::HashSet;

use crate::common::*;

/// The whole path against a real S3-compatible server (SeaweedFS on 127.0.0.1, started by
/// ci/test, which sets POPLAR_TEST_S3_BUCKET and the AWS_* variables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_runs_against_a_real_s3_server() {
    let Ok(bucket) = std::env::var("POPLAR_TEST_S3_BUCKET") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the S3 test: ci/test sets POPLAR_TEST_S3_BUCKET"
        );
        eprintln!("skipped: POPLAR_TEST_S3_BUCKET is not set (ci/test starts SeaweedFS and sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 800, 21);
    let prefix = format!("s3://{bucket}/loaders-{}", uuid::Uuid::new_v4().simple());
    let mut opts = options(&region, dir.path());
    opts.store = Store::parse(&prefix).expect("s3 url");
    let report = load(&opts, &pseudonymiser()).await.expect("load to s3");
    assert_eq!(report.landed_deliveries, small_mix().total());
    assert_eq!(
        count(&opts.store, Table::ClinicalEvents).await,
        report.rows_landed["clinical_events"]
    );
    let again = load(&opts, &pseudonymiser()).await.expect("reload");
    assert_eq!(again.skipped_unchanged, small_mix().total());
    // Retroactive opt-out rewrites files in S3 too.
    let ids = input_identifiers(&region);
    let some: Vec<&String> = ids
        .nhs_numbers
        .iter()
        .filter(|n| NhsNumber::parse(n).is_ok())
        .take(10)
        .collect();
    let list = dir.path().join("optout.txt");
    std::fs::write(&list, some.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")).expect("write");
    let p = pseudonymiser();
    let applied = poplar_loaders::optout::apply(
        &opts.store,
        &poplar_loaders::optout::OptOutList::read(&list, &p).expect("list"),
        "s3",
    )
    .await
    .expect("apply");
    assert_eq!(applied.newly_opted_out, 10);
    let gone: HashSet<i64> = some
        .iter()
        .map(|n| p.person_id(&NhsNumber::parse(n).expect("valid")))
        .collect();
    assert!(person_ids(&opts.store, Table::Patients, "").await.is_disjoint(&gone));
}
