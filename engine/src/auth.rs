//! Users, roles and tokens. The users file stores only SHA-256 hashes of tokens (tokens
//! are 256 random bits, so a fast hash is enough and a leak of the file reveals none).
//! A client signs in with Basic auth (user name, token as password) and gets a session
//! bearer token valid for `SESSION_TTL`, or sends `authorization: Bearer <token>` with
//! its own token on every call.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::EngineError;
use crate::identity::{Principal, Role};

pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const TOKEN_PREFIX: &str = "ppl_";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    pub token_sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersFile {
    #[serde(rename = "user", default)]
    pub users: Vec<UserEntry>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare without an early exit, so timing says nothing about how much matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

impl UsersFile {
    pub fn read(path: &Path) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::Users {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        let mut names: Vec<&str> = file.users.iter().map(|u| u.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("a user name appears twice".into()));
        }
        Ok(file)
    }

    /// Add a user and write the file; returns the new token (shown once, never stored).
    pub fn add(path: &Path, name: &str, role: Role) -> Result<String, EngineError> {
        let bad = |reason: String| EngineError::Users {
            path: path.display().to_string(),
            reason,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(bad("user names are letters, digits and . _ - @".into()));
        }
        let mut file = Self::read(path)?;
        if file.users.iter().any(|u| u.name == name) {
            return Err(bad(format!("user {name} already exists")));
        }
        let token = new_token();
        file.users.push(UserEntry {
            name: name.to_string(),
            role,
            token_sha256: hash(&token),
        });
        let text = toml::to_string_pretty(&file).map_err(|e| bad(e.to_string()))?;
        // Write beside and rename, so a crash never leaves a half-written users file.
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| bad(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(|e| bad(e.to_string()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| bad(e.to_string()))?;
        Ok(token)
    }
}

/// Checks credentials and bearer tokens.
#[derive(Debug)]
pub struct Authenticator {
    users: Vec<UserEntry>,
    /// SHA-256 of a session token -> who and until when.
    sessions: RwLock<HashMap<String, (Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(users: UsersFile) -> Self {
        Self {
            users: users.users,
            sessions: RwLock::new(HashMap::new()),
        }
    }

    fn by_token(&self, token: &str) -> Option<Principal> {
        let h = hash(token);
        self.users
            .iter()
            .find(|u| same(&u.token_sha256, &h))
            .map(|u| Principal::new(u.name.clone(), u.role))
    }

    /// Basic sign-in: the user's token as password. Returns a new session token.
    pub fn sign_in(&self, user: &str, token: &str) -> Result<(Principal, String), EngineError> {
        let principal = self
            .by_token(token)
            .filter(|p| p.user == user)
            .ok_or_else(|| EngineError::Unauthenticated("unknown user or wrong token".into()))?;
        let session = new_token();
        let mut sessions = crate::sync::write(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, (_, until)| *until > now);
        sessions.insert(hash(&session), (principal.clone(), now + SESSION_TTL));
        Ok((principal, session))
    }

    /// Every user's name and role (never a token or its hash), for the stewards' console.
    pub fn users(&self) -> Vec<(String, Role)> {
        self.users.iter().map(|u| (u.name.clone(), u.role)).collect()
    }

    /// A bearer token: a live session token or a user's own token.
    pub fn check_bearer(&self, token: &str) -> Result<Principal, EngineError> {
        let h = hash(token);
        if let Some((p, until)) = crate::sync::read(&self.sessions).get(&h)
            && *until > Instant::now()
        {
            return Ok(p.clone());
        }
        self.by_token(token)
            .ok_or_else(|| EngineError::Unauthenticated("invalid or expired bearer token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_sign_in_issues_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        let token = UsersFile::add(&path, "cam", Role::Commissioner).expect("add");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&token), "the token itself is never written");
        assert!(UsersFile::add(&path, "cam", Role::Steward).is_err(), "names are unique");
        let auth = Authenticator::new(UsersFile::read(&path).expect("read"));
        assert!(auth.sign_in("cam", "ppl_wrong").is_err());
        assert!(auth.sign_in("someone", &token).is_err(), "token belongs to cam");
        let (who, session) = auth.sign_in("cam", &token).expect("sign in");
        assert_eq!(who.role, Role::Commissioner);
        assert_eq!(auth.check_bearer(&session).expect("session").user, "cam");
        assert_eq!(auth.check_bearer(&token).expect("own token").user, "cam");
        assert!(auth.check_bearer("ppl_0000").is_err());
    }
}
