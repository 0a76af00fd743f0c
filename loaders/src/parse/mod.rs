//! Turning one delivery into canonical rows. The format front-ends (`csv`, `fhir`) pull
//! fields out of their files; `RowSink` validates, de-identifies and buffers them, so that
//! every format obeys the same rules:
//!
//! - the NHS number is normalised and checked (modulus 11), hashed to `person_id`, dropped;
//! - people on the opt-out list are excluded and only counted;
//! - birth date → first day of the birth month; death date → first day of the death month;
//! - postcode → LSOA and IMD decile; name, address, phone and free text are never read
//!   into a buffer at all;
//! - a record that fails a rule is quarantined with its file, line and reason.
//!
//! `files` names the kinds of file a delivery may hold, `vocab` the coded values a record
//! may use, and `sink` holds the rules.

pub mod csv;
pub mod fhir;
mod files;
mod json;
mod sink;
pub mod vocab;

use std::collections::{BTreeMap, HashSet};

use crate::delivery::Delivery;
use crate::lookup::PostcodeLookup;
use crate::pseudonym::Pseudonymiser;
use crate::quarantine::{Quarantined, Reason};
use crate::registry::{FeedFormat, Source};
use crate::tables::{EncounterRows, EventRows, MedicationRows, PatientRows};

pub use files::FileKind;
pub use sink::{EncounterFields, EventFields, MedicationFields, PatientFields, PersonRef, RowSink};

/// What the parsers need besides the delivery itself.
pub struct ParseContext<'a> {
    pub pseudonymiser: &'a Pseudonymiser,
    pub lookup: &'a PostcodeLookup,
    /// Pseudonyms of people who have opted out.
    pub optouts: &'a HashSet<i64>,
    pub source: &'a Source,
    /// The largest data file read; a larger one rejects its delivery (`file_too_large`).
    pub max_file_bytes: u64,
}

/// Canonical rows and quarantine records from one delivery.
#[derive(Default)]
pub struct ParsedDelivery {
    pub patients: PatientRows,
    pub events: EventRows,
    pub medications: MedicationRows,
    pub encounters: EncounterRows,
    pub quarantined: Vec<Quarantined>,
    pub rows_read: u64,
    pub optout_excluded: u64,
    pub unmatched_postcodes: u64,
    /// What the source sent that Poplar did not understand, by kind and by code (code
    /// systems, encounter classes, ...): the records are quarantined or landed without
    /// the part, and this says what to ask the source to fix.
    pub not_understood: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// Parse, validate and de-identify a whole delivery. `Err` rejects the delivery.
pub fn parse_delivery(delivery: &Delivery, ctx: &ParseContext<'_>) -> Result<ParsedDelivery, Quarantined> {
    if delivery.manifest.format != ctx.source.format {
        return Err(Quarantined::file(
            crate::delivery::MANIFEST,
            Reason::FormatMismatch,
            "manifest format differs from the source registry",
        ));
    }
    let mut sink = RowSink::new(ctx, delivery);
    match ctx.source.format {
        FeedFormat::Csv => csv::parse(delivery, &mut sink)?,
        FeedFormat::FhirNdjson => fhir::parse(delivery, &mut sink)?,
    }
    Ok(sink.out)
}
