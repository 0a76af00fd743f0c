//! CSV extracts: one file per kind of record, with fixed headers. Columns Poplar must not
//! keep (names, address, phone, free text) are skipped without being copied anywhere.

use super::sink::check_row_count;
use super::vocab::{CodeSystem, Sex};
use super::{EncounterFields, EventFields, FileKind, MedicationFields, PatientFields, RowSink};
use crate::delivery::{Delivery, ManifestFile};
use crate::quarantine::{Quarantined, Reason};
use crate::registry::FeedFormat;

const PATIENTS: &[&str] = &[
    "nhs_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "ethnic_category",
    "address_line_1",
    "address_line_2",
    "postcode",
    "phone",
    "registered_from",
    "registered_to",
    "date_of_death",
];
const EVENTS: &[&str] = &[
    "nhs_number",
    "event_date",
    "code_system",
    "code",
    "value",
    "unit",
    "free_text",
];
const MEDICATIONS: &[&str] = &["nhs_number", "issue_date", "dmd_code", "dosage_text", "quantity"];
const ENCOUNTERS: &[&str] = &[
    "nhs_number",
    "setting",
    "start_date",
    "end_date",
    "encounter_type",
    "cost",
];

/// The exact header line of a CSV file (`None` for FHIR files, which have none).
pub fn header(kind: FileKind) -> Option<&'static [&'static str]> {
    match kind {
        FileKind::Patients => Some(PATIENTS),
        FileKind::Events => Some(EVENTS),
        FileKind::Medications => Some(MEDICATIONS),
        FileKind::Encounters => Some(ENCOUNTERS),
        FileKind::Patient
        | FileKind::Condition
        | FileKind::Observation
        | FileKind::MedicationRequest
        | FileKind::Encounter
        | FileKind::Medication => None,
    }
}

fn sex_from_code(raw: &str) -> Option<Sex> {
    // NHS Data Dictionary PERSON STATED GENDER CODE, and the letters some systems send.
    match raw.trim() {
        "1" | "M" | "m" => Some(Sex::Male),
        "2" | "F" | "f" => Some(Sex::Female),
        "9" | "I" => Some(Sex::Indeterminate),
        "0" | "X" | "U" | "" => Some(Sex::Unknown),
        _ => None,
    }
}

pub(super) fn parse(delivery: &Delivery, sink: &mut RowSink<'_>) -> Result<(), Quarantined> {
    for declared in &delivery.manifest.files {
        let Some((kind, header)) =
            FileKind::from_file_name(FeedFormat::Csv, &declared.name).and_then(|kind| Some((kind, header(kind)?)))
        else {
            return Err(Quarantined::file(
                &declared.name,
                Reason::InvalidManifest,
                "not a file kind a CSV feed sends (patients, events, medications, encounters)",
            ));
        };
        // Streamed: the file is hashed as it is parsed, and its rows count only if it
        // then matches the manifest (size, SHA-256, then row count).
        let mut file = delivery.open_verified(declared, sink.max_file_bytes())?;
        let rows = parse_file(&mut file, declared, kind, header, sink)?;
        file.verify(declared)?;
        check_row_count(declared, rows, "rows")?;
    }
    Ok(())
}

/// Parse one CSV file into the sink; returns the number of data rows.
fn parse_file(
    input: impl std::io::Read,
    declared: &ManifestFile,
    kind: FileKind,
    header: &[&str],
    sink: &mut RowSink<'_>,
) -> Result<u64, Quarantined> {
    let file = declared.name.as_str();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    // One record, reused for every row: `records()` would allocate and grow a new one per
    // row, which was most of the load's time in malloc (BENCHMARKS.md).
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            return Err(Quarantined::file(
                file,
                Reason::WrongHeader,
                "file has no readable header line",
            ));
        }
    }
    let header_matches = record
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}'))
        .eq(header.iter().copied());
    if !header_matches {
        return Err(Quarantined::file(
            file,
            Reason::WrongHeader,
            format!("header must be exactly: {}", header.join(",")),
        ));
    }
    let mut rows = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // The file could not be read on (e.g. past its declared size): the check
            // against the manifest that follows quarantines the whole file.
            Err(e) if e.is_io_error() => break,
            Err(e) => {
                rows += 1;
                sink.count_read();
                let line = e.position().map(|p| p.line()).unwrap_or(rows + 1);
                sink.quarantine(file, line, Reason::InvalidValue, "row is not valid UTF-8 CSV");
                continue;
            }
        }
        rows += 1;
        sink.count_read();
        let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
        if record.len() != header.len() {
            sink.quarantine(
                file,
                line,
                Reason::WrongColumnCount,
                format!("{} columns where the header has {}", record.len(), header.len()),
            );
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or_default();
        let person = sink.person(field(0));
        match kind {
            FileKind::Patients => {
                let fields = PatientFields {
                    nhs_number: field(0),
                    birth_date: field(3),
                    sex: sex_from_code(field(4)),
                    ethnic_category: field(5),
                    postcode: field(8),
                    registered_from: field(10),
                    registered_to: field(11),
                    death_date: field(12),
                };
                sink.add_patient(person, &fields, file, line);
            }
            FileKind::Events => {
                let fields = EventFields {
                    date: field(1),
                    code_system: CodeSystem::from_csv(field(2)),
                    code: field(3),
                    value: field(4),
                    unit: field(5),
                };
                sink.add_event(person, &fields, file, line);
            }
            FileKind::Medications => {
                let fields = MedicationFields {
                    date: field(1),
                    dmd_code: field(2),
                    quantity: field(4),
                };
                sink.add_medication(person, &fields, file, line);
            }
            FileKind::Encounters => {
                let fields = EncounterFields {
                    setting: field(1),
                    start: field(2),
                    end: field(3),
                    encounter_type: field(4),
                    cost: field(5),
                    // The CSV layout has no SNOMED encounter type column.
                    encounter_snomed: "",
                };
                sink.add_encounter(person, &fields, file, line);
            }
            // `parse` only hands this function the kinds a CSV feed sends.
            FileKind::Patient
            | FileKind::Condition
            | FileKind::Observation
            | FileKind::MedicationRequest
            | FileKind::Encounter
            | FileKind::Medication => unreachable!("a FHIR file kind in a CSV feed"),
        }
    }
    Ok(rows)
}
