//! Quarantine: planted and hand-made faults are recorded with file, line and reason;
//! delivery-level faults reject the whole delivery and land nothing.

use poplar_loaders::load::load;
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, Source};
use poplar_loaders::{Store, Table};

use crate::common::*;

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
    patients += &patient_line(&b, "2031-01-01", "1"); // 6 future_date
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
        ("A00001", "patients.csv", 6, "future_date"),
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
