//! A study's parameters: typed and bounded when submitted, checked against their bounds
//! when a run gives values, and bound to the template's `$1`, `$2`, … in declared order.
//! Values are never pasted into the SQL text: the approved text (and its hash) is what runs.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use deltalake::datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Rule};

/// The most parameters one template may declare, and options one may list.
pub const MAX_PARAMETERS: usize = 32;
pub const MAX_OPTIONS: usize = 1_000;
/// How list values are joined when bound (the template splits them with
/// `string_to_array($n, ',')`).
pub const LIST_SEPARATOR: char = ',';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Date,
    Integer,
    Choice,
    Codelist,
    RegisterList,
    AreaList,
}

impl ParamKind {
    fn is_list(self) -> bool {
        matches!(self, ParamKind::RegisterList | ParamKind::AreaList)
    }
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

fn bad_spec(message: String) -> EngineError {
    EngineError::InvalidRequest(format!("study parameters: {message}"))
}

fn out_of_bounds(message: String) -> EngineError {
    EngineError::refused(Rule::StudyParameters, message)
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// An option is a code: letters, digits and `_ - .` (so that a list joined with commas
/// splits back into exactly its items).
fn is_code(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl ParamSpec {
    /// Check the declaration itself: a name, both bounds for dates and integers (in order),
    /// options for the rest, codelists and registers Poplar knows.
    pub fn check(&self) -> Result<(), EngineError> {
        let name = &self.name;
        if !is_code(name) {
            return Err(bad_spec(format!(
                "a parameter name is letters, digits and _ - . (got {} characters)",
                name.len()
            )));
        }
        match self.kind {
            ParamKind::Date => {
                let (Some(min), Some(max)) = (self.min.as_deref().and_then(date), self.max.as_deref().and_then(date))
                else {
                    return Err(bad_spec(format!("{name}: a date needs min and max as YYYY-MM-DD")));
                };
                if min > max {
                    return Err(bad_spec(format!("{name}: min is after max")));
                }
            }
            ParamKind::Integer => {
                let parse = |v: &Option<String>| v.as_deref().and_then(|t| t.parse::<i64>().ok());
                let (Some(min), Some(max)) = (parse(&self.min), parse(&self.max)) else {
                    return Err(bad_spec(format!("{name}: an integer needs min and max")));
                };
                if min > max {
                    return Err(bad_spec(format!("{name}: min is above max")));
                }
            }
            ParamKind::Choice | ParamKind::Codelist | ParamKind::RegisterList | ParamKind::AreaList => {
                if self.options.is_empty() || self.options.len() > MAX_OPTIONS {
                    return Err(bad_spec(format!("{name}: 1 to {MAX_OPTIONS} options")));
                }
                if let Some(bad) = self.options.iter().position(|o| !is_code(o)) {
                    return Err(bad_spec(format!(
                        "{name}: option {} is not a code (letters, digits, _ - .)",
                        bad + 1
                    )));
                }
            }
        }
        match self.kind {
            ParamKind::Codelist => {
                let known = poplar_queries::all_codelists()?;
                if let Some(unknown) = self
                    .options
                    .iter()
                    .find(|o| !known.iter().any(|l| l.cluster == o.as_str()))
                {
                    return Err(bad_spec(format!("{name}: {unknown} is not a codelist Poplar knows")));
                }
            }
            ParamKind::RegisterList => {
                if let Some(unknown) = self
                    .options
                    .iter()
                    .find(|o| !poplar_queries::REGISTERS.iter().any(|r| r.id == o.as_str()))
                {
                    return Err(bad_spec(format!("{name}: {unknown} is not a register Poplar knows")));
                }
            }
            ParamKind::Date | ParamKind::Integer | ParamKind::Choice | ParamKind::AreaList => {}
        }
        Ok(())
    }

    /// `value` checked against this parameter's type and bounds, as the value to bind.
    fn bind(&self, value: &str) -> Result<ScalarValue, EngineError> {
        let name = &self.name;
        match self.kind {
            ParamKind::Date => {
                let v = date(value).ok_or_else(|| out_of_bounds(format!("{name} is a date, YYYY-MM-DD")))?;
                let (min, max) = (self.min.as_deref().and_then(date), self.max.as_deref().and_then(date));
                if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
                    return Err(out_of_bounds(format!(
                        "{name} must be from {} to {}",
                        self.min.as_deref().unwrap_or_default(),
                        self.max.as_deref().unwrap_or_default()
                    )));
                }
                let days = v.signed_duration_since(NaiveDate::default()).num_days();
                let days = i32::try_from(days).map_err(|_| out_of_bounds(format!("{name} is out of range")))?;
                Ok(ScalarValue::Date32(Some(days)))
            }
            ParamKind::Integer => {
                let v: i64 = value
                    .parse()
                    .map_err(|_| out_of_bounds(format!("{name} is a whole number")))?;
                let parse = |b: &Option<String>| b.as_deref().and_then(|t| t.parse::<i64>().ok());
                if parse(&self.min).is_some_and(|m| v < m) || parse(&self.max).is_some_and(|m| v > m) {
                    return Err(out_of_bounds(format!(
                        "{name} must be from {} to {}",
                        self.min.as_deref().unwrap_or_default(),
                        self.max.as_deref().unwrap_or_default()
                    )));
                }
                Ok(ScalarValue::Int64(Some(v)))
            }
            ParamKind::Choice | ParamKind::Codelist => {
                if !self.options.iter().any(|o| o == value) {
                    return Err(out_of_bounds(format!("{name} must be one of its approved options")));
                }
                Ok(ScalarValue::Utf8(Some(value.to_string())))
            }
            ParamKind::RegisterList | ParamKind::AreaList => {
                let items: Vec<&str> = value.split(LIST_SEPARATOR).map(str::trim).collect();
                if items.iter().any(|i| !self.options.iter().any(|o| o == i)) {
                    return Err(out_of_bounds(format!(
                        "{name} must list only its approved options, separated by commas"
                    )));
                }
                Ok(ScalarValue::Utf8(Some(items.join(","))))
            }
        }
    }
}

/// Check a whole declaration: each parameter, at most [`MAX_PARAMETERS`], names unique.
pub fn check_specs(specs: &[ParamSpec]) -> Result<(), EngineError> {
    if specs.len() > MAX_PARAMETERS {
        return Err(bad_spec(format!("at most {MAX_PARAMETERS} parameters")));
    }
    for (i, spec) in specs.iter().enumerate() {
        spec.check()?;
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err(bad_spec(format!("{} is declared twice", spec.name)));
        }
        debug_assert!(!spec.kind.is_list() || !spec.options.is_empty());
    }
    Ok(())
}

/// The values to bind to `$1`, `$2`, … for `values` given by name: every declared
/// parameter present and within bounds, nothing undeclared.
pub fn bind(specs: &[ParamSpec], values: &BTreeMap<String, String>) -> Result<Vec<ScalarValue>, EngineError> {
    if let Some(unknown) = values.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
        return Err(out_of_bounds(format!(
            "the study declares no parameter named {}",
            crate::audit::bounded(unknown.chars().take(64).collect())
        )));
    }
    specs
        .iter()
        .map(|spec| {
            let value = values
                .get(&spec.name)
                .ok_or_else(|| out_of_bounds(format!("{} needs a value", spec.name)))?;
            spec.bind(value)
        })
        .collect()
}

/// SHA-256 (hex) of the declaration as approved: its canonical JSON.
pub fn specs_sha256(specs: &[ParamSpec]) -> Result<String, EngineError> {
    let json = serde_json::to_vec(specs).map_err(|e| EngineError::Server(format!("encoding parameters: {e}")))?;
    Ok(hex::encode(Sha256::digest(&json)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ParamKind, min: Option<&str>, max: Option<&str>, options: &[&str]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            min: min.map(Into::into),
            max: max.map(Into::into),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn specs() -> Vec<ParamSpec> {
        vec![
            spec("from", ParamKind::Date, Some("2020-01-01"), Some("2025-12-31"), &[]),
            spec("min_age", ParamKind::Integer, Some("0"), Some("120"), &[]),
            spec("sex", ParamKind::Choice, None, None, &["F", "M"]),
            spec(
                "registers",
                ParamKind::RegisterList,
                None,
                None,
                &["diabetes", "hypertension"],
            ),
        ]
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_within_bounds_bind_in_declared_order() {
        check_specs(&specs()).expect("valid");
        let bound = bind(
            &specs(),
            &values(&[
                ("sex", "F"),
                ("from", "2024-04-01"),
                ("min_age", "18"),
                ("registers", "diabetes, hypertension"),
            ]),
        )
        .expect("bind");
        assert_eq!(bound[1], ScalarValue::Int64(Some(18)));
        assert_eq!(bound[2], ScalarValue::Utf8(Some("F".into())));
        assert_eq!(bound[3], ScalarValue::Utf8(Some("diabetes,hypertension".into())));
        assert!(matches!(bound[0], ScalarValue::Date32(Some(_))));
    }

    #[test]
    fn every_value_outside_its_bounds_is_refused_under_the_rule() {
        let good = [
            ("from", "2024-04-01"),
            ("min_age", "18"),
            ("sex", "F"),
            ("registers", "diabetes"),
        ];
        for (name, bad) in [
            ("from", "2019-12-31"),
            ("from", "2026-01-01"),
            ("from", "yesterday"),
            ("min_age", "121"),
            ("min_age", "-1"),
            ("min_age", "1.5"),
            ("sex", "X"),
            ("registers", "diabetes,asthma"),
            ("registers", "diabetes' OR 1=1 --"),
        ] {
            let mut given = values(&good);
            given.insert(name.into(), bad.into());
            let err = bind(&specs(), &given).expect_err(bad);
            assert_eq!(err.rule(), Some(Rule::StudyParameters), "{err}");
            assert!(!err.to_string().contains(bad), "the value is not echoed: {err}");
        }
        let mut missing = values(&good);
        missing.remove("sex");
        assert_eq!(
            bind(&specs(), &missing).expect_err("missing").rule(),
            Some(Rule::StudyParameters)
        );
        let mut extra = values(&good);
        extra.insert("other".into(), "1".into());
        assert_eq!(
            bind(&specs(), &extra).expect_err("extra").rule(),
            Some(Rule::StudyParameters)
        );
    }

    #[test]
    fn declarations_are_checked() {
        for bad in [
            vec![spec("d", ParamKind::Date, Some("2025-01-01"), Some("2024-01-01"), &[])],
            vec![spec("d", ParamKind::Date, None, Some("2024-01-01"), &[])],
            vec![spec("n", ParamKind::Integer, Some("5"), Some("1"), &[])],
            vec![spec("c", ParamKind::Choice, None, None, &[])],
            vec![spec("c", ParamKind::Choice, None, None, &["a,b"])],
            vec![spec("r", ParamKind::RegisterList, None, None, &["nope"])],
            vec![spec("l", ParamKind::Codelist, None, None, &["NOT_A_CLUSTER"])],
            vec![spec("bad name", ParamKind::Choice, None, None, &["a"])],
            vec![
                spec("x", ParamKind::Choice, None, None, &["a"]),
                spec("x", ParamKind::Choice, None, None, &["b"]),
            ],
        ] {
            assert!(check_specs(&bad).is_err(), "{bad:?}");
        }
        assert_ne!(
            specs_sha256(&specs()).expect("hash"),
            specs_sha256(&specs()[..1]).expect("hash")
        );
    }
}
