//! The coded vocabularies a record may use: settings of care, encounter types and FHIR
//! encounter classes, ethnic categories, code systems and sex. Each is a closed list
//! because a value outside it might be free text (a clinician's note), which Poplar never
//! lands; keeping the lists together makes that contract one page to review.

use crate::registry::OrgType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Indeterminate,
    Unknown,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Indeterminate => "indeterminate",
            Sex::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSystem {
    Snomed,
    Icd10,
    Loinc,
    Unknown,
}

impl CodeSystem {
    pub fn from_csv(raw: &str) -> Self {
        match raw.trim().to_ascii_uppercase().as_str() {
            "SNOMED" | "SNOMEDCT" | "SNOMED CT" | "HTTP://SNOMED.INFO/SCT" => CodeSystem::Snomed,
            "ICD10" | "ICD-10" | "HTTP://HL7.ORG/FHIR/SID/ICD-10" => CodeSystem::Icd10,
            "LOINC" | "HTTP://LOINC.ORG" => CodeSystem::Loinc,
            _ => CodeSystem::Unknown,
        }
    }
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

/// FHIR `Encounter.class` (v3 ActCode) and the setting each stands for, written once for
/// both directions. Reading takes the first row whose class matches (so `HH` reads as
/// community); writing takes the first row whose setting matches (so social care is sent
/// as home health). Settings with no row are sent as [`AMBULATORY`].
const ENCOUNTER_CLASSES: [(&str, &str); 6] = [
    ("IMP", "inpatient"),
    ("ACUTE", "inpatient"),
    ("AMB", "outpatient"),
    ("EMER", "a&e"),
    ("HH", "community"),
    ("HH", "social_care"),
];

/// The class sent for a setting with no class of its own.
pub const AMBULATORY: &str = "AMB";

/// How Poplar reads one `Encounter.class` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassReading {
    /// The setting the class names; `None` when it names none (the encounter then takes
    /// the setting of its source: a virtual consultation at a GP practice is GP activity).
    pub setting: Option<&'static str>,
    /// The encounter type the class implies when `Encounter.type` names none.
    pub default_type: Option<&'static str>,
    /// Ambulatory care (`AMB`): not admitted, at whatever service the source runs — a GP
    /// consultation from a practice, an outpatient attendance from a hospital trust. See
    /// [`ambulatory_setting`].
    pub ambulatory: bool,
}

const fn reading(setting: Option<&'static str>, default_type: Option<&'static str>) -> ClassReading {
    ClassReading {
        setting,
        default_type,
        ambulatory: false,
    }
}

const AMBULATORY_READING: ClassReading = ClassReading {
    setting: None,
    default_type: None,
    ambulatory: true,
};

/// The setting of an ambulatory (`AMB`) encounter, by the kind of organisation that sent
/// it: the same class means a GP consultation at a practice and an outpatient attendance
/// at a hospital.
pub fn ambulatory_setting(org_type: OrgType) -> &'static str {
    match org_type {
        OrgType::GpPractice => "gp",
        OrgType::AcuteTrust => "outpatient",
        OrgType::MentalHealthTrust => "mental_health",
        OrgType::CommunityProvider => "community",
        OrgType::SocialCare => "social_care",
    }
}

/// Every `Encounter.class` code Poplar reads: HL7 v3 ActCode (what R4 and UK Core send)
/// and the older FHIR `encounter-class` codes (STU3 CareConnect, some R4 exports). The
/// first five rows are the ones the generator writes (see [`ENCOUNTER_CLASSES`]) and read
/// as they always have. Anything else is quarantined with the class named: the code comes
/// from a closed vocabulary, so naming it tells a steward what to ask the source to fix.
const CLASS_READINGS: [(&str, ClassReading); 18] = [
    ("IMP", reading(Some("inpatient"), None)),
    ("ACUTE", reading(Some("inpatient"), None)),
    ("AMB", AMBULATORY_READING),
    ("EMER", reading(Some("a&e"), None)),
    ("HH", reading(Some("community"), None)),
    // Non-acute inpatient stays (rehabilitation wards, community hospitals).
    ("NONAC", reading(Some("inpatient"), None)),
    // Short stay: admitted and discharged the same day.
    ("SS", reading(Some("inpatient"), Some("day_case"))),
    // Observation (clinical decision units) sits within the emergency department.
    ("OBSENC", reading(Some("a&e"), None)),
    // Pre-admission assessment happens in outpatient clinics.
    ("PRENC", reading(Some("outpatient"), None)),
    // Virtual: a video or telephone contact of whatever service the source runs.
    ("VR", reading(None, Some("video"))),
    // FHIR `encounter-class` (http://hl7.org/fhir/encounter-class).
    ("inpatient", reading(Some("inpatient"), None)),
    ("outpatient", reading(Some("outpatient"), None)),
    ("ambulatory", AMBULATORY_READING),
    ("emergency", reading(Some("a&e"), None)),
    ("home", reading(Some("community"), None)),
    ("daytime", reading(Some("inpatient"), Some("day_case"))),
    ("virtual", reading(None, Some("video"))),
    ("field", reading(None, None)),
];

/// How an encounter class code is read; `None` when Poplar does not know the code (the
/// encounter is quarantined). An encounter that sends no class reads as before: the
/// setting of its source.
pub fn read_class(class: &str) -> Option<ClassReading> {
    if class.is_empty() {
        return Some(reading(None, None));
    }
    CLASS_READINGS.iter().find(|(c, _)| *c == class).map(|(_, r)| *r)
}

/// The setting an encounter class means; `None` for classes that do not name one (the
/// encounter then takes the setting of its source) and for unknown classes.
pub fn setting_of_class(class: &str) -> Option<&'static str> {
    read_class(class).and_then(|r| r.setting)
}

/// SNOMED CT encounter types (`Encounter.type` / `serviceType`) that say which of
/// Poplar's categories an encounter is. The SNOMED code always lands as well
/// (`encounters.encounter_snomed`); a code not listed here lands with no category.
pub const SNOMED_ENCOUNTER_TYPES: [(i64, &str); 12] = [
    (185317003, "telephone"),    // Telephone encounter
    (185316007, "telephone"),    // Indirect encounter
    (439708006, "home_visit"),   // Home visit
    (185349003, "face_to_face"), // Encounter for check up
    (185345009, "face_to_face"), // Encounter for symptom
    (308335008, "face_to_face"), // Patient encounter procedure
    (390906007, "follow_up"),    // Follow-up encounter
    (183452005, "emergency"),    // Emergency hospital admission
    (32485007, "elective"),      // Hospital admission (elective when sent alone)
    (305408004, "transfer"),     // Admission by transfer
    (183807002, "day_case"),     // Day case admission
    (448337001, "video"),        // Telemedicine consultation with patient
];

/// The category a SNOMED CT encounter type stands for, if Poplar maps it.
pub fn encounter_type_of_snomed(code: i64) -> Option<&'static str> {
    SNOMED_ENCOUNTER_TYPES.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

/// Whether a sender's code or system may be named in a quarantine detail or the load
/// summary: a short token of URI characters. Anything else might be free text (a
/// clinician's note in the wrong field), so it is never echoed.
pub fn nameable(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 120
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/#?=&%+".contains(&b))
}

/// The encounter class to send for a setting.
pub fn class_of_setting(setting: &str) -> &'static str {
    ENCOUNTER_CLASSES
        .iter()
        .find(|(_, s)| *s == setting)
        .map_or(AMBULATORY, |(class, _)| *class)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_normalise() {
        assert_eq!(canonical_setting("AE"), Some("a&e"));
        assert_eq!(canonical_setting("Mental Health"), Some("mental_health"));
        assert_eq!(canonical_setting("pharmacy"), None);
    }

    #[test]
    fn encounter_classes_map_both_ways_as_before() {
        // Writing (what the generator sends).
        assert_eq!(class_of_setting("inpatient"), "IMP");
        assert_eq!(class_of_setting("a&e"), "EMER");
        assert_eq!(class_of_setting("community"), "HH");
        assert_eq!(class_of_setting("social_care"), "HH");
        for other in ["gp", "outpatient", "mental_health"] {
            assert_eq!(class_of_setting(other), "AMB", "{other}");
        }
        // Reading (what the parser lands).
        assert_eq!(setting_of_class("IMP"), Some("inpatient"));
        assert_eq!(setting_of_class("ACUTE"), Some("inpatient"));
        // AMB names no setting of its own: it takes the source's ambulatory setting.
        assert_eq!(setting_of_class("AMB"), None);
        assert_eq!(read_class("AMB").map(|r| r.ambulatory), Some(true));
        assert_eq!(ambulatory_setting(OrgType::GpPractice), "gp");
        assert_eq!(ambulatory_setting(OrgType::AcuteTrust), "outpatient");
        assert_eq!(ambulatory_setting(OrgType::MentalHealthTrust), "mental_health");
        assert_eq!(setting_of_class("EMER"), Some("a&e"));
        assert_eq!(setting_of_class("HH"), Some("community"));
        assert_eq!(setting_of_class("VR"), None);
    }

    #[test]
    fn real_encounter_classes_read_and_unknown_ones_do_not() {
        for (class, setting) in [
            ("NONAC", Some("inpatient")),
            ("SS", Some("inpatient")),
            ("OBSENC", Some("a&e")),
            ("PRENC", Some("outpatient")),
            ("VR", None),
            ("emergency", Some("a&e")),
            ("", None),
        ] {
            assert_eq!(read_class(class).map(|r| r.setting), Some(setting), "{class}");
        }
        assert_eq!(read_class("VR").and_then(|r| r.default_type), Some("video"));
        assert_eq!(read_class("XYZ"), None);
        assert_eq!(read_class("amb"), None, "v3 codes are case-sensitive");
        for (_, t) in SNOMED_ENCOUNTER_TYPES {
            assert!(ENCOUNTER_TYPES.contains(&t), "{t}");
        }
        assert!(nameable("http://www.nlm.nih.gov/research/umls/rxnorm"));
        assert!(!nameable("seen by Dr Smith"));
    }
}
