//! FHIR R4 bulk data (NDJSON, one resource per line, one file per resource type):
//! Patient, Condition, Observation, MedicationRequest, Encounter, and the Medication
//! resources requests may point at. People are identified by the NHS number identifier on
//! Patient; other resources point at their Patient by `subject.reference` (`Patient/<id>`,
//! an absolute `.../Patient/<id>` or `urn:uuid:<id>`) or carry the NHS number identifier.
//!
//! Two dialects are read: the one `poplar synth` writes, and UK Core / GP Connect / Synthea
//! as real systems send it (README "What a source sends"). What a feed sends that Poplar
//! does not understand is quarantined or counted by code in the load summary.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use super::json::Json;
use super::sink::check_row_count;
use super::vocab::{CodeSystem, Sex, encounter_type_of_snomed, read_class};
use super::{EncounterFields, EventFields, FileKind, MedicationFields, PatientFields, PersonRef, RowSink};
use crate::dates::parse_date;
use crate::delivery::Delivery;
use crate::nhs_number::NhsNumber;
use crate::quarantine::{Quarantined, Reason};
use crate::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType};

pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";
pub const ICD10_SYSTEM: &str = "http://hl7.org/fhir/sid/icd-10";
pub const LOINC_SYSTEM: &str = "http://loinc.org";
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
/// Poplar's own dm+d system. UK Core sends dm+d codes under SNOMED CT's system (dm+d is
/// the SNOMED CT UK drug extension), and both are read as dm+d on a medication.
pub const DMD_SYSTEM: &str = "https://dmd.nhs.uk";
/// ODS organisation codes (`Patient.generalPractitioner.identifier`).
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// The STU3 CareConnect ethnic category extension, still sent by GP Connect.
pub const CARECONNECT_ETHNIC_CATEGORY_EXTENSION: &str =
    "https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-EthnicCategory-1";
/// GP Connect's registration details: a `registrationPeriod` sub-extension (valuePeriod).
pub const GPC_REGISTRATION_EXTENSION: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-RegistrationDetails-1";
/// UK Core extension carrying the NHS ethnic category.
pub const ETHNIC_CATEGORY_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
/// Poplar's profile: a GP practice states the patient's registration period on Patient.
pub const REGISTRATION_EXTENSION: &str = "urn:poplar:extension:registration-period";
/// Poplar's profile: the cost of an encounter, in pounds.
pub const COST_EXTENSION: &str = "urn:poplar:extension:cost";

/// The v3 ActCode system of `Encounter.class`.
pub const ENCOUNTER_CLASS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn str_at<'v>(v: &'v Json<'v>, path: &[&str]) -> &'v str {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn number_text(v: Option<&Json<'_>>) -> String {
    match v {
        Some(Json::Number(n)) => n.to_string(),
        Some(Json::String(s)) => s.to_string(),
        _ => String::new(),
    }
}

fn nhs_identifier<'v>(v: &'v Json<'v>) -> Option<&'v str> {
    nhs_identifiers(v).next()
}

/// Every NHS number identifier a resource carries.
fn nhs_identifiers<'v>(v: &'v Json<'v>) -> impl Iterator<Item = &'v str> {
    v.get("identifier")
        .and_then(Json::as_array)
        .unwrap_or_default()
        .iter()
        .filter(|id| id.get("system").and_then(Json::as_str) == Some(NHS_NUMBER_SYSTEM))
        .filter_map(|id| id.get("value").and_then(Json::as_str))
}

/// Whether a Patient's NHS number identifiers name more than one person. The same number
/// sent twice (with and without spaces, say) is one person; two different numbers cannot
/// be resolved, and silently taking the first could file one person's record as another's.
fn conflicting_nhs_numbers(v: &Json<'_>) -> bool {
    let mut seen: Option<String> = None;
    for raw in nhs_identifiers(v) {
        let normalised = NhsNumber::parse(raw).map_or_else(|_| raw.trim().to_string(), |n| n.to_digit_string());
        match &seen {
            Some(first) if *first != normalised => return true,
            Some(_) => {}
            None => seen = Some(normalised),
        }
    }
    false
}

/// The system a concept is coded in when Poplar reads none of its codings (for counting).
fn first_system<'v>(concept: Option<&'v Json<'v>>) -> &'v str {
    codings(concept).first().map_or("", |c| str_at(c, &["system"]))
}

fn extension<'v>(v: &'v Json<'v>, url: &str) -> Option<&'v Json<'v>> {
    v.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Json::as_str) == Some(url))
}

fn codings<'v, 'a>(concept: Option<&'v Json<'a>>) -> &'v [Json<'a>] {
    // Borrowed: a concept with no codings has no code.
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Json::as_array)
        .unwrap_or_default()
}

/// The first coding of a CodeableConcept, preferring SNOMED CT, then ICD-10, then LOINC.
/// For an unknown system, its first coding's code (the record is quarantined by the sink).
fn coding<'v>(concept: Option<&'v Json<'v>>) -> (CodeSystem, &'v str) {
    let codings = codings(concept);
    for (system, kind) in [
        (SNOMED_SYSTEM, CodeSystem::Snomed),
        (ICD10_SYSTEM, CodeSystem::Icd10),
        (LOINC_SYSTEM, CodeSystem::Loinc),
    ] {
        if let Some(c) = codings
            .iter()
            .find(|c| c.get("system").and_then(Json::as_str) == Some(system))
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
    // Patient and Medication ids sent more than once: a reference to one is ambiguous.
    let mut duplicate_patients: HashSet<String> = HashSet::new();
    let mut medications: HashMap<String, Json<'static>> = HashMap::new();
    let mut duplicate_medications: HashSet<String> = HashSet::new();
    // Patients land last: a GP feed that states no registration registers its patients
    // from their earliest record, which is known only once every file has been read.
    let mut patient_resources: Vec<(Json<'static>, PersonRef, u64)> = Vec::new();
    for kind in FileKind::FHIR_READ {
        let name = kind.file_name();
        let Some(resource_type) = kind.resource_type() else {
            continue;
        };
        let Some(declared) = delivery.manifest.files.iter().find(|f| f.name == name) else {
            continue;
        };
        // Streamed line by line: the file is hashed as it is read, and its records count
        // only if it then matches the manifest (size, SHA-256, then resource count).
        let mut file = delivery.open_verified(declared, sink.max_file_bytes())?;
        let mut reader = std::io::BufReader::new(&mut file);
        let mut raw_line = Vec::new();
        let mut rows = 0u64;
        let mut line = 0u64;
        loop {
            raw_line.clear();
            // A read error ends the stream here; `verify` reports it.
            match reader.read_until(b'\n', &mut raw_line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            line += 1;
            if raw_line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            rows += 1;
            sink.count_read();
            let resource: Json<'_> = match serde_json::from_slice(&raw_line) {
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
            match kind {
                FileKind::Patient => {
                    let person = if conflicting_nhs_numbers(&resource) {
                        PersonRef::Invalid(Reason::ConflictingIdentifiers)
                    } else {
                        sink.person(nhs_identifier(&resource).unwrap_or(""))
                    };
                    let id = str_at(&resource, &["id"]);
                    if !id.is_empty() && patients.insert(id.to_string(), person).is_some() {
                        duplicate_patients.insert(id.to_string());
                    }
                    patient_resources.push((resource.into_owned(), person, line));
                    continue;
                }
                FileKind::Medication => {
                    // Reference data: counted here, landed through the requests naming it.
                    sink.partly_understood("reference_only", "Medication");
                    let id = str_at(&resource, &["id"]).to_string();
                    if medications.insert(id.clone(), resource.into_owned()).is_some() {
                        duplicate_medications.insert(id);
                    }
                    continue;
                }
                _ => {}
            }
            let Some(person) = subject(&resource, sink, &patients) else {
                sink.quarantine(
                    name,
                    line,
                    Reason::UnknownSubject,
                    "subject is not a Patient in this delivery",
                );
                continue;
            };
            match kind {
                FileKind::Condition => {
                    let (code_system, code) = coding(resource.get("code"));
                    if code_system == CodeSystem::Unknown {
                        sink.not_understood("unknown_code_system", first_system(resource.get("code")));
                    }
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
                FileKind::Observation => observation(&resource, sink, person, name, line),
                FileKind::MedicationRequest => {
                    let meds = Medications {
                        by_id: &medications,
                        duplicates: &duplicate_medications,
                    };
                    medication_request(&resource, &meds, sink, person, name, line);
                }
                FileKind::Encounter => encounter(&resource, sink, person, name, line),
                // Patients and Medications were handled above; CSV kinds are not in
                // `FileKind::FHIR_READ`.
                FileKind::Patient
                | FileKind::Medication
                | FileKind::Patients
                | FileKind::Events
                | FileKind::Medications
                | FileKind::Encounters => unreachable!("{kind:?} is not a non-Patient FHIR resource file"),
            }
        }
        drop(reader);
        file.verify(declared)?;
        if kind == FileKind::Patient {
            // Every Patient sharing an id is quarantined, and so (through `patients`) is
            // every record whose subject refers to that id: which person it meant cannot
            // be known.
            for id in &duplicate_patients {
                patients.insert(id.clone(), PersonRef::Invalid(Reason::DuplicateResourceId));
            }
            for (resource, person, _) in &mut patient_resources {
                if duplicate_patients.contains(str_at(resource, &["id"])) {
                    *person = PersonRef::Invalid(Reason::DuplicateResourceId);
                }
            }
        }
        check_row_count(declared, rows, "resources")?;
    }
    // A GP extract is, by definition, the practice's list: when none of its patients
    // states a registration, each is registered with the practice from their earliest
    // record in the delivery (or the extract date if they have none). A feed that states
    // registration for anyone is taken at its word for everyone.
    let states_registration = patient_resources.iter().any(|(r, _, _)| registration(r).is_some());
    let default_registration = !states_registration && sink.source_org_type() == OrgType::GpPractice;
    for (resource, person, line) in &patient_resources {
        let default_from = default_registration
            .then(|| {
                let birth = parse_date(str_at(resource, &["birthDate"]));
                let first = sink.first_record(*person).unwrap_or(sink.extracted());
                // Never before birth: a record dated before it is the record's fault.
                Some(birth.map_or(first, |b| b.max(first)))
            })
            .flatten()
            .filter(|_| !names_another_practice(resource, sink.source_ods()));
        patient(
            resource,
            sink,
            *person,
            default_from,
            FileKind::Patient.file_name(),
            *line,
        );
    }
    Ok(())
}

/// The registration period a Patient states: Poplar's extension, or GP Connect's
/// registration details (`registrationPeriod`).
fn registration<'v>(resource: &'v Json<'v>) -> Option<&'v Json<'v>> {
    if let Some(period) = extension(resource, REGISTRATION_EXTENSION).and_then(|e| e.get("valuePeriod")) {
        return Some(period);
    }
    extension(resource, GPC_REGISTRATION_EXTENSION)
        .and_then(|e| extension(e, "registrationPeriod"))
        .and_then(|e| e.get("valuePeriod"))
}

/// Whether `Patient.generalPractitioner` names a practice by ODS code and none is the
/// sending practice: such a patient is not on this practice's list.
fn names_another_practice(resource: &Json<'_>, source_ods: &str) -> bool {
    let Some(gps) = resource.get("generalPractitioner").and_then(Json::as_array) else {
        return false;
    };
    let named: Vec<&str> = gps
        .iter()
        .filter_map(|gp| gp.get("identifier"))
        .filter(|id| id.get("system").and_then(Json::as_str) == Some(ODS_SYSTEM))
        .filter_map(|id| id.get("value").and_then(Json::as_str))
        .collect();
    !named.is_empty() && !named.iter().any(|ods| ods.trim().eq_ignore_ascii_case(source_ods))
}

fn patient(
    resource: &Json<'_>,
    sink: &mut RowSink<'_>,
    person: PersonRef,
    default_from: Option<chrono::NaiveDate>,
    file: &str,
    line: u64,
) {
    let nhs = nhs_identifier(resource).unwrap_or("");
    let sex = match str_at(resource, &["gender"]) {
        "male" => Some(Sex::Male),
        "female" => Some(Sex::Female),
        "other" => Some(Sex::Indeterminate),
        "unknown" | "" => Some(Sex::Unknown),
        _ => None,
    };
    let ethnic = extension(resource, ETHNIC_CATEGORY_EXTENSION)
        .or_else(|| extension(resource, CARECONNECT_ETHNIC_CATEGORY_EXTENSION))
        .and_then(|e| e.get("valueCodeableConcept"))
        .and_then(|c| c.get("coding"))
        .and_then(Json::as_array)
        .and_then(|cs| cs.first())
        .map(|c| str_at(c, &["code"]))
        .unwrap_or("");
    let registration = registration(resource);
    let default_from = default_from.map(|d| d.format("%Y-%m-%d").to_string());
    let registered_from = match registration {
        Some(p) => str_at(p, &["start"]),
        None => default_from.as_deref().unwrap_or(""),
    };
    let postcode = resource
        .get("address")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .map(|a| str_at(a, &["postalCode"]))
        .unwrap_or("");
    // `deceasedBoolean: true` says the patient died but not when: the patient lands with
    // no death month, and the summary counts it.
    if resource.get("deceasedBoolean").and_then(Json::as_bool) == Some(true) {
        sink.partly_understood("deceased_without_date", "Patient");
    }
    let fields = PatientFields {
        nhs_number: nhs,
        birth_date: str_at(resource, &["birthDate"]),
        sex,
        ethnic_category: ethnic,
        postcode,
        registered_from,
        registered_to: registration.map(|p| str_at(p, &["end"])).unwrap_or(""),
        death_date: str_at(resource, &["deceasedDateTime"]),
    };
    sink.add_patient(person, &fields, file, line);
}

fn subject(resource: &Json<'_>, sink: &mut RowSink<'_>, patients: &HashMap<String, PersonRef>) -> Option<PersonRef> {
    let subject = resource.get("subject")?;
    if let Some(reference) = subject.get("reference").and_then(Json::as_str) {
        // `Patient/<id>`, an absolute `<base>/Patient/<id>`, or a bundle-style `urn:uuid:<id>`.
        let id = match reference.strip_prefix("urn:uuid:") {
            Some(id) => id,
            None => reference.rsplit_once("Patient/").map(|(_, id)| id)?,
        };
        return patients.get(id).copied();
    }
    let identifier = subject.get("identifier")?;
    if identifier.get("system").and_then(Json::as_str) != Some(NHS_NUMBER_SYSTEM) {
        return None;
    }
    Some(sink.person(identifier.get("value").and_then(Json::as_str).unwrap_or("")))
}

/// An Observation lands as one event, or one per `component` (blood pressure sends its
/// systolic and diastolic readings as components of one Observation).
fn observation(resource: &Json<'_>, sink: &mut RowSink<'_>, person: PersonRef, file: &str, line: u64) {
    let date = str_at(resource, &["effectiveDateTime"]);
    let components: &[Json<'_>] = resource.get("component").and_then(Json::as_array).unwrap_or_default();
    let parts: Vec<&Json<'_>> = if components.is_empty() || resource.get("valueQuantity").is_some() {
        vec![resource]
    } else {
        components.iter().collect()
    };
    for part in parts {
        let (code_system, code) = coding(part.get("code"));
        if code_system == CodeSystem::Unknown {
            sink.not_understood("unknown_code_system", first_system(part.get("code")));
        }
        let quantity = part.get("valueQuantity");
        let value = number_text(quantity.and_then(|q| q.get("value")));
        // UCUM's code is the unit; `unit` is the display form (what the generator sends).
        let unit = match quantity {
            Some(q) if str_at(q, &["system"]) == UCUM_SYSTEM && !str_at(q, &["code"]).is_empty() => {
                str_at(q, &["code"])
            }
            Some(q) => str_at(q, &["unit"]),
            None => "",
        };
        let fields = EventFields {
            date,
            code_system,
            code,
            value: &value,
            unit,
        };
        sink.add_event(person, &fields, file, line);
    }
}

/// The Medication resources a delivery sent, and the ids it sent more than once.
struct Medications<'a> {
    by_id: &'a HashMap<String, Json<'static>>,
    duplicates: &'a HashSet<String>,
}

/// What a request's medication resolves to.
enum Resolved<'v> {
    Concept(&'v Json<'v>),
    /// `medicationReference` names an id two Medications share.
    Ambiguous,
    Unresolved,
}

/// The medication a request names: `medicationCodeableConcept`, or `medicationReference`
/// to a contained Medication (`#id`) or one sent in `Medication.ndjson`.
fn medication_concept<'v>(resource: &'v Json<'v>, medications: &Medications<'v>) -> Resolved<'v> {
    if let Some(concept) = resource.get("medicationCodeableConcept") {
        return Resolved::Concept(concept);
    }
    let reference = str_at(resource, &["medicationReference", "reference"]);
    if let Some(id) = reference
        .strip_prefix("urn:uuid:")
        .or_else(|| reference.rsplit_once("Medication/").map(|(_, id)| id))
        && medications.duplicates.contains(id)
    {
        return Resolved::Ambiguous;
    }
    match referenced_medication(resource, medications.by_id) {
        Some(concept) => Resolved::Concept(concept),
        None => Resolved::Unresolved,
    }
}

fn referenced_medication<'v>(
    resource: &'v Json<'v>,
    medications: &'v HashMap<String, Json<'static>>,
) -> Option<&'v Json<'v>> {
    let reference = str_at(resource, &["medicationReference", "reference"]);
    let medication = if let Some(id) = reference.strip_prefix('#') {
        resource
            .get("contained")
            .and_then(Json::as_array)?
            .iter()
            .find(|c| str_at(c, &["resourceType"]) == "Medication" && str_at(c, &["id"]) == id)?
    } else {
        let id = match reference.strip_prefix("urn:uuid:") {
            Some(id) => id,
            None => reference.rsplit_once("Medication/").map(|(_, id)| id)?,
        };
        medications.get(id)?
    };
    medication.get("code")
}

fn medication_request(
    resource: &Json<'_>,
    medications: &Medications<'_>,
    sink: &mut RowSink<'_>,
    person: PersonRef,
    file: &str,
    line: u64,
) {
    let concept = match medication_concept(resource, medications) {
        Resolved::Concept(concept) => concept,
        Resolved::Ambiguous => {
            sink.quarantine(
                file,
                line,
                Reason::DuplicateResourceId,
                "medicationReference names an id more than one Medication in this delivery uses",
            );
            return;
        }
        Resolved::Unresolved => {
            sink.quarantine(
                file,
                line,
                Reason::InvalidCode,
                "no medicationCodeableConcept, and medicationReference is not a Medication in this delivery",
            );
            return;
        }
    };
    let codings = codings(Some(concept));
    let dmd = codings.iter().find(|c| {
        matches!(
            c.get("system").and_then(Json::as_str),
            Some(DMD_SYSTEM) | Some(SNOMED_SYSTEM)
        )
    });
    // `medications.dmd_code` holds dm+d only (see README): a medication coded only in
    // another system is quarantined with the system named, and counted per source.
    if dmd.is_none()
        && let Some(other) = codings.first()
    {
        // Counted by system in the summary (when it is a URI); the quarantine detail
        // names the field only, as every detail does.
        sink.not_understood("unknown_code_system", str_at(other, &["system"]));
        sink.quarantine(
            file,
            line,
            Reason::UnknownCodeSystem,
            "medication code system is not dm+d",
        );
        return;
    }
    let code = dmd.map_or("", |c| str_at(c, &["code"]));
    let quantity = number_text(
        resource
            .get("dispenseRequest")
            .and_then(|d| d.get("quantity"))
            .and_then(|q| q.get("value")),
    );
    let fields = MedicationFields {
        date: str_at(resource, &["authoredOn"]),
        dmd_code: code,
        quantity: &quantity,
    };
    sink.add_medication(person, &fields, file, line);
}

/// `Encounter.class`: a Coding in R4, a CodeableConcept (or a list of them) in some
/// exports and in R5.
fn class_code<'v>(resource: &'v Json<'v>) -> &'v str {
    let class = match resource.get("class") {
        Some(Json::Array(items)) => items.first(),
        other => other,
    };
    let Some(class) = class else {
        return "";
    };
    match class.get("code").and_then(Json::as_str) {
        Some(code) => code,
        None => codings(Some(class)).first().map_or("", |c| str_at(c, &["code"])),
    }
}

fn encounter(resource: &Json<'_>, sink: &mut RowSink<'_>, person: PersonRef, file: &str, line: u64) {
    let class = class_code(resource);
    let Some(reading) = read_class(class) else {
        sink.not_understood("unknown_encounter_class", class);
        sink.quarantine(
            file,
            line,
            Reason::InvalidValue,
            "encounter class is not a known v3-ActCode or encounter-class code",
        );
        return;
    };
    // Ambulatory care is the source's own not-admitted service; other classes that do not
    // name a setting take the setting of the source.
    let setting = match reading.setting {
        Some(setting) => setting,
        None if reading.ambulatory => sink.source_ambulatory_setting(),
        None => sink.source_setting(),
    };
    // `type` (a list) then `serviceType` (R4: one concept; a list in R5).
    let mut concepts: Vec<&Json<'_>> = Vec::new();
    for key in ["type", "serviceType"] {
        match resource.get(key) {
            Some(Json::Array(items)) => concepts.extend(items),
            Some(v @ Json::Object(_)) => concepts.push(v),
            _ => {}
        }
    }
    // A coding with no system is Poplar's own category (what the generator sends); a
    // SNOMED CT coding is kept as `encounter_snomed` and mapped where Poplar knows it.
    let mut kind: Option<&str> = None;
    let mut snomed = "";
    for c in concepts.iter().flat_map(|c| codings(Some(*c))) {
        match c.get("system").and_then(Json::as_str) {
            None if kind.is_none() => kind = Some(str_at(c, &["code"])),
            Some(SNOMED_SYSTEM) if snomed.is_empty() => snomed = str_at(c, &["code"]),
            Some(SNOMED_SYSTEM) | None => {}
            Some(other) => sink.not_understood("unknown_code_system", other),
        }
    }
    if kind.is_none() && !snomed.is_empty() {
        kind = snomed.trim().parse::<i64>().ok().and_then(encounter_type_of_snomed);
        if kind.is_none() {
            sink.not_understood("unmapped_snomed_encounter_type", snomed.trim());
        }
    }
    let kind = kind.or(reading.default_type).unwrap_or("");
    let cost = number_text(extension(resource, COST_EXTENSION).and_then(|e| e.get("valueDecimal")));
    let fields = EncounterFields {
        setting,
        start: str_at(resource, &["period", "start"]),
        end: str_at(resource, &["period", "end"]),
        encounter_type: kind,
        cost: &cost,
        encounter_snomed: snomed,
    };
    sink.add_encounter(person, &fields, file, line);
}
