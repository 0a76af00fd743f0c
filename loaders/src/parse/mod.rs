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

pub mod csv;
pub mod fhir;

use chrono::{Datelike, NaiveDate};
use std::collections::{HashMap, HashSet};

use crate::delivery::Delivery;
use crate::lookup::PostcodeLookup;
use crate::nhs_number::{NhsNumber, NhsNumberProblem};
use crate::pseudonym::Pseudonymiser;
use crate::quarantine::{Quarantined, Reason};
use crate::registry::{FeedFormat, OrgType, Source};
use crate::tables::{EncounterRows, EventRows, MedicationRows, PatientRows};

/// What the parsers need besides the delivery itself.
pub struct ParseContext<'a> {
    pub pseudonymiser: &'a Pseudonymiser,
    pub lookup: &'a PostcodeLookup,
    /// Pseudonyms of people who have opted out.
    pub optouts: &'a HashSet<i64>,
    pub source: &'a Source,
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

/// A person as a record refers to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonRef {
    Known(i64),
    /// Opted out: the record is excluded and counted, not quarantined.
    OptedOut,
    /// The identifier failed: the record is quarantined for this reason.
    Invalid(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Indeterminate,
    Unknown,
}

impl Sex {
    fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Indeterminate => "indeterminate",
            Sex::Unknown => "unknown",
        }
    }
}

/// The fields of a patient record Poplar keeps (before de-identification).
pub struct PatientFields<'a> {
    pub nhs_number: &'a str,
    pub birth_date: &'a str,
    pub sex: Option<Sex>,
    pub ethnic_category: &'a str,
    pub postcode: &'a str,
    pub registered_from: &'a str,
    pub registered_to: &'a str,
    pub death_date: &'a str,
}

pub struct EventFields<'a> {
    pub date: &'a str,
    pub code_system: CodeSystem,
    pub code: &'a str,
    pub value: &'a str,
    pub unit: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSystem {
    Snomed,
    Icd10,
    Unknown,
}

impl CodeSystem {
    pub fn from_csv(raw: &str) -> Self {
        match raw.trim().to_ascii_uppercase().as_str() {
            "SNOMED" | "SNOMEDCT" | "SNOMED CT" | "HTTP://SNOMED.INFO/SCT" => CodeSystem::Snomed,
            "ICD10" | "ICD-10" | "HTTP://HL7.ORG/FHIR/SID/ICD-10" => CodeSystem::Icd10,
            _ => CodeSystem::Unknown,
        }
    }
}

pub struct EncounterFields<'a> {
    pub setting: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub encounter_type: &'a str,
    pub cost: &'a str,
}

/// Coded encounter types Poplar accepts. The column is a category, not free text: a value
/// outside this list might be a clinician's note, so it is quarantined rather than landed.
pub const ENCOUNTER_TYPES: &[&str] = &[
    // inpatient
    "elective",
    "emergency",
    "maternity",
    "day_case",
    "transfer",
    // outpatient
    "first_attendance",
    "follow_up",
    "procedure",
    // a&e department types
    "type_1",
    "type_2",
    "type_3",
    // gp
    "face_to_face",
    "telephone",
    "video",
    "home_visit",
    // mental health
    "assessment",
    "therapy",
    "crisis",
    "care_coordination",
    // community
    "district_nursing",
    "physiotherapy",
    "podiatry",
    "rehabilitation",
    "health_visiting",
    // social care
    "home_care",
    "residential_care",
    "nursing_care",
    "day_care",
    "direct_payment",
    "reablement",
];

/// Canonical settings of care (the `setting` columns).
pub const SETTINGS: [&str; 7] = [
    "gp",
    "inpatient",
    "outpatient",
    "a&e",
    "mental_health",
    "community",
    "social_care",
];

pub fn canonical_setting(raw: &str) -> Option<&'static str> {
    let lower = raw.trim().to_ascii_lowercase();
    let normalised = match lower.as_str() {
        "ae" | "a and e" | "emergency" => "a&e",
        "mental health" => "mental_health",
        "social care" => "social_care",
        other => other,
    };
    SETTINGS.iter().copied().find(|s| *s == normalised)
}

/// The setting of coded events a source records, by the kind of organisation.
pub fn event_setting(org_type: OrgType) -> &'static str {
    match org_type {
        OrgType::GpPractice => "gp",
        OrgType::AcuteTrust => "inpatient",
        OrgType::MentalHealthTrust => "mental_health",
        OrgType::CommunityProvider => "community",
        OrgType::SocialCare => "social_care",
    }
}

const EARLIEST: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => panic!("constant date"),
};

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("constant date"),
};

/// Days since 1970-01-01, Arrow's `Date32`.
pub fn date32(d: NaiveDate) -> i32 {
    d.signed_duration_since(EPOCH).num_days() as i32
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Parse `YYYY-MM-DD`, or the date part of a FHIR `dateTime`.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    let date_part = match raw.len() {
        10 => raw,
        n if n > 10 && raw.as_bytes()[10] == b'T' => &raw[..10],
        _ => return None,
    };
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()
}

pub fn ethnicity_group(category: &str) -> &'static str {
    // NHS Data Dictionary ETHNIC CATEGORY (2001 census) codes to their five groups.
    match category {
        "A" | "B" | "C" => "white",
        "D" | "E" | "F" | "G" => "mixed",
        "H" | "J" | "K" | "L" => "asian",
        "M" | "N" | "P" => "black",
        "R" | "S" => "other",
        _ => "not_stated",
    }
}

/// Validates, de-identifies and buffers rows for one delivery.
pub struct RowSink<'a> {
    ctx: &'a ParseContext<'a>,
    setting: &'static str,
    latest: NaiveDate,
    period: (NaiveDate, NaiveDate),
    seen_patients: HashSet<i64>,
    /// Cache so that each distinct NHS number is hashed once per delivery.
    people: HashMap<String, PersonRef>,
    pub out: ParsedDelivery,
}

impl<'a> RowSink<'a> {
    fn new(ctx: &'a ParseContext<'a>, delivery: &Delivery) -> Self {
        Self {
            ctx,
            setting: event_setting(ctx.source.org_type),
            latest: delivery.manifest.extracted,
            period: (delivery.manifest.period_start, delivery.manifest.period_end),
            seen_patients: HashSet::new(),
            people: HashMap::new(),
            out: ParsedDelivery::default(),
        }
    }

    pub fn quarantine(&mut self, file: &str, line: u64, reason: Reason, detail: impl Into<String>) {
        self.out
            .quarantined
            .push(Quarantined::record(file, line, reason, detail));
    }

    pub fn count_read(&mut self) {
        self.out.rows_read += 1;
    }

    /// Resolve the NHS number a record carries.
    pub fn person(&mut self, raw: &str) -> PersonRef {
        if let Some(found) = self.people.get(raw) {
            return *found;
        }
        let resolved = match NhsNumber::parse(raw) {
            Ok(n) => {
                let id = self.ctx.pseudonymiser.person_id(&n);
                if self.ctx.optouts.contains(&id) {
                    PersonRef::OptedOut
                } else {
                    PersonRef::Known(id)
                }
            }
            Err(NhsNumberProblem::Missing) => PersonRef::Invalid(Reason::MissingNhsNumber),
            Err(_) => PersonRef::Invalid(Reason::InvalidNhsNumber),
        };
        self.people.insert(raw.to_string(), resolved);
        resolved
    }

    /// Apply a resolved person to a record: `Some(id)` to land it, `None` when it was
    /// quarantined or excluded.
    pub fn admit(&mut self, person: PersonRef, file: &str, line: u64) -> Option<i64> {
        match person {
            PersonRef::Known(id) => Some(id),
            PersonRef::OptedOut => {
                self.out.optout_excluded += 1;
                None
            }
            PersonRef::Invalid(reason) => {
                let detail = match reason {
                    Reason::MissingNhsNumber => "no NHS number",
                    _ => "NHS number fails the modulus 11 check or is not ten digits",
                };
                self.quarantine(file, line, reason, detail);
                None
            }
        }
    }

    fn date_in(
        &mut self,
        raw: &str,
        column: &str,
        file: &str,
        line: u64,
        earliest: NaiveDate,
    ) -> Result<NaiveDate, ()> {
        let Some(d) = parse_date(raw) else {
            self.quarantine(
                file,
                line,
                Reason::InvalidDate,
                format!("{column} is not a YYYY-MM-DD date"),
            );
            return Err(());
        };
        if d < earliest || d > self.latest {
            self.quarantine(
                file,
                line,
                Reason::DateOutOfRange,
                format!("{column} is before 1900, before birth or after the extract date"),
            );
            return Err(());
        }
        Ok(d)
    }

    fn optional_date(
        &mut self,
        raw: &str,
        column: &str,
        file: &str,
        line: u64,
        earliest: NaiveDate,
    ) -> Result<Option<NaiveDate>, ()> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            self.date_in(raw, column, file, line, earliest).map(Some)
        }
    }

    fn in_period(&mut self, d: NaiveDate, column: &str, file: &str, line: u64) -> Result<(), ()> {
        if d < self.period.0 || d > self.period.1 {
            self.quarantine(
                file,
                line,
                Reason::OutsideDeliveryPeriod,
                format!("{column} is outside the period the manifest declares"),
            );
            return Err(());
        }
        Ok(())
    }

    pub fn add_patient(&mut self, person: PersonRef, f: &PatientFields<'_>, file: &str, line: u64) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        let Ok(birth) = self.date_in(f.birth_date, "date of birth", file, line, EARLIEST) else {
            return;
        };
        let Some(sex) = f.sex else {
            self.quarantine(file, line, Reason::InvalidValue, "sex is not a recognised code");
            return;
        };
        let Ok(from) = self.optional_date(f.registered_from, "registered_from", file, line, birth) else {
            return;
        };
        let Ok(to) = self.optional_date(f.registered_to, "registered_to", file, line, birth) else {
            return;
        };
        let Ok(death) = self.optional_date(f.death_date, "date of death", file, line, birth) else {
            return;
        };
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            self.quarantine(
                file,
                line,
                Reason::InvalidDate,
                "registered_to is before registered_from",
            );
            return;
        }
        if !self.seen_patients.insert(person_id) {
            self.quarantine(
                file,
                line,
                Reason::DuplicatePatient,
                "a second patient record for the same NHS number in this delivery",
            );
            return;
        }
        let category = f.ethnic_category.trim().to_ascii_uppercase();
        let category_known = category.len() == 1 && ethnicity_group(&category) != "not_stated";
        let area = if f.postcode.trim().is_empty() {
            None
        } else {
            self.ctx.lookup.area(f.postcode)
        };
        if area.is_none() {
            self.out.unmatched_postcodes += 1;
        }
        let rows = &mut self.out.patients;
        rows.person_id.append_value(person_id);
        rows.birth_month.append_value(date32(first_of_month(birth)));
        rows.sex.append_value(sex.as_str());
        rows.ethnic_category
            .append_option(category_known.then_some(category.as_str()));
        rows.ethnicity_group.append_value(ethnicity_group(&category));
        match area {
            Some(area) => {
                rows.lsoa.append_value(&area.lsoa);
                rows.imd_decile.append_option(area.imd_decile);
            }
            None => {
                rows.lsoa.append_null();
                rows.imd_decile.append_null();
            }
        }
        let is_gp = self.ctx.source.org_type == OrgType::GpPractice;
        rows.registered_practice
            .append_option(is_gp.then_some(self.ctx.source.ods.as_str()));
        rows.registration_start
            .append_option(from.filter(|_| is_gp).map(date32));
        rows.registration_end.append_option(to.filter(|_| is_gp).map(date32));
        rows.death_month.append_option(death.map(|d| date32(first_of_month(d))));
    }

    pub fn add_event(&mut self, person: PersonRef, f: &EventFields<'_>, file: &str, line: u64) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        let Ok(date) = self.date_in(f.date, "event date", file, line, EARLIEST) else {
            return;
        };
        if self.in_period(date, "event date", file, line).is_err() {
            return;
        }
        let code = f.code.trim();
        let (system, snomed) = match f.code_system {
            CodeSystem::Snomed => match code.parse::<i64>() {
                Ok(id) if (6..=18).contains(&code.len()) && id > 0 => ("snomed", Some(id)),
                _ => {
                    self.quarantine(
                        file,
                        line,
                        Reason::InvalidCode,
                        "SNOMED CT code is not a 6-18 digit concept id",
                    );
                    return;
                }
            },
            CodeSystem::Icd10 => {
                if !is_icd10(code) {
                    self.quarantine(
                        file,
                        line,
                        Reason::InvalidCode,
                        "ICD-10 code is not a letter, two digits and an optional suffix",
                    );
                    return;
                }
                ("icd10", None)
            }
            CodeSystem::Unknown => {
                self.quarantine(
                    file,
                    line,
                    Reason::UnknownCodeSystem,
                    "code system is not SNOMED CT or ICD-10",
                );
                return;
            }
        };
        let value = match parse_optional_number(f.value) {
            Ok(v) => v,
            Err(()) => {
                self.quarantine(file, line, Reason::InvalidValue, "value is not a number");
                return;
            }
        };
        let rows = &mut self.out.events;
        rows.person_id.append_value(person_id);
        rows.event_date.append_value(date32(date));
        rows.code_system.append_value(system);
        rows.code.append_value(code);
        rows.snomed_code.append_option(snomed);
        rows.value.append_option(value);
        let unit = f.unit.trim();
        rows.unit
            .append_option((!unit.is_empty() && value.is_some()).then_some(unit));
        rows.setting.append_value(self.setting);
    }

    pub fn add_medication(
        &mut self,
        person: PersonRef,
        date: &str,
        dmd_code: &str,
        quantity: &str,
        file: &str,
        line: u64,
    ) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        let Ok(date) = self.date_in(date, "issue date", file, line, EARLIEST) else {
            return;
        };
        if self.in_period(date, "issue date", file, line).is_err() {
            return;
        }
        let code = dmd_code.trim();
        let Some(dmd) = code
            .parse::<i64>()
            .ok()
            .filter(|c| *c > 0 && (6..=18).contains(&code.len()))
        else {
            self.quarantine(file, line, Reason::InvalidCode, "dm+d code is not a 6-18 digit id");
            return;
        };
        let Ok(quantity) = parse_optional_number(quantity) else {
            self.quarantine(file, line, Reason::InvalidValue, "quantity is not a number");
            return;
        };
        let rows = &mut self.out.medications;
        rows.person_id.append_value(person_id);
        rows.issue_date.append_value(date32(date));
        rows.dmd_code.append_value(dmd);
        rows.quantity.append_option(quantity);
    }

    pub fn add_encounter(&mut self, person: PersonRef, f: &EncounterFields<'_>, file: &str, line: u64) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        let kind = f.encounter_type.trim();
        if !kind.is_empty() && !ENCOUNTER_TYPES.contains(&kind) {
            self.quarantine(
                file,
                line,
                Reason::InvalidValue,
                "encounter type is not a known category",
            );
            return;
        }
        let Some(setting) = canonical_setting(f.setting) else {
            self.quarantine(
                file,
                line,
                Reason::InvalidValue,
                "setting is not one of gp, inpatient, outpatient, a&e, mental_health, community, social_care",
            );
            return;
        };
        let Ok(start) = self.date_in(f.start, "start date", file, line, EARLIEST) else {
            return;
        };
        if self.in_period(start, "start date", file, line).is_err() {
            return;
        }
        // An encounter may still be open (no end), and may end after the extract date only
        // if it is planned; an end before the start is a fault.
        let end = if f.end.trim().is_empty() {
            None
        } else {
            match parse_date(f.end) {
                Some(end) if end >= start => Some(end),
                Some(_) => {
                    self.quarantine(file, line, Reason::InvalidDate, "end date is before start date");
                    return;
                }
                None => {
                    self.quarantine(file, line, Reason::InvalidDate, "end date is not a YYYY-MM-DD date");
                    return;
                }
            }
        };
        let cost = match parse_optional_number(f.cost) {
            Ok(Some(c)) if c < 0.0 => {
                self.quarantine(file, line, Reason::InvalidValue, "cost is negative");
                return;
            }
            Ok(c) => c,
            Err(()) => {
                self.quarantine(file, line, Reason::InvalidValue, "cost is not a number");
                return;
            }
        };
        let rows = &mut self.out.encounters;
        rows.person_id.append_value(person_id);
        rows.setting.append_value(setting);
        rows.start_date.append_value(date32(start));
        rows.end_date.append_option(end.map(date32));
        rows.encounter_type.append_option((!kind.is_empty()).then_some(kind));
        rows.cost.append_option(cost);
    }
}

fn parse_optional_number(raw: &str) -> Result<Option<f64>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(()),
    }
}

fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3
        && b.len() <= 8
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && (b[2].is_ascii_digit() || b[2] == b'X')
        && b[3..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_plain_and_fhir_forms_only() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2024-02-29T10:15:00Z").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("29/02/2024").is_none());
        assert!(parse_date("2024-2-1").is_none());
    }

    #[test]
    fn icd10_shapes() {
        for ok in ["E11", "E11.9", "I10X", "S72.0", "J44.1"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in ["", "11E", "e11", "E1", "E11;DROP"] {
            assert!(!is_icd10(bad), "{bad}");
        }
    }

    #[test]
    fn settings_normalise() {
        assert_eq!(canonical_setting("AE"), Some("a&e"));
        assert_eq!(canonical_setting("Mental Health"), Some("mental_health"));
        assert_eq!(canonical_setting("pharmacy"), None);
    }
}
