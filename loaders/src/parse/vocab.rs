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

/// Whether a sender's code system may be named in the load summary (never in a quarantine
/// detail or an error, which name only the field): a URI (`http://`, `https://` with a
/// dotted host, or `urn:oid:`) of URI characters, with no run of six or more digits
/// outside an OID. A name, an NHS number, a postcode or an address line is none of these,
/// so free text in the wrong field is counted without being named.
pub fn nameable(system: &str) -> bool {
    if system.len() > 120
        || !system
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/#?=&%+".contains(&b))
    {
        return false;
    }
    if let Some(oid) = system.strip_prefix("urn:oid:") {
        return !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    }
    let Some(rest) = system
        .strip_prefix("http://")
        .or_else(|| system.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    host.contains('.') && !has_digit_run(system, 6)
}

fn has_digit_run(text: &str, len: usize) -> bool {
    let mut run = 0;
    for b in text.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= len {
            return true;
        }
    }
    false
}

/// Whether a SNOMED CT concept id may be named in the load summary: 6-18 digits, a concept
/// partition (`00` or `10`) and a valid Verhoeff check digit. An NHS number sent where a
/// code belongs passes all three only by a 1-in-500 chance, and is counted unnamed.
pub fn nameable_sctid(code: &str) -> bool {
    let b = code.as_bytes();
    (6..=18).contains(&b.len())
        && b.iter().all(u8::is_ascii_digit)
        && matches!(&b[b.len() - 3..b.len() - 1], b"00" | b"10")
        && verhoeff_valid(code)
}

fn verhoeff_valid(digits: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, b) in digits.bytes().rev().enumerate() {
        let d = usize::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        c = D[usize::from(c)][usize::from(P[i % 8][d])];
    }
    c == 0
}

/// One UCUM unit Poplar lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// The UCUM code that lands: always this constant, never the sender's text.
    pub code: &'static str,
    /// Whether a value in this unit may be negative (temperatures, base excess, z-scores,
    /// angles). Counts, masses, volumes, lengths, rates, pressures and most
    /// concentrations cannot be.
    pub signed: bool,
}

const fn unsigned(code: &'static str) -> Unit {
    Unit { code, signed: false }
}

const fn signed(code: &'static str) -> Unit {
    Unit { code, signed: true }
}

/// The UCUM units clinical systems in England send with observations (pathology, vital
/// signs, anthropometry, spirometry, prescribing). The `unit` column is landed only from
/// this list: a unit outside it is quarantined (`unknown_unit`), because the column is
/// otherwise a free-text field a name or an address can be typed into.
pub const UCUM_UNITS: &[Unit] = &[
    // Dimensionless, ratios and scores.
    unsigned("%"),
    signed("1"),
    unsigned("{ratio}"),
    signed("{score}"),
    signed("{SDS}"),
    unsigned("{count}"),
    unsigned("{beats}/min"),
    unsigned("{breaths}/min"),
    unsigned("{cells}/uL"),
    unsigned("{copies}/mL"),
    unsigned("{drink}/wk"),
    unsigned("{cigarettes}/d"),
    unsigned("{pack-years}"),
    unsigned("{units}/wk"),
    unsigned("[iU]"),
    unsigned("[iU]/L"),
    unsigned("[iU]/mL"),
    unsigned("m[iU]/L"),
    unsigned("u[iU]/mL"),
    unsigned("[arb'U]/mL"),
    // Rates.
    unsigned("/min"),
    unsigned("/h"),
    unsigned("/d"),
    unsigned("/wk"),
    // Counts per volume (haematology).
    unsigned("10*9/L"),
    unsigned("10*12/L"),
    unsigned("10*6/L"),
    unsigned("10*3/uL"),
    unsigned("10*6/uL"),
    unsigned("/uL"),
    unsigned("/L"),
    // Mass, length, area, volume, time.
    unsigned("kg"),
    unsigned("g"),
    unsigned("mg"),
    unsigned("ug"),
    unsigned("ng"),
    unsigned("[lb_av]"),
    unsigned("[oz_av]"),
    unsigned("[stone_av]"),
    unsigned("m"),
    unsigned("cm"),
    unsigned("mm"),
    unsigned("[in_i]"),
    unsigned("[ft_i]"),
    unsigned("m2"),
    unsigned("cm2"),
    unsigned("L"),
    unsigned("dL"),
    unsigned("mL"),
    unsigned("uL"),
    unsigned("fL"),
    unsigned("pg"),
    unsigned("s"),
    unsigned("min"),
    unsigned("h"),
    unsigned("d"),
    unsigned("wk"),
    unsigned("mo"),
    unsigned("a"),
    // Body mass index, pressure, temperature, angle.
    unsigned("kg/m2"),
    unsigned("mm[Hg]"),
    unsigned("cm[H2O]"),
    unsigned("kPa"),
    signed("Cel"),
    signed("[degF]"),
    signed("deg"),
    // Substance concentrations. mmol/L is signed: base excess is reported in it.
    signed("mmol/L"),
    unsigned("umol/L"),
    unsigned("nmol/L"),
    unsigned("pmol/L"),
    unsigned("mol/L"),
    unsigned("mmol/mol"),
    unsigned("mmol/(24.h)"),
    unsigned("mmol/kg"),
    unsigned("mosm/kg"),
    unsigned("mg/mmol"),
    unsigned("g/mol{creat}"),
    // Mass concentrations.
    unsigned("g/L"),
    unsigned("g/dL"),
    unsigned("mg/L"),
    unsigned("mg/dL"),
    unsigned("ug/L"),
    unsigned("ug/dL"),
    unsigned("ng/L"),
    unsigned("ng/mL"),
    unsigned("pg/mL"),
    unsigned("mg/(24.h)"),
    unsigned("g/(24.h)"),
    // Enzyme activity.
    unsigned("U/L"),
    unsigned("U/mL"),
    unsigned("mU/L"),
    unsigned("kU/L"),
    unsigned("ukat/L"),
    // Renal function, flow and spirometry.
    unsigned("mL/min"),
    unsigned("mL/min/{1.73_m2}"),
    unsigned("mL/min/1.73m2"),
    unsigned("L/min"),
    unsigned("L/s"),
    unsigned("mL/h"),
    unsigned("mm/h"),
    // Dosing.
    unsigned("mg/kg"),
    unsigned("mg/d"),
    unsigned("ug/d"),
    unsigned("kcal"),
    unsigned("kcal/d"),
];

/// How UK systems commonly spell units that UCUM writes otherwise (case, `^`, `²`,
/// display forms). Each maps to a code in [`UCUM_UNITS`].
const UNIT_ALIASES: &[(&str, &str)] = &[
    ("mmol/l", "mmol/L"),
    ("umol/l", "umol/L"),
    ("µmol/L", "umol/L"),
    ("µmol/l", "umol/L"),
    ("nmol/l", "nmol/L"),
    ("pmol/l", "pmol/L"),
    ("g/l", "g/L"),
    ("g/dl", "g/dL"),
    ("mg/l", "mg/L"),
    ("mg/dl", "mg/dL"),
    ("ug/l", "ug/L"),
    ("µg/L", "ug/L"),
    ("ng/l", "ng/L"),
    ("ng/ml", "ng/mL"),
    ("u/l", "U/L"),
    ("iu/l", "[iU]/L"),
    ("IU/L", "[iU]/L"),
    ("mU/l", "mU/L"),
    ("mIU/L", "m[iU]/L"),
    ("10^9/L", "10*9/L"),
    ("10^9/l", "10*9/L"),
    ("x10^9/L", "10*9/L"),
    ("x10*9/L", "10*9/L"),
    ("10^12/L", "10*12/L"),
    ("10^12/l", "10*12/L"),
    ("x10^12/L", "10*12/L"),
    ("mmHg", "mm[Hg]"),
    ("mm Hg", "mm[Hg]"),
    ("mmhg", "mm[Hg]"),
    ("kg/m^2", "kg/m2"),
    ("kg/m²", "kg/m2"),
    ("bpm", "/min"),
    ("beats/min", "/min"),
    ("/minute", "/min"),
    ("ml/min/1.73m2", "mL/min/1.73m2"),
    ("mL/min/1.73m^2", "mL/min/1.73m2"),
    ("ml/min/1.73m^2", "mL/min/1.73m2"),
    ("mL/min/1.73 m2", "mL/min/1.73m2"),
    ("ml", "mL"),
    ("l", "L"),
    ("degC", "Cel"),
    ("°C", "Cel"),
    ("fl", "fL"),
    ("mm/hr", "mm/h"),
    ("mmol/mol Hb", "mmol/mol"),
];

/// The UCUM unit a sender's unit text stands for, if Poplar knows it.
pub fn ucum_unit(raw: &str) -> Option<Unit> {
    let raw = raw.trim();
    let code = UNIT_ALIASES
        .iter()
        .find(|(alias, _)| *alias == raw)
        .map_or(raw, |(_, code)| *code);
    UCUM_UNITS.iter().copied().find(|u| u.code == code)
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
        assert!(nameable("urn:oid:2.16.840.1.113883.6.88"));
        for not in [
            "seen by Dr Smith",
            "Lovelace",
            "XYZ",
            "9434765919",
            "QP1 1AA",
            "QP11AA",
            "http://Lovelace",
            "https://x.example/9434765919",
        ] {
            assert!(!nameable(not), "{not}");
        }
    }

    #[test]
    fn sctids_are_named_only_with_a_concept_partition_and_check_digit() {
        for ok in ["50849002", "44054006", "439708006", "185317003"] {
            assert!(nameable_sctid(ok), "{ok}");
        }
        for not in ["50849003", "9434765919", "abc", "12345"] {
            assert!(!nameable_sctid(not), "{not}");
        }
    }

    #[test]
    fn units_are_a_closed_list_and_free_text_never_passes() {
        for (raw, code) in [
            ("mmol/L", "mmol/L"),
            ("mmol/l", "mmol/L"),
            ("mm[Hg]", "mm[Hg]"),
            ("mmHg", "mm[Hg]"),
            ("kg/m2", "kg/m2"),
            ("%", "%"),
            ("/min", "/min"),
            ("10*9/L", "10*9/L"),
            ("mL/min/1.73m2", "mL/min/1.73m2"),
            ("umol/L", "umol/L"),
            ("U/L", "U/L"),
            ("mmol/mol", "mmol/mol"),
            (" kg ", "kg"),
        ] {
            assert_eq!(ucum_unit(raw).map(|u| u.code), Some(code), "{raw}");
        }
        for not in [
            "Ada Lovelace",
            "9434765919",
            "QP1 1AA",
            "1 Engine Row",
            "mg/dL; DROP",
            "kgs please",
        ] {
            assert_eq!(ucum_unit(not), None, "{not}");
        }
        assert!(ucum_unit("Cel").is_some_and(|u| u.signed));
        assert!(ucum_unit("kg").is_some_and(|u| !u.signed));
        let mut codes: Vec<&str> = UCUM_UNITS.iter().map(|u| u.code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "no unit listed twice");
        for (_, code) in UNIT_ALIASES {
            assert!(UCUM_UNITS.iter().any(|u| u.code == *code), "{code}");
        }
    }
}
