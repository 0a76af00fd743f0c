//! De-identification: no identifier of the input lands anywhere, and pseudonyms link
//! sources, are stable across runs and change with the key.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use poplar_loaders::dates::from_date32;
use poplar_loaders::load::load;
use poplar_loaders::{Pseudonymiser, Store, Table};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::common::*;

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("e").path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn check_value(text: &str, ids: &Identifiers, place: &str) {
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '\'') {
        assert!(!ids.words.contains(word), "a name landed in {place}");
        assert!(!ids.nhs_numbers.contains(word), "an NHS number landed in {place}");
    }
    let matcher = ids.phrase_matcher.as_ref().expect("built");
    assert!(
        !matcher.is_match(text),
        "an address, postcode or phone landed in {place}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_of_the_input_lands_in_any_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 1_500, 3);
    let store_dir = dir.path().join("store");
    load(&options(&region, &store_dir), &pseudonymiser())
        .await
        .expect("load");
    let ids = input_identifiers(&region);
    assert!(ids.nhs_numbers.len() > 1_000 && ids.words.len() > 20 && ids.phrases.len() > 1_000);
    let parquet_files = assert_no_identifier_landed(&store_dir, &ids, &HashSet::new());
    assert!(
        parquet_files > 20,
        "the test read the landed data ({parquet_files} files)"
    );
}

/// Search every decoded value of every landed Parquet file, every Delta log entry and
/// every path under `store_dir` for the identifiers in `ids`; no `Date32` value may be
/// one of `forbidden_days` (full birth dates, when they are known not to be record
/// dates). Returns how many Parquet files were read.
pub fn assert_no_identifier_landed(store_dir: &Path, ids: &Identifiers, forbidden_days: &HashSet<i32>) -> usize {
    let nhs_as_numbers: HashSet<i64> = ids.nhs_numbers.iter().filter_map(|n| n.parse().ok()).collect();
    let mut files = Vec::new();
    all_files(store_dir, &mut files);
    let mut parquet_files = 0;
    for path in &files {
        let place = path.strip_prefix(store_dir).expect("prefix").display().to_string();
        check_value(&place, ids, "a path");
        if path.extension().is_some_and(|e| e == "parquet") {
            parquet_files += 1;
            let file = std::fs::File::open(path).expect("open");
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                for (i, field) in batch.schema().fields().iter().enumerate() {
                    let column = batch.column(i);
                    match field.data_type() {
                        DataType::Int64 => {
                            let values = column.as_primitive::<Int64Type>();
                            for v in values.iter().flatten() {
                                assert!(
                                    !nhs_as_numbers.contains(&v),
                                    "an NHS number landed as a number in {place}"
                                );
                            }
                        }
                        DataType::Date32 => {
                            let values = column.as_primitive::<arrow::datatypes::Date32Type>();
                            for v in values.iter().flatten() {
                                assert!(!forbidden_days.contains(&v), "a full birth date landed in {place}");
                            }
                            if field.name() != "birth_month" && field.name() != "death_month" {
                                continue;
                            }
                            let values = column.as_primitive::<arrow::datatypes::Date32Type>();
                            for v in values.iter().flatten() {
                                let d = from_date32(v).expect("date");
                                assert_eq!(
                                    chrono::Datelike::day(&d),
                                    1,
                                    "{} keeps the day in {place}",
                                    field.name()
                                );
                            }
                        }
                        _ => {
                            let text = arrow::compute::cast(column, &DataType::Utf8).expect("cast");
                            for v in text.as_string::<i32>().iter().flatten() {
                                check_value(v, ids, &place);
                            }
                        }
                    }
                }
            }
        } else {
            // Delta log JSON (with column statistics), checkpoints, anything else.
            let bytes = std::fs::read(path).expect("read");
            check_value(&String::from_utf8_lossy(&bytes), ids, &place);
        }
    }
    parquet_files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_link_sources_are_stable_across_runs_and_change_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 1_000, 5);
    let a = Store::parse(&dir.path().join("a").display().to_string()).expect("store");
    let b = Store::parse(&dir.path().join("b").display().to_string()).expect("store");
    let c = Store::parse(&dir.path().join("c").display().to_string()).expect("store");
    load(&options(&region, &dir.path().join("a")), &pseudonymiser())
        .await
        .expect("load a");
    load(&options(&region, &dir.path().join("b")), &pseudonymiser())
        .await
        .expect("load b");
    let other = Pseudonymiser::new(b"a different key, also long enough!!").expect("key");
    load(&options(&region, &dir.path().join("c")), &other)
        .await
        .expect("load c");

    let pa = person_ids(&a, Table::Patients, "").await;
    assert!(pa.len() > 900);
    assert_eq!(
        pa,
        person_ids(&b, Table::Patients, "").await,
        "same key, same pseudonyms"
    );
    let pc = person_ids(&c, Table::Patients, "").await;
    assert!(pa.is_disjoint(&pc), "another key, no pseudonym in common");

    // Everyone a hospital, trust or council saw is the same person_id as at their GP.
    let gp = person_ids(&a, Table::Patients, "WHERE source_org LIKE 'X9%'").await;
    let elsewhere = person_ids(&a, Table::Patients, "WHERE source_org NOT LIKE 'X9%'").await;
    assert!(elsewhere.len() > 200);
    let unlinked = elsewhere.difference(&gp).count();
    // Only people whose NHS number one of their GP practices mistyped can be unlinked.
    assert!(
        unlinked * 100 < elsewhere.len(),
        "{unlinked} of {} secondary-care people have no GP record",
        elsewhere.len()
    );
}
