//! Registers as of any date. `register_membership` and `registered_population` are as of
//! the snapshot's reference date; `registers_on(DATE '2024-03-31')` and
//! `population_on(DATE '2024-03-31')` answer the same question as of the date asked, with
//! the same columns, from the same definitions (`poplar_queries::registers`).
//!
//! A table function is called while the query is planned, which is synchronous, so it
//! returns a lazy table: its schema is fixed when the function is registered, and its
//! `scan` plans the register SQL for the date (trusted internal SQL, on the snapshot's own
//! session) and hands back that physical plan. Nothing is read until the query runs.
//!
//! On the reference date itself, `registers_on` reads the snapshot's `register_membership`
//! (computed once, from the same SQL) instead of recomputing it: the measures service asks
//! for the latest period far more often than any other.

use chrono::NaiveDate;
use deltalake::datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use deltalake::datafusion::common::{Result, ScalarValue, plan_err};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::execution::context::SessionState;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableType, col};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::SessionContext;
use poplar_queries::registers::{latest_codes_sql, membership_sql, registered_population_sql};
use std::sync::Arc;

use crate::EngineError;
use poplar_loaders::dates::from_date32 as date_from_days;

/// The working table of each person's latest code per cluster, present only while the
/// registers are computed (a CTE here, a temporary table in the catalog).
pub(crate) const LATEST_CODES: &str = "_latest_codes";

/// What a function computes as of its date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// `registers_on`: the columns of `register_membership`.
    Registers,
    /// `population_on`: the columns of `registered_population`.
    Population,
}

impl Question {
    fn function_name(self) -> &'static str {
        match self {
            Question::Registers => "registers_on",
            Question::Population => "population_on",
        }
    }

    fn sql(self, on: NaiveDate) -> String {
        let on = format!("DATE '{}'", on.format("%Y-%m-%d"));
        match self {
            Question::Registers => {
                format!(
                    "WITH {LATEST_CODES} AS ({}) {}",
                    latest_codes_sql(&on),
                    membership_sql(LATEST_CODES, &on)
                )
            }
            Question::Population => registered_population_sql(&on),
        }
    }
}

/// Register `registers_on` and `population_on` on a snapshot's context. Call it once the
/// snapshot's tables (and, with a reference date, `register_membership`) are registered:
/// their schemas are fixed now, from the planned SQL.
pub async fn register(ctx: &SessionContext, reference: Option<NaiveDate>) -> Result<(), EngineError> {
    // The table's plan becomes part of the caller's plan, and the caller's physical
    // optimizer optimizes the whole. Optimizing it here as well would run the optimizer
    // twice over it: the second pass can swap a hash join the first gave a dynamic
    // filter, which DataFusion refuses (an internal error on some data sizes).
    let state = Arc::new(
        deltalake::datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
            .with_physical_optimizer_rules(Vec::new())
            .build(),
    );
    for question in [Question::Registers, Question::Population] {
        let probe = state.create_logical_plan(&question.sql(NaiveDate::MIN)).await?;
        let schema = Arc::new(probe.schema().as_arrow().clone());
        ctx.register_udtf(
            question.function_name(),
            Arc::new(OnDate {
                question,
                state: state.clone(),
                schema,
                reference,
            }),
        );
    }
    Ok(())
}

/// The function: checks its argument and returns the table for that date.
#[derive(Debug)]
struct OnDate {
    question: Question,
    state: Arc<SessionState>,
    schema: arrow::datatypes::SchemaRef,
    /// The snapshot's reference date, on which `register_membership` already holds the
    /// answer.
    reference: Option<NaiveDate>,
}

impl OnDate {
    fn date_argument(&self, args: &[Expr]) -> Result<NaiveDate> {
        let name = self.question.function_name();
        let expected = format!("{name} takes one date, e.g. {name}(DATE '2025-03-31')");
        let [arg] = args else {
            return plan_err!("{expected}; got {} arguments", args.len());
        };
        let parsed = match arg {
            Expr::Literal(ScalarValue::Date32(Some(days)), _) => date_from_days(*days),
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
            _ => None,
        };
        match parsed {
            Some(date) => Ok(date),
            None => plan_err!("{expected}; got {arg}"),
        }
    }
}

impl TableFunctionImpl for OnDate {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let on = self.date_argument(args.exprs())?;
        let sql = match self.question {
            Question::Registers if Some(on) == self.reference => {
                "SELECT person_id, practice, register, latest_code_date FROM register_membership".to_string()
            }
            Question::Registers | Question::Population => self.question.sql(on),
        };
        Ok(Arc::new(AsOf {
            sql,
            state: self.state.clone(),
            schema: self.schema.clone(),
        }))
    }
}

/// One call's table: planned only when scanned.
#[derive(Debug)]
struct AsOf {
    sql: String,
    state: Arc<SessionState>,
    schema: arrow::datatypes::SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for AsOf {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _caller: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut plan = self.state.create_logical_plan(&self.sql).await?;
        if let Some(indices) = projection {
            let columns = plan.schema().columns();
            let mut keep = Vec::with_capacity(indices.len());
            for &i in indices {
                match columns.get(i) {
                    Some(c) => keep.push(col(c.clone())),
                    None => return plan_err!("column {i} is out of range for {}", self.schema),
                }
            }
            plan = LogicalPlanBuilder::from(plan).project(keep)?.build()?;
        }
        self.state.create_physical_plan(&plan).await
    }
}
