//! Who may run what. Roles come from the users file; the SQL policy is enforced here, in
//! the engine, for every path that takes SQL.

use arrow::array::RecordBatch;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::EngineError;
use crate::catalog::Loaded;
use crate::disclosure::budget::Budget;
use crate::disclosure::{DisclosureControl, Policy, PoplarQueryPlanner, ReleaseStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Commissioner,
    Analyst,
    Researcher,
    Steward,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Commissioner => "commissioner",
            Role::Analyst => "analyst",
            Role::Researcher => "researcher",
            Role::Steward => "steward",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "commissioner" => Ok(Role::Commissioner),
            "analyst" => Ok(Role::Analyst),
            "researcher" => Ok(Role::Researcher),
            "steward" => Ok(Role::Steward),
            other => Err(format!(
                "unknown role {other:?} (commissioner, analyst, researcher, steward)"
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

/// The SQL a role may send. No role may change data or the session through SQL: Poplar's
/// data changes only through its loaders. Stewards may use session statements (`SET`,
/// `SHOW`), which affect only their own request.
pub fn sql_options(role: Role) -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(role == Role::Steward)
}

/// Disclosure control as a server runs it: the policy and the users' daily budgets.
#[derive(Debug)]
pub struct Disclosure {
    pub policy: Arc<Policy>,
    pub budget: Budget,
}

impl Disclosure {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
            budget: Budget::default(),
        }
    }
}

/// One request's view of a snapshot: the snapshot's session state and, for every role but
/// steward, the disclosure-control rule and release operator installed in it. Every path
/// that runs SQL (Flight SQL now, measures and studies later) goes through here.
pub struct QuerySession {
    state: SessionState,
    pub principal: Principal,
    /// What disclosure control did to this request's answer (for the audit log).
    pub stats: Arc<ReleaseStats>,
}

impl QuerySession {
    /// A session for `principal`. Without disclosure control configured, only stewards may
    /// query: Poplar never answers anyone else without it.
    pub fn new(loaded: &Loaded, principal: &Principal, disclosure: Option<&Disclosure>) -> Result<Self, EngineError> {
        let stats = Arc::new(ReleaseStats::default());
        let state = loaded.context.state();
        if principal.role == Role::Steward {
            return Ok(Self {
                state,
                principal: principal.clone(),
                stats,
            });
        }
        let Some(disclosure) = disclosure else {
            return Err(EngineError::PermissionDenied(format!(
                "role {} may not run SQL: this server has no disclosure control configured (stewards only)",
                principal.role.as_str()
            )));
        };
        let rule = DisclosureControl {
            policy: disclosure.policy.clone(),
            noised: disclosure.policy.noised(principal.role),
            stats: stats.clone(),
        };
        let state = SessionStateBuilder::new_from_existing(state)
            .with_analyzer_rule(Arc::new(rule))
            .with_query_planner(Arc::new(PoplarQueryPlanner))
            .build();
        Ok(Self {
            state,
            principal: principal.clone(),
            stats,
        })
    }

    /// Plan the caller's SQL under their role's policy: one read-only query, checked by
    /// `SQLOptions`; for non-stewards, also through disclosure control now, so a refused
    /// statement fails here (at prepare time for prepared statements) with the rule named.
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan, EngineError> {
        let plan = self.state.create_logical_plan(sql).await.map_err(refusal)?;
        sql_options(self.principal.role).verify_plan(&plan).map_err(refusal)?;
        if self.principal.role != Role::Steward {
            if let LogicalPlan::Analyze(_) = plan {
                return Err(EngineError::Refused(
                    "EXPLAIN ANALYZE reports true row counts; it is for stewards only (EXPLAIN is fine)".into(),
                ));
            }
            self.state.optimize(&plan)?;
        }
        Ok(plan)
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

    /// Plan, run and collect.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
        let plan = self.plan(sql).await?;
        Ok(self.execute(plan).await?.collect().await?)
    }

    pub fn task_ctx(&self) -> Arc<deltalake::datafusion::execution::TaskContext> {
        self.state.task_ctx()
    }
}

/// Turn DataFusion's policy errors into a refusal that names what was refused.
fn refusal(e: deltalake::datafusion::error::DataFusionError) -> EngineError {
    let message = e.strip_backtrace();
    if message.contains("not supported") || message.contains("only supports a single SQL statement") {
        EngineError::Refused(format!(
            "{} (Poplar accepts one read-only query: no DDL, DML, COPY, SET or external tables)",
            message.trim_start_matches("Error during planning: ")
        ))
    } else {
        EngineError::Query(e)
    }
}
