//! Hostile deliveries (issue 9, the red team's loader findings): identifiers typed into
//! free fields, values that quietly corrupt, and deliveries built to stop, hang or escape
//! the load. Each test asserts what landed, what was quarantined and why, and that no
//! planted sender value reaches any output: landed files, the quarantine table, the
//! report's messages or the logs.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use poplar_loaders::Table;
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::load::{LoadReport, load};
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM};

use crate::common::*;

/// The sender values the red team planted: a name, an NHS number, a postcode and an
/// address line. None may appear in anything Poplar writes or prints.
const NAME: &str = "Ada Lovelace";
const POSTCODE: &str = "QP1 1AA";
const ADDRESS: &str = "1 Engine Row";

fn planted_nhs() -> String {
    nhs(943_476_591)
}

fn planted() -> Vec<String> {
    vec![
        NAME.to_string(),
        "Lovelace".to_string(),
        planted_nhs(),
        POSTCODE.to_string(),
        POSTCODE.replace(' ', ""),
        ADDRESS.to_string(),
    ]
}

/// Logs written while `f` runs on this thread (the loader logs from the calling task).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Load with every log line captured.
async fn load_logged(options: poplar_loaders::load::LoadOptions) -> (LoadReport, String) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let report = load(&options, &pseudonymiser()).await.expect("the load runs");
    let text = logs.text();
    assert!(!text.is_empty(), "the load's logs were captured");
    (report, text)
}

/// Every byte under `dir` (Delta logs carry column statistics in plain JSON).
fn raw_bytes(dir: &Path, out: &mut Vec<u8>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            raw_bytes(&path, out);
        } else if kind.is_file() {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
}

/// No planted value in the store (raw files and every table's rows as text), the report
/// or the logs.
async fn assert_nothing_echoed(t: &HandBuilt, report: &LoadReport, logs: &str, more: &[String]) {
    let store = t.store();
    let mut raw = Vec::new();
    raw_bytes(&t.root.join("store"), &mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let mut tables = String::new();
    for table in Table::ALL {
        let batches = rows(&store, table, "SELECT * FROM t").await;
        tables += &arrow::util::pretty::pretty_format_batches(&batches)
            .expect("render")
            .to_string();
    }
    let mut messages = String::new();
    for r in &report.rejected {
        messages += &r.describe();
        messages += &r.problem.detail;
        messages += &r.delivery;
        messages += &r.source_org;
    }
    for s in report.per_source.values() {
        messages += &format!("{:?}", s.not_understood);
    }
    for value in planted().iter().chain(more) {
        assert!(!raw.contains(value.as_str()), "a landed file holds a planted value");
        assert!(!tables.contains(value.as_str()), "a table holds a planted value");
        assert!(!messages.contains(value.as_str()), "a message holds a planted value");
        assert!(!logs.contains(value.as_str()), "the log holds a planted value");
    }
    assert!(!messages.contains('\u{1b}'), "a message holds a raw ESC");
    assert!(!logs.contains('\u{1b}'), "the log holds a raw ESC");
}

fn reasons(q: &[(String, String, Option<i64>, String)]) -> Vec<(String, String, Option<i64>, String)> {
    q.to_vec()
}

fn row(s: &str, f: &str, l: Option<i64>, r: &str) -> (String, String, Option<i64>, String) {
    (s.to_string(), f.to_string(), l, r.to_string())
}

fn rejected(report: &LoadReport) -> Vec<(String, String, String, String)> {
    let mut got: Vec<(String, String, String, String)> = report
        .rejected
        .iter()
        .map(|r| {
            (
                r.source_org.clone(),
                r.delivery.clone(),
                r.problem.file.clone(),
                r.problem.reason.code().to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

fn quad(s: &str, d: &str, f: &str, r: &str) -> (String, String, String, String) {
    (s.to_string(), d.to_string(), f.to_string(), r.to_string())
}

fn fhir_patient(id: &str, nhs_numbers: &[&str]) -> String {
    let identifiers: Vec<String> = nhs_numbers
        .iter()
        .map(|n| format!(r#"{{"system":"{NHS_NUMBER_SYSTEM}","value":"{n}"}}"#))
        .collect();
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","identifier":[{}],"name":[{{"text":"{NAME}"}}],"gender":"female","birthDate":"1960-01-01","address":[{{"line":["{ADDRESS}"],"postalCode":"{POSTCODE}"}}]}}"#,
        identifiers.join(",")
    )
}

fn fhir_observation(subject: &str, quantity: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","subject":{{"reference":"Patient/{subject}"}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"27113001"}}]}},"effectiveDateTime":"2021-03-04","valueQuantity":{quantity}}}"#
    )
}

fn fhir_condition(subject: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","subject":{{"reference":"Patient/{subject}"}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"44054006"}}]}},"onsetDateTime":"2019-03-04"}}"#
    )
}

fn ndjson(lines: &[String]) -> String {
    lines.join("\n") + "\n"
}

/// Finding 4 (identifiers through `unit` and other free fields) and finding 8's values:
/// negative quantities and dates after the extract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_in_free_fields_and_impossible_values_are_quarantined() {
    let t = HandBuilt::new();
    t.registry(vec![
        source("C00001", FeedFormat::Csv),
        source("C00002", FeedFormat::FhirNdjson),
        source("C00003", FeedFormat::Csv),
    ]);
    let a = nhs(400_000_300);
    let planted_nhs = planted_nhs();
    let mut patients = PATIENTS_HEADER.to_string();
    patients += &patient_line(&a, "1950-06-17", "2");
    let mut events = EVENTS_HEADER.to_string();
    events += &format!("{a},2020-01-01,SNOMED,27113001,72.5,kg,\n"); // 2 lands
    events += &format!("{a},2020-01-02,SNOMED,72313002,120,mmHg,\n"); // 3 lands as mm[Hg]
    events += &format!("{a},2020-01-03,SNOMED,27113001,72.5,{NAME},\n"); // 4 unknown_unit
    events += &format!("{a},2020-01-04,SNOMED,27113001,72.5,{planted_nhs},\n"); // 5 unknown_unit
    events += &format!("{a},2020-01-05,SNOMED,27113001,72.5,{POSTCODE},\n"); // 6 unknown_unit
    events += &format!("{a},2020-01-06,SNOMED,27113001,72.5,{ADDRESS},\n"); // 7 unknown_unit
    events += &format!("{a},2020-01-07,SNOMED,27113001,-5,kg,\n"); // 8 negative_value
    events += &format!("{a},2020-01-08,SNOMED,703421000,-0.5,Cel,\n"); // 9 lands: may be negative
    events += &format!("{a},2026-01-30,SNOMED,44054006,,,\n"); // 10 lands: on the extract's eve
    events += &format!("{a},2020-01-09,ICD10,A12SMITH,,,\n"); // 11 invalid_code
    let mut meds = MEDS_HEADER.to_string();
    meds += &format!("{a},2021-01-01,42013811000001109,{NAME},56\n"); // 2 lands (dosage never read)
    meds += &format!("{a},2021-01-01,42013811000001109,One daily,-28\n"); // 3 negative_value
    let mut encounters = ENCOUNTERS_HEADER.to_string();
    encounters += &format!("{a},gp,2021-01-01,2021-01-01,telephone,42\n"); // 2 lands
    encounters += &format!("{a},gp,2021-01-01,,telephone,-1\n"); // 3 negative_value
    encounters += &format!("{a},gp,2021-01-01,,{NAME},1\n"); // 4 invalid_value
    encounters += &format!("{a},inpatient,2021-01-01,9999-12-31,elective,1\n"); // 5 future_date
    t.delivery(
        "C00001",
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
    let b = nhs(400_000_400);
    let observations = ndjson(&[
        fhir_observation(
            "p1",
            r#"{"value":5.5,"system":"http://unitsofmeasure.org","code":"mmol/L"}"#,
        ), // 1 lands
        fhir_observation("p1", &format!(r#"{{"value":5.5,"unit":"{NAME}"}}"#)), // 2 unknown_unit
        fhir_observation(
            "p1",
            &format!(r#"{{"value":5.5,"system":"http://unitsofmeasure.org","code":"{planted_nhs}"}}"#),
        ), // 3 unknown_unit
        fhir_observation("p1", &format!(r#"{{"value":5.5,"unit":"{ADDRESS}, {POSTCODE}"}}"#)), // 4 unknown_unit
        fhir_observation("p1", r#"{"value":-3,"unit":"kg"}"#),                  // 5 negative_value
    ]);
    t.delivery(
        "C00002",
        "2026-01-31",
        FeedFormat::FhirNdjson,
        ("1900-01-01", "2026-01-31"),
        &[
            ("Patient.ndjson", ndjson(&[fhir_patient("p1", &[&b])])),
            ("Observation.ndjson", observations),
        ],
    );
    // The manifest says the extract was taken on 9999-12-31 so that an event of that day
    // would be "in period": the delivery is refused, and nothing of it lands.
    let mut far = EVENTS_HEADER.to_string();
    far += &format!("{a},9999-12-31,SNOMED,44054006,,,\n");
    t.delivery(
        "C00003",
        "9999-12-31",
        FeedFormat::Csv,
        ("2000-01-01", "9999-12-31"),
        &[("events.csv", far)],
    );
    // And an event after an honest extract date is quarantined `future_date`.
    let mut late = EVENTS_HEADER.to_string();
    late += &format!("{a},2026-02-01,SNOMED,44054006,,,\n");
    let dir = t.delivery(
        "C00003",
        "2026-01-31",
        FeedFormat::Csv,
        ("2000-01-01", "2026-01-31"),
        &[("events.csv", late)],
    );
    // Extracted 2026-01-31 but the period runs to 9999: only the extract date bounds it.
    write_manifest(
        &dir,
        "C00003",
        "2026-01-31",
        FeedFormat::Csv,
        date("2026-01-31"),
        (date("2000-01-01"), date("9999-12-31")),
        &[("events.csv", 1)],
    )
    .expect("manifest");

    let (report, logs) = load_logged(t.options()).await;
    assert_eq!(
        rejected(&report),
        vec![quad("C00003", "9999-12-31", "manifest.toml", "invalid_manifest")]
    );
    let got = reasons(&quarantine_rows(&t.store()).await);
    let want = vec![
        row("C00001", "encounters.csv", Some(3), "negative_value"),
        row("C00001", "encounters.csv", Some(4), "invalid_value"),
        row("C00001", "encounters.csv", Some(5), "future_date"),
        row("C00001", "events.csv", Some(4), "unknown_unit"),
        row("C00001", "events.csv", Some(5), "unknown_unit"),
        row("C00001", "events.csv", Some(6), "unknown_unit"),
        row("C00001", "events.csv", Some(7), "unknown_unit"),
        row("C00001", "events.csv", Some(8), "negative_value"),
        row("C00001", "events.csv", Some(11), "invalid_code"),
        row("C00001", "medications.csv", Some(3), "negative_value"),
        row("C00002", "Observation.ndjson", Some(2), "unknown_unit"),
        row("C00002", "Observation.ndjson", Some(3), "unknown_unit"),
        row("C00002", "Observation.ndjson", Some(4), "unknown_unit"),
        row("C00002", "Observation.ndjson", Some(5), "negative_value"),
        row("C00003", "events.csv", Some(2), "future_date"),
        row("C00003", "manifest.toml", None, "invalid_manifest"),
    ];
    assert_eq!(got, want);
    let store = t.store();
    let units = rows(
        &store,
        Table::ClinicalEvents,
        "SELECT source_org, coalesce(unit, '-') FROM t ORDER BY source_org, event_date",
    )
    .await;
    assert_eq!(texts(&units, 1), vec!["kg", "mm[Hg]", "Cel", "-", "mmol/L"]);
    assert_eq!(count(&store, Table::Medications).await, 1);
    assert_eq!(count(&store, Table::Encounters).await, 1);
    assert_nothing_echoed(&t, &report, &logs, &[a, b]).await;
}

/// Finding 4 (manifest values echoed) and finding 6 (one delivery stops, hangs or escapes
/// the load): every such delivery is refused with its reason, recorded, and the good one
/// lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_delivery_is_refused_alone_and_never_followed_or_echoed() {
    let t = HandBuilt::new();
    let ids = [
        "G01", "H01", "H02", "H03", "H04", "H05", "H06", "H07", "H08", "H09", "H10",
    ];
    t.registry(ids.iter().map(|s| source(s, FeedFormat::Csv)).collect());
    let a = nhs(400_000_500);
    let good = || {
        vec![(
            "patients.csv",
            format!("{PATIENTS_HEADER}{}", patient_line(&a, "1980-01-01", "1")),
        )]
    };
    let period = ("2000-01-01", "2026-01-31");
    let id = "2026-01-31";
    t.delivery("G01", id, FeedFormat::Csv, period, &good());
    // H01: `manifest.toml` is a directory (it used to abort the whole run).
    let dir = t.root.join("deliveries/H01").join(id);
    std::fs::create_dir_all(dir.join("manifest.toml")).expect("dir");
    // H02: a data file that is a FIFO (reading it would wait for a writer forever).
    let dir = t.delivery("H02", id, FeedFormat::Csv, period, &good());
    std::fs::remove_file(dir.join("patients.csv")).expect("rm");
    nix::unistd::mkfifo(&dir.join("patients.csv"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    // H03: a data file that is a link to a file outside the delivery, with the right hash.
    let dir = t.delivery("H03", id, FeedFormat::Csv, period, &good());
    let outside = t.root.join("outside.csv");
    std::fs::rename(dir.join("patients.csv"), &outside).expect("move");
    std::os::unix::fs::symlink(&outside, dir.join("patients.csv")).expect("link");
    // H04: a data file that is a link to /dev/zero (reading it never ends).
    let dir = t.delivery("H04", id, FeedFormat::Csv, period, &good());
    std::fs::remove_file(dir.join("patients.csv")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", dir.join("patients.csv")).expect("link");
    // H05: the delivery directory is a link to a good delivery elsewhere.
    let elsewhere = t.root.join("elsewhere");
    let real = t.delivery("G01", "2026-01-01", FeedFormat::Csv, period, &good());
    std::fs::rename(&real, &elsewhere).expect("move");
    std::fs::create_dir_all(t.root.join("deliveries/H05")).expect("dir");
    std::os::unix::fs::symlink(&elsewhere, t.root.join("deliveries/H05").join(id)).expect("link");
    // H06: a file over the cap (set low below); the manifest is honest about its size.
    let big = format!("{PATIENTS_HEADER}{}", patient_line(&a, "1980-01-01", "1")) + &" ".repeat(8_000);
    t.delivery("H06", id, FeedFormat::Csv, period, &[("patients.csv", big)]);
    // H07: a manifest value that serde would quote back (``unknown variant `...` ``).
    let dir = t.delivery("H07", id, FeedFormat::Csv, period, &good());
    let planted_nhs = planted_nhs();
    let manifest = std::fs::read_to_string(dir.join("manifest.toml"))
        .expect("read")
        .replace("format = \"csv\"", &format!("format = \"{NAME} {planted_nhs}\""));
    std::fs::write(dir.join("manifest.toml"), manifest).expect("write");
    // H08: a delivery id carrying a terminal escape and a name.
    let hostile_id = format!("2026-01-31\u{1b}[2J{NAME}");
    let dir = t.root.join("deliveries/H08").join(&hostile_id);
    std::fs::create_dir_all(&dir).expect("dir");
    // H09: a file name in the manifest that is the sender's text.
    let dir = t.root.join("deliveries/H09").join(id);
    std::fs::create_dir_all(&dir).expect("dir");
    let odd = format!("{ADDRESS}.csv");
    std::fs::write(dir.join(&odd), "x\n").expect("write");
    write_manifest(
        &dir,
        "H09",
        id,
        FeedFormat::Csv,
        date(period.1),
        (date(period.0), date(period.1)),
        &[(odd.as_str(), 0)],
    )
    .expect("manifest");
    // H10: the manifest lists one file twice (its rows would land twice).
    let dir = t.delivery("H10", id, FeedFormat::Csv, period, &good());
    write_manifest(
        &dir,
        "H10",
        id,
        FeedFormat::Csv,
        date(period.1),
        (date(period.0), date(period.1)),
        &[("patients.csv", 1), ("patients.csv", 1)],
    )
    .expect("manifest");
    // A source directory named with an NHS number.
    std::fs::create_dir_all(t.root.join("deliveries").join(&planted_nhs).join(id)).expect("dir");

    let mut options = t.options();
    options.max_file_bytes = 4_096;
    let (report, logs) = load_logged(options).await;
    assert_eq!(
        rejected(&report),
        vec![
            quad("H01", id, "manifest.toml", "unsafe_file"),
            quad("H02", id, "patients.csv", "unsafe_file"),
            quad("H03", id, "patients.csv", "unsafe_file"),
            quad("H04", id, "patients.csv", "unsafe_file"),
            quad("H05", id, "manifest.toml", "unsafe_file"),
            quad("H06", id, "patients.csv", "file_too_large"),
            quad("H07", id, "manifest.toml", "invalid_manifest"),
            quad("H08", "invalid-name-1", "manifest.toml", "invalid_name"),
            quad("H09", id, "(file name not shown)", "invalid_manifest"),
            quad("H10", id, "patients.csv", "duplicate_file"),
            quad("invalid-name-1", "-", "manifest.toml", "invalid_name"),
        ]
    );
    let h07 = report.rejected.iter().find(|r| r.source_org == "H07").expect("H07");
    assert_eq!(h07.problem.detail, "manifest format is not a valid value");
    // The good delivery landed; the refused ones are in the ledger and the quarantine.
    let store = t.store();
    assert_eq!(count(&store, Table::Patients).await, 1);
    assert_eq!(report.landed_deliveries, 1);
    let ledger = rows(
        &store,
        Table::Deliveries,
        "SELECT status, count(*) FROM t GROUP BY status ORDER BY status",
    )
    .await;
    assert_eq!(texts(&ledger, 0), vec!["landed", "rejected"]);
    assert_eq!(count(&store, Table::Quarantine).await, 11);
    assert_nothing_echoed(&t, &report, &logs, &[a, hostile_id]).await;

    // Finding 8: what the load wrote on a local store is private to its user.
    assert_private(&t.root.join("store"));
}

fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(dir).expect("meta").permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is open to others", dir.display());
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if entry.file_type().expect("type").is_dir() {
            assert_private(&path);
        } else {
            let mode = entry.metadata().expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is open to others", path.display());
        }
    }
}

/// Finding 5: values that would corrupt silently. Two Patients sharing an id, a Patient
/// with two NHS numbers, and (above) a manifest listing a file twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_fhir_people_are_quarantined_with_everything_pointing_at_them() {
    let t = HandBuilt::new();
    t.registry(vec![source("F00001", FeedFormat::FhirNdjson)]);
    let (x, y, z, w, v) = (
        nhs(400_000_600),
        nhs(400_000_700),
        nhs(400_000_800),
        planted_nhs(),
        nhs(400_000_900),
    );
    let patients = ndjson(&[
        fhir_patient("shared", &[&x]),  // 1 duplicate_resource_id
        fhir_patient("shared", &[&y]),  // 2 duplicate_resource_id
        fhir_patient("two", &[&z, &w]), // 3 conflicting_identifiers
        fhir_patient("ok", &[&v]),      // 4 lands
        fhir_patient("same", &[&y, &format!("{} {} {}", &y[..3], &y[3..6], &y[6..])]), // 5 lands: one number twice
    ]);
    let conditions = ndjson(&[
        fhir_condition("shared"), // 1 duplicate_resource_id
        fhir_condition("two"),    // 2 conflicting_identifiers
        fhir_condition("ok"),     // 3 lands
    ]);
    t.delivery(
        "F00001",
        "2026-01-31",
        FeedFormat::FhirNdjson,
        ("1900-01-01", "2026-01-31"),
        &[("Patient.ndjson", patients), ("Condition.ndjson", conditions)],
    );
    let (report, logs) = load_logged(t.options()).await;
    assert!(report.rejected.is_empty());
    let got = reasons(&quarantine_rows(&t.store()).await);
    let want = vec![
        row("F00001", "Condition.ndjson", Some(1), "duplicate_resource_id"),
        row("F00001", "Condition.ndjson", Some(2), "conflicting_identifiers"),
        row("F00001", "Patient.ndjson", Some(1), "duplicate_resource_id"),
        row("F00001", "Patient.ndjson", Some(2), "duplicate_resource_id"),
        row("F00001", "Patient.ndjson", Some(3), "conflicting_identifiers"),
    ];
    assert_eq!(got, want);
    let store = t.store();
    assert_eq!(count(&store, Table::Patients).await, 2);
    assert_eq!(count(&store, Table::ClinicalEvents).await, 1);
    assert_nothing_echoed(&t, &report, &logs, &[x, y, z, w, v]).await;
}

/// The manifest is parsed field by field: no parser message (which quotes the input)
/// reaches a detail, whatever the fault.
#[test]
fn manifest_faults_name_the_field_never_the_value() {
    use poplar_loaders::delivery::Manifest;
    let nhs = planted_nhs();
    let base = "source = \"A1\"\ndelivery = \"d\"\nformat = \"csv\"\nextracted = \"2026-01-31\"\nperiod_start = \"2000-01-01\"\nperiod_end = \"2026-01-31\"\n";
    let cases = [
        base.replace("\"csv\"", &format!("\"{NAME}\"")),
        base.replace("\"2026-01-31\"\nperiod_start", &format!("\"{nhs}\"\nperiod_start")),
        base.replace("format = \"csv\"", &format!("format = {nhs}")),
        format!("{base}[[file]]\nname = \"{ADDRESS}\"\nrows = -1\nbytes = 1\nsha256 = \"{POSTCODE}\"\n"),
        format!("{base}{NAME} = = {nhs}\n"),
        format!("{NAME}\u{1b}"),
    ];
    for case in cases {
        let problem = Manifest::parse(case.as_bytes()).expect_err("a fault");
        let text = problem.to_string();
        for value in planted() {
            assert!(!text.contains(&value), "{text}");
        }
    }
}

/// Mutate `base` a few bytes at a time: flips, deletions, insertions of hostile bytes.
fn mutate(base: &[u8], rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    use rand::Rng;
    const HOSTILE: &[&[u8]] = &[
        b",",
        b"\n",
        b"\"",
        b"\x1b[2J",
        b"\xff\xfe",
        b"{",
        b"}",
        b"-1e308",
        b"9999-12-31",
        b"\0",
        b"Ada Lovelace",
    ];
    let mut out = base.to_vec();
    for _ in 0..rng.random_range(1..6) {
        if out.is_empty() {
            out.extend_from_slice(HOSTILE[rng.random_range(0..HOSTILE.len())]);
            continue;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..3) {
            0 => out[at] = rng.random(),
            1 => {
                let end = (at + rng.random_range(1..16)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let piece = HOSTILE[rng.random_range(0..HOSTILE.len())];
                out.splice(at..at, piece.iter().copied());
            }
        }
    }
    out
}

/// A cheap, deterministic fuzz of both parsers and the manifest reader, run with the
/// tests: mutated deliveries never panic, and whatever they are quarantined or rejected
/// for, the detail carries no planted value.
#[test]
fn mutated_deliveries_never_panic_the_parsers_or_echo_them() {
    use poplar_loaders::delivery::{Manifest, discover};
    use poplar_loaders::lookup::PostcodeLookup;
    use poplar_loaders::parse::{ParseContext, parse_delivery};
    use rand::SeedableRng;
    let t = HandBuilt::new();
    let lookup = PostcodeLookup::from_files(
        &t.root.join("lookups/postcode_lsoa.csv"),
        &t.root.join("lookups/imd2019_lsoa.csv"),
    )
    .expect("lookup");
    let pseudonymiser = pseudonymiser();
    let optouts = std::collections::HashSet::new();
    let (csv_source, fhir_source) = (
        source("M00001", FeedFormat::Csv),
        source("M00002", FeedFormat::FhirNdjson),
    );
    let a = planted_nhs();
    let csv_files: Vec<(&str, String)> = vec![
        (
            "patients.csv",
            format!("{PATIENTS_HEADER}{}", patient_line(&a, "1950-06-17", "2")),
        ),
        (
            "events.csv",
            format!("{EVENTS_HEADER}{a},2020-01-01,SNOMED,27113001,72.5,kg,{NAME}\n"),
        ),
        (
            "medications.csv",
            format!("{MEDS_HEADER}{a},2021-01-01,42013811000001109,{ADDRESS},56\n"),
        ),
        (
            "encounters.csv",
            format!("{ENCOUNTERS_HEADER}{a},gp,2021-01-01,,telephone,42\n"),
        ),
    ];
    let fhir_files: Vec<(&str, String)> = vec![
        ("Patient.ndjson", ndjson(&[fhir_patient("p1", &[&a])])),
        (
            "Observation.ndjson",
            ndjson(&[fhir_observation("p1", r#"{"value":5.5,"unit":"mmol/L"}"#)]),
        ),
        ("Condition.ndjson", ndjson(&[fhir_condition("p1")])),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let period = ("1900-01-01", "2026-01-31");
    for round in 0..150 {
        let id = format!("2026-01-{:02}", 1 + round % 28);
        for (ods, format, files, src) in [
            ("M00001", FeedFormat::Csv, &csv_files, &csv_source),
            ("M00002", FeedFormat::FhirNdjson, &fhir_files, &fhir_source),
        ] {
            let input = t.root.join(format!("fuzz-{round}-{ods}"));
            let dir = input.join(ods).join(&id);
            std::fs::create_dir_all(&dir).expect("dir");
            let mut declared = Vec::new();
            for (name, content) in files.iter() {
                std::fs::write(dir.join(name), mutate(content.as_bytes(), &mut rng)).expect("write");
                declared.push((*name, 1));
            }
            write_manifest(
                &dir,
                ods,
                &id,
                format,
                date(period.1),
                (date(period.0), date(period.1)),
                &declared,
            )
            .expect("manifest");
            if round % 3 == 0 {
                let manifest = std::fs::read(dir.join("manifest.toml")).expect("read");
                let mutated = mutate(&manifest, &mut rng);
                if let Err(problem) = Manifest::parse(&mutated) {
                    let text = problem.to_string();
                    assert!(planted().iter().all(|v| !text.contains(v.as_str())), "{text}");
                }
                std::fs::write(dir.join("manifest.toml"), mutated).expect("write");
            }
            let (found, rejected) = discover(&input).expect("discover");
            let mut details: Vec<String> = rejected.iter().map(|r| r.describe()).collect();
            for d in &found {
                let ctx = ParseContext {
                    pseudonymiser: &pseudonymiser,
                    lookup: &lookup,
                    optouts: &optouts,
                    source: src,
                    max_file_bytes: 1 << 20,
                };
                match parse_delivery(d, &ctx) {
                    Ok(parsed) => details.extend(parsed.quarantined.iter().map(|q| format!("{q:?}"))),
                    Err(q) => details.push(format!("{q:?}")),
                }
            }
            for detail in details {
                assert!(
                    planted().iter().all(|v| !detail.contains(v.as_str())) && !detail.contains('\u{1b}'),
                    "{detail}"
                );
            }
            std::fs::remove_dir_all(&input).expect("clean");
        }
    }
}
