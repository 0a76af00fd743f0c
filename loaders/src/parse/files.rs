//! The files a delivery may hold. A CSV feed sends one file per kind of record, a FHIR
//! feed one NDJSON file per resource type, and the file's name says which. Naming the
//! kinds once lets the parsers, and the generator that writes such files, match on a kind
//! (exhaustively) instead of on file-name strings with a catch-all arm.

use crate::registry::FeedFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    // CSV extracts.
    Patients,
    Events,
    Medications,
    Encounters,
    // FHIR R4 bulk-data resource files.
    Patient,
    Condition,
    Observation,
    MedicationRequest,
    Encounter,
    /// `Medication` resources a `MedicationRequest` may point at (`medicationReference`).
    /// Reference data only: read, never landed on its own. Accepted from a FHIR feed but
    /// not in [`FileKind::FHIR`], so the generator (which never sends them) is unchanged.
    Medication,
}

impl FileKind {
    /// The files of a CSV feed, in the order the generator writes them.
    pub const CSV: [FileKind; 4] = [
        FileKind::Patients,
        FileKind::Events,
        FileKind::Medications,
        FileKind::Encounters,
    ];

    /// The files of a FHIR feed, in the order they are read (Patient first, so that
    /// references to patients resolve).
    pub const FHIR: [FileKind; 5] = [
        FileKind::Patient,
        FileKind::Condition,
        FileKind::Observation,
        FileKind::MedicationRequest,
        FileKind::Encounter,
    ];

    /// Every file a FHIR feed may send, in the order they are read: Patient first, so
    /// that references to patients resolve, and Medication before the MedicationRequests
    /// that point at it.
    pub const FHIR_READ: [FileKind; 6] = [
        FileKind::Patient,
        FileKind::Medication,
        FileKind::Condition,
        FileKind::Observation,
        FileKind::MedicationRequest,
        FileKind::Encounter,
    ];

    /// The files a feed of `format` sends as the generator writes it (one buffer slot each).
    pub fn of(format: FeedFormat) -> &'static [FileKind] {
        match format {
            FeedFormat::Csv => &Self::CSV,
            FeedFormat::FhirNdjson => &Self::FHIR,
        }
    }

    /// The kind of a file a feed of `format` declares, or `None` if it sends no such file.
    pub fn from_file_name(format: FeedFormat, name: &str) -> Option<FileKind> {
        let accepted: &[FileKind] = match format {
            FeedFormat::Csv => &Self::CSV,
            FeedFormat::FhirNdjson => &Self::FHIR_READ,
        };
        accepted.iter().copied().find(|k| k.file_name() == name)
    }

    pub fn format(self) -> FeedFormat {
        match self {
            FileKind::Patients | FileKind::Events | FileKind::Medications | FileKind::Encounters => FeedFormat::Csv,
            FileKind::Patient
            | FileKind::Condition
            | FileKind::Observation
            | FileKind::MedicationRequest
            | FileKind::Encounter
            | FileKind::Medication => FeedFormat::FhirNdjson,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Patients => "patients.csv",
            FileKind::Events => "events.csv",
            FileKind::Medications => "medications.csv",
            FileKind::Encounters => "encounters.csv",
            FileKind::Patient => "Patient.ndjson",
            FileKind::Condition => "Condition.ndjson",
            FileKind::Observation => "Observation.ndjson",
            FileKind::MedicationRequest => "MedicationRequest.ndjson",
            FileKind::Encounter => "Encounter.ndjson",
            FileKind::Medication => "Medication.ndjson",
        }
    }

    /// The FHIR `resourceType` each line of the file must have (`None` for CSV files).
    pub fn resource_type(self) -> Option<&'static str> {
        match self {
            FileKind::Patients | FileKind::Events | FileKind::Medications | FileKind::Encounters => None,
            FileKind::Patient => Some("Patient"),
            FileKind::Condition => Some("Condition"),
            FileKind::Observation => Some("Observation"),
            FileKind::MedicationRequest => Some("MedicationRequest"),
            FileKind::Encounter => Some("Encounter"),
            FileKind::Medication => Some("Medication"),
        }
    }

    /// The file's position among its feed's files (the generator's buffer slot). Only
    /// the generator asks, and only for kinds it writes; `Medication` shares the last
    /// slot rather than panicking, and is never written.
    pub fn slot(self) -> usize {
        let of = Self::of(self.format());
        of.iter().position(|k| *k == self).unwrap_or(of.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_file_names_and_slots() {
        for format in [FeedFormat::Csv, FeedFormat::FhirNdjson] {
            for (slot, kind) in FileKind::of(format).iter().enumerate() {
                assert_eq!(FileKind::from_file_name(format, kind.file_name()), Some(*kind));
                assert_eq!(kind.slot(), slot);
                assert_eq!(kind.format(), format);
            }
        }
        assert_eq!(FileKind::from_file_name(FeedFormat::Csv, "Patient.ndjson"), None);
        assert_eq!(
            FileKind::from_file_name(FeedFormat::FhirNdjson, "Medication.ndjson"),
            Some(FileKind::Medication)
        );
        assert_eq!(FileKind::from_file_name(FeedFormat::FhirNdjson, "patients.csv"), None);
    }
}
