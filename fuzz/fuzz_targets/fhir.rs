//! The FHIR NDJSON parser: the input is split at 0xFF bytes into the resource files of
//! one delivery, so references between them (subjects, medications) are exercised.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poplar_loaders::registry::FeedFormat;

const FILES: [&str; 6] = [
    "Patient.ndjson",
    "Condition.ndjson",
    "Observation.ndjson",
    "MedicationRequest.ndjson",
    "Encounter.ndjson",
    "Medication.ndjson",
];

fuzz_target!(|data: &[u8]| {
    let files: Vec<(&str, &[u8])> = FILES.iter().copied().zip(data.split(|b| *b == 0xFF)).collect();
    common::parse(FeedFormat::FhirNdjson, &files);
});
