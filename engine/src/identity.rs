//! Who is asking: a role from the users file and the principal a request runs as. The
//! bottom layer of the engine: every other module may depend on it, it depends on none.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Commissioner,
    Analyst,
    Researcher,
    Steward,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Commissioner, Role::Analyst, Role::Researcher, Role::Steward];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Commissioner => "commissioner",
            Role::Analyst => "analyst",
            Role::Researcher => "researcher",
            Role::Steward => "steward",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (commissioner, analyst, researcher, steward)"))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

impl Principal {
    pub fn new(user: impl Into<String>, role: Role) -> Self {
        Self {
            user: user.into(),
            role,
        }
    }

    /// Stewards govern the data and see it unprotected; everyone else is under disclosure
    /// control.
    pub fn is_steward(&self) -> bool {
        self.role == Role::Steward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
