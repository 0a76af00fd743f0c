//! The geography a measure is reported for: levels (practice, PCN, sub-ICB, ICB and the
//! whole region) and area codes checked to be safe to quote into SQL.

use std::fmt;
use std::str::FromStr;

use crate::QueryError;

/// The area code of the [`Level::Region`] level: the whole deployment is one area.
pub const REGION_CODE: &str = "ALL";

/// A geography level. Practices map to PCN, sub-ICB and ICB through the `organisations`
/// reference table (`ods_code, pcn, sub_icb, icb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Practice,
    Pcn,
    SubIcb,
    Icb,
    /// Everyone in the deployment as one area ([`REGION_CODE`]). `organisations` names no
    /// NHS region, and a Poplar deployment serves one region's sources.
    Region,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::Practice, Level::Pcn, Level::SubIcb, Level::Icb, Level::Region];

    /// The name used in requests: `practice`, `pcn`, `sub_icb`, `icb`, `region`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Practice => "practice",
            Level::Pcn => "pcn",
            Level::SubIcb => "sub_icb",
            Level::Icb => "icb",
            Level::Region => "region",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Level {
    type Err = QueryError;
    fn from_str(text: &str) -> Result<Level, QueryError> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == text)
            .ok_or_else(|| QueryError::UnknownLevel(text.to_string()))
    }
}

/// An area code (ODS practice code, PCN, sub-ICB or ICB code, or [`REGION_CODE`]),
/// checked to be 1-16 ASCII letters or digits, so it can be quoted into SQL safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaCode(String);

impl AreaCode {
    pub fn new(code: &str) -> Result<AreaCode, QueryError> {
        if (1..=16).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(AreaCode(code.to_string()))
        } else {
            Err(QueryError::InvalidAreaCode(code.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AreaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AreaCode {
    type Err = QueryError;
    fn from_str(text: &str) -> Result<AreaCode, QueryError> {
        AreaCode::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_codes_are_letters_and_digits_only() {
        for good in ["F00001", "U00001", "QP1", "9S1", "X90001", "ALL"] {
            assert!(AreaCode::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "F0'1",
            "A B",
            "Q;DROP",
            "ÅB",
            "a-b",
            "12345678901234567",
            "x' OR '1'='1",
        ] {
            assert!(
                matches!(AreaCode::new(bad), Err(QueryError::InvalidAreaCode(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn levels_parse_from_their_names_only() {
        for l in Level::ALL {
            assert_eq!(l.name().parse::<Level>().expect("parses"), l);
        }
        assert!(matches!("ward".parse::<Level>(), Err(QueryError::UnknownLevel(_))));
        assert!(
            Level::Practice < Level::Pcn && Level::Icb < Level::Region,
            "ordered small to large"
        );
    }
}
