//! A FHIR R4 bulk export sent as one GP practice's delivery, shared by the loaders' and the
//! engine's test binaries (each includes this file with `#[path]`): the hand-written
//! fixtures and the Synthea-shaped sample under `loaders/tests/fixtures/fhir/`.

use poplar_loaders::NhsNumber;
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::registry::FeedFormat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `loaders/tests/fixtures/fhir`, from either crate.
pub const FHIR_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../loaders/tests/fixtures/fhir");

/// The resource files of an export directory under [`FHIR_FIXTURES`], named as Poplar
/// reads them: a bulk export's numbered parts (`Observation.000.ndjson`,
/// `Observation.001.ndjson`) are joined into one `Observation.ndjson`. By name.
pub fn export_files(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(FHIR_FIXTURES).join(dir);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    parts.sort();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for part in parts {
        let name = part.file_name().expect("name").to_string_lossy().into_owned();
        let resource = name.split('.').next().expect("a resource type").to_string();
        let text = std::fs::read_to_string(&part).expect("read");
        files.entry(format!("{resource}.ndjson")).or_default().push_str(&text);
    }
    files.into_iter().collect()
}

/// Give every Patient (one NDJSON line each) an NHS number identifier, as a practice's
/// system does once its patients are traced on the Spine: the valid test-range numbers
/// from `first_stem` on, in file order.
fn with_nhs_numbers(patients: &str, first_stem: u32) -> String {
    let mut stems = first_stem..;
    let mut out = String::new();
    for line in patients.lines().filter(|l| !l.trim().is_empty()) {
        let mut patient: serde_json::Value = serde_json::from_str(line).expect("a Patient");
        let nhs = stems
            .by_ref()
            .find_map(NhsNumber::from_stem)
            .expect("a valid number")
            .to_digit_string();
        patient["identifier"]
            .as_array_mut()
            .expect("identifiers")
            .push(serde_json::json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}));
        out.push_str(&serde_json::to_string(&patient).expect("json"));
        out.push('\n');
    }
    out
}

/// Write `files` as the FHIR delivery `extracted` of practice `ods` under `deliveries`,
/// covering everything up to the extract date.
pub fn write_delivery(deliveries: &Path, ods: &str, extracted: &str, files: &[(String, String)]) -> PathBuf {
    let dir = deliveries.join(ods).join(extracted);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut declared = Vec::new();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write");
        declared.push((
            name.as_str(),
            content.lines().filter(|l| !l.trim().is_empty()).count() as u64,
        ));
    }
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    write_manifest(
        &dir,
        ods,
        extracted,
        FeedFormat::FhirNdjson,
        day(extracted),
        (day("1900-01-01"), day(extracted)),
        &declared,
    )
    .expect("manifest");
    dir
}

/// The first stem of the NHS numbers given to the Synthea-shaped sample's patients: the
/// 999 test range, apart from the hand-written fixtures' `999000xxxx`.
pub const SYNTHEA_NHS_STEM: u32 = 999_300_000;

/// The Synthea-shaped sample (`synthea/`), its patients given NHS numbers (from
/// [`SYNTHEA_NHS_STEM`]), written as practice `ods`'s delivery of `extracted`. Returns
/// each Patient's `id` and the NHS number it was given, in file order.
pub fn deliver_synthea(deliveries: &Path, ods: &str, extracted: &str) -> Vec<(String, String)> {
    let mut files = export_files("synthea");
    let patients = files
        .iter_mut()
        .find(|(name, _)| name == "Patient.ndjson")
        .expect("the sample has patients");
    patients.1 = with_nhs_numbers(&patients.1, SYNTHEA_NHS_STEM);
    let people = nhs_numbers_by_id(&patients.1);
    write_delivery(deliveries, ods, extracted, &files);
    people
}

/// Each Patient's `id` and NHS number identifier, in file order.
pub fn nhs_numbers_by_id(patients: &str) -> Vec<(String, String)> {
    patients
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let patient: serde_json::Value = serde_json::from_str(line).expect("a Patient");
            let nhs = patient["identifier"]
                .as_array()
                .expect("identifiers")
                .iter()
                .find(|id| id["system"] == "https://fhir.nhs.uk/Id/nhs-number")
                .and_then(|id| id["value"].as_str())
                .expect("an NHS number");
            (patient["id"].as_str().expect("an id").to_string(), nhs.to_string())
        })
        .collect()
}
