//! Poplar's audit log: one entry per request, hash-chained and append-only, in object
//! storage beside the tables (`<store>/audit/`).
//!
//! Each entry is its own object, `audit/<seq, 20 digits>.json`, written with
//! `PutMode::Create`, so an entry is never overwritten: a second writer that races for the
//! same seq is refused, re-reads the head and takes the next seq. Each entry carries the
//! previous entry's hash (64 zeros for the first) and its own: the hex SHA-256 of
//! `prev_hash` followed by the canonical JSON of the entry without `hash` (keys sorted, no
//! whitespace — Python's `json.dumps(e, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)`). `audit/HEAD` holds the newest seq and hash, rewritten after each
//! append, so that deleting the newest entries shows.
//!
//! [`verify`] finds an edited entry (its hash no longer matches), a deleted one (a gap in
//! seq), entries moved or reordered (an object holding another seq, a broken link) and a
//! cut tail (HEAD names a seq past the end). HEAD is only as trustworthy as the store's
//! access control: someone who can delete entries and rewrite HEAD can cut the tail
//! unseen, so stewards should record the head hash `verify` prints somewhere else (a
//! ticket, a signed email) and compare later.
//!
//! The log holds who asked what (SQL text or a measure or study id with its parameters),
//! the plan's hash, the outcome and counts — never a value from a result. An answer that
//! streams has two entries: a provisional `started` one written before its first row
//! leaves, and one that `completes` it (answered, failed or cancelled); a server killed
//! mid-answer leaves the first alone, and the chain still verifies.
//!
//! [`chain`] seals and checks entries, [`store`] reads and writes them in object storage,
//! [`log`] appends and verifies, [`table`] serves them as the `audit_log` table.

mod chain;
mod log;
mod store;
mod table;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Class, EngineError};
use crate::identity::Principal;

pub use chain::GENESIS_HASH;
pub use log::{AuditLog, entries, verify};
pub use store::AUDIT_DIR;
pub use table::{AUDIT_TABLE, AuditTable, audit_schema, to_record_batch};

/// What was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditRequest {
    /// SQL text as sent; `parameters` are a prepared statement's `$1`, `$2`, … as text.
    Sql {
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parameters: Vec<String>,
    },
    Measure {
        id: String,
        parameters: BTreeMap<String, String>,
    },
    Study {
        id: String,
        parameters: BTreeMap<String, String>,
    },
    /// A call named by its RPC: a catalog or server-information call (Flight SQL
    /// `GetTables`, `GetSqlInfo`, …), or any call refused before its request was read (no
    /// credentials, or a token that matches no one).
    Call { rpc: String },
    /// A sign-in (the Basic handshake), with the user name as claimed.
    SignIn,
}

/// The most of any one text (SQL, a parameter, a claimed user name) an entry keeps. A
/// longer text is cut, and the entry says how long it was and gives its SHA-256, so the
/// log stays small whatever a client sends and the request can still be matched.
pub const MAX_TEXT_BYTES: usize = 256 << 10;

/// `text`, or its first [`MAX_TEXT_BYTES`] (on a character boundary) with its length and
/// hash when longer.
pub fn bounded(text: String) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    format!("{}… [cut: {} bytes in all, sha256 {digest}]", &text[..end], text.len())
}

impl AuditRequest {
    pub fn sql(text: impl Into<String>) -> Self {
        Self::sql_with_parameters(text, Vec::new())
    }

    /// A statement and its bound parameters (as text), each bounded to [`MAX_TEXT_BYTES`].
    pub fn sql_with_parameters(text: impl Into<String>, parameters: Vec<String>) -> Self {
        AuditRequest::Sql {
            text: bounded(text.into()),
            parameters: parameters.into_iter().map(bounded).collect(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AuditRequest::Sql { .. } => "sql",
            AuditRequest::Measure { .. } => "measure",
            AuditRequest::Study { .. } => "study",
            AuditRequest::Call { .. } => "call",
            AuditRequest::SignIn => "sign_in",
        }
    }

    /// One line of text: the SQL, or the id followed by its parameters as JSON.
    pub(crate) fn text(&self) -> String {
        match self {
            AuditRequest::Sql { text, parameters } if parameters.is_empty() => text.clone(),
            AuditRequest::Sql { text, parameters } => {
                format!("{text} -- parameters {}", Value::from(parameters.clone()))
            }
            AuditRequest::Measure { id, parameters } | AuditRequest::Study { id, parameters } => {
                let map: serde_json::Map<String, Value> = parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                format!("{id} {}", Value::Object(map))
            }
            AuditRequest::Call { rpc } => rpc.clone(),
            AuditRequest::SignIn => "sign in".to_string(),
        }
    }
}

/// How a request ended — or, for an answer being streamed, that it has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Provisional: the answer is about to leave. A later entry whose `completes` names
    /// this one records how it ended; none means the server stopped mid-answer.
    Started,
    Answered,
    /// Refused by a rule: `rule` is a [`Rule`] id, or `unauthenticated`.
    Refused {
        rule: String,
        message: String,
    },
    Failed {
        message: String,
    },
    /// The client went away before the answer ended.
    Cancelled,
}

/// The `rule` of an unauthenticated request's outcome.
pub const UNAUTHENTICATED: &str = "unauthenticated";

impl Outcome {
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Answered => "answered",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub(crate) fn detail(&self) -> Option<String> {
        match self {
            Outcome::Started | Outcome::Answered | Outcome::Cancelled => None,
            Outcome::Refused { rule, message } => Some(format!("{rule}: {message}")),
            Outcome::Failed { message } => Some(message.clone()),
        }
    }

    /// The rule a refusal was recorded under.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Outcome::Refused { rule, .. } => Some(rule),
            Outcome::Started | Outcome::Answered | Outcome::Failed { .. } | Outcome::Cancelled => None,
        }
    }
}

/// The outcome of a request that ended in `e`, from the same classification that picks the
/// gRPC code. Engine errors name the rule or the fault, never a value from the data, so
/// their text is safe to log.
impl From<&EngineError> for Outcome {
    fn from(e: &EngineError) -> Self {
        let message = e.to_string();
        match e.class() {
            Class::Unauthenticated => Outcome::Refused {
                rule: UNAUTHENTICATED.to_string(),
                message,
            },
            Class::Refused(rule) => Outcome::Refused {
                rule: rule.id().to_string(),
                message,
            },
            Class::BadRequest | Class::Internal => Outcome::Failed { message },
        }
    }
}

/// A request to log: an [`AuditEntry`] before the log gives it a seq, a time and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub user: String,
    pub role: String,
    pub request: AuditRequest,
    pub plan_hash: Option<String>,
    pub outcome: Outcome,
    pub rows: u64,
    pub cells_suppressed: u64,
    /// Small groups left out of the answer (their keys not shown). Absent from entries
    /// written before it was recorded, which read as 0.
    #[serde(default)]
    pub groups_withheld: u64,
    pub duration_ms: u64,
    /// For the entry that ends an answer: the seq of its provisional (`started`) entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completes: Option<u64>,
}

impl AuditRecord {
    /// `principal` asked `request`; answered, no rows, no time, until set otherwise.
    pub fn new(principal: &Principal, request: AuditRequest) -> Self {
        Self::claimed(&principal.user, principal.role.as_str(), request)
    }

    /// A request from someone not (yet) authenticated: the user name as claimed, if any —
    /// never the token — and the role they claim nothing for.
    pub fn claimed(user: &str, role: &str, request: AuditRequest) -> Self {
        Self {
            user: bounded(user.to_string()),
            role: role.to_string(),
            request,
            plan_hash: None,
            outcome: Outcome::Answered,
            rows: 0,
            cells_suppressed: 0,
            groups_withheld: 0,
            duration_ms: 0,
            completes: None,
        }
    }
}

/// One entry of the log, as stored in `audit/<seq>.json` (the record's fields inline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// When the entry was appended (the end of the request), RFC 3339 in UTC.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The newest entry's seq and hash, as `audit/HEAD` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// What is wrong with the log, at which entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not JSON, or not an entry.
    Unreadable,
    /// The content does not match its own hash.
    Edited,
    /// The object holds another seq than its name says.
    Misplaced,
    /// `prev_hash` is not the previous entry's hash.
    BrokenLink,
    /// A gap in seq: entries deleted.
    Missing,
    /// HEAD names a seq past the last entry: the tail was cut.
    Truncated,
    /// HEAD's hash is not the hash of the entry it names.
    HeadMismatch,
    /// The log has entries but no HEAD.
    HeadMissing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first entry concerned.
    pub seq: u64,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.detail)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries_checked: u64,
    /// The chain's last entry.
    pub last: Option<Head>,
    /// What `audit/HEAD` records.
    pub head: Option<Head>,
    /// Ordered by seq; empty when the log verifies.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// A steward's `SELECT n` with `n` rows: an entry for the module's tests.
#[cfg(test)]
pub(crate) fn sample_record(n: u64) -> AuditRecord {
    let mut r = AuditRecord::new(
        &Principal::new("sam", crate::identity::Role::Steward),
        AuditRequest::sql(format!("SELECT {n}")),
    );
    r.rows = n;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_with_their_length_and_hash() {
        let short = "SELECT 1".to_string();
        assert_eq!(bounded(short.clone()), short);
        // A multi-byte character straddling the cut must not split.
        let long = format!("{}é{}", "a".repeat(MAX_TEXT_BYTES - 1), "b".repeat(1 << 20));
        let kept = bounded(long.clone());
        assert!(kept.len() < MAX_TEXT_BYTES + 200, "{}", kept.len());
        assert!(kept.contains(&format!("{} bytes in all", long.len())));
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(long.as_bytes()));
        assert!(kept.ends_with(&format!("sha256 {digest}]")));
        let AuditRequest::Sql { text, parameters } = AuditRequest::sql_with_parameters(long.clone(), vec![long]) else {
            panic!("an SQL request");
        };
        assert_eq!(text, kept);
        assert_eq!(parameters, vec![kept]);
    }
}
