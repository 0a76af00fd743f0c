//! The measure catalogue: what each measure counts, how its value is expressed and
//! judged, and which codelists it rests on. The SQL each definition generates is in
//! [`super::sql`]; the statistics in [`super::stats`].

use std::sync::LazyLock;

use super::dimensions::Dimension;
use super::periods::Period;
use super::stats::Polarity;
use crate::QueryError;
use crate::registers::{REGISTERS, Register};

/// How a measure's value is formed from its numerator and denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Numerator people out of denominator people, times the multiplier (100: a percentage).
    Proportion,
    /// Events per `multiplier` people (1,000 or 100,000), not standardised.
    CrudeRate,
    /// Events per `multiplier` people, directly standardised to a standard population.
    DirectlyStandardisedRate,
    /// A count (the numerator alone).
    Count,
    /// Money (pounds) per registered person.
    CostPerHead,
}

/// How a measure's confidence intervals are computed (see [`super::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CiMethod {
    /// Wilson score interval ([`super::stats::wilson`]).
    Wilson,
    /// Byar's method, exact Poisson below 10 events ([`super::stats::count_interval`]).
    Byar,
    /// Dobson's method for directly standardised rates ([`super::stats::dsr`]).
    Dobson,
    /// No interval: a sum of money has no sampling model Poplar can defend.
    None,
}

impl CiMethod {
    /// The name shown with a measure's metadata.
    pub fn name(self) -> &'static str {
        match self {
            CiMethod::Wilson => "Wilson score",
            CiMethod::Byar => "Byar's method (exact Poisson below 10 events)",
            CiMethod::Dobson => "Dobson's method",
            CiMethod::None => "none",
        }
    }
}

/// What a measure counts; the SQL generator reads this, nothing else does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Definition {
    /// People on a QOF register at the period end, of the registered population at least
    /// the register's minimum age.
    Register(&'static Register),
    /// People on at least `at_least` of the registers at the period end.
    Multimorbidity { at_least: u32 },
    /// Encounters starting in the period, optionally of one encounter type.
    Activity {
        setting: &'static str,
        encounter_type: Option<&'static str>,
    },
    /// People (18+) with a social care service open at any time in the period.
    SocialCareUsers,
    /// The cost of encounters starting in the period, in one setting or all.
    Cost { setting: Option<&'static str> },
}

/// One measure's definition and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Stable identifier, `[a-z0-9_]+`, used in requests and audit entries.
    pub id: String,
    pub title: String,
    pub description: String,
    /// The numerator in words.
    pub numerator_text: String,
    /// The denominator in words.
    pub denominator_text: String,
    pub value_type: ValueType,
    /// Value = numerator / denominator × multiplier (100 for %, 1,000 or 100,000 for rates;
    /// 1 for cost per head).
    pub multiplier: f64,
    pub polarity: Polarity,
    /// The unit a value is shown in: "%", "per 1,000", "£ per head".
    pub unit: String,
    pub ci_method: CiMethod,
    /// The QOF clusters the measure uses (empty for activity and cost).
    pub codelists: Vec<&'static str>,
    /// The standard population of a standardised rate.
    pub standard_population: Option<&'static str>,
    /// Only people at least this old at the period end are counted (QOF age floors).
    pub min_age: u32,
    pub(crate) definition: Definition,
}

/// The settings of care activity is counted in, as `encounters.setting` holds them
/// (`poplar_loaders::parse::vocab::SETTINGS`), with the noun used in titles.
const SETTINGS: [(&str, &str); 7] = [
    ("gp", "GP practice"),
    ("inpatient", "hospital inpatient"),
    ("outpatient", "hospital outpatient"),
    ("a&e", "A&E"),
    ("mental_health", "mental health"),
    ("community", "community health"),
    ("social_care", "adult social care"),
];

const REGISTERED: &str = "people registered with a practice on the last day of the period";

fn age_floor(min_age: u32) -> String {
    if min_age == 0 {
        String::new()
    } else {
        format!(", aged {min_age} or over")
    }
}

fn register_measure(register: &'static Register) -> Measure {
    let codelists = [Some(register.diagnosis), register.resolved, register.excluded_latest]
        .into_iter()
        .flatten()
        .collect();
    let off = match (register.resolved, register.excluded_latest) {
        (Some(resolved), _) => format!(" and no later {resolved} (resolved) code"),
        (None, Some(excluded)) => format!(", the latest not followed by a {excluded} code"),
        (None, None) => String::new(),
    };
    Measure {
        id: format!("prevalence_{}", register.id),
        title: format!("{} prevalence (QOF register)", register.name),
        description: format!(
            "Recorded prevalence of {}: people on the QOF register as a percentage of the registered population the register applies to, as at the end of the period.",
            register.name.to_lowercase()
        ),
        numerator_text: format!(
            "People on the {} register at the end of the period: a {} code on or before that date{off}{}",
            register.name.to_lowercase(),
            register.diagnosis,
            age_floor(register.min_age),
        ),
        denominator_text: format!("{}{}", capitalise(REGISTERED), age_floor(register.min_age)),
        value_type: ValueType::Proportion,
        multiplier: 100.0,
        polarity: Polarity::NoJudgement,
        unit: "%".into(),
        ci_method: CiMethod::Wilson,
        codelists,
        standard_population: None,
        min_age: register.min_age,
        definition: Definition::Register(register),
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn multimorbidity(at_least: u32) -> Measure {
    Measure {
        id: format!("multimorbidity_{at_least}plus"),
        title: format!("Multimorbidity: {at_least} or more long-term conditions"),
        description: format!(
            "People on {at_least} or more of Poplar's {} QOF registers, as a percentage of the registered population, as at the end of the period.",
            REGISTERS.len()
        ),
        numerator_text: format!("People on {at_least} or more QOF registers at the end of the period"),
        denominator_text: capitalise(REGISTERED),
        value_type: ValueType::Proportion,
        multiplier: 100.0,
        polarity: Polarity::NoJudgement,
        unit: "%".into(),
        ci_method: CiMethod::Wilson,
        codelists: REGISTERS
            .iter()
            .flat_map(|r| [Some(r.diagnosis), r.resolved, r.excluded_latest])
            .flatten()
            .collect(),
        standard_population: None,
        min_age: 0,
        definition: Definition::Multimorbidity { at_least },
    }
}

struct Activity {
    id: &'static str,
    title: &'static str,
    what: &'static str,
    setting: &'static str,
    encounter_type: Option<&'static str>,
    polarity: Polarity,
}

const ACTIVITY: [Activity; 6] = [
    Activity {
        id: "ae_attendances",
        title: "A&E attendances",
        what: "A&E attendances (any department type)",
        setting: "a&e",
        encounter_type: None,
        polarity: Polarity::LowIsGood,
    },
    Activity {
        id: "emergency_admissions",
        title: "Emergency admissions",
        what: "Emergency (non-elective) hospital admissions",
        setting: "inpatient",
        encounter_type: Some("emergency"),
        polarity: Polarity::LowIsGood,
    },
    Activity {
        id: "outpatient_attendances",
        title: "Outpatient attendances",
        what: "Outpatient attendances (first, follow-up and procedures)",
        setting: "outpatient",
        encounter_type: None,
        polarity: Polarity::NoJudgement,
    },
    Activity {
        id: "gp_contacts",
        title: "GP practice contacts",
        what: "GP practice contacts (face to face, telephone, video and home visits)",
        setting: "gp",
        encounter_type: None,
        polarity: Polarity::NoJudgement,
    },
    Activity {
        id: "mental_health_contacts",
        title: "Mental health service contacts",
        what: "Contacts with mental health services",
        setting: "mental_health",
        encounter_type: None,
        polarity: Polarity::NoJudgement,
    },
    Activity {
        id: "community_contacts",
        title: "Community health service contacts",
        what: "Contacts with community health services",
        setting: "community",
        encounter_type: None,
        polarity: Polarity::NoJudgement,
    },
];

fn activity_measure(a: &Activity) -> Measure {
    Measure {
        id: a.id.into(),
        title: format!("{} per 1,000 registered patients", a.title),
        description: format!(
            "{} starting in the period, of people registered at its end, per 1,000 registered patients. Not annualised: a quarter's rate is a quarter's activity.",
            a.what
        ),
        numerator_text: format!("{} starting in the period, of {REGISTERED}", a.what),
        denominator_text: capitalise(REGISTERED),
        value_type: ValueType::CrudeRate,
        multiplier: 1000.0,
        polarity: a.polarity,
        unit: "per 1,000".into(),
        ci_method: CiMethod::Byar,
        codelists: Vec::new(),
        standard_population: None,
        min_age: 0,
        definition: Definition::Activity {
            setting: a.setting,
            encounter_type: a.encounter_type,
        },
    }
}

fn emergency_admissions_dsr() -> Measure {
    Measure {
        id: "emergency_admissions_dsr".into(),
        title: "Emergency admissions, directly age-standardised rate per 100,000".into(),
        description: "Emergency (non-elective) hospital admissions starting in the period, of people registered at its end, directly standardised to the European Standard Population 2013 (19 five-year age bands, 90+), per 100,000. Blank when fewer than 10 admissions.".into(),
        numerator_text: format!("Emergency hospital admissions starting in the period, of {REGISTERED}, by five-year age band"),
        denominator_text: format!("{}, by five-year age band", capitalise(REGISTERED)),
        value_type: ValueType::DirectlyStandardisedRate,
        multiplier: 100_000.0,
        polarity: Polarity::LowIsGood,
        unit: "per 100,000".into(),
        ci_method: CiMethod::Dobson,
        codelists: Vec::new(),
        standard_population: Some("European Standard Population 2013"),
        min_age: 0,
        definition: Definition::Activity {
            setting: "inpatient",
            encounter_type: Some("emergency"),
        },
    }
}

fn social_care_users() -> Measure {
    Measure {
        id: "social_care_users".into(),
        title: "Adult social care users per 1,000 registered adults".into(),
        description: "Registered adults (18+) receiving a local-authority adult social care service (home care, residential or nursing care, day care, direct payments, reablement) at any time in the period, per 1,000 registered adults.".into(),
        numerator_text: format!("People with an adult social care service open at any time in the period, of {REGISTERED}, aged 18 or over"),
        denominator_text: format!("{}, aged 18 or over", capitalise(REGISTERED)),
        // Users are people within the denominator, so this is a proportion shown per 1,000.
        value_type: ValueType::Proportion,
        multiplier: 1000.0,
        polarity: Polarity::NoJudgement,
        unit: "per 1,000".into(),
        ci_method: CiMethod::Wilson,
        codelists: Vec::new(),
        standard_population: None,
        min_age: 18,
        definition: Definition::SocialCareUsers,
    }
}

fn cost_measure(setting: Option<(&'static str, &'static str)>) -> Measure {
    let (id, title, what) = match setting {
        Some((code, noun)) => (
            format!("cost_per_head_{}", code.replace('&', "")),
            format!("Cost per head: {noun}"),
            format!("The recorded cost of {noun} encounters"),
        ),
        None => (
            "cost_per_head_all".into(),
            "Cost per head: all settings".into(),
            "The recorded cost of encounters in every setting".into(),
        ),
    };
    Measure {
        id,
        title,
        description: format!(
            "{what} starting in the period, of people registered at its end, per registered patient. A social care package's whole cost counts in the period it starts."
        ),
        numerator_text: format!("{what} starting in the period, of {REGISTERED} (sum of cost, £)"),
        denominator_text: capitalise(REGISTERED),
        value_type: ValueType::CostPerHead,
        multiplier: 1.0,
        polarity: Polarity::NoJudgement,
        unit: "£ per head".into(),
        ci_method: CiMethod::None,
        codelists: Vec::new(),
        standard_population: None,
        min_age: 0,
        definition: Definition::Cost {
            setting: setting.map(|(code, _)| code),
        },
    }
}

static CATALOGUE: LazyLock<Vec<Measure>> = LazyLock::new(|| {
    let mut measures: Vec<Measure> = REGISTERS.iter().map(register_measure).collect();
    measures.push(multimorbidity(2));
    measures.push(multimorbidity(3));
    measures.extend(ACTIVITY.iter().map(activity_measure));
    measures.push(emergency_admissions_dsr());
    measures.push(social_care_users());
    measures.push(cost_measure(None));
    measures.extend(SETTINGS.iter().map(|s| cost_measure(Some(*s))));
    measures
});

/// Every measure Poplar serves, in a stable order.
pub fn catalogue() -> &'static [Measure] {
    &CATALOGUE
}

/// One measure by its id.
pub fn measure(id: &str) -> Result<&'static Measure, QueryError> {
    catalogue()
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| QueryError::UnknownMeasure(id.to_string()))
}

impl Measure {
    /// The breakdowns this measure may be split by. A standardised rate is already
    /// adjusted for age, so it is not broken down by age band.
    pub fn dimensions(&self) -> &'static [Dimension] {
        match self.value_type {
            ValueType::DirectlyStandardisedRate => &[Dimension::Sex, Dimension::ImdDecile, Dimension::Ethnicity],
            _ => &Dimension::ALL,
        }
    }

    /// The people (one row per person) the denominator counts: the registered population
    /// `on` (a SQL date: the period's end, or the data's date if that is earlier), at least
    /// the measure's minimum age. Columns
    /// `person_id, practice, birth_month, sex, ethnicity_group, imd_decile`.
    pub fn denominator_sql(&self, on: &str) -> String {
        let floor = if self.min_age > 0 {
            format!(" WHERE age_on(birth_month, {on}) >= {}", self.min_age)
        } else {
            String::new()
        };
        format!(
            "SELECT person_id, practice, birth_month, sex, ethnicity_group, imd_decile FROM population_on({on}){floor}"
        )
    }

    /// The rows the numerator counts for `period`, each with its `person_id` (people for
    /// registers and social care users, encounters for activity, encounters with `cost`
    /// for costs). Joined to [`Measure::denominator_sql`] on the person, so only people in
    /// the denominator count.
    /// Registers are judged `on` (as the denominator); activity is what started in the period.
    pub fn numerator_sql(&self, period: &Period, on: &str) -> String {
        let (start, end) = (period.start_sql(), period.end_sql());
        match self.definition {
            Definition::Register(register) => format!(
                "SELECT person_id FROM registers_on({on}) WHERE register = '{}'",
                register.id
            ),
            Definition::Multimorbidity { at_least } => {
                format!("SELECT person_id FROM registers_on({on}) GROUP BY person_id HAVING count(*) >= {at_least}")
            }
            Definition::Activity {
                setting,
                encounter_type,
            } => {
                let kind = encounter_type
                    .map(|t| format!(" AND encounter_type = '{t}'"))
                    .unwrap_or_default();
                format!(
                    "SELECT person_id FROM encounters WHERE setting = '{setting}'{kind} AND start_date BETWEEN {start} AND {end}"
                )
            }
            Definition::SocialCareUsers => format!(
                "SELECT person_id FROM encounters WHERE setting = 'social_care' AND start_date <= {end} AND (end_date IS NULL OR end_date >= {start})"
            ),
            Definition::Cost { setting } => {
                let only = setting.map(|s| format!("setting = '{s}' AND ")).unwrap_or_default();
                format!("SELECT person_id, cost FROM encounters WHERE {only}start_date BETWEEN {start} AND {end}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codelists::codelist;

    #[test]
    fn ids_are_unique_and_safe() {
        let mut ids: Vec<&str> = catalogue().iter().map(|m| m.id.as_str()).collect();
        assert!(
            ids.iter().all(|id| !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
            "{ids:?}"
        );
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate measure ids");
    }

    #[test]
    fn the_catalogue_covers_the_brief() {
        for register in REGISTERS {
            let m = measure(&format!("prevalence_{}", register.id)).expect("register measure");
            assert_eq!(m.value_type, ValueType::Proportion);
            assert_eq!(m.min_age, register.min_age);
            assert!(m.codelists.contains(&register.diagnosis));
        }
        for id in [
            "multimorbidity_2plus",
            "multimorbidity_3plus",
            "ae_attendances",
            "emergency_admissions",
            "outpatient_attendances",
            "gp_contacts",
            "mental_health_contacts",
            "community_contacts",
            "social_care_users",
            "cost_per_head_all",
            "cost_per_head_gp",
            "cost_per_head_inpatient",
            "cost_per_head_outpatient",
            "cost_per_head_ae",
            "cost_per_head_mental_health",
            "cost_per_head_community",
            "cost_per_head_social_care",
            "emergency_admissions_dsr",
        ] {
            assert!(measure(id).is_ok(), "{id} missing");
        }
        assert!(matches!(measure("nope"), Err(QueryError::UnknownMeasure(_))));
        let dsr = measure("emergency_admissions_dsr").expect("dsr");
        assert_eq!(dsr.multiplier, 100_000.0);
        assert!(!dsr.dimensions().contains(&Dimension::AgeBand));
    }

    #[test]
    fn value_types_carry_consistent_metadata() {
        for m in catalogue() {
            let (ci, units): (CiMethod, &[&str]) = match m.value_type {
                ValueType::Proportion => (CiMethod::Wilson, &["%", "per 1,000"]),
                ValueType::CrudeRate => (CiMethod::Byar, &["per 1,000", "per 100,000"]),
                ValueType::DirectlyStandardisedRate => (CiMethod::Dobson, &["per 100,000"]),
                ValueType::Count => (CiMethod::Byar, &["count"]),
                ValueType::CostPerHead => (CiMethod::None, &["£ per head"]),
            };
            assert_eq!(m.ci_method, ci, "{}", m.id);
            assert!(units.contains(&m.unit.as_str()), "{}: {}", m.id, m.unit);
            assert_eq!(
                m.standard_population.is_some(),
                m.value_type == ValueType::DirectlyStandardisedRate,
                "{}",
                m.id
            );
            for cluster in &m.codelists {
                assert!(codelist(cluster).is_ok(), "{} names unknown {cluster}", m.id);
            }
        }
    }

    #[test]
    fn numerators_and_denominators_are_dated_by_the_period() {
        let period: Period = "2023/24 Q4".parse().expect("period");
        let m = measure("prevalence_diabetes").expect("measure");
        assert_eq!(
            m.denominator_sql(&period.end_sql()),
            "SELECT person_id, practice, birth_month, sex, ethnicity_group, imd_decile FROM population_on(DATE '2024-03-31') WHERE age_on(birth_month, DATE '2024-03-31') >= 17"
        );
        assert_eq!(
            m.numerator_sql(&period, &period.end_sql()),
            "SELECT person_id FROM registers_on(DATE '2024-03-31') WHERE register = 'diabetes'"
        );
        let ae = measure("ae_attendances").expect("measure");
        assert!(
            ae.numerator_sql(&period, &period.end_sql())
                .ends_with("setting = 'a&e' AND start_date BETWEEN DATE '2024-01-01' AND DATE '2024-03-31'")
        );
    }
}
