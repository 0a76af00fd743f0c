//! Crash recovery: commits past the last snapshot are invisible and repaired by the next run.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use poplar_loaders::Table;
use poplar_loaders::landing;
use poplar_loaders::load::load;
use std::collections::HashSet;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_table_commits_is_invisible_and_the_next_run_repairs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 600, 13);
    let opts = options(&region, &dir.path().join("store"));
    let first = load(&opts, &pseudonymiser()).await.expect("load");
    let store = opts.store.clone();
    let snap = snapshot(&store).await;
    let events = count(&store, Table::ClinicalEvents).await;

    // A dying run got as far as committing half-written rows to one table.
    let batch = arrow::record_batch::RecordBatch::try_new(
        Table::OptOuts.schema(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1_i64])),
            std::sync::Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![0_i64]).with_timezone("UTC")),
        ],
    )
    .expect("batch");
    landing::write(&store, Table::OptOuts, vec![batch], landing::WriteMode::Append)
        .await
        .expect("stray write");
    landing::delete(&store, Table::ClinicalEvents, deltalake::datafusion::prelude::lit(true))
        .await
        .expect("stray delete");

    // Readers at the snapshot see none of it.
    assert_eq!(snapshot(&store).await, snap);
    assert_eq!(count(&store, Table::ClinicalEvents).await, events);

    // The next run rolls both tables back, and the data is whole.
    let next = load(&opts, &pseudonymiser()).await.expect("load");
    let recovered: HashSet<Table> = next.recovered.iter().map(|r| r.table).collect();
    assert_eq!(recovered, HashSet::from([Table::OptOuts, Table::ClinicalEvents]));
    let latest = store.open(Table::ClinicalEvents).await.expect("open").expect("exists");
    let all = landing::query(&latest, "SELECT count(*) FROM t").await.expect("count");
    assert_eq!(all[0].column(0).as_primitive::<Int64Type>().value(0) as u64, events);
    assert_eq!(first.rows_landed["clinical_events"], events);
}
