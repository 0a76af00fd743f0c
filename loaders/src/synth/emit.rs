//! Writing one source's identifiable extract rows, as CSV lines or FHIR R4 NDJSON
//! resources, into in-memory buffers that the generator appends to files in order.

use chrono::NaiveDate;
use serde_json::{Value, json};
use std::io::Write as _;

use crate::parse::FileKind;
use crate::parse::csv;
use crate::parse::fhir::{
    COST_EXTENSION, DMD_SYSTEM, ENCOUNTER_CLASS_SYSTEM, ETHNIC_CATEGORY_EXTENSION, ICD10_SYSTEM,
    REGISTRATION_EXTENSION, SNOMED_SYSTEM,
};
use crate::parse::vocab::class_of_setting;
use crate::registry::{FeedFormat, NHS_NUMBER_SYSTEM};

/// File slots in a buffer, one per file of a feed ([`FileKind::slot`]): CSV uses 0-3,
/// FHIR 0-4.
pub const SLOTS: usize = FileKind::FHIR.len();

/// What a file starts with before its records: the header line of a CSV file; nothing
/// for an NDJSON file, which has no header.
pub fn header(kind: FileKind) -> String {
    match csv::header(kind) {
        Some(columns) => columns.join(",") + "\n",
        None => String::new(),
    }
}

#[derive(Default)]
pub struct SourceBuffer {
    pub files: [Vec<u8>; SLOTS],
    pub rows: [u64; SLOTS],
}

/// What a source knows of a person (identifiable: this is the input side).
pub struct Identity<'a> {
    pub nhs_text: &'a str,
    pub fhir_id: &'a str,
    pub given: &'a str,
    pub family: &'a str,
    pub birth_date: NaiveDate,
    /// NHS PERSON STATED GENDER CODE: "1" male, "2" female.
    pub sex_code: &'a str,
    pub ethnic: &'a str,
    pub address: &'a str,
    pub town: &'a str,
    pub postcode: &'a str,
    pub phone: &'a str,
    pub registration: Option<(NaiveDate, Option<NaiveDate>)>,
    pub death: Option<NaiveDate>,
}

fn d(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn opt(date: Option<NaiveDate>) -> String {
    date.map(d).unwrap_or_default()
}

impl SourceBuffer {
    fn line(&mut self, kind: FileKind, text: &str) {
        let slot = kind.slot();
        self.files[slot].extend_from_slice(text.as_bytes());
        self.files[slot].push(b'\n');
        self.rows[slot] += 1;
    }

    fn resource(&mut self, kind: FileKind, value: &Value) {
        let slot = kind.slot();
        let _ = serde_json::to_writer(&mut self.files[slot], value);
        self.files[slot].push(b'\n');
        self.rows[slot] += 1;
    }

    pub fn patient(&mut self, format: FeedFormat, p: &Identity<'_>) {
        match format {
            FeedFormat::Csv => {
                let (from, to) = match p.registration {
                    Some((from, to)) => (d(from), opt(to)),
                    None => (String::new(), String::new()),
                };
                let line = format!(
                    "{},{},{},{},{},{},{},{},{},{},{from},{to},{}",
                    p.nhs_text,
                    p.given,
                    p.family,
                    d(p.birth_date),
                    p.sex_code,
                    p.ethnic,
                    p.address,
                    p.town,
                    p.postcode,
                    p.phone,
                    opt(p.death)
                );
                self.line(FileKind::Patients, &line);
            }
            FeedFormat::FhirNdjson => {
                let mut extension = vec![json!({
                    "url": ETHNIC_CATEGORY_EXTENSION,
                    "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategory", "code": p.ethnic}]}
                })];
                if let Some((from, to)) = p.registration {
                    let mut period = json!({"start": d(from)});
                    if let Some(to) = to {
                        period["end"] = json!(d(to));
                    }
                    extension.push(json!({"url": REGISTRATION_EXTENSION, "valuePeriod": period}));
                }
                let mut resource = json!({
                    "resourceType": "Patient",
                    "id": p.fhir_id,
                    "extension": extension,
                    "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": p.nhs_text}],
                    "name": [{"use": "official", "family": p.family, "given": [p.given]}],
                    "telecom": [{"system": "phone", "value": p.phone}],
                    "gender": if p.sex_code == "1" { "male" } else { "female" },
                    "birthDate": d(p.birth_date),
                    "address": [{"line": [p.address], "city": p.town, "postalCode": p.postcode}]
                });
                if let Some(death) = p.death {
                    resource["deceasedDateTime"] = json!(d(death));
                }
                self.resource(FileKind::Patient, &resource);
            }
        }
    }

    /// A coded event: a diagnosis (no value) or an observation (value and unit).
    // Allowed: each argument is one field of the record being written, named at the one
    // call site; a struct built only to be taken apart here would add a type, not meaning.
    #[allow(clippy::too_many_arguments)]
    pub fn coded(
        &mut self,
        format: FeedFormat,
        p: &Identity<'_>,
        date: &str,
        system: &str,
        code: &str,
        value: Option<(f64, &str)>,
        free_text: &str,
    ) {
        match format {
            FeedFormat::Csv => {
                let (v, u) = value.map(|(v, u)| (format!("{v:.1}"), u)).unwrap_or_default();
                self.line(
                    FileKind::Events,
                    &format!("{},{date},{system},{code},{v},{u},{free_text}", p.nhs_text),
                );
            }
            FeedFormat::FhirNdjson => {
                let fhir_system = match system {
                    "SNOMED" => SNOMED_SYSTEM,
                    "ICD10" => ICD10_SYSTEM,
                    other => other,
                };
                let subject = json!({"reference": format!("Patient/{}", p.fhir_id)});
                let concept = json!({"coding": [{"system": fhir_system, "code": code}], "text": free_text});
                match value {
                    Some((v, unit)) => self.resource(FileKind::Observation, &json!({
                        "resourceType": "Observation", "status": "final", "subject": subject, "code": concept,
                        "effectiveDateTime": date, "valueQuantity": {"value": (v * 10.0).round() / 10.0, "unit": unit}
                    })),
                    None => self.resource(FileKind::Condition, &json!({
                        "resourceType": "Condition", "subject": subject, "code": concept, "onsetDateTime": date,
                        "note": [{"text": free_text}]
                    })),
                }
            }
        }
    }

    pub fn medication(
        &mut self,
        format: FeedFormat,
        p: &Identity<'_>,
        date: NaiveDate,
        dmd: i64,
        quantity: f64,
        dosage: &str,
    ) {
        match format {
            FeedFormat::Csv => self.line(
                FileKind::Medications,
                &format!("{},{},{dmd},{dosage},{quantity}", p.nhs_text, d(date)),
            ),
            FeedFormat::FhirNdjson => self.resource(
                FileKind::MedicationRequest,
                &json!({
                    "resourceType": "MedicationRequest", "status": "active", "intent": "order",
                    "subject": {"reference": format!("Patient/{}", p.fhir_id)},
                    "medicationCodeableConcept": {"coding": [{"system": DMD_SYSTEM, "code": dmd.to_string()}]},
                    "authoredOn": d(date),
                    "dosageInstruction": [{"text": dosage}],
                    "dispenseRequest": {"quantity": {"value": quantity}}
                }),
            ),
        }
    }

    // Allowed for the same reason as `coded`: one argument per field of the record.
    #[allow(clippy::too_many_arguments)]
    pub fn encounter(
        &mut self,
        format: FeedFormat,
        p: &Identity<'_>,
        setting: &str,
        start: NaiveDate,
        end: Option<NaiveDate>,
        kind: &str,
        cost: f64,
    ) {
        match format {
            FeedFormat::Csv => {
                let mut line = Vec::new();
                let _ = write!(
                    line,
                    "{},{setting},{},{},{kind},{cost:.2}",
                    p.nhs_text,
                    d(start),
                    opt(end)
                );
                self.line(FileKind::Encounters, &String::from_utf8_lossy(&line));
            }
            FeedFormat::FhirNdjson => {
                let class = class_of_setting(setting);
                let mut period = json!({"start": d(start)});
                if let Some(end) = end {
                    period["end"] = json!(d(end));
                }
                self.resource(
                    FileKind::Encounter,
                    &json!({
                        "resourceType": "Encounter", "status": "finished",
                        "class": {"system": ENCOUNTER_CLASS_SYSTEM, "code": class},
                        "type": [{"coding": [{"code": kind}]}],
                        "subject": {"reference": format!("Patient/{}", p.fhir_id)},
                        "period": period,
                        "extension": [{"url": COST_EXTENSION, "valueDecimal": (cost * 100.0).round() / 100.0}]
                    }),
                );
            }
        }
    }
}
