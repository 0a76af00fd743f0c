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

/// The setting an encounter class means; `None` for classes that do not name one (the
/// encounter then takes the setting of its source).
pub fn setting_of_class(class: &str) -> Option<&'static str> {
    ENCOUNTER_CLASSES
        .iter()
        .find(|(c, _)| *c == class)
        .map(|(_, setting)| *setting)
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
        assert_eq!(setting_of_class("AMB"), Some("outpatient"));
        assert_eq!(setting_of_class("EMER"), Some("a&e"));
        assert_eq!(setting_of_class("HH"), Some("community"));
        assert_eq!(setting_of_class("VR"), None);
    }
}
