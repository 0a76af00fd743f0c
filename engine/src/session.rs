//! Who may run what. Roles come from the users file; the SQL policy is enforced here, in
//! the engine, for every path that takes SQL.

use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use crate::catalog::Loaded;
use crate::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
            other => Err(format!("unknown role {other:?} (commissioner, analyst, researcher, steward)")),
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

/// Plan a caller's SQL under their role's policy. Until disclosure control is in place,
/// only stewards may run SQL: Poplar never answers anyone else without it.
pub async fn plan_sql(loaded: &Loaded, principal: &Principal, sql: &str) -> Result<LogicalPlan, EngineError> {
    if principal.role != Role::Steward {
        return Err(EngineError::PermissionDenied(format!(
            "role {} may not run SQL yet: Poplar answers only through disclosure control, which is not enabled for SQL (stewards only)",
            principal.role.as_str()
        )));
    }
    let state = loaded.context.state();
    let plan = state.create_logical_plan(sql).await.map_err(refusal)?;
    sql_options(principal.role).verify_plan(&plan).map_err(refusal)?;
    Ok(plan)
}

/// Run a planned query on a per-request copy of the snapshot's session (a steward's `SET`
/// changes only that copy).
pub async fn execute(loaded: &Loaded, plan: LogicalPlan) -> Result<DataFrame, EngineError> {
    let ctx = deltalake::datafusion::prelude::SessionContext::new_with_state(loaded.context.state());
    Ok(ctx.execute_logical_plan(plan).await?)
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
