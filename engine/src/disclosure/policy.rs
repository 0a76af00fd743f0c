//! The disclosure-control settings a deployment runs with. Defaults are the compiled-in
//! floors; a deployment's file may make any of them stricter, never weaker, and no client
//! can change them (they are fixed when the server starts).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::noise::NoiseKey;
use crate::EngineError;
use crate::identity::Role;

/// Minimum distinct people behind every released group (rule 2).
pub const MIN_PEOPLE_FLOOR: u64 = 8;
/// Counts from 1 to this are suppressed (rule 3).
pub const SUPPRESS_UP_TO_FLOOR: u64 = 7;
/// Released counts and sums are rounded to a multiple of this (rule 3).
pub const ROUND_TO_FLOOR: u64 = 5;
/// Standard deviation of the sticky noise added to counts, in people, for the roles that
/// get noise (rule 5).
pub use super::noise::NOISE_SD_FLOOR;
/// Most answers a noised role may receive per UTC day (rule 5).
pub const DAILY_BUDGET_CEILING: u64 = 2_000;

/// How counts are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest multiple of `round_to` (2.5 → 5).
    Nearest,
    /// OpenSAFELY's midpoint-6: to the middle of the band of six holding the value
    /// (7–12 → 9, 13–18 → 15), so a band's edges are never published.
    Midpoint6,
}

/// What a group covering fewer than k people looks like in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallGroups {
    /// Shown with every value suppressed (`*`), as NHS England and OpenSAFELY publish
    /// tables: the key says "1 to 7 people here".
    Mark,
    /// Left out of the answer altogether (BigQuery's aggregation threshold): the key
    /// itself is not disclosed. Stricter; see docs/disclosure-control.md on fine keys.
    Withhold,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_people: u64,
    pub suppress_up_to: u64,
    pub round_to: u64,
    pub rounding: Rounding,
    pub small_groups: SmallGroups,
    pub noise_sd: f64,
    /// Roles whose answers carry sticky noise and are limited by a daily budget.
    pub noised_roles: Vec<Role>,
    pub daily_budget: BTreeMap<Role, u64>,
    /// Secret that seeds the sticky noise: without it noise could be predicted and removed.
    pub noise_key: NoiseKey,
}

/// What a deployment's `disclosure.toml` may set. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub min_people: Option<u64>,
    pub suppress_up_to: Option<u64>,
    pub round_to: Option<u64>,
    pub rounding: Option<Rounding>,
    pub small_groups: Option<SmallGroups>,
    pub noise_sd: Option<f64>,
    pub noised_roles: Option<Vec<Role>>,
    pub daily_budget: Option<BTreeMap<Role, u64>>,
}

impl Policy {
    /// The compiled-in defaults, with the deployment's noise key.
    pub fn new(noise_key: Vec<u8>) -> Result<Self, EngineError> {
        let noise_key = NoiseKey::new(noise_key)?;
        Ok(Self {
            min_people: MIN_PEOPLE_FLOOR,
            suppress_up_to: SUPPRESS_UP_TO_FLOOR,
            round_to: ROUND_TO_FLOOR,
            rounding: Rounding::Nearest,
            small_groups: SmallGroups::Mark,
            noise_sd: NOISE_SD_FLOOR,
            noised_roles: vec![Role::Commissioner, Role::Researcher],
            daily_budget: BTreeMap::from([(Role::Commissioner, DAILY_BUDGET_CEILING), (Role::Researcher, 500)]),
            noise_key,
        })
    }

    /// Apply a deployment's settings, refusing any that would weaken a floor.
    pub fn stricter(mut self, file: PolicyFile) -> Result<Self, EngineError> {
        let weaker = |what: &str, floor: String| {
            EngineError::Config(format!("{what} may be made stricter, not weaker (floor {floor})"))
        };
        if let Some(k) = file.min_people {
            if k < self.min_people {
                return Err(weaker("min_people", self.min_people.to_string()));
            }
            self.min_people = k;
        }
        if let Some(s) = file.suppress_up_to {
            if s < self.suppress_up_to {
                return Err(weaker("suppress_up_to", self.suppress_up_to.to_string()));
            }
            self.suppress_up_to = s;
        }
        if let Some(r) = file.round_to {
            if r < self.round_to || r % self.round_to != 0 {
                return Err(weaker("round_to (a multiple of the floor)", self.round_to.to_string()));
            }
            self.round_to = r;
        }
        if let Some(r) = file.rounding {
            self.rounding = r;
        }
        if let Some(g) = file.small_groups {
            if self.small_groups == SmallGroups::Withhold && g == SmallGroups::Mark {
                return Err(weaker("small_groups", "withhold".into()));
            }
            self.small_groups = g;
        }
        if let Some(sd) = file.noise_sd {
            if sd.is_nan() || sd < self.noise_sd {
                return Err(weaker("noise_sd", self.noise_sd.to_string()));
            }
            self.noise_sd = sd;
        }
        if let Some(roles) = file.noised_roles {
            if let Some(missing) = self.noised_roles.iter().find(|r| !roles.contains(r)) {
                return Err(weaker("noised_roles", format!("must include {}", missing.as_str())));
            }
            self.noised_roles = roles;
        }
        if let Some(budgets) = file.daily_budget {
            for (role, budget) in budgets {
                if role == Role::Steward {
                    return Err(EngineError::Config(
                        "stewards are not under disclosure control; give them no budget".into(),
                    ));
                }
                let ceiling = self.daily_budget.get(&role).copied().unwrap_or(DAILY_BUDGET_CEILING);
                if budget > ceiling {
                    return Err(weaker(&format!("daily_budget.{}", role.as_str()), ceiling.to_string()));
                }
                self.daily_budget.insert(role, budget);
            }
        }
        Ok(self)
    }

    pub fn from_file(noise_key: Vec<u8>, path: Option<&Path>) -> Result<Self, EngineError> {
        let policy = Self::new(noise_key)?;
        let Some(path) = path else { return Ok(policy) };
        let text =
            std::fs::read_to_string(path).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
        let file: PolicyFile =
            toml::from_str(&text).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
        policy.stricter(file)
    }

    pub fn noised(&self, role: Role) -> bool {
        self.noised_roles.contains(&role)
    }

    /// A short, stable name for what the policy does to answers: every setting that
    /// changes a released value, and a fingerprint of the noise key (so rotating it counts
    /// too), but not the daily budgets. An approved study binds it: a run under another
    /// policy would release something the reviewers never judged.
    pub fn version(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut noised: Vec<&str> = self.noised_roles.iter().map(|r| r.as_str()).collect();
        noised.sort_unstable();
        let canonical = format!(
            "min_people={};suppress_up_to={};round_to={};rounding={:?};small_groups={:?};noise_sd={};noised={};key={}",
            self.min_people,
            self.suppress_up_to,
            self.round_to,
            self.rounding,
            self.small_groups,
            self.noise_sd,
            noised.join(","),
            self.noise_key.fingerprint(),
        );
        format!("p1-{}", &hex::encode(Sha256::digest(canonical.as_bytes()))[..16])
    }

    /// Whether `value` is a count the policy's rounding could have released.
    pub fn is_rounded(&self, value: u64) -> bool {
        match self.rounding {
            Rounding::Nearest => value.is_multiple_of(self.round_to),
            Rounding::Midpoint6 => value == 0 || value % 6 == 3,
        }
    }

    /// Round a released count or sum per the policy. Zero stays zero.
    pub fn round(&self, value: f64) -> f64 {
        let base = self.round_to as f64;
        if value == 0.0 {
            return 0.0;
        }
        match self.rounding {
            Rounding::Nearest => (value / base).round() * base,
            Rounding::Midpoint6 => (value.abs() / 6.0).ceil().copysign(value) * 6.0 - 3.0f64.copysign(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(vec![7; 32]).expect("key")
    }

    #[test]
    fn a_deployment_may_tighten_but_never_loosen() {
        let tighter = policy()
            .stricter(PolicyFile {
                min_people: Some(10),
                round_to: Some(10),
                noise_sd: Some(3.0),
                ..Default::default()
            })
            .expect("stricter is fine");
        assert_eq!((tighter.min_people, tighter.round_to), (10, 10));
        for weaker in [
            PolicyFile {
                min_people: Some(5),
                ..Default::default()
            },
            PolicyFile {
                suppress_up_to: Some(3),
                ..Default::default()
            },
            PolicyFile {
                round_to: Some(1),
                ..Default::default()
            },
            PolicyFile {
                round_to: Some(7),
                ..Default::default()
            },
            PolicyFile {
                noise_sd: Some(0.0),
                ..Default::default()
            },
            PolicyFile {
                noised_roles: Some(vec![Role::Researcher]),
                ..Default::default()
            },
            PolicyFile {
                daily_budget: Some(BTreeMap::from([(Role::Researcher, 100_000)])),
                ..Default::default()
            },
        ] {
            let err = policy().stricter(weaker).expect_err("weaker is refused");
            assert!(err.to_string().contains("stricter, not weaker"), "{err}");
        }
    }

    #[test]
    fn the_version_names_what_changes_answers_and_nothing_else() {
        let base = policy().version();
        assert_eq!(base, policy().version(), "stable");
        assert!(base.starts_with("p1-") && base.len() == 19, "{base}");
        let stricter = policy()
            .stricter(PolicyFile {
                min_people: Some(10),
                ..Default::default()
            })
            .expect("stricter");
        assert_ne!(stricter.version(), base);
        assert_ne!(
            Policy::new(vec![8; 32]).expect("key").version(),
            base,
            "a new noise key"
        );
        let budget = policy()
            .stricter(PolicyFile {
                daily_budget: Some(BTreeMap::from([(Role::Researcher, 10)])),
                ..Default::default()
            })
            .expect("budget");
        assert_eq!(budget.version(), base, "budgets do not change answers");
        assert!(!base.contains(&hex::encode([7u8; 32])), "the key itself is not in it");
    }

    #[test]
    fn rounded_counts_are_recognised() {
        let p = policy();
        assert!(p.is_rounded(0) && p.is_rounded(15) && !p.is_rounded(12));
        let m = Policy {
            rounding: Rounding::Midpoint6,
            ..policy()
        };
        assert!(m.is_rounded(9) && m.is_rounded(0) && !m.is_rounded(10));
    }

    #[test]
    fn short_noise_keys_are_refused() {
        assert!(Policy::new(vec![1; 8]).is_err());
    }

    #[test]
    fn rounding_to_five() {
        let p = policy();
        let got: Vec<f64> = [0.0, 8.0, 12.0, 12.5, 13.0, 1003.0]
            .iter()
            .map(|v| p.round(*v))
            .collect();
        assert_eq!(got, vec![0.0, 10.0, 10.0, 15.0, 15.0, 1005.0]);
    }

    #[test]
    fn midpoint_six() {
        let p = Policy {
            rounding: Rounding::Midpoint6,
            ..policy()
        };
        let got: Vec<f64> = [0.0, 7.0, 12.0, 13.0, 18.0, 19.0].iter().map(|v| p.round(*v)).collect();
        assert_eq!(got, vec![0.0, 9.0, 9.0, 15.0, 15.0, 21.0]);
    }
}
