//! FHIR R4 as real systems send it (UK Core / GP Connect / Synthea-style), from the
//! hand-written fixtures in `../fixtures/fhir/`: what lands, what is quarantined, what the
//! load summary counts as not understood, and that no identifier of the fixtures lands.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use poplar_loaders::Table;
use poplar_loaders::dates::{date32, from_date32};
use poplar_loaders::load::{LoadReport, load};
use poplar_loaders::registry::FeedFormat;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::common::*;
use crate::deidentification::assert_no_identifier_landed;
use crate::fhir_feed::{FHIR_FIXTURES, export_files, write_delivery};

/// Write the fixture directory `ods` as a delivery of that practice.
fn deliver(hb: &HandBuilt, ods: &str) {
    write_delivery(&hb.root.join("deliveries"), ods, "2025-09-30", &export_files(ods));
}

async fn loaded() -> (HandBuilt, LoadReport) {
    let hb = HandBuilt::new();
    hb.registry(vec![
        source("A81001", FeedFormat::FhirNdjson),
        source("A81002", FeedFormat::FhirNdjson),
    ]);
    deliver(&hb, "A81001");
    deliver(&hb, "A81002");
    let report = load(&hb.options(), &pseudonymiser()).await.expect("load");
    (hb, report)
}

fn day(d: Option<i32>) -> String {
    d.and_then(from_date32).map_or("-".into(), |d| d.to_string())
}

fn dates(batches: &[arrow::array::RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_primitive::<Date32Type>().clone();
            (0..a.len())
                .map(move |i| day((!a.is_null(i)).then(|| a.value(i))))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn optional_i64(batches: &[arrow::array::RecordBatch], column: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_primitive::<Int64Type>().clone();
            (0..a.len())
                .map(move |i| (!a.is_null(i)).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn optional_f64(batches: &[arrow::array::RecordBatch], column: usize) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_primitive::<Float64Type>().clone();
            (0..a.len())
                .map(move |i| (!a.is_null(i)).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uk_core_and_gp_connect_shapes_land_as_expected() {
    let (hb, report) = loaded().await;
    let store = hb.store();

    // Patients: every shape lands. Ordered by birth month, which is unique here.
    let p = rows(
        &store,
        Table::Patients,
        "SELECT source_org, birth_month, sex, ethnic_category, lsoa, registration_start, \
         registration_end, death_month FROM t ORDER BY birth_month",
    )
    .await;
    let got: Vec<String> = (0..texts(&p, 0).len())
        .map(|i| {
            format!(
                "{} {} {} {} {} {} {} {}",
                texts(&p, 0)[i],
                dates(&p, 1)[i],
                texts(&p, 2)[i],
                texts(&p, 3)[i],
                texts(&p, 4)[i],
                dates(&p, 5)[i],
                dates(&p, 6)[i],
                dates(&p, 7)[i],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // deceasedBoolean: no death month; registered from the earliest record (2010).
            "A81001 1940-01-01 female  E01900001 2010-02-02 - -",
            // deceasedDateTime 23:30Z on 30 June is 1 July in England.
            "A81001 1950-03-01 male  E01900001 2024-01-10 - 2025-07-01",
            // UK Core ethnicity, NHS number with the verification extension,
            // generalPractitioner = this practice: registered from the first record.
            "A81001 1960-05-01 female A E01900001 2018-03-04 - -",
            // GP Connect registrationPeriod.
            "A81002 1970-10-01 male  E01900001 2015-04-01 - -",
            // CareConnect ethnicity; a postcode not in the lookup.
            "A81001 1975-11-01 male M  2019-07-10 - -",
            // A feed that states registration for anyone is taken at its word.
            "A81002 1982-12-01 female  E01900001 - - -",
            // generalPractitioner names another practice: not registered here.
            "A81001 1988-08-01 female  E01900001 - - -",
        ]
    );

    // Events: SNOMED CT and LOINC, with UCUM units; blood pressure as two readings.
    let e = rows(
        &store,
        Table::ClinicalEvents,
        "SELECT event_date, code_system, code, value, unit, setting FROM t \
         ORDER BY event_date, code",
    )
    .await;
    let values = optional_f64(&e, 3);
    let got: Vec<String> = (0..values.len())
        .map(|i| {
            format!(
                "{} {} {} {} {}",
                dates(&e, 0)[i],
                texts(&e, 1)[i],
                texts(&e, 2)[i],
                values[i].map_or("-".into(), |v| v.to_string()),
                texts(&e, 4)[i],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "2010-02-02 snomed 195967001 - ",
            "2016-09-09 snomed 44054006 - ",
            "2017-01-01 snomed 195967001 - ",
            "2018-03-04 snomed 44054006 - ",
            "2019-07-10 snomed 38341003 - ",
            "2023-06-01 snomed 27113001 70.5 kg",
            "2023-06-01 loinc 4548-4 7.1 %",
            "2023-06-02 loinc 8462-4 84 mm[Hg]",
            "2023-06-02 loinc 8480-6 132 mm[Hg]",
            "2024-01-10 snomed 49436004 - ",
        ]
    );
    assert!(texts(&e, 5).iter().all(|s| s == "gp"));

    // Medications: codeable concept, contained and separate Medication references.
    let m = rows(
        &store,
        Table::Medications,
        "SELECT issue_date, dmd_code, quantity FROM t ORDER BY issue_date",
    )
    .await;
    assert_eq!(dates(&m, 0), ["2024-02-01", "2024-02-02", "2024-02-03"]);
    assert_eq!(
        optional_i64(&m, 1),
        [Some(322236009), Some(39113611000001102), Some(39732311000001104)]
    );
    assert_eq!(optional_f64(&m, 2), [Some(32.0), Some(28.0), None]);

    // Encounters: each class, SNOMED types kept, offsets read as dates in England.
    let n = rows(
        &store,
        Table::Encounters,
        "SELECT start_date, end_date, setting, encounter_type, encounter_snomed FROM t \
         ORDER BY start_date",
    )
    .await;
    let snomed = optional_i64(&n, 4);
    let got: Vec<String> = (0..snomed.len())
        .map(|i| {
            format!(
                "{} {} {} {} {}",
                dates(&n, 0)[i],
                dates(&n, 1)[i],
                texts(&n, 2)[i],
                texts(&n, 3)[i],
                snomed[i].map_or("-".into(), |v| v.to_string()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // AMB from a GP practice is a GP consultation.
            "2020-01-05 - gp telephone 185317003",
            "2024-03-01 - gp face_to_face 185349003",
            // EMER at 23:30Z on 31 March 2024 is 00:30 BST on 1 April; an unmapped type.
            "2024-04-01 2024-04-01 a&e  50849002",
            // VR names no setting: the practice's own (gp), as a video consultation.
            "2024-04-02 - gp video -",
            "2024-04-03 - inpatient day_case -",
            "2024-04-04 2024-04-09 inpatient emergency 183452005",
            "2024-04-05 - community  -",
            "2024-04-06 - inpatient  -",
            "2024-04-07 - a&e  -",
            "2024-04-08 - outpatient  -",
            "2024-04-09 - community home_visit 439708006",
        ]
    );

    // Quarantined with a reason; no sender text in any detail.
    let q = rows(
        &store,
        Table::Quarantine,
        "SELECT source_org, file, line, reason, detail FROM t ORDER BY file, line",
    )
    .await;
    let lines = optional_i64(&q, 2);
    let got: Vec<String> = (0..lines.len())
        .map(|i| {
            format!(
                "{} {}:{} {} | {}",
                texts(&q, 0)[i],
                texts(&q, 1)[i],
                lines[i].unwrap_or(0),
                texts(&q, 3)[i],
                texts(&q, 4)[i],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "A81001 Condition.ndjson:4 unknown_code_system | code system is not SNOMED CT, ICD-10 or LOINC",
            // Details name the field, never what the sender put in it (issue 9).
            "A81001 Encounter.ndjson:11 invalid_value | encounter class is not a known v3-ActCode or encounter-class code",
            "A81001 Encounter.ndjson:12 invalid_value | encounter class is not a known v3-ActCode or encounter-class code",
            "A81001 MedicationRequest.ndjson:4 unknown_code_system | medication code system is not dm+d",
            "A81001 MedicationRequest.ndjson:5 invalid_code | no medicationCodeableConcept, and medicationReference is not a Medication in this delivery",
            "A81001 Observation.ndjson:4 unknown_code_system | code system is not SNOMED CT, ICD-10 or LOINC",
        ]
    );

    // The summary says what was not understood, per source, by code.
    let summary = &report.per_source["A81001"];
    let counts =
        |kind: &str| -> BTreeMap<String, u64> { summary.not_understood.get(kind).cloned().unwrap_or_default() };
    let expect =
        |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> { pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect() };
    assert_eq!(
        counts("unknown_code_system"),
        expect(&[
            ("http://example-lab.nhs.uk/codes", 1),
            ("http://read.info/ctv3", 1),
            ("http://www.nlm.nih.gov/research/umls/rxnorm", 1),
        ])
    );
    assert_eq!(
        counts("unknown_encounter_class"),
        // A bare class code is counted unnamed: it could be a name typed into the field.
        expect(&[("(not a code)", 2)])
    );
    assert_eq!(counts("unmapped_snomed_encounter_type"), expect(&[("50849002", 1)]));
    assert_eq!(counts("deceased_without_date"), expect(&[("Patient", 1)]));
    assert_eq!(counts("reference_only"), expect(&[("Medication", 1)]));
    // Every resource read is accounted for: 33 sent by A81001.
    assert_eq!(summary.rows_read, 33);
    assert_eq!(summary.quarantined, 6);
    assert!(report.per_source["A81002"].not_understood.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_of_the_fixtures_lands() {
    let (hb, _) = loaded().await;
    let mut ids = Identifiers {
        nhs_numbers: HashSet::new(),
        words: HashSet::new(),
        phrases: HashSet::new(),
        phrase_matcher: None,
    };
    let mut birth_days = HashSet::new();
    for ods in ["A81001", "A81002"] {
        let text = std::fs::read_to_string(Path::new(FHIR_FIXTURES).join(ods).join("Patient.ndjson")).expect("read");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            for id in v["identifier"].as_array().expect("identifiers") {
                if id["system"] == "https://fhir.nhs.uk/Id/nhs-number" {
                    ids.nhs_numbers.insert(id["value"].as_str().expect("nhs").to_string());
                }
            }
            ids.words
                .insert(v["name"][0]["family"].as_str().expect("family").to_string());
            ids.words
                .insert(v["name"][0]["given"][0].as_str().expect("given").to_string());
            for part in v["address"][0]["line"].as_array().expect("lines") {
                ids.phrases.insert(part.as_str().expect("line").to_string());
            }
            let postcode = v["address"][0]["postalCode"].as_str().expect("postcode");
            ids.phrases.insert(postcode.to_string());
            ids.phrases.insert(postcode.replace(' ', ""));
            ids.phrases
                .insert(v["telecom"][0]["value"].as_str().expect("phone").to_string());
            let birth = v["birthDate"].as_str().expect("dob");
            ids.phrases.insert(birth.to_string());
            birth_days.insert(date32(date(birth)));
        }
    }
    // Free text the fixtures put where a code or a note goes.
    ids.words.insert("Quill".into());
    ids.phrases.insert("patient anxious".into());
    ids.phrases.insert("two at night".into());
    assert_eq!(ids.nhs_numbers.len(), 7);
    ids.phrase_matcher = Some(aho_corasick::AhoCorasick::new(&ids.phrases).expect("automaton"));
    let parquet_files = assert_no_identifier_landed(&hb.root.join("store"), &ids, &birth_days);
    assert!(
        parquet_files >= 5,
        "the test read the landed data ({parquet_files} files)"
    );
}
