//! Word lists and code tables for the synthetic region. Names, streets and phone numbers
//! are invented (phones use Ofcom's drama range, 07700 900xxx); postcodes use the `QP`
//! area, which does not exist in the UK; LSOA codes are numbered from E01900001, beyond
//! the real range. SNOMED CT codes for diagnoses come from the shipped QOF clusters;
//! observation codes are real SNOMED CT concepts; dm+d ids are illustrative.

pub const GIVEN_NAMES_FEMALE: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Freya",
    "Evie",
    "Margaret",
    "Patricia",
    "Susan",
    "Janet",
    "Aisha",
    "Fatima",
    "Priya",
    "Zara",
    "Chloe",
    "Hannah",
    "Megan",
    "Jessica",
    "Bethan",
    "Siobhan",
    "Agnieszka",
];
pub const GIVEN_NAMES_MALE: &[&str] = &[
    "Oliver", "George", "Noah", "Arthur", "Leo", "Muhammad", "Harry", "Oscar", "Archie", "Henry", "Theodore", "Jack",
    "Charlie", "David", "John", "Michael", "Peter", "Raj", "Mohammed", "Tomasz", "Kwame", "Liam", "Owen", "Rhys",
    "Callum", "Daniel", "Samuel",
];
pub const FAMILY_NAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Khan",
    "Begum",
    "Ahmed",
    "Ali",
    "Nowak",
    "Okafor",
    "Mensah",
    "Kowalski",
    "O'Brien",
    "MacDonald",
];
pub const STREETS: &[&str] = &[
    "Poplar",
    "Willow",
    "Station",
    "Church",
    "Mill",
    "Victoria",
    "Albert",
    "Queens",
    "Kings",
    "Park",
    "High",
    "Orchard",
    "Meadow",
    "Chapel",
    "School",
    "Green",
    "Elm",
    "Ash",
    "Beech",
    "Hawthorn",
    "Riverside",
    "Canal",
    "Market",
    "Bridge",
    "Castle",
];
pub const STREET_KINDS: &[&str] = &[
    "Road", "Street", "Lane", "Avenue", "Close", "Way", "Gardens", "Crescent",
];
pub const TOWNS: &[&str] = &[
    "Poplarford",
    "Eastwick",
    "Northbridge",
    "Southmere",
    "Westholme",
    "Ashby Vale",
];

/// Inward-code letters Royal Mail uses (no C, I, K, M, O, V).
pub const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// NHS ethnic categories with their approximate share of England's population (2021).
pub const ETHNIC_CATEGORIES: &[(&str, f64)] = &[
    ("A", 73.5),
    ("B", 0.9),
    ("C", 6.3),
    ("D", 0.5),
    ("E", 0.3),
    ("F", 0.8),
    ("G", 1.4),
    ("H", 3.3),
    ("J", 2.7),
    ("K", 1.1),
    ("L", 1.6),
    ("M", 2.5),
    ("N", 1.3),
    ("P", 0.5),
    ("R", 0.8),
    ("S", 1.5),
    ("Z", 1.0),
];

/// England's population by five-year age band, percent (ONS mid-2021, rounded).
pub const AGE_PYRAMID: &[(u32, f64)] = &[
    (0, 5.4),
    (5, 5.9),
    (10, 5.9),
    (15, 5.6),
    (20, 6.0),
    (25, 6.6),
    (30, 6.9),
    (35, 6.7),
    (40, 6.3),
    (45, 6.3),
    (50, 6.8),
    (55, 6.7),
    (60, 5.8),
    (65, 5.0),
    (70, 5.0),
    (75, 3.6),
    (80, 2.5),
    (85, 1.5),
    (90, 0.9),
];

/// Observation codes (SNOMED CT).
pub const SYSTOLIC_BP: i64 = 72313002; // in SBP_COD
pub const DIASTOLIC_BP: i64 = 1091811000000102;
pub const HBA1C_IFCC: i64 = 999791000000106;
pub const BMI: i64 = 60621009;
pub const BODY_WEIGHT: i64 = 27113001;
pub const SMOKER: i64 = 77176002;
pub const EX_SMOKER: i64 = 8517006;
pub const NEVER_SMOKED: i64 = 266919005;

/// Illustrative dm+d ids for repeat medicines by condition (synthetic data only).
pub const MEDICINES: &[(&str, i64, f64)] = &[
    ("DM_COD", 42013811000001109, 56.0),   // metformin
    ("HYP_COD", 42206511000001102, 28.0),  // amlodipine
    ("HYP_COD", 42206911000001109, 28.0),  // ramipril
    ("AST_COD", 42071411000001102, 1.0),   // salbutamol inhaler
    ("COPD_COD", 42071411000001102, 1.0),  // salbutamol inhaler
    ("CHD_COD", 42199611000001108, 28.0),  // atorvastatin
    ("AFIB_COD", 42263611000001109, 56.0), // apixaban
    ("DEPR_COD", 42102911000001106, 28.0), // sertraline
    ("DEM_COD", 42074611000001101, 28.0),  // donepezil
    ("HF_COD", 42126211000001105, 28.0),   // bisoprolol
];

/// ICD-10 codes acute trusts record for each condition, and for admissions without one.
pub const ICD10_BY_CLUSTER: &[(&str, &str)] = &[
    ("DM_COD", "E11.9"),
    ("HYP_COD", "I10X"),
    ("AST_COD", "J45.9"),
    ("COPD_COD", "J44.1"),
    ("CHD_COD", "I25.1"),
    ("AFIB_COD", "I48.9"),
    ("CKD_COD", "N18.4"),
    ("HF_COD", "I50.0"),
    ("DEM_COD", "F03X"),
    ("DEPR_COD", "F32.9"),
    ("STRK_COD", "I63.9"),
    ("MH_COD", "F20.9"),
];
pub const ICD10_OTHER: &[&str] = &[
    "R07.4", "S72.0", "J18.9", "K35.8", "N39.0", "R55X", "K80.2", "M54.5", "L03.1", "O80.9",
];

pub const SOCIAL_CARE_SERVICES: &[(&str, f64)] = &[
    ("home_care", 320.0),
    ("reablement", 450.0),
    ("day_care", 120.0),
    ("direct_payment", 280.0),
    ("residential_care", 900.0),
    ("nursing_care", 1150.0),
];
pub const COMMUNITY_SERVICES: &[&str] = &["district_nursing", "physiotherapy", "podiatry", "rehabilitation"];
pub const MENTAL_HEALTH_CONTACTS: &[&str] = &["assessment", "therapy", "care_coordination", "crisis"];
pub const GP_CONTACTS: &[&str] = &[
    "face_to_face",
    "face_to_face",
    "telephone",
    "telephone",
    "video",
    "home_visit",
];
