//! The source registry: one entry per organisation that sends data to Poplar. It drives the
//! loaders (which parser, which identifier system) and becomes the `organisations` table.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

use crate::LoaderError;

/// The identifier system every current feed uses for people.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgType {
    GpPractice,
    AcuteTrust,
    MentalHealthTrust,
    CommunityProvider,
    SocialCare,
}

impl OrgType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgType::GpPractice => "gp_practice",
            OrgType::AcuteTrust => "acute_trust",
            OrgType::MentalHealthTrust => "mental_health_trust",
            OrgType::CommunityProvider => "community_provider",
            OrgType::SocialCare => "social_care",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    /// CSV extracts, one file per kind of record.
    Csv,
    /// FHIR R4 bulk data export: one NDJSON file per resource type.
    FhirNdjson,
}

/// One organisation that sends extracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// ODS code: the organisation's key everywhere in Poplar.
    pub ods: String,
    pub name: String,
    #[serde(rename = "type")]
    pub org_type: OrgType,
    pub format: FeedFormat,
    /// The identifier system the feed uses for people.
    pub identifier_system: String,
    /// Primary care network (GP practices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcn_name: Option<String>,
    pub sub_icb: String,
    pub icb: String,
}

/// The whole registry file (`sources.toml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub region: String,
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
}

impl Registry {
    pub fn from_file(path: &Path) -> Result<Self, LoaderError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoaderError::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, LoaderError> {
        let invalid = |reason: String| LoaderError::Registry {
            path: origin.to_string(),
            reason,
        };
        // toml's and serde's messages quote the offending text; the line is enough to find it.
        let registry: Registry = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text.get(..s.start).map_or(0, |t| t.lines().count().max(1)));
            invalid(format!(
                "line {line}: not a valid registry entry (a field is missing, misnamed or of the wrong type)"
            ))
        })?;
        let mut seen = HashMap::new();
        for (index, source) in registry.sources.iter().enumerate() {
            if source.ods.is_empty() || !source.ods.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(format!(
                    "source #{} has an invalid ODS code (letters and digits only)",
                    index + 1
                )));
            }
            if let Some(previous) = seen.insert(source.ods.as_str(), index) {
                return Err(invalid(format!(
                    "ODS code {} appears twice (sources #{} and #{})",
                    source.ods,
                    previous + 1,
                    index + 1
                )));
            }
            if source.identifier_system != NHS_NUMBER_SYSTEM {
                return Err(invalid(format!(
                    "source {} uses another identifier system; only {NHS_NUMBER_SYSTEM} is supported",
                    source.ods
                )));
            }
        }
        Ok(registry)
    }

    pub fn to_toml(&self) -> Result<String, LoaderError> {
        toml::to_string_pretty(self).map_err(|_| LoaderError::Registry {
            path: "<generated>".into(),
            reason: "cannot be written as TOML".into(),
        })
    }

    pub fn source(&self, ods: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.ods == ods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
region = "test"
[[source]]
ods = "P81001"
name = "Riverside Surgery"
type = "gp_practice"
format = "csv"
identifier_system = "https://fhir.nhs.uk/Id/nhs-number"
pcn = "U00001"
sub_icb = "00X"
icb = "QPL"
"#;

    #[test]
    fn parses_a_source() {
        let r = Registry::parse(ONE, "t").expect("parses");
        assert_eq!(r.sources[0].org_type, OrgType::GpPractice);
        assert_eq!(r.source("P81001").map(|s| s.format), Some(FeedFormat::Csv));
    }

    #[test]
    fn rejects_duplicates_unknown_types_and_identifier_systems() {
        let twice = format!("{ONE}{}", ONE.replace("region = \"test\"", ""));
        let err = Registry::parse(&twice, "t").expect_err("duplicate");
        assert!(err.to_string().contains("appears twice"), "{err}");
        let bad_type = ONE.replace("gp_practice", "pharmacy");
        assert!(Registry::parse(&bad_type, "t").is_err());
        let bad_system = ONE.replace("nhs-number", "chi-number");
        let err = Registry::parse(&bad_system, "t").expect_err("system");
        assert!(err.to_string().contains("identifier system"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let r = Registry::parse(ONE, "t").expect("parses");
        let again = Registry::parse(&r.to_toml().expect("writes"), "t").expect("parses");
        assert_eq!(again.sources, r.sources);
    }
}
