//! FHIR R4 feeds as real systems send them, end to end: GP practice deliveries land through
//! the real loader and the engine puts their patients on the registers they qualify for.
//! The feeds are the loaders' hand-written UK Core / GP Connect fixtures (practices A81001
//! and A81002) and a Synthea-shaped bulk export (`loaders/tests/fixtures/fhir/synthea/`)
//! given NHS numbers and sent as practice A81003's feed. Every expected number below is
//! worked out from the fixture files (the comments say how), not copied from an output.

use deltalake::datafusion::catalog::MemTable;
use poplar_engine::{SnapshotCatalog, SnapshotContext};
use poplar_loaders::load::{LoadOptions, LoadReport, load};
use poplar_loaders::registry::{FeedFormat, Registry};
use poplar_loaders::{NhsNumber, Pseudonymiser, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::{KEY, answer, date, practice};
use crate::fhir_feed::{FHIR_FIXTURES, deliver_synthea, export_files, nhs_numbers_by_id, write_delivery};

/// The extract date (and end of the period) of every delivery here: the reference date.
const EXTRACTED: &str = "2025-09-30";

/// Land the named deliveries (`("A81001", None)`: that fixture directory as it is;
/// `(ods, Some("synthea"))`: the Synthea-shaped sample given NHS numbers) for practices
/// in one PCN, open the snapshot and name each patient `<ods>/<first part of Patient.id>`
/// in a `people(label, person_id)` table.
pub async fn landed(dir: &Path, feeds: &[(&str, Option<&str>)]) -> (Arc<SnapshotContext>, LoadReport) {
    let registry = Registry {
        region: "fhir".into(),
        sources: feeds
            .iter()
            .map(|(ods, _)| practice(ods, FeedFormat::FhirNdjson))
            .collect(),
    };
    std::fs::write(dir.join("sources.toml"), registry.to_toml().expect("toml")).expect("write");
    let lookups = Path::new(FHIR_FIXTURES).join("..");
    let deliveries = dir.join("deliveries");
    let mut people = Vec::new();
    for (ods, export) in feeds {
        let by_id = match export {
            Some(export) => {
                assert_eq!(*export, "synthea");
                deliver_synthea(&deliveries, ods, EXTRACTED)
            }
            None => {
                let files = export_files(ods);
                write_delivery(&deliveries, ods, EXTRACTED, &files);
                let patients = files.iter().find(|(n, _)| n == "Patient.ndjson").expect("patients");
                nhs_numbers_by_id(&patients.1)
            }
        };
        for (id, nhs) in by_id {
            let short = id.split('-').next().expect("an id").to_string();
            people.push((format!("{ods}/{short}"), nhs));
        }
    }
    let store = Store::parse(&dir.join("store").display().to_string()).expect("store");
    let options = LoadOptions {
        registry: dir.join("sources.toml"),
        input: deliveries,
        store: store.clone(),
        postcodes: lookups.join("postcode_lsoa.csv"),
        imd: lookups.join("imd2019_lsoa.csv"),
        optout: None,
        group_rows: 1_000_000,
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: false,
    };
    let pseudonymiser = Pseudonymiser::new(KEY).expect("key");
    let report = load(&options, &pseudonymiser).await.expect("load");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let loaded = SnapshotCatalog::open(store, Vec::new())
        .await
        .expect("catalog")
        .current();
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("label", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("person_id", arrow::datatypes::DataType::Int64, false),
    ]));
    let ids: Vec<i64> = people
        .iter()
        .map(|(_, nhs)| pseudonymiser.person_id(&NhsNumber::parse(nhs).expect("valid")))
        .collect();
    let labels: Vec<&str> = people.iter().map(|(l, _)| l.as_str()).collect();
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::StringArray::from(labels)),
            Arc::new(arrow::array::Int64Array::from(ids)),
        ],
    )
    .expect("batch");
    loaded
        .context
        .register_table(
            "people",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table")),
        )
        .expect("register");
    (loaded, report)
}

/// Register, practice and how many people, for every register with anyone on it.
const REGISTER_COUNTS: &str = "SELECT register, practice, count(DISTINCT person_id) FROM register_membership \
     GROUP BY register, practice ORDER BY register, practice";

/// Register, practice and who, by label.
const REGISTER_PEOPLE: &str = "SELECT register, practice, p.label FROM register_membership JOIN people p USING (person_id) \
     ORDER BY register, practice, p.label";

fn counts(report: &LoadReport, ods: &str, kind: &str) -> BTreeMap<String, u64> {
    report.per_source[ods]
        .not_understood
        .get(kind)
        .cloned()
        .unwrap_or_default()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uk_core_and_gp_connect_practice_feeds_put_patients_on_their_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, report) = landed(dir.path(), &[("A81001", None), ("A81002", None)]).await;
    assert_eq!(loaded.reference_date, Some(date(EXTRACTED)));

    // Registration. A81001 states none, so its patients are registered from their
    // earliest landed record: p1 (generalPractitioner = A81001) from its diabetes code of
    // 2018-03-04; 0f3c9a7e (generalPractitioner by reference only) from its hypertension
    // code recorded 2019-07-10; p3 from its asthma code of 2010-02-02; p4 from its AF
    // code of 2024-01-10; p5's generalPractitioner is another practice (B82002), so it has
    // no registration date and is on no list (the row still names the practice that sent
    // it). A81002 states registration in GP Connect's extension: p6 from its
    // registrationPeriod (2015-04-01); p7 states none and is taken at its word.
    assert_eq!(
        answer(
            &loaded,
            "SELECT p.label, registered_practice, CAST(registration_start AS VARCHAR) \
             FROM patients JOIN people p USING (person_id) ORDER BY p.label"
        )
        .await,
        [
            "A81001/0f3c9a7e A81001 2019-07-10",
            "A81001/p1 A81001 2018-03-04",
            "A81001/p3 A81001 2010-02-02",
            "A81001/p4 A81001 2024-01-10",
            "A81001/p5 A81001 NULL",
            "A81002/p6 A81002 2015-04-01",
            "A81002/p7 A81002 NULL",
        ]
    );

    // Registers on 2025-09-30. Diabetes (SNOMED 44054006, in DM_COD): p1 (65) and p6
    // (54). Hypertension (38341003): 0f3c9a7e. Asthma (195967001): p3, who is deceased
    // without a date and so still alive to Poplar; p7 has asthma too but is registered
    // nowhere. p4's atrial fibrillation (49436004) does not count: p4 died in July 2025.
    assert_eq!(
        answer(&loaded, REGISTER_COUNTS).await,
        [
            "asthma A81001 1",
            "diabetes A81001 1",
            "diabetes A81002 1",
            "hypertension A81001 1",
        ]
    );
    assert_eq!(
        answer(&loaded, REGISTER_PEOPLE).await,
        [
            "asthma A81001 A81001/p3",
            "diabetes A81001 A81001/p1",
            "diabetes A81002 A81002/p6",
            "hypertension A81001 A81001/0f3c9a7e",
        ]
    );
    // Before p4 died (the death month is July 2025), p4 was on the AF register.
    assert_eq!(
        answer(
            &loaded,
            "SELECT register, practice, p.label FROM registers_on(DATE '2025-03-31') \
             JOIN people p USING (person_id) WHERE register = 'atrial_fibrillation'"
        )
        .await,
        ["atrial_fibrillation A81001 A81001/p4"]
    );
    // The registered population: p1, 0f3c9a7e and p3 at A81001 (p4 died, p5 is
    // elsewhere); p6 at A81002.
    assert_eq!(
        answer(
            &loaded,
            "SELECT practice, count(*) FROM registered_population GROUP BY practice ORDER BY practice"
        )
        .await,
        ["A81001 3", "A81002 1"]
    );

    // Encounters: 13 sent by A81001, two with classes Poplar does not know (quarantined).
    // AMB (twice) and VR from a practice are GP contacts; EMER and OBSENC are A&E; SS, IMP
    // and NONAC are inpatient; HH and R3 `home` are community; PRENC is outpatient. Five
    // send a SNOMED CT type.
    assert_eq!(
        answer(
            &loaded,
            "SELECT source_org, setting, count(*), count(encounter_snomed) FROM encounters \
             GROUP BY source_org, setting ORDER BY source_org, setting"
        )
        .await,
        [
            "A81001 a&e 2 1",
            "A81001 community 2 1",
            "A81001 gp 3 2",
            "A81001 inpatient 3 1",
            "A81001 outpatient 1 0",
        ]
    );
    // Observations as values: HbA1c (LOINC) in %, blood pressure components in mm[Hg],
    // weight (SNOMED CT, sent with a LOINC coding too) in kg; the lab's own code was not
    // understood.
    assert_eq!(
        answer(
            &loaded,
            "SELECT code_system, code, value, unit FROM clinical_events WHERE value IS NOT NULL ORDER BY code"
        )
        .await,
        [
            "snomed 27113001 70.5 kg",
            "loinc 4548-4 7.1 %",
            "loinc 8462-4 84.0 mm[Hg]",
            "loinc 8480-6 132.0 mm[Hg]",
        ]
    );
    // Medications: the SNOMED/dm+d concept, the contained Medication and the separate one
    // land; RxNorm and an unresolvable reference do not.
    assert_eq!(
        answer(
            &loaded,
            "SELECT source_org, count(*), count(DISTINCT dmd_code) FROM medications GROUP BY source_org"
        )
        .await,
        ["A81001 3 3"]
    );
    // What was refused is in quarantine and counted by reason in the summary.
    assert_eq!(
        answer(
            &loaded,
            "SELECT source_org, reason, count(*) FROM quarantine GROUP BY source_org, reason ORDER BY reason"
        )
        .await,
        [
            "A81001 invalid_code 1",
            "A81001 invalid_value 2",
            "A81001 unknown_code_system 3",
        ]
    );
    assert_eq!(report.per_source["A81001"].quarantined, 6);
    assert_eq!(report.per_source["A81002"].quarantined, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthea_export_sent_as_a_practice_feed_puts_patients_on_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, report) = landed(dir.path(), &[("A81003", Some("synthea"))]).await;

    // The export states no registration, so each patient is registered from the UK date
    // of their earliest record: 5c1b2d3e 2001-08-10 (09:12 EDT), 9e0f1a2b 2016-06-21,
    // 3b4c5d6e 2014-09-08, 7d8e9f0a 1986-10-21 (and died 9 May 1989), 1f2a3b4c
    // 2021-05-06. No US address is a UK postcode: no LSOA.
    assert_eq!(
        answer(
            &loaded,
            "SELECT p.label, registered_practice, CAST(registration_start AS VARCHAR), \
             CAST(death_month AS VARCHAR), lsoa FROM patients JOIN people p USING (person_id) ORDER BY p.label"
        )
        .await,
        [
            "A81003/1f2a3b4c A81003 2021-05-06 NULL NULL",
            "A81003/3b4c5d6e A81003 2014-09-08 NULL NULL",
            "A81003/5c1b2d3e A81003 2001-08-10 NULL NULL",
            "A81003/7d8e9f0a A81003 1986-10-21 1989-05-01 NULL",
            "A81003/9e0f1a2b A81003 2016-06-21 NULL NULL",
        ]
    );

    // Registers on 2025-09-30, from the SNOMED CT conditions Synthea codes: 5c1b2d3e has
    // essential hypertension (59621000) and type 2 diabetes (44054006; prediabetes and a
    // social finding are on no register); 9e0f1a2b ischaemic heart disease (414545008) and
    // AF (49436004); 3b4c5d6e childhood asthma (233678006) at 14, over the floor of 6;
    // 1f2a3b4c major depressive disorder (370143000) at 30. 7d8e9f0a had diabetes and CKD
    // stage 4 but died in 1989.
    assert_eq!(
        answer(&loaded, REGISTER_COUNTS).await,
        [
            "asthma A81003 1",
            "atrial_fibrillation A81003 1",
            "chd A81003 1",
            "depression A81003 1",
            "diabetes A81003 1",
            "hypertension A81003 1",
        ]
    );
    assert_eq!(
        answer(&loaded, REGISTER_PEOPLE).await,
        [
            "asthma A81003 A81003/3b4c5d6e",
            "atrial_fibrillation A81003 A81003/9e0f1a2b",
            "chd A81003 A81003/9e0f1a2b",
            "depression A81003 A81003/1f2a3b4c",
            "diabetes A81003 A81003/5c1b2d3e",
            "hypertension A81003 A81003/5c1b2d3e",
        ]
    );
    assert_eq!(
        answer(
            &loaded,
            "SELECT practice, count(*) FROM registered_population GROUP BY practice"
        )
        .await,
        ["A81003 4"]
    );

    // All 11 encounters land: the eight AMB are GP contacts at a practice, IMP inpatient,
    // EMER A&E. Each keeps its SNOMED CT type; follow-up and check-up map to categories.
    assert_eq!(
        answer(
            &loaded,
            "SELECT setting, encounter_type, count(*), count(encounter_snomed) FROM encounters \
             GROUP BY setting, encounter_type ORDER BY setting, encounter_type"
        )
        .await,
        [
            "a&e NULL 1 1",
            "gp face_to_face 1 1",
            "gp follow_up 1 1",
            "gp NULL 6 6",
            "inpatient NULL 2 2",
        ]
    );
    // 11 conditions and 10 observation values: components count one each (two blood
    // pressure panels; a three-question survey, whose income answer in `/a` is not a unit
    // Poplar lands and is quarantined).
    assert_eq!(
        answer(
            &loaded,
            "SELECT code_system, count(*) FROM clinical_events GROUP BY code_system ORDER BY code_system"
        )
        .await,
        ["loinc 10", "snomed 11"]
    );
    assert_eq!(
        answer(
            &loaded,
            "SELECT p.label, value, unit FROM clinical_events JOIN people p USING (person_id) WHERE code = '4548-4'"
        )
        .await,
        ["A81003/5c1b2d3e 6.9 %"]
    );
    // Medications are RxNorm: none lands; all five are quarantined and counted by system.
    assert_eq!(answer(&loaded, "SELECT count(*) FROM medications").await, ["0"]);
    assert_eq!(
        answer(
            &loaded,
            "SELECT file, reason, count(*) FROM quarantine GROUP BY file, reason ORDER BY file"
        )
        .await,
        [
            "MedicationRequest.ndjson unknown_code_system 5",
            "Observation.ndjson unknown_unit 1"
        ]
    );
    assert_eq!(
        counts(&report, "A81003", "unknown_code_system"),
        expect(&[("http://www.nlm.nih.gov/research/umls/rxnorm", 5)])
    );
    assert_eq!(report.per_source["A81003"].quarantined, 6);
}
