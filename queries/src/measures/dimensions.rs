//! Breakdowns of the population (age band, sex, IMD decile, ethnicity group), each with
//! a fixed frame of categories so a caller can return every category, empty ones included.

use std::fmt;
use std::str::FromStr;

use crate::QueryError;

/// One category of a breakdown: its code (the value in the query's column) and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Category {
    pub code: &'static str,
    pub label: &'static str,
}

const fn category(code: &'static str, label: &'static str) -> Category {
    Category { code, label }
}

/// The code of "not recorded" in the age band and IMD decile breakdowns (sex and
/// ethnicity have their own: `unknown`, `not_stated`).
pub const UNKNOWN: &str = "unknown";

const AGE_BANDS: [Category; 20] = [
    category("0-4", "0-4"),
    category("5-9", "5-9"),
    category("10-14", "10-14"),
    category("15-19", "15-19"),
    category("20-24", "20-24"),
    category("25-29", "25-29"),
    category("30-34", "30-34"),
    category("35-39", "35-39"),
    category("40-44", "40-44"),
    category("45-49", "45-49"),
    category("50-54", "50-54"),
    category("55-59", "55-59"),
    category("60-64", "60-64"),
    category("65-69", "65-69"),
    category("70-74", "70-74"),
    category("75-79", "75-79"),
    category("80-84", "80-84"),
    category("85-89", "85-89"),
    category("90+", "90 and over"),
    category(UNKNOWN, "Not known"),
];

// The codes `patients.sex` holds (`poplar_loaders::parse::vocab::Sex`).
const SEXES: [Category; 4] = [
    category("female", "Female"),
    category("male", "Male"),
    category("indeterminate", "Indeterminate"),
    category("unknown", "Not known"),
];

const IMD_DECILES: [Category; 11] = [
    category("1", "1 (most deprived)"),
    category("2", "2"),
    category("3", "3"),
    category("4", "4"),
    category("5", "5"),
    category("6", "6"),
    category("7", "7"),
    category("8", "8"),
    category("9", "9"),
    category("10", "10 (least deprived)"),
    category(UNKNOWN, "Not known"),
];

// The groups `patients.ethnicity_group` holds (`poplar_loaders::parse::vocab::ethnicity_group`:
// the NHS Data Dictionary's 2001 census categories in five groups).
const ETHNICITY_GROUPS: [Category; 6] = [
    category("asian", "Asian or Asian British"),
    category("black", "Black or Black British"),
    category("mixed", "Mixed"),
    category("white", "White"),
    category("other", "Other ethnic group"),
    category("not_stated", "Not stated"),
];

/// A breakdown of the population, with a fixed frame of categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Five-year age band at the period end (the 19 ESP2013 bands).
    AgeBand,
    Sex,
    /// Index of Multiple Deprivation decile of the person's LSOA (1 = most deprived).
    ImdDecile,
    /// Ethnicity group (five groups and not stated).
    Ethnicity,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::AgeBand,
        Dimension::Sex,
        Dimension::ImdDecile,
        Dimension::Ethnicity,
    ];

    /// The name used in requests and as the query's column name.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::AgeBand => "age_band",
            Dimension::Sex => "sex",
            Dimension::ImdDecile => "imd_decile",
            Dimension::Ethnicity => "ethnicity",
        }
    }

    /// Every category, in display order, so a caller can return the complete frame
    /// (categories with no rows included).
    pub fn frame(self) -> &'static [Category] {
        match self {
            Dimension::AgeBand => &AGE_BANDS,
            Dimension::Sex => &SEXES,
            Dimension::ImdDecile => &IMD_DECILES,
            Dimension::Ethnicity => &ETHNICITY_GROUPS,
        }
    }

    /// The category with this code.
    pub fn category(self, code: &str) -> Option<Category> {
        self.frame().iter().copied().find(|c| c.code == code)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dimension {
    type Err = QueryError;
    fn from_str(text: &str) -> Result<Dimension, QueryError> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.name() == text)
            .ok_or_else(|| QueryError::UnknownDimension(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measures::stats::ESP2013_BANDS;

    #[test]
    fn frames_are_complete_and_age_bands_are_the_esp_bands() {
        let codes: Vec<&str> = Dimension::AgeBand.frame().iter().map(|c| c.code).collect();
        assert_eq!(&codes[..19], &ESP2013_BANDS[..]);
        assert_eq!(codes[19], UNKNOWN);
        assert_eq!(Dimension::Sex.frame().len(), 4);
        assert_eq!(Dimension::ImdDecile.frame().len(), 11);
        assert_eq!(Dimension::Ethnicity.frame().len(), 6);
        assert_eq!(
            Dimension::ImdDecile.category("1").map(|c| c.label),
            Some("1 (most deprived)")
        );
        assert_eq!(Dimension::Sex.category("x"), None);
    }

    #[test]
    fn dimensions_parse_from_their_names_only() {
        for d in Dimension::ALL {
            assert_eq!(d.name().parse::<Dimension>().expect("parses"), d);
        }
        assert!(matches!(
            "income".parse::<Dimension>(),
            Err(QueryError::UnknownDimension(_))
        ));
    }
}
