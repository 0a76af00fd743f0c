//! The request path: the one way any service — Flight SQL now, measures and studies next —
//! turns a caller's request into an answer:
//!
//! ```text
//! credentials → principal → policy (role, SQL options, disclosure control) → plan
//!   → budget → execute → release (Protect) → audit
//! ```
//!
//! Transports only translate: they hand the gate credentials and a request and get back a
//! [`Principal`], a schema or an [`Answer`], or an [`EngineError`] to map to their own
//! status. Every exit is audited here: a refusal or failure as one entry; an answer as a
//! provisional entry before its first row leaves and one that completes it; a catalog call
//! as one entry; a failed sign-in or an unknown token with the user as claimed (never the
//! token). If the audit log cannot be written, no answer is given.

mod answer;
mod guard;
mod throttle;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::scalar::ScalarValue;
use sha2::{Digest, Sha256};

pub use answer::Answer;
use guard::{AuditGuard, elapsed_ms};
use throttle::Throttle;
pub use throttle::{FAILURE_DELAY, MAX_FAILURES};

use crate::audit::{AuditLog, AuditRecord, AuditRequest, Outcome};
use crate::auth::Authenticator;
use crate::catalog::{SnapshotCatalog, SnapshotContext};
use crate::disclosure::Disclosure;
use crate::error::{EngineError, Rule};
use crate::identity::{Principal, Role};
use crate::limits::{Admission, Limits};
use crate::session::{PlannedStatement, QuerySession};

/// The role recorded for a caller who is not authenticated.
const NO_ROLE: &str = "none";

/// Everything a request needs: the snapshot catalog, users, disclosure control and the
/// audit log. Shared by every service of a server.
#[derive(Debug)]
pub struct Gate {
    catalog: Arc<SnapshotCatalog>,
    auth: Arc<Authenticator>,
    /// None: only stewards may query (no disclosure control configured).
    disclosure: Option<Arc<Disclosure>>,
    audit: Arc<AuditLog>,
    limits: Limits,
    /// Slots for running queries (see [`crate::limits`]).
    admission: Admission,
    /// Recent failed sign-ins by user name.
    throttle: Throttle,
}

impl Gate {
    pub fn new(
        catalog: Arc<SnapshotCatalog>,
        auth: Arc<Authenticator>,
        disclosure: Option<Arc<Disclosure>>,
        audit: Arc<AuditLog>,
        limits: Limits,
    ) -> Self {
        Self {
            catalog,
            auth,
            disclosure,
            audit,
            limits,
            admission: Admission::new(limits.query),
            throttle: Throttle::default(),
        }
    }

    /// The disclosure policy non-stewards are answered under (None: stewards only).
    pub fn policy(&self) -> Option<&crate::disclosure::Policy> {
        self.disclosure.as_deref().map(|d| d.policy.as_ref())
    }

    /// The users and their roles.
    pub fn users(&self) -> Vec<(String, crate::identity::Role)> {
        self.auth.users()
    }

    /// The snapshot a request starting now will see.
    pub fn snapshot(&self) -> Arc<SnapshotContext> {
        self.catalog.current()
    }

    /// An earlier snapshot (a study run pinned to what an earlier run read).
    pub async fn pinned_snapshot(
        &self,
        snapshot: poplar_loaders::landing::Snapshot,
    ) -> Result<Arc<SnapshotContext>, EngineError> {
        self.catalog.open_at(snapshot).await
    }

    /// Who sent `bearer` (a session token or a user's own token). A call without one, or
    /// with one that matches no one, is audited under the `rpc` it tried.
    pub async fn authenticate(&self, bearer: Result<&str, EngineError>, rpc: &str) -> Result<Principal, EngineError> {
        match bearer.and_then(|token| self.auth.check_bearer(token)) {
            Ok(principal) => Ok(principal),
            Err(e) => {
                // As slow as a failed sign-in: guessing tokens here is no faster.
                tokio::time::sleep(FAILURE_DELAY).await;
                Err(self.refuse_anonymous(rpc, e).await)
            }
        }
    }

    /// Audit a call refused before anyone could be named (no or malformed credentials) and
    /// return the error to send.
    pub async fn refuse_anonymous(&self, rpc: &str, error: EngineError) -> EngineError {
        let record = AuditRecord::claimed("", NO_ROLE, AuditRequest::Call { rpc: rpc.to_string() });
        self.record_end(record, Instant::now(), error).await
    }

    /// Basic sign-in: `user` with their token as password. Returns the principal and a new
    /// session token. Audited either way, with the user name as claimed. A failure is
    /// answered after [`FAILURE_DELAY`]; after [`MAX_FAILURES`] in a window the name is
    /// refused whatever the token (see `throttle`).
    pub async fn sign_in(&self, user: &str, token: &str) -> Result<(Principal, String), EngineError> {
        let started = Instant::now();
        if let Err(throttled) = self.throttle.check(user, started) {
            tokio::time::sleep(FAILURE_DELAY).await;
            let record = AuditRecord::claimed(user, NO_ROLE, AuditRequest::SignIn);
            return Err(self.record_end(record, started, throttled).await);
        }
        match self.auth.sign_in(user, token) {
            Ok((principal, session)) => {
                self.throttle.succeeded(user);
                let mut record = AuditRecord::new(&principal, AuditRequest::SignIn);
                record.duration_ms = elapsed_ms(started);
                self.audit.append(record).await?;
                tracing::info!(user = %principal.user, role = %principal.role, "signed in");
                Ok((principal, session))
            }
            Err(e) => {
                self.throttle.failed(user, started);
                tokio::time::sleep(FAILURE_DELAY).await;
                let record = AuditRecord::claimed(user, NO_ROLE, AuditRequest::SignIn);
                Err(self.record_end(record, started, e).await)
            }
        }
    }

    /// A catalog or server-information call: `answer` runs against the current snapshot,
    /// and the call is audited (answered or failed) before its result is returned.
    pub async fn metadata<T, F, Fut>(&self, principal: &Principal, rpc: &str, answer: F) -> Result<T, EngineError>
    where
        F: FnOnce(Arc<SnapshotContext>) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        let started = Instant::now();
        let record = AuditRecord::new(principal, AuditRequest::Call { rpc: rpc.to_string() });
        match answer(self.snapshot()).await {
            Ok(value) => {
                let mut record = record;
                record.duration_ms = elapsed_ms(started);
                self.audit.append(record).await?;
                Ok(value)
            }
            Err(e) => Err(self.record_end(record, started, e).await),
        }
    }

    /// Start a request by `principal`: what it asks is recorded whatever happens next.
    pub fn request(&self, principal: &Principal, request: AuditRequest) -> Request<'_> {
        Request {
            gate: self,
            principal: principal.clone(),
            record: AuditRecord::new(principal, request),
            started: Instant::now(),
            pinned: None,
        }
    }

    /// Append the entry of a request that ended in `error` and return the error to send.
    /// If the log cannot be written, the audit failure is what the caller gets.
    async fn record_end(&self, mut record: AuditRecord, started: Instant, error: EngineError) -> EngineError {
        record.outcome = Outcome::from(&error);
        record.duration_ms = elapsed_ms(started);
        match self.audit.append(record).await {
            Ok(_) => error,
            Err(audit) => {
                tracing::error!(error = %audit, "could not append to the audit log");
                EngineError::Audit("the audit log could not be written; no answer is given without it".into())
            }
        }
    }
}

/// One request on its way through the gate.
#[derive(Debug)]
pub struct Request<'g> {
    gate: &'g Gate,
    principal: Principal,
    record: AuditRecord,
    started: Instant,
    /// The snapshot to answer from, if not the one served now (a pinned study run).
    pinned: Option<Arc<SnapshotContext>>,
}

/// A statement planned under the caller's policy, ready to run.
struct Planned {
    session: QuerySession,
    physical: Arc<dyn ExecutionPlan>,
}

impl Request<'_> {
    /// Answer from `snapshot` rather than the one served now: a study run reads exactly
    /// the tables (and derived registers) its pin names.
    pub fn on_snapshot(mut self, snapshot: Arc<SnapshotContext>) -> Self {
        self.pinned = Some(snapshot);
        self
    }

    /// End a request that was not a query (a study's transition) as done: audited as
    /// answered. Nothing is given without its entry.
    pub async fn done(mut self) -> Result<(), EngineError> {
        self.record.duration_ms = elapsed_ms(self.started);
        self.gate.audit.append(self.record).await.map(drop).map_err(|e| {
            tracing::error!(error = %e, "could not append to the audit log");
            EngineError::Audit("the audit log could not be written; no answer is given without it".into())
        })
    }

    /// The schema `sql` will answer with, planned under the caller's policy (so a refused
    /// statement is refused here). Only a refusal or failure is audited: the answer itself
    /// is audited when it runs.
    pub async fn describe(mut self, sql: &str, params: Vec<ScalarValue>) -> Result<SchemaRef, EngineError> {
        match self.plan(sql, params).await {
            Ok(planned) => Ok(planned.physical.schema()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// The schema of a statement being prepared: planned under the caller's policy (a
    /// refused statement fails at prepare time), but not made physical, since its
    /// parameters (`$1`, …) have no values yet. Audited only if refused or failed.
    pub async fn prepare(mut self, sql: &str) -> Result<SchemaRef, EngineError> {
        match self.logical(sql).await {
            Ok((_, planned)) => Ok(Arc::new(planned.logical().schema().as_arrow().clone())),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// The whole path: plan under the policy, charge the budget, execute, and return the
    /// answer, whose stream releases through disclosure control (the `Protect` operators
    /// in the plan) and completes the audit entry written before its first row.
    pub async fn run(mut self, sql: &str, params: Vec<ScalarValue>) -> Result<Answer, EngineError> {
        // The time limit runs from here: waiting for a slot counts.
        let time_limit = self.gate.limits.query.time;
        let deadline = tokio::time::Instant::now() + time_limit;
        let slot = match self.gate.admission.admit(time_limit).await {
            Ok(slot) => slot,
            Err(e) => return Err(self.fail(e).await),
        };
        let planned = match self.plan(sql, params).await {
            Ok(planned) => planned,
            Err(e) => return Err(self.fail(e).await),
        };
        if let Err(e) = self.charge_budget() {
            return Err(self.fail(e).await);
        }
        let schema = planned.physical.schema();
        let plan = planned.physical.clone();
        let batches =
            match deltalake::datafusion::physical_plan::execute_stream(planned.physical, planned.session.task_ctx()) {
                Ok(batches) => batches,
                Err(e) => return Err(self.fail(e.into()).await),
            };
        let guard = AuditGuard::begin(
            self.gate.audit.clone(),
            self.record,
            self.started,
            planned.session.stats.clone(),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not append to the audit log");
            EngineError::Audit("the audit log could not be written; no answer is given without it".into())
        })?;
        tracing::info!(user = %self.principal.user, role = %self.principal.role, "answering");
        let running = answer::Running {
            slot,
            deadline,
            time_limit,
            plan,
        };
        Ok(answer::stream(
            schema,
            batches,
            guard,
            self.principal.is_steward(),
            running,
            planned.session.stats.clone(),
        ))
    }

    /// Record an answer a service gives again from its own copy: the same question on the
    /// same snapshot by the same role, whose released answer is the same (sticky noise,
    /// deterministic suppression). Audited as answered, with what the first answer's
    /// release did; not charged to the budget again, since it tells nothing new.
    pub async fn answered_again(
        mut self,
        rows: u64,
        cells_suppressed: u64,
        groups_withheld: u64,
    ) -> Result<(), EngineError> {
        self.record.rows = rows;
        self.record.cells_suppressed = cells_suppressed;
        self.record.groups_withheld = groups_withheld;
        self.record.duration_ms = elapsed_ms(self.started);
        self.gate.audit.append(self.record).await.map(drop).map_err(|e| {
            tracing::error!(error = %e, "could not append to the audit log");
            EngineError::Audit("the audit log could not be written; no answer is given without it".into())
        })
    }

    /// End the request with `error` (e.g. the transport could not decode what was sent):
    /// audited, and returned for the transport to send.
    pub async fn fail(self, error: EngineError) -> EngineError {
        self.gate.record_end(self.record, self.started, error).await
    }

    /// The caller's session and their statement's logical plan, under their policy.
    async fn logical(&mut self, sql: &str) -> Result<(QuerySession, PlannedStatement), EngineError> {
        // Researchers query through approved studies only: their SQL arrives as a study's
        // request (bound to its approval), never as ad-hoc SQL, whatever the transport.
        if self.principal.role == Role::Researcher && matches!(self.record.request, AuditRequest::Sql { .. }) {
            return Err(EngineError::refused(
                Rule::ApprovedStudiesOnly,
                "researchers query through approved studies: submit one with `poplar studies submit` and run it once approved",
            ));
        }
        let snapshot = self.pinned.clone().unwrap_or_else(|| self.gate.snapshot());
        let session = QuerySession::new(&snapshot, &self.principal, self.gate.disclosure.as_deref())?
            .with_limits(self.gate.limits.sql)
            .with_memory_limit(self.gate.limits.query.memory_per_query())?;
        let planned = session.plan(sql).await?;
        self.record.plan_hash = Some(plan_hash(planned.logical()));
        Ok((session, planned))
    }

    async fn plan(&mut self, sql: &str, params: Vec<ScalarValue>) -> Result<Planned, EngineError> {
        let (session, mut planned) = self.logical(sql).await?;
        if !params.is_empty() {
            planned = planned.with_param_values(params)?;
        }
        let physical = session.physical(planned).await?;
        Ok(Planned { session, physical })
    }

    /// Take one answer from the caller's daily budget (noised roles only).
    fn charge_budget(&self) -> Result<(), EngineError> {
        match &self.gate.disclosure {
            Some(disclosure) if !self.principal.is_steward() => {
                disclosure.budget.charge(&disclosure.policy, &self.principal)
            }
            Some(_) | None => Ok(()),
        }
    }
}

/// SHA-256 (hex) of a logical plan as DataFusion prints it, for the audit entry.
pub fn plan_hash(plan: &LogicalPlan) -> String {
    hex::encode(Sha256::digest(plan.display_indent().to_string().as_bytes()))
}
