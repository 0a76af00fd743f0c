//! FHIR R4 bulk data (NDJSON, one resource per line, one file per resource type):
//! Patient, Condition, Observation, MedicationRequest, Encounter. People are identified by
//! the NHS number identifier on Patient; other resources point at their Patient by
//! `subject.reference` (`Patient/<id>`) or carry the NHS number identifier themselves.

use serde_json::Value;
use std::collections::HashMap;

use super::sink::check_row_count;
use super::vocab::{CodeSystem, Sex, setting_of_class};
use super::{EncounterFields, EventFields, FileKind, MedicationFields, PatientFields, PersonRef, RowSink};
use crate::delivery::Delivery;
use crate::quarantine::{Quarantined, Reason};
use crate::registry::{FeedFormat, NHS_NUMBER_SYSTEM};

pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";
pub const ICD10_SYSTEM: &str = "http://hl7.org/fhir/sid/icd-10";
pub const DMD_SYSTEM: &str = "https://dmd.nhs.uk";
/// UK Core extension carrying the NHS ethnic category.
pub const ETHNIC_CATEGORY_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
/// Poplar's profile: a GP practice states the patient's registration period on Patient.
pub const REGISTRATION_EXTENSION: &str = "urn:poplar:extension:registration-period";
/// Poplar's profile: the cost of an encounter, in pounds.
pub const COST_EXTENSION: &str = "urn:poplar:extension:cost";

/// The v3 ActCode system of `Encounter.class`.
pub const ENCOUNTER_CLASS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn number_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn nhs_identifier(v: &Value) -> Option<&str> {
    v.get("identifier")?
        .as_array()?
        .iter()
        .find(|id| id.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM))
        .and_then(|id| id.get("value"))
        .and_then(Value::as_str)
}

fn extension<'v>(v: &'v Value, url: &str) -> Option<&'v Value> {
    v.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// The first coding of a CodeableConcept, preferring SNOMED CT, then ICD-10.
fn coding(concept: Option<&Value>) -> (CodeSystem, &str) {
    // Borrowed: a concept with no codings has no code.
    let codings: &[Value] = concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    for (system, kind) in [(SNOMED_SYSTEM, CodeSystem::Snomed), (ICD10_SYSTEM, CodeSystem::Icd10)] {
        if let Some(c) = codings
            .iter()
            .find(|c| c.get("system").and_then(Value::as_str) == Some(system))
        {
            return (kind, str_at(c, &["code"]));
        }
    }
    let code = codings.first().map_or("", |c| str_at(c, &["code"]));
    (CodeSystem::Unknown, code)
}

pub(super) fn parse(delivery: &Delivery, sink: &mut RowSink<'_>) -> Result<(), Quarantined> {
    for declared in &delivery.manifest.files {
        if FileKind::from_file_name(FeedFormat::FhirNdjson, &declared.name).is_none() {
            return Err(Quarantined::file(
                &declared.name,
                Reason::InvalidManifest,
                "not a resource file a FHIR feed sends",
            ));
        }
    }
    let mut patients: HashMap<String, PersonRef> = HashMap::new();
    // Patient first (the order of `FileKind::FHIR`), so that references resolve.
    for kind in FileKind::FHIR {
        let name = kind.file_name();
        let resource_type = kind.resource_type().expect("FHIR files hold one resource type");
        let Some(declared) = delivery.manifest.files.iter().find(|f| f.name == name) else {
            continue;
        };
        let bytes = delivery.read_verified(declared)?;
        let mut rows = 0u64;
        for (index, raw_line) in bytes.split(|b| *b == b'\n').enumerate() {
            if raw_line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            rows += 1;
            sink.count_read();
            let line = index as u64 + 1;
            let resource: Value = match serde_json::from_slice(raw_line) {
                Ok(v) => v,
                Err(_) => {
                    sink.quarantine(name, line, Reason::InvalidJson, "line is not a JSON object");
                    continue;
                }
            };
            if str_at(&resource, &["resourceType"]) != resource_type {
                sink.quarantine(
                    name,
                    line,
                    Reason::UnexpectedResource,
                    format!("resourceType is not {resource_type}"),
                );
                continue;
            }
            if kind == FileKind::Patient {
                patient(&resource, sink, &mut patients, name, line);
                continue;
            }
            let person = match subject(&resource, sink, &patients) {
                Some(p) => p,
                None => {
                    sink.quarantine(
                        name,
                        line,
                        Reason::UnknownSubject,
                        "subject is not a Patient in this delivery",
                    );
                    continue;
                }
            };
            match kind {
                FileKind::Condition => {
                    let (code_system, code) = coding(resource.get("code"));
                    let date = match str_at(&resource, &["onsetDateTime"]) {
                        "" => str_at(&resource, &["recordedDate"]),
                        d => d,
                    };
                    let fields = EventFields {
                        date,
                        code_system,
                        code,
                        value: "",
                        unit: "",
                    };
                    sink.add_event(person, &fields, name, line);
                }
                FileKind::Observation => {
                    let (code_system, code) = coding(resource.get("code"));
                    let value = number_text(resource.get("valueQuantity").and_then(|q| q.get("value")));
                    let fields = EventFields {
                        date: str_at(&resource, &["effectiveDateTime"]),
                        code_system,
                        code,
                        value: &value,
                        unit: str_at(&resource, &["valueQuantity", "unit"]),
                    };
                    sink.add_event(person, &fields, name, line);
                }
                FileKind::MedicationRequest => {
                    let code = resource
                        .get("medicationCodeableConcept")
                        .and_then(|c| c.get("coding"))
                        .and_then(Value::as_array)
                        .and_then(|cs| {
                            cs.iter()
                                .find(|c| c.get("system").and_then(Value::as_str) == Some(DMD_SYSTEM))
                        })
                        .map(|c| str_at(c, &["code"]))
                        .unwrap_or("");
                    let quantity = number_text(
                        resource
                            .get("dispenseRequest")
                            .and_then(|d| d.get("quantity"))
                            .and_then(|q| q.get("value")),
                    );
                    let fields = MedicationFields {
                        date: str_at(&resource, &["authoredOn"]),
                        dmd_code: code,
                        quantity: &quantity,
                    };
                    sink.add_medication(person, &fields, name, line);
                }
                FileKind::Encounter => encounter(&resource, sink, person, name, line),
                // Patients were handled above; CSV kinds are not in `FileKind::FHIR`.
                FileKind::Patient
                | FileKind::Patients
                | FileKind::Events
                | FileKind::Medications
                | FileKind::Encounters => unreachable!("{kind:?} is not a non-Patient FHIR resource file"),
            }
        }
        check_row_count(declared, rows, "resources")?;
    }
    Ok(())
}

fn patient(resource: &Value, sink: &mut RowSink<'_>, patients: &mut HashMap<String, PersonRef>, file: &str, line: u64) {
    let nhs = nhs_identifier(resource).unwrap_or("");
    let person = sink.person(nhs);
    let id = str_at(resource, &["id"]);
    if !id.is_empty() {
        patients.insert(id.to_string(), person);
    }
    let sex = match str_at(resource, &["gender"]) {
        "male" => Some(Sex::Male),
        "female" => Some(Sex::Female),
        "other" => Some(Sex::Indeterminate),
        "unknown" | "" => Some(Sex::Unknown),
        _ => None,
    };
    let ethnic = extension(resource, ETHNIC_CATEGORY_EXTENSION)
        .and_then(|e| e.get("valueCodeableConcept"))
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.first())
        .map(|c| str_at(c, &["code"]))
        .unwrap_or("");
    let registration = extension(resource, REGISTRATION_EXTENSION).and_then(|e| e.get("valuePeriod"));
    let postcode = resource
        .get("address")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(|a| str_at(a, &["postalCode"]))
        .unwrap_or("");
    let fields = PatientFields {
        nhs_number: nhs,
        birth_date: str_at(resource, &["birthDate"]),
        sex,
        ethnic_category: ethnic,
        postcode,
        registered_from: registration.map(|p| str_at(p, &["start"])).unwrap_or(""),
        registered_to: registration.map(|p| str_at(p, &["end"])).unwrap_or(""),
        death_date: str_at(resource, &["deceasedDateTime"]),
    };
    sink.add_patient(person, &fields, file, line);
}

fn subject(resource: &Value, sink: &mut RowSink<'_>, patients: &HashMap<String, PersonRef>) -> Option<PersonRef> {
    let subject = resource.get("subject")?;
    if let Some(reference) = subject.get("reference").and_then(Value::as_str) {
        return patients.get(reference.strip_prefix("Patient/")?).copied();
    }
    let identifier = subject.get("identifier")?;
    if identifier.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
        return None;
    }
    Some(sink.person(identifier.get("value").and_then(Value::as_str).unwrap_or("")))
}

fn encounter(resource: &Value, sink: &mut RowSink<'_>, person: PersonRef, file: &str, line: u64) {
    // Classes that do not name a setting take the setting of the source.
    let setting = setting_of_class(str_at(resource, &["class", "code"])).unwrap_or(sink.source_setting());
    let kind = resource
        .get("type")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.get("coding"))
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .map(|c| str_at(c, &["code"]))
        .unwrap_or("");
    let cost = number_text(extension(resource, COST_EXTENSION).and_then(|e| e.get("valueDecimal")));
    let fields = EncounterFields {
        setting,
        start: str_at(resource, &["period", "start"]),
        end: str_at(resource, &["period", "end"]),
        encounter_type: kind,
        cost: &cost,
    };
    sink.add_encounter(person, &fields, file, line);
}
