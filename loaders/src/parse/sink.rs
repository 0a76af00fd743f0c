//! `RowSink`: the one place a record's fields are validated, de-identified and buffered,
//! whichever format they came from. The format front-ends only pull fields out of their
//! files; every rule about what may land lives here, so CSV and FHIR cannot drift apart.

use chrono::NaiveDate;
use std::collections::{HashMap, HashSet};

use super::vocab::{
    CodeSystem, ENCOUNTER_TYPES, Sex, ambulatory_setting, canonical_setting, ethnicity_group, event_setting, ucum_unit,
};
use super::{ParseContext, ParsedDelivery};
use crate::dates::{EARLIEST, date32, first_of_month, parse_date};
use crate::delivery::{Delivery, ManifestFile};
use crate::nhs_number::{NhsNumber, NhsNumberProblem};
use crate::quarantine::{Quarantined, Reason};
use crate::registry::OrgType;

/// A person as a record refers to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonRef {
    Known(i64),
    /// Opted out: the record is excluded and counted, not quarantined.
    OptedOut,
    /// The identifier failed: the record is quarantined for this reason.
    Invalid(Reason),
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

pub struct MedicationFields<'a> {
    pub date: &'a str,
    pub dmd_code: &'a str,
    pub quantity: &'a str,
}

pub struct EncounterFields<'a> {
    pub setting: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub encounter_type: &'a str,
    pub cost: &'a str,
    /// A SNOMED CT encounter type as sent (FHIR feeds; blank otherwise).
    pub encounter_snomed: &'a str,
}

/// A file must hold exactly as many records as its manifest line declares; fewer or more
/// means it was cut short or appended to, and the whole delivery is rejected. `noun` names
/// the records in the detail ("rows" for CSV, "resources" for FHIR).
pub(super) fn check_row_count(declared: &ManifestFile, found: u64, noun: &str) -> Result<(), Quarantined> {
    if found != declared.rows {
        return Err(Quarantined::file(
            &declared.name,
            Reason::RowCountMismatch,
            format!("{found} {noun} where the manifest declares {}", declared.rows),
        ));
    }
    Ok(())
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
    /// Each person's earliest landed record date: the registration date of a GP feed
    /// that states none (see `fhir`).
    first_record: HashMap<i64, NaiveDate>,
    pub out: ParsedDelivery,
}

impl<'a> RowSink<'a> {
    pub(super) fn new(ctx: &'a ParseContext<'a>, delivery: &Delivery) -> Self {
        Self {
            ctx,
            setting: event_setting(ctx.source.org_type),
            // Nothing is dated after the extract, nor after today whatever the manifest
            // says (a manifest dated 9999-12-31 must not let 9999-12-31 events land).
            latest: delivery.manifest.extracted.min(chrono::Utc::now().date_naive()),
            period: (delivery.manifest.period_start, delivery.manifest.period_end),
            seen_patients: HashSet::new(),
            people: HashMap::new(),
            first_record: HashMap::new(),
            out: ParsedDelivery::default(),
        }
    }

    /// The largest data file the loader reads (`--max-file-bytes`).
    pub fn max_file_bytes(&self) -> u64 {
        self.ctx.max_file_bytes
    }

    pub fn source_org_type(&self) -> OrgType {
        self.ctx.source.org_type
    }

    pub fn source_ods(&self) -> &str {
        &self.ctx.source.ods
    }

    /// The date the delivery was extracted (its manifest's `extracted`, never after today).
    pub fn extracted(&self) -> NaiveDate {
        self.latest
    }

    /// The setting of the source's own records (by the kind of organisation).
    pub fn source_setting(&self) -> &'static str {
        self.setting
    }

    /// The setting of the source's ambulatory (`AMB`) encounters.
    pub fn source_ambulatory_setting(&self) -> &'static str {
        ambulatory_setting(self.ctx.source.org_type)
    }

    pub fn quarantine(&mut self, file: &str, line: u64, reason: Reason, detail: impl Into<String>) {
        self.out
            .quarantined
            .push(Quarantined::record(file, line, reason, detail));
    }

    pub fn count_read(&mut self) {
        self.out.rows_read += 1;
    }

    /// Count something the source sent that Poplar did not understand, for the load
    /// summary (`category`: what kind of thing; `value`: which one). Only a code-system URI
    /// or a checked SNOMED CT id is named; anything else is counted without being named,
    /// because it might be free text or an identifier sent in the wrong field.
    pub fn not_understood(&mut self, category: &'static str, value: &str) {
        let name = if super::vocab::nameable(value) || super::vocab::nameable_sctid(value) {
            value
        } else if value.is_empty() {
            "(none)"
        } else {
            "(not a code)"
        };
        *self
            .out
            .not_understood
            .entry(category)
            .or_default()
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// Count something Poplar understood only in part, named by Poplar's own constant (a
    /// resource type), for the load summary.
    pub fn partly_understood(&mut self, category: &'static str, name: &'static str) {
        *self
            .out
            .not_understood
            .entry(category)
            .or_default()
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// The earliest date of the records landed for a person in this delivery so far.
    pub fn first_record(&self, person: PersonRef) -> Option<NaiveDate> {
        match person {
            PersonRef::Known(id) => self.first_record.get(&id).copied(),
            _ => None,
        }
    }

    fn note_record(&mut self, person_id: i64, date: NaiveDate) {
        self.first_record
            .entry(person_id)
            .and_modify(|d| *d = (*d).min(date))
            .or_insert(date);
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
                    Reason::DuplicateResourceId => "the Patient id is used by more than one Patient in this delivery",
                    Reason::ConflictingIdentifiers => "the Patient carries two different NHS numbers",
                    _ => "NHS number fails the modulus 11 check or is not ten digits",
                };
                self.quarantine(file, line, reason, detail);
                None
            }
        }
    }

    /// A date no earlier than `earliest` and no later than the extract date; otherwise the
    /// record is quarantined and `None` returned.
    fn date_in(&mut self, raw: &str, column: &str, file: &str, line: u64, earliest: NaiveDate) -> Option<NaiveDate> {
        let Some(d) = parse_date(raw) else {
            self.quarantine(
                file,
                line,
                Reason::InvalidDate,
                format!("{column} is not a YYYY-MM-DD date"),
            );
            return None;
        };
        if d > self.latest {
            self.quarantine(
                file,
                line,
                Reason::FutureDate,
                format!("{column} is after the extract date"),
            );
            return None;
        }
        if d < earliest {
            self.quarantine(
                file,
                line,
                Reason::DateOutOfRange,
                format!("{column} is before 1900 or before birth"),
            );
            return None;
        }
        Some(d)
    }

    /// An optional date: `Ok(None)` when blank, `Err(())` when the record was quarantined.
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
            self.date_in(raw, column, file, line, earliest).map(Some).ok_or(())
        }
    }

    /// The date that places a record in the delivery: a valid date within the period the
    /// manifest declares (a delivery replaces exactly that period, so a record outside it
    /// would land where no later delivery could supersede it).
    fn period_date(&mut self, raw: &str, column: &str, file: &str, line: u64) -> Option<NaiveDate> {
        let d = self.date_in(raw, column, file, line, EARLIEST)?;
        if d < self.period.0 || d > self.period.1 {
            self.quarantine(
                file,
                line,
                Reason::OutsideDeliveryPeriod,
                format!("{column} is outside the period the manifest declares"),
            );
            return None;
        }
        Some(d)
    }

    /// The opening steps every dated record shares: admit the person, then check the date
    /// and the delivery period. `None` when the record was excluded or quarantined.
    fn admit_dated(
        &mut self,
        person: PersonRef,
        raw_date: &str,
        column: &str,
        file: &str,
        line: u64,
    ) -> Option<(i64, NaiveDate)> {
        let person_id = self.admit(person, file, line)?;
        let date = self.period_date(raw_date, column, file, line)?;
        Some((person_id, date))
    }

    pub fn add_patient(&mut self, person: PersonRef, f: &PatientFields<'_>, file: &str, line: u64) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        let Some(birth) = self.date_in(f.birth_date, "date of birth", file, line, EARLIEST) else {
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
                rows.lsoa.append_value(area.lsoa);
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
        let Some((person_id, date)) = self.admit_dated(person, f.date, "event date", file, line) else {
            return;
        };
        let code = f.code.trim();
        let (system, snomed) = match f.code_system {
            CodeSystem::Snomed => match code.parse::<i64>() {
                Ok(id) if is_concept_id(code) && id > 0 => ("snomed", Some(id)),
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
            CodeSystem::Loinc => {
                if !is_loinc(code) {
                    self.quarantine(
                        file,
                        line,
                        Reason::InvalidCode,
                        "LOINC code is not digits, a hyphen and a check digit",
                    );
                    return;
                }
                ("loinc", None)
            }
            CodeSystem::Unknown => {
                self.quarantine(
                    file,
                    line,
                    Reason::UnknownCodeSystem,
                    "code system is not SNOMED CT, ICD-10 or LOINC",
                );
                return;
            }
        };
        let Ok(value) = parse_optional_number(f.value) else {
            self.quarantine(file, line, Reason::InvalidValue, "value is not a number");
            return;
        };
        // `unit` lands only as a code from Poplar's UCUM list: sent as text, it is a free
        // field that a name or an address can be typed into.
        let unit = match f.unit.trim() {
            "" => None,
            raw => match ucum_unit(raw) {
                Some(unit) => Some(unit),
                None => {
                    self.quarantine(file, line, Reason::UnknownUnit, "unit is not a UCUM unit Poplar knows");
                    return;
                }
            },
        };
        if value.is_some_and(|v| v < 0.0) && unit.is_some_and(|u| !u.signed) {
            self.quarantine(
                file,
                line,
                Reason::NegativeValue,
                "value is negative in a unit that cannot be",
            );
            return;
        }
        self.note_record(person_id, date);
        let rows = &mut self.out.events;
        rows.person_id.append_value(person_id);
        rows.event_date.append_value(date32(date));
        rows.code_system.append_value(system);
        rows.code.append_value(code);
        rows.snomed_code.append_option(snomed);
        rows.value.append_option(value);
        rows.unit
            .append_option(unit.filter(|_| value.is_some()).map(|u| u.code));
        rows.setting.append_value(self.setting);
    }

    pub fn add_medication(&mut self, person: PersonRef, f: &MedicationFields<'_>, file: &str, line: u64) {
        let Some((person_id, date)) = self.admit_dated(person, f.date, "issue date", file, line) else {
            return;
        };
        let code = f.dmd_code.trim();
        let Some(dmd) = code.parse::<i64>().ok().filter(|c| *c > 0 && is_concept_id(code)) else {
            self.quarantine(file, line, Reason::InvalidCode, "dm+d code is not a 6-18 digit id");
            return;
        };
        let Some(quantity) = self.non_negative(f.quantity, "quantity", file, line) else {
            return;
        };
        self.note_record(person_id, date);
        let rows = &mut self.out.medications;
        rows.person_id.append_value(person_id);
        rows.issue_date.append_value(date32(date));
        rows.dmd_code.append_value(dmd);
        rows.quantity.append_option(quantity);
    }

    /// An optional number that cannot be negative (a quantity, a cost): `Some(None)` when
    /// blank; `None` when the record was quarantined for it.
    fn non_negative(&mut self, raw: &str, what: &str, file: &str, line: u64) -> Option<Option<f64>> {
        match parse_optional_number(raw) {
            Ok(Some(n)) if n < 0.0 => {
                self.quarantine(file, line, Reason::NegativeValue, format!("{what} is negative"));
                None
            }
            Ok(n) => Some(n),
            Err(()) => {
                self.quarantine(file, line, Reason::InvalidValue, format!("{what} is not a number"));
                None
            }
        }
    }

    pub fn add_encounter(&mut self, person: PersonRef, f: &EncounterFields<'_>, file: &str, line: u64) {
        let Some(person_id) = self.admit(person, file, line) else {
            return;
        };
        // The category lands as Poplar's own constant, never the sender's text.
        let raw_kind = f.encounter_type.trim();
        let kind = ENCOUNTER_TYPES.iter().copied().find(|t| *t == raw_kind);
        if !raw_kind.is_empty() && kind.is_none() {
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
        let Some(start) = self.period_date(f.start, "start date", file, line) else {
            return;
        };
        // An encounter may still be open (no end), and may end after the extract date only
        // if it is planned; an end before the start is a fault.
        let end = if f.end.trim().is_empty() {
            None
        } else {
            match parse_date(f.end) {
                // A planned end may be after the extract, but not years after it.
                Some(end) if end > self.latest + chrono::Duration::days(366) => {
                    self.quarantine(
                        file,
                        line,
                        Reason::FutureDate,
                        "end date is more than a year after the extract date",
                    );
                    return;
                }
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
        let Some(cost) = self.non_negative(f.cost, "cost", file, line) else {
            return;
        };
        let snomed = f.encounter_snomed.trim();
        let snomed = if snomed.is_empty() {
            None
        } else {
            match snomed.parse::<i64>() {
                Ok(id) if is_concept_id(snomed) && id > 0 => Some(id),
                _ => {
                    self.quarantine(
                        file,
                        line,
                        Reason::InvalidCode,
                        "SNOMED CT encounter type is not a 6-18 digit concept id",
                    );
                    return;
                }
            }
        };
        self.note_record(person_id, start);
        let rows = &mut self.out.encounters;
        rows.person_id.append_value(person_id);
        rows.setting.append_value(setting);
        rows.start_date.append_value(date32(start));
        rows.end_date.append_option(end.map(date32));
        rows.encounter_type.append_option(kind);
        rows.cost.append_option(cost);
        rows.encounter_snomed.append_option(snomed);
    }
}

/// SNOMED CT concept ids and dm+d ids are 6 to 18 digits long.
fn is_concept_id(code: &str) -> bool {
    (6..=18).contains(&code.len())
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

/// LOINC codes are up to seven digits, a hyphen and a check digit (`4548-4`).
fn is_loinc(code: &str) -> bool {
    match code.split_once('-') {
        Some((num, check)) => {
            (1..=7).contains(&num.len())
                && num.bytes().all(|b| b.is_ascii_digit())
                && check.len() == 1
                && check.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// ICD-10 as UK systems send it: a letter, two digits (or a digit and the `X` filler),
/// then an optional `.` and up to three digits or `X` fillers, and an optional dagger,
/// asterisk or dash marker (`D`, `A`, `-`). Letters are not otherwise allowed after the
/// category, so a surname cannot ride along (`A12SMITH`).
fn is_icd10(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() || !(b[2].is_ascii_digit() || b[2] == b'X') {
        return false;
    }
    let mut rest = &b[3..];
    if let [head @ .., b'D' | b'A' | b'-'] = rest {
        rest = head;
    }
    if let [b'.', tail @ ..] = rest {
        rest = tail;
        if rest.is_empty() {
            return false;
        }
    }
    rest.len() <= 3 && rest.iter().all(|c| c.is_ascii_digit() || *c == b'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loinc_shapes() {
        for ok in ["4548-4", "8480-6", "2345-7"] {
            assert!(is_loinc(ok), "{ok}");
        }
        for bad in ["", "4548", "4548-44", "-4", "a548-4"] {
            assert!(!is_loinc(bad), "{bad}");
        }
    }

    #[test]
    fn icd10_shapes() {
        for ok in ["E11", "E11.9", "I10X", "S72.0", "J44.1"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for ok in ["R69X", "E119", "S7200", "G01XD", "E11-"] {
            assert!(is_icd10(ok), "{ok}");
        }
        for bad in ["", "11E", "e11", "E1", "E11;DROP", "A12SMITH", "E11.", "Q11AA"] {
            assert!(!is_icd10(bad), "{bad}");
        }
    }
}
