//! One synthetic person: identity, registration history, life events, long-term
//! conditions, and every record each source organisation holds about them.

use chrono::{Datelike, Duration, NaiveDate};
use rand::Rng;
use rand::seq::IndexedRandom;
use std::collections::HashMap;

use super::conditions::{CONDITIONS, deprivation_multiplier, relative_risk};
use super::emit::{Identity, SourceBuffer};
use super::region::gaussian;
use super::vocab::*;
use super::{Generator, SynthStats};
use crate::nhs_number::NhsNumber;
use crate::registry::FeedFormat;

/// Shares of known bad data the generator plants (reported in synth-report.json).
pub const INVALID_NHS_SHARE: f64 = 0.004;
pub const DUPLICATE_PATIENT_SHARE: f64 = 0.002;
pub const BAD_DATE_SHARE: f64 = 0.0002;
pub const UNKNOWN_SYSTEM_SHARE: f64 = 0.0002;

struct Diagnosis {
    condition: usize,
    /// (date, SNOMED CT code): diagnosis, stage and resolved codes alike.
    codes: Vec<(NaiveDate, i64)>,
}

/// A coded event before writing: SNOMED CT or ICD-10, with a value for observations and
/// sometimes a clinician's free-text note (which must never land).
struct Coded {
    date: NaiveDate,
    system: &'static str,
    code: String,
    value: Option<(f64, &'static str)>,
    text: String,
}

impl Coded {
    fn new(date: NaiveDate, system: &'static str, code: impl ToString, value: Option<(f64, &'static str)>) -> Self {
        Self {
            date,
            system,
            code: code.to_string(),
            value,
            text: String::new(),
        }
    }
}

/// Records a person has at one source, before writing.
#[derive(Default)]
struct AtSource {
    registration: Option<(NaiveDate, Option<NaiveDate>)>,
    coded: Vec<Coded>,
    medications: Vec<(NaiveDate, i64, f64)>,
    encounters: Vec<(&'static str, NaiveDate, Option<NaiveDate>, &'static str, f64)>,
}

fn years(n: f64) -> Duration {
    Duration::days((n * 365.25) as i64)
}

/// Shortest time after birth someone must have joined their current practice to have had
/// a previous one.
const MIN_DAYS_BEFORE_MOVING: i64 = 28;

/// When a previous registration of up to `years_before` years, ending the day before
/// `reg_start`, began: never before birth, and none for someone registered at or just
/// after birth (it would end before they were born).
fn previous_registration_start(birth: NaiveDate, reg_start: NaiveDate, years_before: f64) -> Option<NaiveDate> {
    (reg_start - birth >= Duration::days(MIN_DAYS_BEFORE_MOVING)).then(|| (reg_start - years(years_before)).max(birth))
}

fn between(rng: &mut impl Rng, from: NaiveDate, to: NaiveDate) -> Option<NaiveDate> {
    let span = (to - from).num_days();
    (span > 0).then(|| from + Duration::days(rng.random_range(0..span)))
}

fn poisson(rng: &mut impl Rng, mean: f64) -> u32 {
    // Knuth for small means; normal approximation above.
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        return (mean + gaussian(rng) * mean.sqrt()).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.random_range(0.0..1.0);
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn pick_weighted<'a, T>(rng: &mut impl Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0.0..total);
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// Draw a code from a codelist. `generate` refuses empty codelists and a resolved share
/// without a resolved cluster, so there is always a real code to draw: never a made-up
/// fallback such as 0, which would land as an invalid SNOMED CT id.
fn draw(codes: &[i64], rng: &mut impl Rng) -> i64 {
    *codes
        .choose(rng)
        .expect("generate checks that every codelist drawn from has codes")
}

impl Generator<'_> {
    /// Generate person `index` and append their records to `buffers`.
    pub(super) fn person(
        &self,
        index: u64,
        rng: &mut impl Rng,
        buffers: &mut HashMap<usize, SourceBuffer>,
        stats: &mut SynthStats,
    ) {
        let today = self.config.extract_date;
        let nhs = self.nhs_number(index);
        let male = rng.random_bool(0.495);
        let band = pick_weighted(rng, AGE_PYRAMID);
        let band_end = AGE_PYRAMID.iter().find(|(s, _)| s > band).map_or(101, |(s, _)| *s);
        let age = rng.random_range(*band..band_end);
        let birth = today - years(f64::from(age)) - Duration::days(rng.random_range(0..365));
        let practice_index = self.region.sample_practice(rng);
        let practice = &self.region.practices[practice_index];
        let lsoa = &self.region.lsoas[*practice.lsoas.choose(rng).expect("every practice has catchment LSOAs")];
        let postcode = lsoa.postcodes.choose(rng).cloned().expect("every LSOA has postcodes");
        let ethnic = *pick_weighted(rng, ETHNIC_CATEGORIES);
        let frailty = (gaussian(rng) * 0.6 - 0.18).exp();
        let deprivation = deprivation_multiplier(lsoa.decile);
        let given = if male { GIVEN_NAMES_MALE } else { GIVEN_NAMES_FEMALE }
            .choose(rng)
            .copied()
            .unwrap_or("Alex");
        let family = FAMILY_NAMES.choose(rng).copied().unwrap_or("Smith");
        let address = format!(
            "{} {} {}",
            rng.random_range(1..240),
            STREETS.choose(rng).copied().unwrap_or("High"),
            STREET_KINDS.choose(rng).copied().unwrap_or("Road")
        );
        let town = TOWNS[practice_index % TOWNS.len()];
        let phone = format!("07700 900{:03}", rng.random_range(0..1000));

        // Registration: current practice, maybe a previous one.
        let registered_years = rng.random_range(0.0..f64::from(age.min(30)) + 0.5);
        let reg_start = (today - years(registered_years)).max(birth);
        let previous = (age >= 2 && rng.random_bool(0.06) && self.region.practices.len() > 1)
            .then(|| {
                let mut other = self.region.sample_practice(rng);
                if other == practice_index {
                    other = (other + 1) % self.region.practices.len();
                }
                previous_registration_start(birth, reg_start, rng.random_range(1.0..15.0)).map(|start| (other, start))
            })
            .flatten();

        // Conditions.
        let mut diagnoses = Vec::new();
        for (ci, condition) in CONDITIONS.iter().enumerate() {
            let p = (self.base_probability[ci] * relative_risk(condition, age) * deprivation * frailty).min(0.9);
            if p <= 0.0 || !rng.random_bool(p) {
                continue;
            }
            let earliest = (birth + years(f64::from(condition.onset_age))).max(today - years(25.0));
            let Some(date) = between(rng, earliest, today - Duration::days(7)) else {
                continue;
            };
            let codes = &self.codes[ci];
            let mut d = Diagnosis {
                condition: ci,
                codes: vec![(date, draw(&codes.diagnosis, rng))],
            };
            if condition.cluster == "CKD_COD"
                && rng.random_bool(0.3)
                && let Some(earlier) = between(rng, earliest.min(date), date)
            {
                d.codes.push((earlier, draw(&self.ckd_stage_1_2, rng)));
            }
            if rng.random_bool(0.3)
                && let Some(again) = between(rng, date, today)
            {
                d.codes.push((again, draw(&codes.diagnosis, rng)));
            }
            if rng.random_bool(condition.resolved_share)
                && let Some(resolved) = between(rng, date + Duration::days(1), today)
            {
                d.codes.push((resolved, draw(&codes.resolved, rng)));
                if rng.random_bool(0.1)
                    && let Some(back) = between(rng, resolved + Duration::days(1), today)
                {
                    d.codes.push((back, draw(&codes.diagnosis, rng)));
                }
            }
            diagnoses.push(d);
        }
        // CKD stage 1-2 only (not on the stage 3-5 register).
        if age >= 18
            && rng.random_bool(0.02)
            && let Some(date) = between(rng, (birth + years(18.0)).max(today - years(20.0)), today)
        {
            let ckd = CONDITIONS
                .iter()
                .position(|c| c.cluster == "CKD_COD")
                .expect("CKD_COD is one of the conditions");
            diagnoses.push(Diagnosis {
                condition: ckd,
                codes: vec![(date, draw(&self.ckd_stage_1_2, rng))],
            });
        }
        let ltcs = diagnoses.len() as f64;

        // Death (mortality rises with age and morbidity) or leaving the region.
        let q = (0.0003 * (0.085 * (f64::from(age) - 20.0)).exp()).min(0.25) * (1.0 + 0.25 * ltcs);
        let death = rng
            .random_bool((1.0 - (1.0 - q.min(0.9)).powi(5)).min(0.95))
            .then(|| between(rng, (today - years(5.0)).max(reg_start), today))
            .flatten();
        let left = if death.is_none() && rng.random_bool(0.02) {
            between(rng, reg_start, today - Duration::days(30))
        } else {
            None
        };
        let end_of_record = death.or(left).unwrap_or(today);
        let recorded = |d: NaiveDate| d <= end_of_record && d >= birth;

        let mut at: HashMap<usize, AtSource> = HashMap::new();
        let gp_now = practice.source;
        let gp_for = |d: NaiveDate| match previous {
            Some((prev, _)) if d < reg_start => self.region.practices[prev].source,
            _ => gp_now,
        };
        at.entry(gp_now).or_default().registration = Some((reg_start, death.or(left)));
        if let Some((prev, start)) = previous {
            at.entry(self.region.practices[prev].source).or_default().registration =
                Some((start, Some(reg_start - Duration::days(1))));
        }
        let free_text = |rng: &mut dyn rand::RngCore| -> String {
            match rng.random_range(0..10) {
                0 => format!("Seen with {given} {family}'s carer"),
                1 => format!("Lives at {address}"),
                2 => "Reviewed".into(),
                _ => String::new(),
            }
        };

        // GP: diagnosis and resolved codes.
        for d in &diagnoses {
            for (date, code) in &d.codes {
                if recorded(*date) {
                    let mut event = Coded::new(*date, "SNOMED", code, None);
                    event.text = free_text(rng);
                    at.entry(gp_for(*date)).or_default().coded.push(event);
                }
            }
        }
        let has = |cluster: &str| diagnoses.iter().any(|d| CONDITIONS[d.condition].cluster == cluster);
        // GP: routine observations over the last ten years.
        let obs_from = (today - years(10.0)).max(birth);
        let observations = poisson(rng, (0.4 + 0.04 * f64::from(age) + 0.8 * ltcs) * 10.0).min(150);
        for _ in 0..observations {
            let Some(date) = between(rng, obs_from, today) else {
                break;
            };
            if !recorded(date) {
                continue;
            }
            let entry = at.entry(gp_for(date)).or_default();
            let hypertensive = has("HYP_COD");
            match rng.random_range(0..6) {
                0 | 1 if age >= 16 => {
                    let sbp = if hypertensive { 142.0 } else { 122.0 }
                        + 0.3 * f64::from(age.saturating_sub(40))
                        + gaussian(rng) * 14.0;
                    entry
                        .coded
                        .push(Coded::new(date, "SNOMED", SYSTOLIC_BP, Some((sbp.round(), "mm[Hg]"))));
                    entry.coded.push(Coded::new(
                        date,
                        "SNOMED",
                        DIASTOLIC_BP,
                        Some(((sbp * 0.62 + gaussian(rng) * 6.0).round(), "mm[Hg]")),
                    ));
                }
                2 if age >= 16 => entry.coded.push(Coded::new(
                    date,
                    "SNOMED",
                    BMI,
                    Some(((27.0 + gaussian(rng) * 4.5).max(14.0), "kg/m2")),
                )),
                3 => entry.coded.push(Coded::new(
                    date,
                    "SNOMED",
                    BODY_WEIGHT,
                    Some((
                        (f64::from(age.min(18)) * 3.6 + 12.0 + gaussian(rng) * 9.0).max(3.0),
                        "kg",
                    )),
                )),
                _ if age >= 16 => {
                    let code = [SMOKER, EX_SMOKER, NEVER_SMOKED, NEVER_SMOKED][rng.random_range(0..4)];
                    entry.coded.push(Coded::new(date, "SNOMED", code, None));
                }
                _ => {}
            }
        }
        if has("DM_COD") || has("NDH_COD") {
            let diabetic = has("DM_COD");
            for k in 0..6 {
                let date = today - Duration::days(30 + k * 182 + rng.random_range(0..60));
                if recorded(date) {
                    let value = if diabetic {
                        58.0 + gaussian(rng) * 12.0
                    } else {
                        44.0 + gaussian(rng) * 1.5
                    };
                    at.entry(gp_for(date)).or_default().coded.push(Coded::new(
                        date,
                        "SNOMED",
                        HBA1C_IFCC,
                        Some((value.max(25.0), "mmol/mol")),
                    ));
                }
            }
        }
        // GP: repeat prescriptions over two years, and consultations over three.
        for d in &diagnoses {
            let cluster = CONDITIONS[d.condition].cluster;
            for (_, dmd, quantity) in MEDICINES.iter().filter(|(c, _, _)| *c == cluster) {
                let first = d.codes[0].0.max(today - years(2.0));
                let mut date = first + Duration::days(rng.random_range(0..56));
                while date <= today && recorded(date) {
                    at.entry(gp_for(date))
                        .or_default()
                        .medications
                        .push((date, *dmd, *quantity));
                    date += Duration::days(rng.random_range(50..63));
                }
            }
        }
        let three_years_ago = today - years(3.0);
        for _ in 0..poisson(rng, (1.5 + 0.04 * f64::from(age) + 1.2 * ltcs) * 3.0) {
            if let Some(date) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) {
                let kind = GP_CONTACTS.choose(rng).copied().unwrap_or("telephone");
                at.entry(gp_for(date))
                    .or_default()
                    .encounters
                    .push(("gp", date, Some(date), kind, 42.0));
            }
        }

        // Acute trust, by geography.
        let acute = self
            .region
            .acute
            .get(practice_index % self.region.acute.len().max(1))
            .copied();
        if let Some(trust) = acute {
            let age_f = f64::from(age);
            for _ in 0..poisson(rng, (0.03 + 0.0018 * age_f + 0.07 * ltcs) * 3.0) {
                let Some(start) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) else {
                    continue;
                };
                let los = poisson(rng, 1.0 + 0.06 * age_f) as i64;
                let end = start + Duration::days(los);
                let diag = if !diagnoses.is_empty() && rng.random_bool(0.6) {
                    let cluster = CONDITIONS[diagnoses[rng.random_range(0..diagnoses.len())].condition].cluster;
                    ICD10_BY_CLUSTER
                        .iter()
                        .find(|(c, _)| *c == cluster)
                        .map(|(_, icd)| *icd)
                } else {
                    None
                }
                .unwrap_or_else(|| ICD10_OTHER.choose(rng).copied().unwrap_or("R69X"));
                let kind = if rng.random_bool(0.65) { "emergency" } else { "elective" };
                let entry = at.entry(trust).or_default();
                entry.encounters.push((
                    "inpatient",
                    start,
                    Some(end.min(today)),
                    kind,
                    1500.0 + 450.0 * los as f64,
                ));
                entry.coded.push(Coded::new(start, "ICD10", diag, None));
            }
            for _ in 0..poisson(rng, (0.3 + 0.004 * age_f + 0.3 * ltcs) * 3.0) {
                if let Some(date) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) {
                    let kind = if rng.random_bool(0.35) {
                        "first_attendance"
                    } else {
                        "follow_up"
                    };
                    at.entry(trust)
                        .or_default()
                        .encounters
                        .push(("outpatient", date, Some(date), kind, 160.0));
                }
            }
            for _ in 0..poisson(rng, (0.22 + 0.05 * ltcs) * 3.0) {
                if let Some(date) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) {
                    at.entry(trust)
                        .or_default()
                        .encounters
                        .push(("a&e", date, Some(date), "type_1", 250.0));
                }
            }
        }
        // Mental health trust: people with SMI, some with depression.
        if let Some(trust) = self
            .region
            .mental_health
            .get(practice_index % self.region.mental_health.len().max(1))
            .copied()
            && ((has("MH_COD") && rng.random_bool(0.85)) || (has("DEPR_COD") && rng.random_bool(0.2)))
        {
            let icd = if has("MH_COD") { "F20.9" } else { "F32.9" };
            let mut first = true;
            for _ in 0..rng.random_range(3..13) {
                if let Some(date) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) {
                    let entry = at.entry(trust).or_default();
                    if first {
                        entry.coded.push(Coded::new(date, "ICD10", icd, None));
                        first = false;
                    }
                    let kind = MENTAL_HEALTH_CONTACTS.choose(rng).copied().unwrap_or("assessment");
                    entry.encounters.push(("mental_health", date, Some(date), kind, 180.0));
                }
            }
        }
        // Community services: the old and the breathless.
        if let Some(provider) = self
            .region
            .community
            .get(practice_index % self.region.community.len().max(1))
            .copied()
            && ((age >= 75 && rng.random_bool(0.4))
                || ((has("HF_COD") || has("COPD_COD") || has("DEM_COD")) && rng.random_bool(0.5)))
        {
            for _ in 0..rng.random_range(4..21) {
                if let Some(date) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) {
                    let kind = COMMUNITY_SERVICES.choose(rng).copied().unwrap_or("district_nursing");
                    at.entry(provider)
                        .or_default()
                        .encounters
                        .push(("community", date, Some(date), kind, 60.0));
                }
            }
        }
        // Adult social care.
        if let Some(council) = self
            .region
            .social_care
            .get(practice_index % self.region.social_care.len().max(1))
            .copied()
            && age >= 65
            && (has("DEM_COD") || frailty > 1.8 || (age >= 85 && rng.random_bool(0.3)))
        {
            for _ in 0..rng.random_range(1..3) {
                let Some(start) = between(rng, three_years_ago.max(birth), today).filter(|d| recorded(*d)) else {
                    continue;
                };
                let (service, weekly) = SOCIAL_CARE_SERVICES
                    .choose(rng)
                    .copied()
                    .unwrap_or(("home_care", 300.0));
                let end = between(rng, start, today)
                    .filter(|_| rng.random_bool(0.6))
                    .map(|e| e.min(end_of_record));
                let weeks = ((end.unwrap_or(today.min(end_of_record)) - start).num_days() as f64 / 7.0).max(1.0);
                at.entry(council)
                    .or_default()
                    .encounters
                    .push(("social_care", start, end, service, weekly * weeks));
            }
        }

        // Intended register status, for the report.
        let registered_now = death.is_none() && left.is_none();
        let mut valid_everywhere = true;

        // Write every source's view of this person.
        let mut sources: Vec<usize> = at.keys().copied().collect();
        sources.sort_unstable();
        for source in sources {
            let Some(records) = at.remove(&source) else { continue };
            let format = self.region.registry.sources[source].format;
            let corrupt = rng.random_bool(INVALID_NHS_SHARE);
            let nhs_text = self.nhs_text(&nhs, corrupt, rng);
            let fhir_id = format!("{:016x}{:08x}", index.wrapping_mul(0x9E37_79B9_7F4A_7C15), source);
            let identity = Identity {
                nhs_text: &nhs_text,
                fhir_id: &fhir_id,
                given,
                family,
                birth_date: birth,
                sex_code: if male { "1" } else { "2" },
                ethnic,
                address: &address,
                town,
                postcode: &postcode,
                phone: &phone,
                registration: records.registration,
                death,
            };
            let buffer = buffers.entry(source).or_default();
            let before: u64 = buffer.rows.iter().sum();
            buffer.patient(format, &identity);
            if rng.random_bool(DUPLICATE_PATIENT_SHARE) {
                buffer.patient(format, &identity);
                stats.duplicate_patient_rows += 1;
            }
            for event in &records.coded {
                let mut date_text = event.date.format("%Y-%m-%d").to_string();
                let mut system_text: &str = event.system;
                if !corrupt && format == FeedFormat::Csv && rng.random_bool(BAD_DATE_SHARE) {
                    date_text = format!("{}-02-30", event.date.year());
                    stats.bad_date_rows += 1;
                } else if !corrupt && format == FeedFormat::Csv && rng.random_bool(UNKNOWN_SYSTEM_SHARE) {
                    system_text = "READ2";
                    stats.unknown_code_system_rows += 1;
                }
                buffer.coded(
                    format,
                    &identity,
                    &date_text,
                    system_text,
                    &event.code,
                    event.value,
                    &event.text,
                );
            }
            for (date, dmd, quantity) in &records.medications {
                buffer.medication(format, &identity, *date, *dmd, *quantity, "One tablet daily");
            }
            for (setting, start, end, kind, cost) in &records.encounters {
                buffer.encounter(format, &identity, setting, *start, *end, kind, *cost);
            }
            if corrupt {
                valid_everywhere = false;
                stats.invalid_nhs_rows += buffer.rows.iter().sum::<u64>() - before;
                stats.invalid_nhs_person_sources += 1;
            }
        }
        stats.patients += 1;
        if death.is_some() {
            stats.deaths += 1;
        }
        if previous.is_some() {
            stats.movers += 1;
        }
        if !valid_everywhere || !registered_now {
            return;
        }
        stats.registered_valid += 1;
        // Truth from the codes as written: QOF clusters overlap (some hypertension codes
        // are CKD codes too), so a register is judged on every code the person has.
        let history: Vec<(NaiveDate, i64)> = diagnoses.iter().flat_map(|d| d.codes.iter().copied()).collect();
        for (ci, condition) in CONDITIONS.iter().enumerate() {
            if age < condition.min_age {
                continue;
            }
            stats.register_denominator[ci] += 1;
            if self.on_register(ci, &history) {
                stats.register_numerator[ci] += 1;
            }
        }
    }

    /// QOF rule: the latest code of the condition is on or before the date and not
    /// followed by a resolved code; for CKD 3-5 the latest CKD code (stages 1-5) must be a
    /// stage 3-5 code.
    fn on_register(&self, ci: usize, history: &[(NaiveDate, i64)]) -> bool {
        let sets = &self.sets[ci];
        let ckd = CONDITIONS[ci].cluster == "CKD_COD";
        let counts = |code: &i64| sets.diagnosis.contains(code) || (ckd && self.ckd_stage_1_2.contains(code));
        let Some(latest) = history
            .iter()
            .filter(|(_, code)| counts(code))
            .map(|(date, _)| *date)
            .max()
        else {
            return false;
        };
        if history
            .iter()
            .any(|(date, code)| *date > latest && sets.resolved.contains(code))
        {
            return false;
        }
        !ckd || history
            .iter()
            .any(|(date, code)| *date == latest && sets.diagnosis.contains(code))
    }

    fn nhs_number(&self, index: u64) -> NhsNumber {
        nhs_number_for(self.config.seed, index)
    }

    /// How a source writes the number: usually plain, sometimes spaced, and for planted
    /// faults with a wrong check digit.
    fn nhs_text(&self, nhs: &NhsNumber, corrupt: bool, rng: &mut impl Rng) -> String {
        let mut digits = nhs.to_digit_string().into_bytes();
        if corrupt {
            digits[9] = b'0' + (digits[9] - b'0' + 1) % 10;
        }
        let text = String::from_utf8_lossy(&digits).into_owned();
        if rng.random_bool(0.1) {
            format!("{} {} {}", &text[..3], &text[3..6], &text[6..])
        } else {
            text
        }
    }
}

/// Person `index`'s NHS number: the first valid stem in a window of 13 stems that belongs
/// to that person alone, so numbers are unique within a seed. (Eleven consecutive stems
/// always include one with a check digit: the weighted sum steps by 2 mod 11 as the last
/// stem digit rises, except across a carry, which the spare two stems absorb.)
pub fn nhs_number_for(seed: u64, index: u64) -> NhsNumber {
    let base = 400_000_000 + (seed % 37) * 1_000_003 + index * 13;
    let mut stem = base;
    loop {
        if let Some(n) = NhsNumber::from_stem((stem % 1_000_000_000) as u32) {
            return n;
        }
        stem += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_previous_registration_never_ends_before_birth() {
        let birth = NaiveDate::from_ymd_opt(2020, 2, 29).expect("date");
        for days_after_birth in 0..400 {
            let reg_start = birth + Duration::days(days_after_birth);
            for years_before in [1.0, 2.5, 14.99] {
                match previous_registration_start(birth, reg_start, years_before) {
                    Some(start) => {
                        let end = reg_start - Duration::days(1);
                        assert!(start >= birth && end >= start, "{start}..{end} for birth {birth}");
                    }
                    None => assert!(days_after_birth < MIN_DAYS_BEFORE_MOVING),
                }
            }
        }
        // Registered at birth: no previous practice.
        assert_eq!(previous_registration_start(birth, birth, 3.0), None);
    }

    #[test]
    fn nhs_numbers_are_valid_unique_and_stay_in_their_window() {
        let mut seen = HashSet::new();
        for index in 0..50_000u64 {
            let n = nhs_number_for(7, index);
            assert!(seen.insert(n), "duplicate at {index}");
            let stem: u64 = n.to_digit_string()[..9].parse().expect("digits");
            let base = 400_000_000 + 7 * 1_000_003 + index * 13;
            assert!(stem >= base && stem < base + 13, "left its window at {index}");
        }
    }
}
