//! One request's view of a snapshot: the snapshot's session state and, for every role but
//! steward, disclosure control installed in it. The SQL policy (one read-only query) is
//! enforced here, in the engine, for every path that takes SQL.

use arrow::array::RecordBatch;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::common::display::{PlanType, StringifiedPlan, ToStringifiedPlan};
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::{Explain, LogicalPlan};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::explain::ExplainExec;
use deltalake::datafusion::sql::parser::{DFParserBuilder, Statement};
use deltalake::datafusion::sql::sqlparser::dialect::dialect_from_str;
use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::catalog::SnapshotContext;
use crate::disclosure::{self, Disclosure, ReleaseStats};
use crate::error::{EngineError, Rule};
use crate::identity::{Principal, Role};
use crate::limits::SqlLimits;

/// The SQL a role may send. No role may change data or the session through SQL: Poplar's
/// data changes only through its loaders. Stewards may use session statements (`SET`,
/// `SHOW`), which affect only their own request.
pub fn sql_options(role: Role) -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(role == Role::Steward)
}

/// How many of a query's largest memory consumers a memory-limit error names (operators,
/// not data).
const TOP_CONSUMERS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(2);

/// What a refused statement's message adds, so the user knows what is allowed.
const READ_ONLY: &str = "Poplar accepts one read-only query: no DDL, DML, COPY, SET or external tables";

/// A statement planned under the caller's policy: the logical plan as written (what the
/// audit log hashes, and what prepared statements describe) and, for a non-steward, the
/// plan disclosure control and the optimizer made of it.
#[derive(Debug, Clone)]
pub struct PlannedStatement {
    /// Private with `optimized`: replacing one without the other would run a stale plan.
    logical: LogicalPlan,
    /// `None` for stewards, and once parameters are bound (the plan must be optimized
    /// again with their values).
    optimized: Option<LogicalPlan>,
}

impl PlannedStatement {
    /// The plan as written: its schema, and the hash the audit log records.
    pub fn logical(&self) -> &LogicalPlan {
        &self.logical
    }

    /// Bind a prepared statement's parameters (`$1`, …).
    pub fn with_param_values(self, params: Vec<ScalarValue>) -> Result<Self, EngineError> {
        Ok(Self {
            logical: self.logical.with_param_values(params)?,
            optimized: None,
        })
    }
}

/// A request's session: the caller, the snapshot's state with their policy installed, and
/// what disclosure control did to the answer (for the audit log).
pub struct QuerySession {
    state: SessionState,
    limits: SqlLimits,
    /// The request's own runtime (its memory pool), if limited.
    runtime: Option<Arc<RuntimeEnv>>,
    pub principal: Principal,
    pub stats: Arc<ReleaseStats>,
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl QuerySession {
    /// A session for `principal`. Without disclosure control configured, only stewards may
    /// query: Poplar never answers anyone else without it.
    pub fn new(
        snapshot: &SnapshotContext,
        principal: &Principal,
        disclosure: Option<&Disclosure>,
    ) -> Result<Self, EngineError> {
        let limits = SqlLimits::default();
        let stats = Arc::new(ReleaseStats::default());
        let state = snapshot.context.state();
        if principal.is_steward() {
            return Ok(Self {
                state,
                limits,
                runtime: None,
                principal: principal.clone(),
                stats,
            });
        }
        let Some(disclosure) = disclosure else {
            return Err(EngineError::refused(
                Rule::NoDisclosureControl,
                format!("role {} may not run SQL here (stewards only)", principal.role),
            ));
        };
        let builder = SessionStateBuilder::new_from_existing(state);
        let state = disclosure::install(builder, disclosure, principal, snapshot.steward_only(), stats.clone()).build();
        Ok(Self {
            state,
            limits,
            runtime: None,
            principal: principal.clone(),
            stats,
        })
    }

    /// Measure the SQL against `limits` instead of the defaults (a server's configuration).
    pub fn with_limits(mut self, limits: SqlLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Give this request its own memory pool of `bytes`: operators that can spill (sorts,
    /// aggregations) spill to disk within it, and one that cannot fails with
    /// `ResourcesExhausted`, which the gate turns into a memory-limit refusal. The pool is
    /// the request's alone, so one heavy query cannot take another's memory.
    ///
    /// Only execution uses the pool, so it goes into the request's task context (see
    /// [`Self::task_ctx`]); the session state, already built, is left as it is.
    pub fn with_memory_limit(mut self, bytes: usize) -> Result<Self, EngineError> {
        let pool = TrackConsumersPool::new(FairSpillPool::new(bytes), TOP_CONSUMERS);
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.state.runtime_env())
            .with_memory_pool(Arc::new(pool))
            .build_arc()?;
        self.runtime = Some(runtime);
        Ok(self)
    }

    /// Plan the caller's SQL under their role's policy: exactly one read-only statement,
    /// checked by `SQLOptions`; for non-stewards, also through disclosure control now, so a
    /// refused statement fails here (at prepare time for prepared statements) with the
    /// rule named.
    pub async fn plan(&self, sql: &str) -> Result<PlannedStatement, EngineError> {
        let statement = self.one_statement(sql)?;
        let plan = self.state.statement_to_plan(statement).await?;
        // `verify_plan` fails only for what the role may not do: every failure is a refusal.
        if let Err(e) = sql_options(self.principal.role).verify_plan(&plan) {
            let message = e.strip_backtrace();
            let message = message.trim_start_matches("Error during planning: ");
            return Err(EngineError::refused(
                Rule::ReadOnlySql,
                format!("{message} ({READ_ONLY})"),
            ));
        }
        if self.principal.is_steward() {
            return Ok(PlannedStatement {
                logical: plan,
                optimized: None,
            });
        }
        if let LogicalPlan::Analyze(_) = plan {
            return Err(EngineError::refused(
                Rule::ExplainAnalyze,
                "EXPLAIN ANALYZE reports true row counts (EXPLAIN is fine)",
            ));
        }
        // Disclosure control is an analyzer rule: run it now so a refusal comes back
        // from planning, not half-way through an answer. `optimize` (not `analyzed`)
        // because it knows EXPLAIN: it analyzes the plan being explained. What it returns
        // is kept, so that making the plan physical does not analyze and optimize again.
        let optimized = self.state.optimize(&plan)?;
        Ok(PlannedStatement {
            logical: plan,
            optimized: Some(optimized),
        })
    }

    /// The one statement in `sql`. Parsed here rather than by DataFusion so that several
    /// statements are a typed refusal, not an error message to search, and so that its size
    /// is measured (for every role: a steward's query can take the server down too) before
    /// anything recursive walks it.
    fn one_statement(&self, sql: &str) -> Result<Statement, EngineError> {
        self.limits.check_text(sql)?;
        let options = self.state.config_options();
        let dialect = dialect_from_str(options.sql_parser.dialect)
            .ok_or_else(|| EngineError::Config(format!("unsupported SQL dialect {}", options.sql_parser.dialect)))?;
        let mut statements = DFParserBuilder::new(sql)
            .with_dialect(dialect.as_ref())
            .with_recursion_limit(options.sql_parser.recursion_limit.get())
            .build()?
            .parse_statements()?;
        match (statements.pop_front(), statements.is_empty()) {
            (Some(statement), true) => {
                self.limits.check_statement(&statement)?;
                Ok(statement)
            }
            (None, _) => Err(EngineError::InvalidRequest("no SQL statement was sent".into())),
            (Some(_), false) => Err(EngineError::refused(
                Rule::ReadOnlySql,
                format!("{} statements in one request ({READ_ONLY})", statements.len() + 1),
            )),
        }
    }

    /// The plan after DataFusion's analyzer and, for non-stewards, disclosure control:
    /// what will actually run (before optimisation).
    pub fn analyzed(&self, plan: &LogicalPlan) -> Result<LogicalPlan, EngineError> {
        Ok(self
            .state
            .analyzer()
            .execute_and_check(plan.clone(), self.state.config_options(), |_, _| {})?)
    }

    /// Run a planned query (a steward's `SET` changes only this request's copy).
    pub async fn execute(&self, plan: LogicalPlan) -> Result<DataFrame, EngineError> {
        let ctx = deltalake::datafusion::prelude::SessionContext::new_with_state(self.state.clone());
        Ok(ctx.execute_logical_plan(plan).await?)
    }

    /// The physical plan of a planned statement. A non-steward's statement was analyzed
    /// (disclosure control) and optimized when it was planned, so only the physical planner
    /// runs here (and a non-steward's `EXPLAIN` gets its logical plans only: see
    /// `logical_only`); a steward's goes through `execute`, which applies a `SET`.
    pub async fn physical(&self, planned: PlannedStatement) -> Result<Arc<dyn ExecutionPlan>, EngineError> {
        match planned.optimized {
            Some(LogicalPlan::Explain(explain)) => Ok(logical_only(&explain)),
            Some(optimized) => Ok(self
                .state
                .query_planner()
                .create_physical_plan(&optimized, &self.state)
                .await?),
            None => Ok(self.execute(planned.logical).await?.create_physical_plan().await?),
        }
    }

    /// Plan, run (with the request's task context) and collect.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
        let physical = self.physical(self.plan(sql).await?).await?;
        Ok(deltalake::datafusion::physical_plan::collect(physical, self.task_ctx()).await?)
    }

    /// What a plan of this request executes with: the session's, with the request's own
    /// memory pool if it has one.
    pub fn task_ctx(&self) -> Arc<TaskContext> {
        match &self.runtime {
            Some(runtime) => Arc::new(TaskContext::from(&self.state).with_runtime(runtime.clone())),
            None => self.state.task_ctx(),
        }
    }
}

/// What a non-steward's `EXPLAIN` answers: the logical plans, which follow from the SQL,
/// the schema and disclosure control alone, and a note where the physical plan would be.
/// The physical plan is made from the data: it lists the files a scan reads after pruning
/// them on each file's bounds (whether an organisation has any event after a date is a
/// count below the threshold), and it orders joins on row counts.
fn logical_only(explain: &Explain) -> Arc<dyn ExecutionPlan> {
    let mut plans = explain.stringified_plans.clone();
    if explain.logical_optimization_succeeded {
        plans.push(explain.plan.to_stringified(PlanType::FinalLogicalPlan));
        plans.push(StringifiedPlan::new(
            PlanType::FinalPhysicalPlan,
            PHYSICAL_PLAN_WITHHELD,
        ));
    }
    Arc::new(ExplainExec::new(
        Arc::clone(explain.schema.inner()),
        plans,
        explain.verbose,
    ))
}

/// Shown to non-stewards in place of the physical plan (see `logical_only`).
pub const PHYSICAL_PLAN_WITHHELD: &str = "withheld under disclosure control: the physical plan names the files read and orders joins on row counts, which depend on the data (a steward can see it)";
