//! A store written by an older Poplar keeps working with this one: an `encounters` table
//! landed before `encounter_snomed` existed (as `poplar demo` leaves in `./poplar-data`)
//! takes the new loader's rows, and the engine reads old and new rows together.

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use deltalake::protocol::SaveMode;
use poplar_loaders::dates::date32;
use poplar_loaders::{Store, Table, landing};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::{answer, date};
use crate::fhir_feeds::landed;

/// `encounters` as Poplar wrote it before the SNOMED CT encounter type was kept: three
/// rows from practice A81002, committed and made visible by a snapshot.
async fn old_encounters(store: &Store) {
    let declared = Table::Encounters.schema();
    let old = Arc::new(Schema::new(
        declared
            .fields()
            .iter()
            .filter(|f| f.name() != "encounter_snomed")
            .cloned()
            .collect::<Vec<_>>(),
    ));
    assert_eq!(
        old.fields().len() + 1,
        declared.fields().len(),
        "the new column is the only change"
    );
    let day = |s: &str| date32(date(s));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![11, 12, 13])),
        Arc::new(StringArray::from(vec!["A81002"; 3])),
        Arc::new(StringArray::from(vec!["gp", "inpatient", "a&e"])),
        Arc::new(Date32Array::from(vec![
            day("2019-04-01"),
            day("2020-06-15"),
            day("2021-12-24"),
        ])),
        Arc::new(Date32Array::from(vec![None, Some(day("2020-06-18")), None])),
        Arc::new(StringArray::from(vec![Some("face_to_face"), Some("emergency"), None])),
        Arc::new(Float64Array::from(vec![Some(39.0), Some(2150.5), None])),
    ];
    let batch = RecordBatch::try_new(old, columns).expect("old rows");
    let table = store
        .handle(Table::Encounters)
        .expect("handle")
        .write(vec![batch])
        .with_partition_columns(["source_org"])
        .with_save_mode(SaveMode::Append)
        .await
        .expect("old table");
    let version = table.version().expect("a version");
    landing::commit_snapshot(
        store,
        None,
        &BTreeMap::from([(Table::Encounters, version)]),
        "load",
        "written-before-encounter-snomed",
    )
    .await
    .expect("snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encounters_landed_before_encounter_snomed_take_new_rows_and_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    old_encounters(&store).await;
    let before = store.open(Table::Encounters).await.expect("open").expect("a table");
    assert!(
        before
            .snapshot()
            .expect("state")
            .schema()
            .field("encounter_snomed")
            .is_none()
    );

    // The current loader lands a FHIR practice feed (A81001) into the same store.
    let (loaded, report) = landed(dir.path(), &[("A81001", None)]).await;
    assert_eq!(report.per_source["A81001"].landed.get("encounters"), Some(&11));
    let after = store.open(Table::Encounters).await.expect("open").expect("a table");
    assert!(
        after
            .snapshot()
            .expect("state")
            .schema()
            .field("encounter_snomed")
            .is_some()
    );

    // Old rows read the new column as null; new rows carry it (five of A81001's eleven
    // encounters send a SNOMED CT type).
    assert_eq!(
        answer(
            &loaded,
            "SELECT source_org, count(*), count(encounter_snomed) FROM encounters GROUP BY source_org ORDER BY source_org"
        )
        .await,
        ["A81001 11 5", "A81002 3 0"]
    );
    assert_eq!(
        answer(
            &loaded,
            "SELECT start_date, end_date, setting, encounter_type, cost, encounter_snomed \
             FROM encounters WHERE source_org = 'A81002' ORDER BY start_date"
        )
        .await,
        [
            "2019-04-01 NULL gp face_to_face 39.0 NULL",
            "2020-06-15 2020-06-18 inpatient emergency 2150.5 NULL",
            "2021-12-24 NULL a&e NULL NULL NULL",
        ]
    );
    // A filter on the new column plans and runs over files that lack it.
    assert_eq!(
        answer(
            &loaded,
            "SELECT source_org, setting, start_date FROM encounters WHERE encounter_snomed = 185349003"
        )
        .await,
        ["A81001 gp 2024-03-01"]
    );
    assert_eq!(
        answer(
            &loaded,
            "SELECT count(*) FROM encounters WHERE encounter_snomed IS NULL"
        )
        .await,
        ["9"]
    );
}
