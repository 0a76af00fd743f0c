//! Integration tests of the loaders: synthetic region → load → what landed.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::NaiveDate;
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::landing::{self, Snapshot};
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Registry, Source};
use poplar_loaders::synth::{self, OrgMix, SynthConfig, SynthOutput};
use poplar_loaders::{NhsNumber, Pseudonymiser, Store, Table};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

const KEY: &[u8] = b"integration-test-key-0123456789abcdef";

fn pseudonymiser() -> Pseudonymiser {
    Pseudonymiser::new(KEY).expect("key")
}

fn small_mix() -> OrgMix {
    OrgMix {
        gp_practices: 12,
        acute_trusts: 2,
        mental_health_trusts: 1,
        community_providers: 2,
        social_care: 3,
    }
}

fn region(dir: &Path, patients: u64, seed: u64) -> SynthOutput {
    let mut config = SynthConfig::new(patients, seed);
    config.mix = small_mix();
    config.fhir_share = 0.3;
    config.pilot_patients = 2_000;
    synth::generate(&config, dir).expect("synth")
}

fn options(region: &SynthOutput, store: &Path) -> LoadOptions {
    LoadOptions {
        registry: region.registry.clone(),
        input: region.deliveries.clone(),
        store: Store::parse(&store.display().to_string()).expect("store"),
        postcodes: region.postcodes.clone(),
        imd: region.imd.clone(),
        optout: None,
        group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
        progress: false,
    }
}

async fn snapshot(store: &Store) -> Snapshot {
    landing::latest_snapshot(store)
        .await
        .expect("snapshot")
        .expect("a snapshot exists")
}

/// All rows of a table as the latest snapshot sees them.
async fn rows(store: &Store, table: Table, sql: &str) -> Vec<RecordBatch> {
    let snap = snapshot(store).await;
    match snap.open(store, table).await.expect("open") {
        Some(t) => landing::query(&t, sql).await.expect("query"),
        None => Vec::new(),
    }
}

async fn count(store: &Store, table: Table) -> u64 {
    let batches = rows(store, table, "SELECT count(*) FROM t").await;
    batches
        .first()
        .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0) as u64)
}

async fn person_ids(store: &Store, table: Table, filter: &str) -> HashSet<i64> {
    let batches = rows(store, table, &format!("SELECT person_id FROM t {filter}")).await;
    landing::int64_values(&batches, 0).into_iter().collect()
}

fn texts(batches: &[RecordBatch], column: usize) -> Vec<String> {
    landing::string_values(batches, column)
        .expect("text")
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

#[test]
fn synth_is_deterministic_for_a_seed_and_differs_across_seeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = |out: &SynthOutput| -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for source in std::fs::read_dir(&out.deliveries).expect("dir") {
            let source = source.expect("entry").path();
            for delivery in std::fs::read_dir(&source).expect("dir") {
                let path = delivery.expect("entry").path().join("manifest.toml");
                m.insert(
                    path.strip_prefix(&out.deliveries)
                        .expect("prefix")
                        .display()
                        .to_string(),
                    std::fs::read_to_string(&path).expect("manifest"),
                );
            }
        }
        m
    };
    let a = region(&dir.path().join("a"), 800, 7);
    let b = region(&dir.path().join("b"), 800, 7);
    let c = region(&dir.path().join("c"), 800, 8);
    assert_eq!(manifests(&a), manifests(&b), "same seed, same bytes");
    assert_ne!(manifests(&a), manifests(&c), "another seed, other data");
    assert_eq!(a.report.organisations.values().sum::<usize>(), small_mix().total());
    let formats: HashSet<FeedFormat> = Registry::from_file(&a.registry)
        .expect("registry")
        .sources
        .iter()
        .map(|s| s.format)
        .collect();
    assert!(
        formats.contains(&FeedFormat::Csv) && formats.contains(&FeedFormat::FhirNdjson),
        "both feed formats appear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_faults_are_quarantined_exactly_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(&dir.path().join("region"), 2_000, 11);
    let report = load(&options(&region, &dir.path().join("store")), &pseudonymiser())
        .await
        .expect("load");
    let planted = &region.report.planted;
    assert_eq!(
        report.source_rows_read, region.report.source_rows,
        "every source row was read"
    );
    let q = |reason: &str| report.quarantined.get(reason).copied().unwrap_or(0);
    assert_eq!(q("invalid_nhs_number"), planted["invalid_nhs_number_rows"]);
    assert_eq!(q("duplicate_patient"), planted["duplicate_patient_rows"]);
    assert_eq!(q("invalid_date"), planted["invalid_date_rows"]);
    assert_eq!(q("unknown_code_system"), planted["unknown_code_system_rows"]);
    let landed: u64 = report.rows_landed.values().sum();
    let quarantined: u64 = report.quarantined.values().sum();
    assert_eq!(
        landed + quarantined,
        report.source_rows_read,
        "each row landed or quarantined, none dropped"
    );
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    for table in [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
    ] {
        assert_eq!(
            count(&store, table).await,
            report.rows_landed[table.name()],
            "{table:?}"
        );
    }
    assert_eq!(count(&store, Table::Quarantine).await, quarantined);
    assert_eq!(count(&store, Table::Organisations).await, small_mix().total() as u64);
    assert_eq!(count(&store, Table::Deliveries).await, small_mix().total() as u64);
}

/// Every identifier in the input, as a test can find them.
struct Identifiers {
    nhs_numbers: HashSet<String>,
    words: HashSet<String>,
    phrases: HashSet<String>,
    /// All phrases but dates at once (dates of birth are also ordinary event dates;
    /// day-precision birth dates are checked separately: birth_month is always the 1st).
    phrase_matcher: Option<aho_corasick::AhoCorasick>,
}

fn input_identifiers(region: &SynthOutput) -> Identifiers {
    let mut ids = Identifiers {
        nhs_numbers: HashSet::new(),
        words: HashSet::new(),
        phrases: HashSet::new(),
        phrase_matcher: None,
    };
    for source in std::fs::read_dir(&region.deliveries).expect("dir") {
        for delivery in std::fs::read_dir(source.expect("e").path()).expect("dir") {
            let dir = delivery.expect("e").path();
            if let Ok(text) = std::fs::read_to_string(dir.join("patients.csv")) {
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                for row in reader.records() {
                    let row = row.expect("row");
                    ids.nhs_numbers.insert(row[0].replace(' ', ""));
                    ids.words.insert(row[1].to_string());
                    ids.words.insert(row[2].to_string());
                    ids.phrases.insert(row[6].to_string()); // address line
                    ids.phrases.insert(row[8].to_string()); // postcode
                    ids.phrases.insert(row[8].replace(' ', ""));
                    ids.phrases.insert(row[9].to_string()); // phone
                    ids.phrases.insert(row[3].to_string()); // full date of birth
                }
            }
            if let Ok(text) = std::fs::read_to_string(dir.join("Patient.ndjson")) {
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).expect("json");
                    ids.nhs_numbers
                        .insert(v["identifier"][0]["value"].as_str().expect("nhs").replace(' ', ""));
                    ids.words
                        .insert(v["name"][0]["family"].as_str().expect("family").to_string());
                    ids.words
                        .insert(v["name"][0]["given"][0].as_str().expect("given").to_string());
                    ids.phrases
                        .insert(v["address"][0]["line"][0].as_str().expect("line").to_string());
                    let postcode = v["address"][0]["postalCode"].as_str().expect("postcode");
                    ids.phrases.insert(postcode.to_string());
                    ids.phrases.insert(postcode.replace(' ', ""));
                    ids.phrases
                        .insert(v["telecom"][0]["value"].as_str().expect("phone").to_string());
                    ids.phrases.insert(v["birthDate"].as_str().expect("dob").to_string());
                }
            }
        }
    }
    let searchable: Vec<&String> = ids
        .phrases
        .iter()
        .filter(|p| !(p.len() == 10 && p.as_bytes()[4] == b'-'))
        .collect();
    ids.phrase_matcher = Some(aho_corasick::AhoCorasick::new(searchable).expect("automaton"));
    ids
}

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
    let nhs_as_numbers: HashSet<i64> = ids.nhs_numbers.iter().filter_map(|n| n.parse().ok()).collect();

    let mut files = Vec::new();
    all_files(&store_dir, &mut files);
    let mut parquet_files = 0;
    for path in &files {
        let place = path.strip_prefix(&store_dir).expect("prefix").display().to_string();
        check_value(&place, &ids, "a path");
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
                        DataType::Date32 if field.name() == "birth_month" || field.name() == "death_month" => {
                            let values = column.as_primitive::<arrow::datatypes::Date32Type>();
                            for v in values.iter().flatten() {
                                let d = NaiveDate::from_num_days_from_ce_opt(v + 719_163).expect("date");
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
                                check_value(v, &ids, &place);
                            }
                        }
                    }
                }
            }
        } else {
            // Delta log JSON (with column statistics), checkpoints, anything else.
            let bytes = std::fs::read(path).expect("read");
            check_value(&String::from_utf8_lossy(&bytes), &ids, &place);
        }
    }
    assert!(
        parquet_files > 20,
        "the test read the landed data ({parquet_files} files)"
    );
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

// ----- hand-built deliveries -----

fn source(ods: &str, format: FeedFormat) -> Source {
    Source {
        ods: ods.into(),
        name: format!("{ods} test"),
        org_type: OrgType::GpPractice,
        format,
        identifier_system: NHS_NUMBER_SYSTEM.into(),
        pcn: Some("U1".into()),
        pcn_name: None,
        sub_icb: "9S1".into(),
        icb: "QP1".into(),
    }
}

fn nhs(stem: u32) -> String {
    (stem..)
        .find_map(NhsNumber::from_stem)
        .expect("valid")
        .to_digit_string()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

struct HandBuilt {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl HandBuilt {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("lookups")).expect("dir");
        std::fs::write(
            root.join("lookups/postcode_lsoa.csv"),
            "pcd7,pcd8,pcds,dointr,doterm,usertype,oa11cd,lsoa11cd,msoa11cd,ladcd,lsoa11nm,msoa11nm,ladnm,ladnmw\nQP1 1AA,QP1  1AA,QP1 1AA,199801,,0,E00900001,E01900001,E02900001,E08900001,A 1A,A 1,A,\n",
        )
        .expect("write");
        std::fs::write(
            root.join("lookups/imd2019_lsoa.csv"),
            "\"LSOA code (2011)\",\"LSOA name (2011)\",\"Local Authority District code (2019)\",\"Local Authority District name (2019)\",\"Index of Multiple Deprivation (IMD) Rank\",\"Index of Multiple Deprivation (IMD) Decile\"\nE01900001,A 1A,E08900001,A,100,1\n",
        )
        .expect("write");
        Self { _dir: dir, root }
    }

    fn registry(&self, sources: Vec<Source>) {
        let registry = Registry {
            region: "test".into(),
            sources,
        };
        std::fs::write(self.root.join("sources.toml"), registry.to_toml().expect("toml")).expect("write");
    }

    /// Write a delivery; `files` are (name, content) with the header line included for CSV.
    fn delivery(
        &self,
        ods: &str,
        id: &str,
        format: FeedFormat,
        period: (&str, &str),
        files: &[(&str, String)],
    ) -> PathBuf {
        let dir = self.root.join("deliveries").join(ods).join(id);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut declared = Vec::new();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write");
            let rows =
                content.lines().filter(|l| !l.trim().is_empty()).count() as u64 - u64::from(format == FeedFormat::Csv);
            declared.push((*name, rows));
        }
        write_manifest(
            &dir,
            ods,
            id,
            format,
            date(period.1),
            (date(period.0), date(period.1)),
            &declared,
        )
        .expect("manifest");
        dir
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            registry: self.root.join("sources.toml"),
            input: self.root.join("deliveries"),
            store: Store::parse(&self.root.join("store").display().to_string()).expect("store"),
            postcodes: self.root.join("lookups/postcode_lsoa.csv"),
            imd: self.root.join("lookups/imd2019_lsoa.csv"),
            optout: None,
            group_rows: 1_000_000,
            progress: false,
        }
    }

    fn store(&self) -> Store {
        Store::parse(&self.root.join("store").display().to_string()).expect("store")
    }
}

const PATIENTS_HEADER: &str = "nhs_number,given_name,family_name,date_of_birth,sex,ethnic_category,address_line_1,address_line_2,postcode,phone,registered_from,registered_to,date_of_death\n";
const EVENTS_HEADER: &str = "nhs_number,event_date,code_system,code,value,unit,free_text\n";
const MEDS_HEADER: &str = "nhs_number,issue_date,dmd_code,dosage_text,quantity\n";
const ENCOUNTERS_HEADER: &str = "nhs_number,setting,start_date,end_date,encounter_type,cost\n";

fn patient_line(nhs: &str, dob: &str, sex: &str) -> String {
    format!("{nhs},Ada,Lovelace,{dob},{sex},A,1 Engine Row,Town,QP1 1AA,07700 900001,2010-01-01,,\n")
}

async fn quarantine_rows(store: &Store) -> Vec<(String, String, Option<i64>, String)> {
    let batches = rows(
        store,
        Table::Quarantine,
        "SELECT source_org, file, line, reason FROM t ORDER BY source_org, file, line",
    )
    .await;
    let (s, f, r) = (texts(&batches, 0), texts(&batches, 1), texts(&batches, 3));
    let lines: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(2).as_primitive::<Int64Type>().clone();
            (0..a.len()).map(move |i| (!a.is_null(i)).then(|| a.value(i)))
        })
        .collect();
    (0..s.len())
        .map(|i| (s[i].clone(), f[i].clone(), lines[i], r[i].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_level_quarantine_reason_is_recorded_with_file_and_line() {
    let t = HandBuilt::new();
    t.registry(vec![
        source("A00001", FeedFormat::Csv),
        source("A00002", FeedFormat::FhirNdjson),
    ]);
    let (a, b) = (nhs(943_476_591), nhs(400_000_100));
    let bad_check = format!("{}{}", &a[..9], (a.as_bytes()[9] - b'0' + 1) % 10);
    let mut patients = PATIENTS_HEADER.to_string();
    patients += &patient_line(&a, "1950-06-17", "2"); // 2 lands
    patients += &patient_line(&bad_check, "1950-06-17", "2"); // 3 invalid_nhs_number
    patients += &patient_line("", "1950-06-17", "2"); // 4 missing_nhs_number
    patients += &patient_line(&b, "1950-13-01", "1"); // 5 invalid_date
    patients += &patient_line(&b, "2031-01-01", "1"); // 6 date_out_of_range
    patients += &patient_line(&a, "1950-06-17", "2"); // 7 duplicate_patient
    patients += &format!("{b},Too,Few,Columns\n"); // 8 wrong_column_count
    patients += &patient_line(&b, "1960-01-01", "Q"); // 9 invalid_value (sex)
    let mut events = EVENTS_HEADER.to_string();
    events += &format!("{a},2020-01-01,SNOMED,44054006,,,\n"); // 2 lands
    events += &format!("{a},2020-01-01,READ2,C10..,,,\n"); // 3 unknown_code_system
    events += &format!("{a},2020-01-01,SNOMED,abc,,,\n"); // 4 invalid_code
    events += &format!("{a},2020-01-01,SNOMED,72313002,high,mm[Hg],\n"); // 5 invalid_value
    events += &format!("{a},1999-05-05,SNOMED,44054006,,,\n"); // 6 outside_delivery_period
    events += &format!("{a},2020-02-30,SNOMED,44054006,,,\n"); // 7 invalid_date
    let mut meds = MEDS_HEADER.to_string();
    meds += &format!("{a},2021-01-01,42013811000001109,One daily,56\n"); // 2 lands
    meds += &format!("{a},2021-01-01,x,One daily,56\n"); // 3 invalid_code
    let mut encounters = ENCOUNTERS_HEADER.to_string();
    encounters += &format!("{a},gp,2021-01-01,2021-01-01,telephone,42\n"); // 2 lands
    encounters += &format!("{a},pharmacy,2021-01-01,,telephone,42\n"); // 3 invalid_value (setting)
    encounters += &format!("{a},inpatient,2021-01-05,2021-01-01,emergency,900\n"); // 4 invalid_date
    encounters += &format!("{a},gp,2021-01-01,,Ada said she felt unwell,42\n"); // 5 invalid_value (free text)
    t.delivery(
        "A00001",
        "2026-01-31",
        FeedFormat::Csv,
        ("2000-01-01", "2026-01-31"),
        &[
            ("patients.csv", patients),
            ("events.csv", events),
            ("medications.csv", meds),
            ("encounters.csv", encounters),
        ],
    );
    let fhir_patients = [
        format!(r#"{{"resourceType":"Patient","id":"p1","identifier":[{{"system":"{NHS_NUMBER_SYSTEM}","value":"{b}"}}],"gender":"male","birthDate":"1970-02-03","address":[{{"postalCode":"QP1 1AA"}}]}}"#),
        "{not json".to_string(),
        r#"{"resourceType":"Condition","id":"c0"}"#.to_string(),
    ]
    .join("\n")
        + "\n";
    let conditions = [
        r#"{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2019-03-04"}"#,
        r#"{"resourceType":"Condition","subject":{"reference":"Patient/nope"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2019-03-04"}"#,
    ]
    .join("\n")
        + "\n";
    t.delivery(
        "A00002",
        "2026-01-31",
        FeedFormat::FhirNdjson,
        ("1900-01-01", "2026-01-31"),
        &[("Patient.ndjson", fhir_patients), ("Condition.ndjson", conditions)],
    );

    let report = load(&t.options(), &pseudonymiser()).await.expect("load");
    assert!(
        report.rejected.is_empty(),
        "{:?}",
        report.rejected.iter().map(|r| r.describe()).collect::<Vec<_>>()
    );
    let got = quarantine_rows(&t.store()).await;
    let want: Vec<(String, String, Option<i64>, String)> = [
        ("A00001", "encounters.csv", 3, "invalid_value"),
        ("A00001", "encounters.csv", 4, "invalid_date"),
        ("A00001", "encounters.csv", 5, "invalid_value"),
        ("A00001", "events.csv", 3, "unknown_code_system"),
        ("A00001", "events.csv", 4, "invalid_code"),
        ("A00001", "events.csv", 5, "invalid_value"),
        ("A00001", "events.csv", 6, "outside_delivery_period"),
        ("A00001", "events.csv", 7, "invalid_date"),
        ("A00001", "medications.csv", 3, "invalid_code"),
        ("A00001", "patients.csv", 3, "invalid_nhs_number"),
        ("A00001", "patients.csv", 4, "missing_nhs_number"),
        ("A00001", "patients.csv", 5, "invalid_date"),
        ("A00001", "patients.csv", 6, "date_out_of_range"),
        ("A00001", "patients.csv", 7, "duplicate_patient"),
        ("A00001", "patients.csv", 8, "wrong_column_count"),
        ("A00001", "patients.csv", 9, "invalid_value"),
        ("A00002", "Condition.ndjson", 2, "unknown_subject"),
        ("A00002", "Patient.ndjson", 2, "invalid_json"),
        ("A00002", "Patient.ndjson", 3, "unexpected_resource"),
    ]
    .iter()
    .map(|(s, f, l, r)| (s.to_string(), f.to_string(), Some(*l), r.to_string()))
    .collect();
    assert_eq!(got, want);
    let store = t.store();
    assert_eq!(count(&store, Table::Patients).await, 2);
    assert_eq!(count(&store, Table::ClinicalEvents).await, 2);
    assert_eq!(count(&store, Table::Medications).await, 1);
    assert_eq!(count(&store, Table::Encounters).await, 1);
    // The quarantine says where and why, never what: no NHS number or name in it.
    let all = rows(&store, Table::Quarantine, "SELECT * FROM t").await;
    let rendered = arrow::util::pretty::pretty_format_batches(&all)
        .expect("render")
        .to_string();
    for secret in [
        a.as_str(),
        b.as_str(),
        bad_check.as_str(),
        "Lovelace",
        "Ada",
        "Engine Row",
        "QP1 1AA",
    ] {
        assert!(!rendered.contains(secret), "quarantine shows an identifier");
    }
    // Patients land de-identified: LSOA and decile from the postcode, birth month only.
    let p = rows(
        &store,
        Table::Patients,
        "SELECT lsoa, imd_decile, CAST(birth_month AS VARCHAR), sex FROM t WHERE source_org = 'A00001'",
    )
    .await;
    assert_eq!(texts(&p, 0), vec!["E01900001"]);
    assert_eq!(texts(&p, 2), vec!["1950-06-01"]);
    assert_eq!(texts(&p, 3), vec!["female"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_level_fault_rejects_the_delivery_names_the_file_and_lands_nothing() {
    let t = HandBuilt::new();
    let sources: Vec<Source> = ["B01", "B02", "B03", "B04", "B05", "B06", "B07"]
        .iter()
        .map(|s| source(s, FeedFormat::Csv))
        .collect();
    t.registry(sources);
    let a = nhs(400_000_200);
    let good = || {
        vec![(
            "patients.csv",
            format!("{PATIENTS_HEADER}{}", patient_line(&a, "1980-01-01", "1")),
        )]
    };
    let period = ("2000-01-01", "2026-01-31");
    // Unknown source: not in the registry.
    t.delivery("ZZ999", "2026-01-31", FeedFormat::Csv, period, &good());
    // Wrong header.
    t.delivery(
        "B01",
        "2026-01-31",
        FeedFormat::Csv,
        period,
        &[("patients.csv", format!("nhs,name\n{a},x\n"))],
    );
    // Truncated after the manifest was written.
    let dir = t.delivery("B02", "2026-01-31", FeedFormat::Csv, period, &good());
    let full = std::fs::read(dir.join("patients.csv")).expect("read");
    std::fs::write(dir.join("patients.csv"), &full[..full.len() - 10]).expect("truncate");
    // Same size, different bytes.
    let dir = t.delivery("B03", "2026-01-31", FeedFormat::Csv, period, &good());
    let mut bytes = std::fs::read(dir.join("patients.csv")).expect("read");
    let last = bytes.len() - 2;
    bytes[last] = b'X';
    std::fs::write(dir.join("patients.csv"), bytes).expect("write");
    // No manifest at all.
    let dir = t.root.join("deliveries/B04/2026-01-31");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("patients.csv"),
        format!("{PATIENTS_HEADER}{}", patient_line(&a, "1980-01-01", "1")),
    )
    .expect("write");
    // The manifest declares more rows than the file has (a control-total mismatch).
    let dir = t.delivery("B05", "2026-01-31", FeedFormat::Csv, period, &good());
    let manifest = std::fs::read_to_string(dir.join("manifest.toml"))
        .expect("read")
        .replace("rows = 1", "rows = 2");
    std::fs::write(dir.join("manifest.toml"), manifest).expect("write");
    // The manifest says FHIR where the registry says CSV.
    t.delivery(
        "B06",
        "2026-01-31",
        FeedFormat::FhirNdjson,
        period,
        &[("Patient.ndjson", "{}\n".to_string())],
    );
    // A file the feed never sends.
    t.delivery(
        "B07",
        "2026-01-31",
        FeedFormat::Csv,
        period,
        &[("notes.txt", "free text\n".to_string())],
    );

    let report = load(&t.options(), &pseudonymiser()).await.expect("load");
    let mut got: Vec<(String, String, String)> = report
        .rejected
        .iter()
        .map(|r| {
            (
                r.source_org.clone(),
                r.problem.file.clone(),
                r.problem.reason.code().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("B01", "patients.csv", "wrong_header"),
        ("B02", "patients.csv", "truncated_file"),
        ("B03", "patients.csv", "checksum_mismatch"),
        ("B04", "manifest.toml", "missing_manifest"),
        ("B05", "patients.csv", "row_count_mismatch"),
        ("B06", "manifest.toml", "format_mismatch"),
        ("B07", "notes.txt", "invalid_manifest"),
        ("ZZ999", "manifest.toml", "unknown_source"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    for r in &report.rejected {
        let message = r.describe();
        assert!(
            message.contains(&r.problem.file) && message.contains(&r.source_org),
            "{message}"
        );
        assert!(!message.contains(&a), "message shows an NHS number");
    }
    let store = t.store();
    assert_eq!(
        count(&store, Table::Patients).await,
        0,
        "nothing from a rejected delivery lands"
    );
    let q = quarantine_rows(&store).await;
    assert_eq!(q.len(), 8);
    assert!(
        q.iter().all(|(_, _, line, _)| line.is_none()),
        "delivery-level records have no line"
    );
    let ledger = rows(&store, Table::Deliveries, "SELECT status FROM t").await;
    assert!(texts(&ledger, 0).iter().all(|s| s == "rejected"));
}

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
