//! Everything the engine can refuse or fail at, and the one classification of it that
//! decides both the gRPC code a client sees and the outcome the audit log records.
//!
//! A refusal carries a typed [`Rule`]: the audit log, the gRPC status (`poplar-rule`
//! metadata) and tests read the rule from the type, never from the message. Messages name
//! the rule or the fault, never a value from the data.

use deltalake::datafusion::error::DataFusionError;
use thiserror::Error;

/// A rule a request can break. Each has a stable id (in the audit log and in the
/// `poplar-rule` metadata of a refused call's status) and a title that messages start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Disclosure control rule 1: answers summarise people; no person-level rows, nothing
    /// derived from `person_id`.
    AggregateOnly,
    /// Disclosure control rule 1: people's records combine only within one person.
    SamePerson,
    /// Disclosure control rule 3: only aggregates Poplar can release (no min/max, …).
    ReleasedAggregates,
    /// Tables only stewards may read (feed quality, loads, opt-outs, the audit log).
    StewardOnlyData,
    /// Disclosure control rule 5: the user's daily answer budget is spent.
    QueryBudget,
    /// `EXPLAIN ANALYZE` reports true row counts: stewards only.
    ExplainAnalyze,
    /// One read-only query per request: no DDL, DML, `COPY`, `SET` or external tables.
    ReadOnlySql,
    /// Without disclosure control configured (no noise key), only stewards are answered.
    NoDisclosureControl,
    /// The SQL is too long, nests too deep, or has too many expressions or list items
    /// (checked before planning: see `limits`).
    RequestSize,
    /// The query needed more memory than the server gives one query.
    MemoryLimit,
    /// The query ran longer than the server's time limit and was stopped.
    TimeLimit,
    /// Too many failed sign-ins for this user name: further attempts wait.
    SignInThrottle,
    /// Disclosure control rule 7: nothing in a non-steward's query may fail while running
    /// because of a value (whether it failed would tell about the people it read).
    ErrorFree,
    /// Researchers run approved studies only: no ad-hoc SQL.
    ApprovedStudiesOnly,
    /// Who may do what to a study: authors submit, run and withdraw their own; stewards
    /// review, revoke and check outputs; a study runs under its author's disclosure control.
    StudyRoles,
    /// No one reviews their own study, and no steward approves one twice.
    IndependentReview,
    /// The study's state does not allow this (e.g. a run before approval).
    StudyState,
    /// A parameter value is missing, unknown, of the wrong type or outside its bounds.
    StudyParameters,
    /// The approval's run quota is spent.
    RunQuota,
    /// The approval's expiry has passed.
    ApprovalExpired,
    /// What was approved no longer matches (the SQL, its parameters or the disclosure
    /// policy changed): the study must be approved again.
    ApprovalBinding,
    /// A held (or withheld) output is for stewards only until it is released.
    HeldOutput,
}

impl Rule {
    pub const ALL: [Rule; 22] = [
        Rule::AggregateOnly,
        Rule::SamePerson,
        Rule::ReleasedAggregates,
        Rule::StewardOnlyData,
        Rule::QueryBudget,
        Rule::ExplainAnalyze,
        Rule::ReadOnlySql,
        Rule::NoDisclosureControl,
        Rule::RequestSize,
        Rule::MemoryLimit,
        Rule::TimeLimit,
        Rule::SignInThrottle,
        Rule::ErrorFree,
        Rule::ApprovedStudiesOnly,
        Rule::StudyRoles,
        Rule::IndependentReview,
        Rule::StudyState,
        Rule::StudyParameters,
        Rule::RunQuota,
        Rule::ApprovalExpired,
        Rule::ApprovalBinding,
        Rule::HeldOutput,
    ];

    /// The stable identifier recorded in the audit log and sent in `poplar-rule`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::AggregateOnly => "aggregate_only",
            Rule::SamePerson => "same_person",
            Rule::ReleasedAggregates => "released_aggregates",
            Rule::StewardOnlyData => "steward_only_data",
            Rule::QueryBudget => "query_budget",
            Rule::ExplainAnalyze => "explain_analyze",
            Rule::ReadOnlySql => "read_only_sql",
            Rule::NoDisclosureControl => "no_disclosure_control",
            Rule::RequestSize => "request_size",
            Rule::MemoryLimit => "memory_limit",
            Rule::TimeLimit => "time_limit",
            Rule::SignInThrottle => "sign_in_throttle",
            Rule::ErrorFree => "error_free",
            Rule::ApprovedStudiesOnly => "approved_studies_only",
            Rule::StudyRoles => "study_roles",
            Rule::IndependentReview => "independent_review",
            Rule::StudyState => "study_state",
            Rule::StudyParameters => "study_parameters",
            Rule::RunQuota => "run_quota",
            Rule::ApprovalExpired => "approval_expired",
            Rule::ApprovalBinding => "approval_binding",
            Rule::HeldOutput => "held_output",
        }
    }

    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// How a refusal's message begins, as users read it (and as docs/disclosure-control.md
    /// names the rules).
    pub fn title(self) -> &'static str {
        match self {
            Rule::AggregateOnly => "disclosure control, rule 1 (aggregate only)",
            Rule::SamePerson => "disclosure control, rule 1 (people's records are combined only within one person)",
            Rule::ReleasedAggregates => "disclosure control, rule 3 (released aggregates)",
            Rule::StewardOnlyData => "disclosure control, steward-only data",
            Rule::QueryBudget => "disclosure control, rule 5 (query budget)",
            Rule::ExplainAnalyze => "disclosure control, EXPLAIN ANALYZE is for stewards only",
            Rule::ReadOnlySql => "SQL policy (one read-only query)",
            Rule::NoDisclosureControl => "access (this server has no disclosure control configured)",
            Rule::RequestSize => "request limits (size of the SQL)",
            Rule::MemoryLimit => "resource limits (memory for one query)",
            Rule::TimeLimit => "resource limits (time for one query)",
            Rule::SignInThrottle => "sign-in limits (too many failed attempts)",
            Rule::ErrorFree => "disclosure control, rule 7 (no run-time errors)",
            Rule::ApprovedStudiesOnly => "studies (researchers run approved studies only, not ad-hoc SQL)",
            Rule::StudyRoles => "studies (who may do this)",
            Rule::IndependentReview => "studies (independent review: never one's own, one vote per steward)",
            Rule::StudyState => "studies (not allowed in the study's state)",
            Rule::StudyParameters => "studies (parameter values within their approved bounds)",
            Rule::RunQuota => "studies (run quota spent)",
            Rule::ApprovalExpired => "studies (approval expired)",
            Rule::ApprovalBinding => "studies (what was approved no longer matches)",
            Rule::HeldOutput => "studies (output held for checking)",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    /// No credentials, or credentials that do not match a user or a live session.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The request breaks a rule.
    #[error("{rule}: {message}")]
    Refused { rule: Rule, message: String },
    /// The request is malformed (a bad handle, bad parameters, SQL that does not plan).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("query failed: {0}")]
    Query(Box<DataFusionError>),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Building or decoding Flight messages.
    #[error("flight: {0}")]
    Flight(Box<arrow_flight::error::FlightError>),
    #[error("landed data: {0}")]
    Store(Box<poplar_loaders::LoaderError>),
    #[error("delta table: {0}")]
    Delta(Box<deltalake::DeltaTableError>),
    #[error("users file {path}: {reason}")]
    Users { path: String, reason: String },
    #[error("codelists: {0}")]
    Codelists(#[from] poplar_queries::QueryError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The audit log cannot be read or written, or fails verification (names the first bad
    /// entry). No answer is given without it.
    #[error("audit log: {0}")]
    Audit(String),
    /// The server itself: binding the address, TLS set-up, a task that died.
    #[error("server: {0}")]
    Server(String),
    /// A landed table that a cluster cannot read as plain Parquet files (a deletion vector,
    /// column mapping: see `files`). Never skipped: reading it plainly would be wrong.
    #[error("table {table} cannot be read on a cluster: {reason}")]
    NotPlainParquet { table: String, reason: String },
}

/// What kind of end a request came to: one classification for the gRPC code and the audit
/// outcome, so the two can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Unauthenticated,
    Refused(Rule),
    /// The caller's request or SQL was wrong: their fault, safe to tell them why.
    BadRequest,
    /// Poplar's fault (or its storage's).
    Internal,
}

impl EngineError {
    pub fn refused(rule: Rule, message: impl Into<String>) -> Self {
        EngineError::Refused {
            rule,
            message: message.into(),
        }
    }

    /// The one classification. No catch-all arm: a new error kind must decide here.
    pub fn class(&self) -> Class {
        use DataFusionError as D;
        match self {
            EngineError::Unauthenticated(_) => Class::Unauthenticated,
            EngineError::Refused { rule, .. } => Class::Refused(*rule),
            EngineError::InvalidRequest(_) => Class::BadRequest,
            // The caller's SQL was wrong (unknown table, bad syntax, type error).
            EngineError::Query(e) => match e.as_ref() {
                D::Plan(_) | D::SQL(..) | D::SchemaError(..) | D::NotImplemented(_) => Class::BadRequest,
                _ => Class::Internal,
            },
            EngineError::Arrow(_)
            | EngineError::Flight(_)
            | EngineError::Store(_)
            | EngineError::Delta(_)
            | EngineError::Users { .. }
            | EngineError::Codelists(_)
            | EngineError::Config(_)
            | EngineError::ObjectStore(_)
            | EngineError::Audit(_)
            | EngineError::Server(_)
            | EngineError::NotPlainParquet { .. } => Class::Internal,
        }
    }

    /// The rule this error refuses under, if it is a refusal.
    pub fn rule(&self) -> Option<Rule> {
        match self.class() {
            Class::Refused(rule) => Some(rule),
            Class::Unauthenticated | Class::BadRequest | Class::Internal => None,
        }
    }

    /// Carry this error through DataFusion (an analyzer rule or a table function can only
    /// return a `DataFusionError`); `From<DataFusionError>` unwraps it again.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// The engine error carried inside a DataFusion error, however DataFusion wrapped it.
fn carried(e: &DataFusionError) -> Option<&EngineError> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<EngineError>(),
        DataFusionError::Context(_, inner) => carried(inner),
        DataFusionError::Shared(inner) => carried(inner),
        _ => None,
    }
}

/// Whether DataFusion ran out of a query's memory pool, however it wrapped the error.
fn out_of_memory(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::ResourcesExhausted(_) => true,
        DataFusionError::Context(_, inner) => out_of_memory(inner),
        DataFusionError::Shared(inner) => out_of_memory(inner),
        DataFusionError::External(inner) => inner.downcast_ref::<DataFusionError>().is_some_and(out_of_memory),
        _ => false,
    }
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        if out_of_memory(&e) {
            // DataFusion's message names operators and byte counts, never data, but the
            // user needs what to do rather than which operator.
            return EngineError::refused(
                Rule::MemoryLimit,
                "the query needed more memory than one query may use; narrow it (fewer groups, a smaller join) and try again",
            );
        }
        match carried(&e) {
            Some(EngineError::Refused { rule, message }) => EngineError::refused(*rule, message.clone()),
            Some(EngineError::InvalidRequest(message)) => EngineError::InvalidRequest(message.clone()),
            _ => EngineError::Query(Box::new(e)),
        }
    }
}

impl From<poplar_loaders::LoaderError> for EngineError {
    fn from(e: poplar_loaders::LoaderError) -> Self {
        EngineError::Store(Box::new(e))
    }
}

impl From<arrow_flight::error::FlightError> for EngineError {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        EngineError::Flight(Box::new(e))
    }
}

impl From<deltalake::DeltaTableError> for EngineError {
    fn from(e: deltalake::DeltaTableError) -> Self {
        EngineError::Delta(Box::new(e))
    }
}

/// The gRPC status for an error: the code from [`EngineError::class`], and for a refusal
/// the rule's id in `poplar-rule` metadata so clients can act on it without parsing text.
impl From<EngineError> for tonic::Status {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e.class() {
            Class::Unauthenticated => tonic::Status::unauthenticated(message),
            Class::Refused(rule) => {
                let code = match rule {
                    Rule::QueryBudget | Rule::MemoryLimit | Rule::SignInThrottle => tonic::Code::ResourceExhausted,
                    Rule::TimeLimit => tonic::Code::DeadlineExceeded,
                    Rule::RequestSize | Rule::StudyParameters => tonic::Code::InvalidArgument,
                    Rule::RunQuota => tonic::Code::ResourceExhausted,
                    Rule::StudyState | Rule::ApprovalExpired | Rule::ApprovalBinding => tonic::Code::FailedPrecondition,
                    Rule::AggregateOnly
                    | Rule::SamePerson
                    | Rule::ReleasedAggregates
                    | Rule::StewardOnlyData
                    | Rule::ExplainAnalyze
                    | Rule::ReadOnlySql
                    | Rule::NoDisclosureControl
                    | Rule::ErrorFree
                    | Rule::ApprovedStudiesOnly
                    | Rule::StudyRoles
                    | Rule::IndependentReview
                    | Rule::HeldOutput => tonic::Code::PermissionDenied,
                };
                let mut metadata = tonic::metadata::MetadataMap::new();
                metadata.insert(RULE_METADATA, tonic::metadata::MetadataValue::from_static(rule.id()));
                tonic::Status::with_metadata(code, message, metadata)
            }
            Class::BadRequest => tonic::Status::invalid_argument(message),
            Class::Internal => tonic::Status::internal(message),
        }
    }
}

/// The metadata key of a refused call's status that holds the rule's id.
pub const RULE_METADATA: &str = "poplar-rule";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_rule_through_datafusion() {
        let carried = EngineError::refused(Rule::SamePerson, "join on person_id").into_datafusion();
        let wrapped = DataFusionError::Context("analyzer".into(), Box::new(carried));
        let back = EngineError::from(wrapped);
        assert_eq!(back.rule(), Some(Rule::SamePerson));
        assert!(back.to_string().starts_with(Rule::SamePerson.title()), "{back}");
    }

    #[test]
    fn the_status_carries_the_rule_id() {
        let status = tonic::Status::from(EngineError::refused(Rule::QueryBudget, "spent"));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let id = status.metadata().get(RULE_METADATA).and_then(|v| v.to_str().ok());
        assert_eq!(id, Some("query_budget"));
        let status = tonic::Status::from(EngineError::InvalidRequest("bad".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.metadata().get(RULE_METADATA).is_none());
    }

    #[test]
    fn rule_ids_are_unique_and_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_id(rule.id()), Some(rule));
        }
        let mut ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
    }
}
