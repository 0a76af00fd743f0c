//! A FHIR R4 bulk export from a tool other than `poplar synth`: the Synthea-shaped sample
//! in `../fixtures/fhir/synthea/` (its README says where its shape comes from), given NHS
//! numbers and sent as one GP practice's delivery. What lands, with which settings and
//! dates; what is quarantined and counted; and that none of its identifiers lands.

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
use crate::fhir_feed::{FHIR_FIXTURES, deliver_synthea};

const PRACTICE: &str = "A81003";

async fn loaded() -> (HandBuilt, LoadReport, Vec<(String, String)>) {
    let hb = HandBuilt::new();
    hb.registry(vec![source(PRACTICE, FeedFormat::FhirNdjson)]);
    let people = deliver_synthea(&hb.root.join("deliveries"), PRACTICE, "2025-09-30");
    let report = load(&hb.options(), &pseudonymiser()).await.expect("load");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    (hb, report, people)
}

/// Each row of `batches` as text: dates as `YYYY-MM-DD`, numbers as written, `-` for null.
fn lines(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> =
                b.columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            return "-".to_string();
                        }
                        match c.data_type() {
                            arrow::datatypes::DataType::Date32 => from_date32(c.as_primitive::<Date32Type>().value(r))
                                .map_or("?".into(), |d| d.to_string()),
                            arrow::datatypes::DataType::Int64 => c.as_primitive::<Int64Type>().value(r).to_string(),
                            arrow::datatypes::DataType::Float64 => c.as_primitive::<Float64Type>().value(r).to_string(),
                            _ => {
                                let text = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).expect("text");
                                text.as_string::<i32>().value(r).to_string()
                            }
                        }
                    })
                    .collect();
            out.push(cells.join(" "));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthea_export_lands_as_a_gp_practice_feed() {
    let (hb, report, people) = loaded().await;
    let store = hb.store();
    assert_eq!(people.len(), 5);

    // Patients: sex and birth month; registered with the practice from the date in England
    // of their earliest record (none of the export states a registration); the one who
    // died in 1989 (20:35 EDT on 9 May) keeps the month; no US address has an LSOA.
    assert_eq!(
        lines(
            &rows(
                &store,
                Table::Patients,
                "SELECT birth_month, sex, ethnic_category, lsoa, registered_practice, registration_start, \
                 registration_end, death_month FROM t ORDER BY birth_month",
            )
            .await
        ),
        [
            "1927-05-01 female - - A81003 1986-10-21 - 1989-05-01",
            "1958-02-01 male - - A81003 2016-06-21 - -",
            "1963-07-01 female - - A81003 2001-08-10 - -",
            "1994-12-01 male - - A81003 2021-05-06 - -",
            "2011-03-01 male - - A81003 2014-09-08 - -",
        ]
    );

    // Encounters: every v3-ActCode class Synthea sends is read (AMB at a practice is a GP
    // contact, IMP inpatient, EMER A&E); the SNOMED CT type is kept, and mapped where
    // Poplar has a category for it. Times in US offsets become dates in England: 23:58
    // EST on 2 March 2012 is 3 March; 19:00 EDT on 21 October 1986 is past midnight BST.
    assert_eq!(
        lines(
            &rows(
                &store,
                Table::Encounters,
                "SELECT start_date, end_date, setting, encounter_type, encounter_snomed FROM t ORDER BY start_date",
            )
            .await
        ),
        [
            "1986-10-21 1986-10-22 gp - 185347001",
            "1988-03-16 1988-03-21 inpatient - 185347001",
            "2001-08-10 2001-08-10 gp - 162673000",
            "2012-03-03 2012-03-03 gp - 185347001",
            "2014-09-08 2014-09-08 gp - 410620009",
            "2016-06-21 2016-06-25 inpatient - 185347001",
            "2021-05-06 2021-05-06 gp - 185347001",
            "2023-01-19 2023-01-19 gp - 702927004",
            "2024-11-05 2024-11-05 gp follow_up 390906007",
            "2025-01-15 2025-01-15 a&e - 50849002",
            "2025-03-12 2025-03-12 gp face_to_face 185349003",
        ]
    );

    // Conditions land as SNOMED CT events; observations as LOINC values with UCUM units,
    // one per component (two blood pressure panels; a survey whose address answer is
    // free text and lands as the question alone, and whose income answer, in `/a`, is not
    // a unit Poplar lands: quarantined below).
    assert_eq!(
        lines(
            &rows(
                &store,
                Table::ClinicalEvents,
                "SELECT event_date, code_system, code, value, unit FROM t ORDER BY event_date, code",
            )
            .await
        ),
        [
            "1986-10-21 snomed 431857002 - -",
            "1986-10-21 snomed 44054006 - -",
            "2001-08-10 snomed 59621000 - -",
            "2001-08-10 snomed 714628002 - -",
            "2012-03-03 snomed 44054006 - -",
            "2014-09-08 snomed 233678006 - -",
            "2016-06-21 snomed 414545008 - -",
            "2021-05-06 snomed 370143000 - -",
            "2021-05-06 loinc 44261-6 16 {score}",
            "2023-01-19 snomed 195662009 - -",
            "2023-01-19 loinc 29463-7 52.1 kg",
            "2024-11-05 snomed 160903007 - -",
            "2024-11-05 loinc 4548-4 6.9 %",
            "2024-11-05 loinc 56799-0 - -",
            "2024-11-05 loinc 8462-4 82 mm[Hg]",
            "2024-11-05 loinc 8480-6 138 mm[Hg]",
            "2024-11-05 loinc 93038-8 - -",
            "2025-03-12 loinc 29463-7 88.2 kg",
            "2025-03-12 snomed 49436004 - -",
            "2025-03-12 loinc 8462-4 78 mm[Hg]",
            "2025-03-12 loinc 8480-6 126 mm[Hg]",
        ]
    );

    // Medications are RxNorm: `medications.dmd_code` holds dm+d only (README), so each is
    // quarantined with the reason, and the summary counts them by system for the steward.
    assert_eq!(count(&store, Table::Medications).await, 0);
    let quarantined =
        |file: &str, line: i64, reason: &str| (PRACTICE.to_string(), file.to_string(), Some(line), reason.to_string());
    let mut expected: Vec<_> = (1..=5)
        .map(|line| quarantined("MedicationRequest.ndjson", line, "unknown_code_system"))
        .collect();
    expected.push(quarantined("Observation.ndjson", 3, "unknown_unit"));
    assert_eq!(quarantine_rows(&store).await, expected);
    let summary = &report.per_source[PRACTICE];
    let expect =
        |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> { pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect() };
    assert_eq!(
        summary.not_understood.get("unknown_code_system"),
        Some(&expect(&[("http://www.nlm.nih.gov/research/umls/rxnorm", 5)]))
    );
    // Synthea's encounter types that Poplar has no category for, counted by concept.
    assert_eq!(
        summary.not_understood.get("unmapped_snomed_encounter_type"),
        Some(&expect(&[
            ("162673000", 1),
            ("185347001", 5),
            ("410620009", 1),
            ("50849002", 1),
            ("702927004", 1),
        ]))
    );
    assert_eq!(summary.not_understood.len(), 2, "{:?}", summary.not_understood);
    // 5 patients, 11 conditions, 11 encounters, 5 medication requests, 7 observations.
    assert_eq!(summary.rows_read, 39);
    assert_eq!(summary.quarantined, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_of_the_synthea_export_lands() {
    let (hb, _, people) = loaded().await;
    let mut ids = Identifiers {
        nhs_numbers: people.iter().map(|(_, nhs)| nhs.clone()).collect(),
        words: HashSet::new(),
        phrases: HashSet::new(),
        phrase_matcher: None,
    };
    let mut birth_days = HashSet::new();
    let text = std::fs::read_to_string(Path::new(FHIR_FIXTURES).join("synthea/Patient.000.ndjson")).expect("read");
    let text_of = |v: &serde_json::Value| v.as_str().expect("text").to_string();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        // Names (official and maiden), the mother's maiden name, and the US identifiers:
        // record number (the Patient id), social security, driving licence, passport.
        for name in v["name"].as_array().expect("names") {
            ids.words.insert(text_of(&name["family"]));
            for given in name["given"].as_array().expect("given") {
                ids.words.insert(text_of(given));
            }
        }
        for ext in v["extension"].as_array().expect("extensions") {
            if let Some(mother) = ext["valueString"].as_str() {
                ids.words.extend(mother.split(' ').map(str::to_string));
            }
        }
        for id in v["identifier"].as_array().expect("identifiers") {
            ids.phrases.insert(text_of(&id["value"]));
        }
        let address = &v["address"][0];
        ids.phrases.insert(text_of(&address["line"][0]));
        ids.phrases.insert(text_of(&address["city"]));
        // A US ZIP code is five digits: searched as a whole word, since as a phrase it
        // could turn up inside any longer number (a timestamp in the Delta log).
        ids.words.insert(text_of(&address["postalCode"]));
        ids.phrases.insert(text_of(&v["telecom"][0]["value"]));
        let birth = text_of(&v["birthDate"]);
        ids.phrases.insert(birth.clone());
        birth_days.insert(date32(date(&birth)));
    }
    // Clinicians named on encounters and prescriptions.
    for clinician in [
        "Olevia458",
        "Hermiston71",
        "Chelsey293",
        "Simonis280",
        "Millie392",
        "Eichmann909",
    ] {
        ids.words.insert(clinician.into());
    }
    // The NHS numbers given are not in the file: the identifiers it holds are its own.
    assert_eq!(ids.nhs_numbers.len(), 5);
    assert!(
        ids.phrases.len() > 30 && ids.words.len() > 30,
        "{} {}",
        ids.phrases.len(),
        ids.words.len()
    );
    ids.phrase_matcher = Some(aho_corasick::AhoCorasick::new(&ids.phrases).expect("automaton"));
    let parquet_files = assert_no_identifier_landed(&hb.root.join("store"), &ids, &birth_days);
    assert!(
        parquet_files >= 4,
        "the test read the landed data ({parquet_files} files)"
    );
}
