//! The hash chain: each entry's hash covers the previous entry's hash and the entry's
//! canonical JSON, so an edit, a deletion or a reordering shows at the first entry
//! concerned.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::{AUDIT_DIR, HEAD};
use super::{AuditEntry, AuditRecord, Head, Problem, ProblemKind};
use crate::EngineError;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `record` as entry `seq`, chained to `prev_hash`.
pub(super) fn seal(
    record: &AuditRecord,
    seq: u64,
    prev_hash: &str,
    at: DateTime<Utc>,
) -> Result<AuditEntry, EngineError> {
    let mut entry = AuditEntry {
        seq,
        // Millisecond precision, as stored, so the entry returned equals the entry read back.
        at: DateTime::parse_from_rfc3339(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(at),
        record: record.clone(),
        prev_hash: prev_hash.to_string(),
        hash: String::new(),
    };
    let mut value =
        serde_json::to_value(&entry).map_err(|e| EngineError::Audit(format!("cannot encode entry: {e}")))?;
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    entry.hash = entry_hash(prev_hash, &value);
    Ok(entry)
}

/// Hex SHA-256 of `prev_hash` then the canonical JSON of the entry without `hash`.
fn entry_hash(prev_hash: &str, body: &Value) -> String {
    let mut text = String::new();
    canonical(body, &mut text);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted and no whitespace.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    canonical(item, out);
                }
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// An entry as stored, and the hash its content should carry.
pub(super) fn parse(bytes: &[u8]) -> Result<(AuditEntry, String), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let entry: AuditEntry = serde_json::from_value(value.clone()).map_err(|e| format!("not an audit entry: {e}"))?;
    let mut body = value;
    if let Value::Object(map) = &mut body {
        map.remove("hash");
    }
    let expected = entry_hash(&entry.prev_hash, &body);
    Ok((entry, expected))
}

pub(super) struct Checked {
    pub(super) entries: Vec<AuditEntry>,
    pub(super) last: Option<Head>,
    pub(super) problems: Vec<Problem>,
}

/// Checks entries `start..` (genesis-linked when `start` is 0) and the tail against `head`.
pub(super) fn check(start: u64, items: Vec<(u64, Vec<u8>)>, head: Option<&Head>) -> Checked {
    let prev = (start == 0).then(|| GENESIS_HASH.to_string());
    let mut checked = check_from(start, prev, items);
    if let Some(problem) = check_head(&checked, head) {
        checked.problems.push(problem);
    }
    checked.problems.sort_by_key(|p| p.seq);
    checked
}

/// Checks each entry's hash, its seq against its name, its link to the one before (when
/// `prev` is known) and that seqs run on from `start` without a gap.
pub(super) fn check_from(start: u64, mut prev: Option<String>, items: Vec<(u64, Vec<u8>)>) -> Checked {
    let mut checked = Checked {
        entries: Vec::new(),
        last: None,
        problems: Vec::new(),
    };
    let mut expected = start;
    for (seq, bytes) in items {
        let problem = |kind, detail: String| Problem { seq, kind, detail };
        if seq > expected {
            checked.problems.push(Problem {
                seq: expected,
                kind: ProblemKind::Missing,
                detail: if seq - expected == 1 {
                    format!("entry {expected} is missing (deleted?)")
                } else {
                    format!("entries {expected} to {} are missing (deleted?)", seq - 1)
                },
            });
            prev = None;
        }
        expected = seq + 1;
        let (entry, hash) = match parse(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                checked.problems.push(problem(ProblemKind::Unreadable, e));
                prev = None;
                continue;
            }
        };
        if entry.seq != seq {
            checked.problems.push(problem(
                ProblemKind::Misplaced,
                format!(
                    "the object for entry {seq} holds entry {} (moved or reordered)",
                    entry.seq
                ),
            ));
        }
        if entry.hash != hash {
            checked.problems.push(problem(
                ProblemKind::Edited,
                format!(
                    "content does not match its hash (edited after it was written): stored {}, computed {hash}",
                    entry.hash
                ),
            ));
        }
        if let Some(prev) = &prev
            && entry.prev_hash != *prev
        {
            checked.problems.push(problem(
                ProblemKind::BrokenLink,
                "prev_hash does not match the previous entry's hash (this entry or the one before was replaced, or they were reordered)".to_string(),
            ));
        }
        prev = Some(entry.hash.clone());
        checked.last = Some(Head {
            seq,
            hash: entry.hash.clone(),
        });
        checked.entries.push(entry);
    }
    checked
}

/// HEAD may lag the chain (a crash between writing an entry and HEAD), but must name an
/// entry that exists with that hash, and must exist once there is more than one entry.
fn check_head(checked: &Checked, head: Option<&Head>) -> Option<Problem> {
    let last = checked.last.as_ref();
    match (head, last) {
        (None, None) => None,
        (None, Some(last)) if last.seq == 0 => None,
        (None, Some(last)) => Some(Problem {
            seq: last.seq,
            kind: ProblemKind::HeadMissing,
            detail: format!(
                "{AUDIT_DIR}/{HEAD} is missing though the log runs to entry {} (deleted? a cut tail cannot be detected)",
                last.seq
            ),
        }),
        (Some(head), last) if last.is_none_or(|l| l.seq < head.seq) => {
            let from = last.map_or(0, |l| l.seq + 1);
            Some(Problem {
                seq: from,
                kind: ProblemKind::Truncated,
                detail: format!(
                    "the log is truncated: {AUDIT_DIR}/{HEAD} records entry {} (hash {}) but entries {from} to {} are missing",
                    head.seq, head.hash, head.seq
                ),
            })
        }
        (Some(head), _) => {
            let named = checked.entries.iter().find(|e| e.seq == head.seq)?;
            (named.hash != head.hash).then(|| Problem {
                seq: head.seq,
                kind: ProblemKind::HeadMismatch,
                detail: format!(
                    "{AUDIT_DIR}/{HEAD} records hash {} for this entry, the entry has {}",
                    head.hash, named.hash
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRequest, sample_record as record};

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: Value = serde_json::from_str(r#"{ "b": [1, {"z": null, "a": "é\n"}], "a": true }"#).expect("json");
        let mut out = String::new();
        canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":true,"b":[1,{"a":"é\n","z":null}]}"#);
    }

    /// The hash as a steward would recompute it in Python (see the module docs).
    #[test]
    fn the_hash_matches_python_json_dumps_sort_keys() {
        let mut r = record(7);
        r.request = AuditRequest::sql("SELECT 'é'\n7");
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .expect("time")
            .with_timezone(&Utc);
        let entry = seal(&r, 0, GENESIS_HASH, at).expect("seal");
        assert_eq!(
            entry.hash,
            "e6f20ebc21cd4ef9a3420207742a96af51cd28d238e52a6037889d4c463ac9c8"
        );
        let stored = serde_json::to_vec(&entry).expect("encode");
        let (read, recomputed) = parse(&stored).expect("parse");
        assert_eq!((read, recomputed), (entry.clone(), entry.hash));
    }

    /// An entry written before `groups_withheld` was recorded still reads (as 0) and
    /// verifies: the hash is recomputed from the stored JSON, not from a re-encoding.
    #[test]
    fn an_entry_from_before_groups_withheld_still_verifies() {
        let stored = r#"{"seq":0,"at":"2026-01-02T03:04:05.678Z","user":"sam","role":"steward","request":{"kind":"sql","text":"SELECT 'é'\n7"},"plan_hash":null,"outcome":{"status":"answered"},"rows":7,"cells_suppressed":0,"duration_ms":0,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"5ee00887f7cdfc172195e128cd24fa9f1e430f7365febfbf14d1ab53420eab10"}"#;
        let (read, recomputed) = parse(stored.as_bytes()).expect("parse");
        assert_eq!(read.record.groups_withheld, 0);
        assert_eq!(recomputed, read.hash);
    }
}
