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
//! the plan's hash, the outcome and counts — never a value from a result.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use deltalake::datafusion::catalog::{MemTable, Session};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use poplar_loaders::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::EngineError;
use crate::session::Principal;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The log's folder under the store root.
pub const AUDIT_DIR: &str = "audit";
const HEAD: &str = "HEAD";
/// Other writers' entries to step over before an append gives up.
const MAX_RACES: usize = 64;
/// Entries read at once from the store.
const READ_AHEAD: usize = 16;

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
}

impl AuditRequest {
    pub fn sql(text: impl Into<String>) -> Self {
        AuditRequest::Sql {
            text: text.into(),
            parameters: Vec::new(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AuditRequest::Sql { .. } => "sql",
            AuditRequest::Measure { .. } => "measure",
            AuditRequest::Study { .. } => "study",
        }
    }

    /// One line of text: the SQL, or the id followed by its parameters as JSON.
    fn text(&self) -> String {
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
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Refused by a rule (authentication, role, SQL policy, disclosure control).
    Refused {
        rule: String,
        message: String,
    },
    Failed {
        message: String,
    },
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Outcome::Answered => None,
            Outcome::Refused { rule, message } => Some(format!("{rule}: {message}")),
            Outcome::Failed { message } => Some(message.clone()),
        }
    }
}

/// The outcome of a request that ended in `e`. Engine errors name the rule or the fault,
/// never a value from the data, so their text is safe to log.
impl From<&EngineError> for Outcome {
    fn from(e: &EngineError) -> Self {
        let refused = |rule: &str| Outcome::Refused {
            rule: rule.to_string(),
            message: e.to_string(),
        };
        match e {
            EngineError::Unauthenticated(_) => refused("unauthenticated"),
            EngineError::PermissionDenied(_) => refused("permission_denied"),
            EngineError::Refused(m) if m.starts_with("disclosure control") => refused("disclosure_control"),
            EngineError::Refused(_) => refused("sql_policy"),
            EngineError::InvalidRequest(_)
            | EngineError::Query(_)
            | EngineError::Arrow(_)
            | EngineError::Store(_)
            | EngineError::Delta(_)
            | EngineError::Users { .. }
            | EngineError::Codelists(_)
            | EngineError::Config(_)
            | EngineError::ObjectStore(_)
            | EngineError::Audit(_) => Outcome::Failed { message: e.to_string() },
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
    pub duration_ms: u64,
}

impl AuditRecord {
    /// `principal` asked `request`; answered, no rows, no time, until set otherwise.
    pub fn new(principal: &Principal, request: AuditRequest) -> Self {
        Self {
            user: principal.user.clone(),
            role: principal.role.as_str().to_string(),
            request,
            plan_hash: None,
            outcome: Outcome::Answered,
            rows: 0,
            cells_suppressed: 0,
            duration_ms: 0,
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

/// The next seq and the hash it will chain from.
struct Tail {
    next_seq: u64,
    prev_hash: String,
}

/// The log, open for appending. Share it (`Arc<AuditLog>`) between tasks: appends are
/// serialized, each gets the next seq.
pub struct AuditLog {
    objects: Arc<dyn ObjectStore>,
    dir: ObjectPath,
    tail: Mutex<Tail>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log under `store`'s root (creating nothing until the first append). Checks
    /// the tail — from the entry HEAD names to the end — and refuses to continue a chain that
    /// fails, so a cut tail is never papered over by new entries.
    pub async fn open(store: &Store) -> Result<Self, EngineError> {
        let (objects, dir) = audit_dir(store)?;
        let head = read_head(objects.as_ref(), &dir).await?;
        let start = head.as_ref().map_or(0, |h| h.seq);
        let items = read_entries(objects.as_ref(), &dir, start).await?;
        let checked = check(start, items, head.as_ref());
        if !checked.problems.is_empty() {
            // The tail alone cannot say where the damage starts: check the whole log.
            let all = check(0, read_entries(objects.as_ref(), &dir, 0).await?, head.as_ref());
            let problem = all
                .problems
                .first()
                .or(checked.problems.first())
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(EngineError::Audit(format!(
                "refusing to continue a log that fails verification at {problem} (run `poplar audit verify`)"
            )));
        }
        let tail = match checked.last {
            Some(last) => Tail {
                next_seq: last.seq + 1,
                prev_hash: last.hash,
            },
            None => Tail {
                next_seq: 0,
                prev_hash: GENESIS_HASH.to_string(),
            },
        };
        Ok(Self {
            objects,
            dir,
            tail: Mutex::new(tail),
        })
    }

    /// Appends `record` as the next entry and moves HEAD to it. If another writer took the
    /// seq first, reads its entries (checking their links) and tries the next seq.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, EngineError> {
        let mut tail = self.tail.lock().await;
        for _ in 0..MAX_RACES {
            let entry = seal(&record, tail.next_seq, &tail.prev_hash, Utc::now())?;
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| EngineError::Audit(format!("cannot encode entry: {e}")))?;
            let put = self
                .objects
                .put_opts(
                    &entry_path(&self.dir, entry.seq),
                    bytes.into(),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => {
                    tail.next_seq = entry.seq + 1;
                    tail.prev_hash = entry.hash.clone();
                    // HEAD may lag after a failure here; verify accepts a HEAD that names
                    // an earlier entry correctly, so the entry stands.
                    if let Err(e) = write_head(
                        self.objects.as_ref(),
                        &self.dir,
                        &Head {
                            seq: entry.seq,
                            hash: entry.hash.clone(),
                        },
                    )
                    .await
                    {
                        tracing::warn!(seq = entry.seq, "audit HEAD not updated: {e}");
                    }
                    return Ok(entry);
                }
                Err(object_store::Error::AlreadyExists { .. }) => self.catch_up(&mut tail).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Audit(format!(
            "gave up appending after {MAX_RACES} other writers took the next seq"
        )))
    }

    /// Steps the tail over entries other writers appended.
    async fn catch_up(&self, tail: &mut Tail) -> Result<(), EngineError> {
        loop {
            let bytes = match self.objects.get(&entry_path(&self.dir, tail.next_seq)).await {
                Ok(got) => got.bytes().await?.to_vec(),
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let checked = check_from(
                tail.next_seq,
                Some(tail.prev_hash.clone()),
                vec![(tail.next_seq, bytes)],
            );
            if let Some(problem) = checked.problems.first() {
                return Err(EngineError::Audit(format!(
                    "another writer's entry fails verification at {problem}"
                )));
            }
            if let Some(last) = checked.last {
                tail.next_seq = last.seq + 1;
                tail.prev_hash = last.hash;
            }
        }
    }
}

/// Reads and checks the whole log: every entry's hash and link, gaps, and the tail against
/// HEAD.
pub async fn verify(store: &Store) -> Result<VerifyReport, EngineError> {
    let (objects, dir) = audit_dir(store)?;
    let head = read_head(objects.as_ref(), &dir).await?;
    let items = read_entries(objects.as_ref(), &dir, 0).await?;
    let checked = check(0, items, head.as_ref());
    Ok(VerifyReport {
        entries_checked: checked.entries.len() as u64,
        last: checked.last,
        head,
        problems: checked.problems,
    })
}

/// Every entry, in seq order (read, not verified: see [`verify`]).
pub async fn entries(store: &Store) -> Result<Vec<AuditEntry>, EngineError> {
    let (objects, dir) = audit_dir(store)?;
    let items = read_entries(objects.as_ref(), &dir, 0).await?;
    items
        .into_iter()
        .map(|(seq, bytes)| {
            parse(&bytes)
                .map(|(entry, _)| entry)
                .map_err(|e| EngineError::Audit(format!("seq {seq}: {e}")))
        })
        .collect()
}

/// SHA-256 (hex) of a logical plan as DataFusion prints it, for `plan_hash`.
pub fn plan_hash(plan: &LogicalPlan) -> String {
    hex::encode(Sha256::digest(plan.display_indent().to_string().as_bytes()))
}

/// The columns of the `audit_log` table.
pub fn audit_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        count("seq"),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("user", false),
        text("role", false),
        text("kind", false),
        text("request", false),
        text("plan_hash", true),
        text("outcome", false),
        text("detail", true),
        count("rows"),
        count("cells_suppressed"),
        count("duration_ms"),
        text("hash", false),
    ]))
}

/// The entries as one batch of [`audit_schema`].
pub fn to_record_batch(entries: &[AuditEntry]) -> Result<RecordBatch, EngineError> {
    let strings = |f: &dyn Fn(&AuditEntry) -> Option<String>| -> ArrayRef {
        Arc::new(entries.iter().map(f).collect::<StringArray>())
    };
    let counts =
        |f: &dyn Fn(&AuditEntry) -> u64| -> ArrayRef { Arc::new(entries.iter().map(f).collect::<UInt64Array>()) };
    let at: ArrayRef = Arc::new(
        TimestampMillisecondArray::from_iter_values(entries.iter().map(|e| e.at.timestamp_millis()))
            .with_timezone("UTC"),
    );
    let columns = vec![
        counts(&|e| e.seq),
        at,
        strings(&|e| Some(e.record.user.clone())),
        strings(&|e| Some(e.record.role.clone())),
        strings(&|e| Some(e.record.request.kind().to_string())),
        strings(&|e| Some(e.record.request.text())),
        strings(&|e| e.record.plan_hash.clone()),
        strings(&|e| Some(e.record.outcome.status().to_string())),
        strings(&|e| e.record.outcome.detail()),
        counts(&|e| e.record.rows),
        counts(&|e| e.record.cells_suppressed),
        counts(&|e| e.record.duration_ms),
        strings(&|e| Some(e.hash.clone())),
    ];
    Ok(RecordBatch::try_new(audit_schema(), columns)?)
}

/// The log as a table (`audit_log`), read afresh from the store on every scan.
#[derive(Debug, Clone)]
pub struct AuditTable {
    store: Store,
}

impl AuditTable {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        audit_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let external = |e: EngineError| DataFusionError::External(Box::new(e));
        let entries = entries(&self.store).await.map_err(external)?;
        let batch = to_record_batch(&entries).map_err(external)?;
        MemTable::try_new(audit_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

// ----- storage -----

fn audit_dir(store: &Store) -> Result<(Arc<dyn ObjectStore>, ObjectPath), EngineError> {
    let (objects, root) = store.object_store()?;
    Ok((objects, root.join(AUDIT_DIR)))
}

fn entry_path(dir: &ObjectPath, seq: u64) -> ObjectPath {
    dir.clone().join(format!("{seq:020}.json"))
}

fn seq_of(location: &ObjectPath) -> Option<u64> {
    let name = location.filename()?.strip_suffix(".json")?;
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

async fn read_head(objects: &dyn ObjectStore, dir: &ObjectPath) -> Result<Option<Head>, EngineError> {
    match objects.get(&dir.clone().join(HEAD)).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::Audit(format!("{AUDIT_DIR}/{HEAD} is unreadable: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_head(objects: &dyn ObjectStore, dir: &ObjectPath, head: &Head) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec(head).map_err(|e| EngineError::Audit(format!("cannot encode HEAD: {e}")))?;
    objects.put(&dir.clone().join(HEAD), bytes.into()).await?;
    Ok(())
}

/// The entries with seq `from` or later, in seq order, as stored.
async fn read_entries(
    objects: &dyn ObjectStore,
    dir: &ObjectPath,
    from: u64,
) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
    let listing = match from.checked_sub(1) {
        Some(before) => objects.list_with_offset(Some(dir), &entry_path(dir, before)),
        None => objects.list(Some(dir)),
    };
    let mut found: Vec<(u64, ObjectPath)> = listing
        .try_filter_map(|meta| async move {
            Ok(seq_of(&meta.location)
                .filter(|seq| *seq >= from)
                .map(|seq| (seq, meta.location)))
        })
        .try_collect()
        .await?;
    // Listings are not ordered on every store.
    found.sort_unstable_by_key(|(seq, _)| *seq);
    let reads = found.into_iter().map(|(seq, path)| async move {
        let bytes = objects.get(&path).await?.bytes().await?.to_vec();
        Ok::<_, EngineError>((seq, bytes))
    });
    futures::stream::iter(reads).buffered(READ_AHEAD).try_collect().await
}

// ----- hashing and checking -----

/// `record` as entry `seq`, chained to `prev_hash`.
fn seal(record: &AuditRecord, seq: u64, prev_hash: &str, at: DateTime<Utc>) -> Result<AuditEntry, EngineError> {
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
fn parse(bytes: &[u8]) -> Result<(AuditEntry, String), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let entry: AuditEntry = serde_json::from_value(value.clone()).map_err(|e| format!("not an audit entry: {e}"))?;
    let mut body = value;
    if let Value::Object(map) = &mut body {
        map.remove("hash");
    }
    let expected = entry_hash(&entry.prev_hash, &body);
    Ok((entry, expected))
}

struct Checked {
    entries: Vec<AuditEntry>,
    last: Option<Head>,
    problems: Vec<Problem>,
}

/// Checks entries `start..` (genesis-linked when `start` is 0) and the tail against `head`.
fn check(start: u64, items: Vec<(u64, Vec<u8>)>, head: Option<&Head>) -> Checked {
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
fn check_from(start: u64, mut prev: Option<String>, items: Vec<(u64, Vec<u8>)>) -> Checked {
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
    use crate::session::Role;

    fn record(n: u64) -> AuditRecord {
        let mut r = AuditRecord::new(
            &Principal {
                user: "sam".into(),
                role: Role::Steward,
            },
            AuditRequest::sql(format!("SELECT {n}")),
        );
        r.rows = n;
        r
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
        (dir, store)
    }

    #[tokio::test]
    async fn the_chain_continues_across_reopening() {
        let (_dir, store) = temp_store();
        let log = AuditLog::open(&store).await.expect("open");
        let first = log.append(record(1)).await.expect("append");
        assert_eq!((first.seq, first.prev_hash.as_str()), (0, GENESIS_HASH));
        let second = log.append(record(2)).await.expect("append");
        assert_eq!(second.prev_hash, first.hash);
        drop(log);

        let log = AuditLog::open(&store).await.expect("reopen");
        let third = log.append(record(3)).await.expect("append");
        assert_eq!((third.seq, &third.prev_hash), (2, &second.hash));
        let read = entries(&store).await.expect("entries");
        assert_eq!(read, vec![first, second, third.clone()]);
        let report = verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries_checked, 3);
        assert_eq!(
            report.head,
            Some(Head {
                seq: 2,
                hash: third.hash
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_distinct_contiguous_seqs() {
        let (_dir, store) = temp_store();
        let log = Arc::new(AuditLog::open(&store).await.expect("open"));
        let tasks: Vec<_> = (0..40)
            .map(|n| {
                let log = Arc::clone(&log);
                tokio::spawn(async move { log.append(record(n)).await.expect("append").seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.expect("join"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..40).collect::<Vec<_>>());
        let report = verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries_checked, 40);
    }

    #[tokio::test]
    async fn a_second_writer_steps_over_the_first_writers_entries() {
        let (_dir, store) = temp_store();
        let a = AuditLog::open(&store).await.expect("open a");
        let b = AuditLog::open(&store).await.expect("open b");
        a.append(record(1)).await.expect("a");
        a.append(record(2)).await.expect("a");
        let from_b = b.append(record(3)).await.expect("b retries");
        assert_eq!(from_b.seq, 2);
        assert!(verify(&store).await.expect("verify").is_ok());
    }

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
            "5ee00887f7cdfc172195e128cd24fa9f1e430f7365febfbf14d1ab53420eab10"
        );
        let stored = serde_json::to_vec(&entry).expect("encode");
        let (read, recomputed) = parse(&stored).expect("parse");
        assert_eq!((read, recomputed), (entry.clone(), entry.hash));
    }

    #[test]
    fn the_table_has_a_row_per_entry() {
        let entry = seal(&record(7), 0, GENESIS_HASH, Utc::now()).expect("seal");
        let batch = to_record_batch(&[entry]).expect("batch");
        assert_eq!((batch.num_rows(), batch.num_columns()), (1, 13));
    }
}
