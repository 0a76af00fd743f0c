//! Limits on the size and shape of a request's SQL, checked before anything plans it.
//!
//! DataFusion's planner, analyzer and optimizer walk expression trees recursively, and some
//! of their passes are super-linear in an expression's depth: a 4 KB query chaining 2,000
//! `+1` terms once overflowed a server thread's stack (and with a bigger stack took two
//! minutes to plan). The SQL parser's own recursion limit covers parentheses and subqueries,
//! not long operator chains, `IN` lists or huge literals. So every statement is measured
//! here, from its text and its syntax tree, and refused (a typed, audited refusal) when it
//! passes a limit. Real cohort SQL sits far inside these limits; a codelist belongs in an
//! `IN` list or a join against `codelists`, not a chain of `OR`s.
//!
//! Running queries are bounded too ([`QueryLimits`]): a few run at once, each with its own
//! memory pool (spilling to disk where DataFusion can, refused where it cannot) and a time
//! limit after which its work is dropped. One heavy query then cannot take the memory or
//! every slot from everyone else.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::sql::parser::Statement;
use deltalake::datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};

pub use crate::connections::ConnectionLimits;
use crate::error::{EngineError, Rule};

/// How large a request's SQL may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Bytes of SQL text (also what the audit log keeps of it).
    pub max_bytes: usize,
    /// Nesting of expressions and subqueries: `a + b + c` is three deep.
    pub max_depth: usize,
    /// Expressions in the whole statement.
    pub max_expressions: usize,
    /// Items of one `IN (…)` list.
    pub max_list_items: usize,
}

impl Default for SqlLimits {
    /// Chosen by measurement (engine tests `request_limits`): a statement at every limit at
    /// once plans in well under a second in a debug build, on a 2 MiB thread stack.
    fn default() -> Self {
        Self {
            max_bytes: 256 << 10,
            max_depth: 200,
            max_expressions: 20_000,
            // deltalake turns a filter into its kernel's predicate recursively, one level
            // per list item: 2,000 items overflowed a debug build's 2 MiB stack.
            max_list_items: 1_000,
        }
    }
}

impl SqlLimits {
    /// Refuse `sql` before it is parsed if its text is too long.
    pub fn check_text(&self, sql: &str) -> Result<(), EngineError> {
        if sql.len() > self.max_bytes {
            return Err(refuse(format!(
                "the SQL is {} bytes; at most {} are accepted",
                sql.len(),
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Refuse a parsed statement whose expressions are too deep, too many, or whose `IN`
    /// list is too long. The walk stops as soon as a limit is passed, so it never recurses
    /// deeper than `max_depth` itself.
    pub fn check_statement(&self, statement: &Statement) -> Result<(), EngineError> {
        let mut measure = Measure {
            limits: *self,
            depth: 0,
            expressions: 0,
        };
        let flow = match statement {
            Statement::Statement(statement) => statement.visit(&mut measure),
            Statement::Explain(explain) => return self.check_statement(&explain.statement),
            // Refused by the read-only policy when planned; nothing here to measure.
            Statement::CreateExternalTable(_) | Statement::CopyTo(_) | Statement::Reset(_) => ControlFlow::Continue(()),
        };
        match flow {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(message) => Err(refuse(message)),
        }
    }
}

/// How much of the server one query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory for all running queries together; each gets an equal share.
    pub memory_bytes: usize,
    /// Queries running at once; more wait for a slot (within their time limit).
    pub concurrent: usize,
    /// From admission to the last row: a query still running then is stopped.
    pub time: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 4 << 30,
            concurrent: 4,
            time: Duration::from_secs(300),
        }
    }
}

impl QueryLimits {
    /// The memory one query may use.
    pub fn memory_per_query(&self) -> usize {
        self.memory_bytes / self.concurrent.max(1)
    }
}

/// Every limit a server applies to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub sql: SqlLimits,
    pub query: QueryLimits,
    pub connections: ConnectionLimits,
}

/// Slots for running queries. A query holds its slot until its answer ends or is dropped.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
}

/// A running query's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(limits: QueryLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
        }
    }

    /// Wait for a slot, at most `wait`. A server whose slots stay busy that long refuses
    /// under the time limit rather than queueing without end.
    pub async fn admit(&self, wait: Duration) -> Result<Slot, EngineError> {
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            Ok(Err(_closed)) => Err(EngineError::Server("the query slots are closed (shutting down)".into())),
            Err(_elapsed) => Err(EngineError::refused(
                Rule::TimeLimit,
                format!(
                    "every query slot stayed busy for {} s; try again shortly",
                    wait.as_secs()
                ),
            )),
        }
    }
}

fn refuse(message: String) -> EngineError {
    EngineError::refused(Rule::RequestSize, message)
}

/// The walk's running measurements.
struct Measure {
    limits: SqlLimits,
    depth: usize,
    expressions: usize,
}

impl Measure {
    fn enter(&mut self) -> ControlFlow<String> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return ControlFlow::Break(format!(
                "expressions or subqueries nest more than {} deep (a long chain of operators nests one level per operator; use IN or a join against codelists)",
                self.limits.max_depth
            ));
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<String> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

impl Visitor for Measure {
    type Break = String;

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        self.enter()
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        self.leave()
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        self.expressions += 1;
        if self.expressions > self.limits.max_expressions {
            return ControlFlow::Break(format!(
                "the statement has more than {} expressions",
                self.limits.max_expressions
            ));
        }
        if let Expr::InList { list, .. } = expr
            && list.len() > self.limits.max_list_items
        {
            return ControlFlow::Break(format!(
                "an IN list has {} items; at most {} are accepted (join against a table instead)",
                list.len(),
                self.limits.max_list_items
            ));
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.leave()
    }
}

/// What a query's operators wrote to disk to stay inside its memory pool: the operator
/// that can spill (a sort, a hash aggregate) does so rather than fail. Read from the plan's
/// metrics once it has run, for the server's log: an operator then sees which questions
/// need more memory than a query's share, and a benchmark can show one that spilled and
/// still completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spilled {
    /// Spill files written.
    pub spills: usize,
    pub bytes: usize,
    pub rows: usize,
}

impl Spilled {
    /// Summed over every operator of `plan` (plans are bounded in depth by [`SqlLimits`]).
    pub fn of(plan: &dyn ExecutionPlan) -> Self {
        let mut total = plan
            .metrics()
            .map(|m| Spilled {
                spills: m.spill_count().unwrap_or(0),
                bytes: m.spilled_bytes().unwrap_or(0),
                rows: m.spilled_rows().unwrap_or(0),
            })
            .unwrap_or_default();
        for child in plan.children() {
            let below = Spilled::of(child.as_ref());
            total.spills += below.spills;
            total.bytes += below.bytes;
            total.rows += below.rows;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::sql::parser::DFParser;

    fn statement(sql: &str) -> Statement {
        let mut statements = DFParser::parse_sql(sql).expect("parses");
        statements.pop_front().expect("one statement")
    }

    fn chain(terms: usize, op: &str) -> String {
        let chain = vec!["1"; terms].join(op);
        format!("SELECT count(*) FROM patients WHERE imd_decile = {chain}")
    }

    fn rule(result: Result<(), EngineError>) -> Option<Rule> {
        result.err().and_then(|e| e.rule())
    }

    #[test]
    fn ordinary_cohort_sql_passes() {
        let limits = SqlLimits::default();
        let sql = "SELECT practice, count(*) FROM register_diabetes d JOIN patients p USING (person_id) \
                   WHERE p.imd_decile IN (1, 2, 3) AND (p.sex = 'F' OR p.sex = 'M') GROUP BY practice";
        assert_eq!(limits.check_text(sql).ok(), Some(()));
        assert_eq!(limits.check_statement(&statement(sql)).ok(), Some(()));
    }

    #[test]
    fn a_long_operator_chain_is_too_deep() {
        let limits = SqlLimits::default();
        assert_eq!(limits.check_statement(&statement(&chain(150, "+"))).ok(), Some(()));
        assert_eq!(
            rule(limits.check_statement(&statement(&chain(2_000, "+")))),
            Some(Rule::RequestSize)
        );
        assert_eq!(
            rule(limits.check_statement(&statement(&chain(3_000, " OR imd_decile = ")))),
            Some(Rule::RequestSize)
        );
    }

    #[test]
    fn nested_subqueries_count_towards_depth() {
        let limits = SqlLimits {
            max_depth: 10,
            ..SqlLimits::default()
        };
        let mut sql = "SELECT 1".to_string();
        for _ in 0..12 {
            sql = format!("SELECT * FROM ({sql}) AS t");
        }
        assert_eq!(rule(limits.check_statement(&statement(&sql))), Some(Rule::RequestSize));
    }

    #[test]
    fn a_long_in_list_and_a_long_text_are_refused() {
        let limits = SqlLimits::default();
        let items = (0..=limits.max_list_items)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT count(*) FROM patients WHERE imd_decile IN ({items})");
        let refused = limits.check_statement(&statement(&sql)).expect_err("too long");
        assert_eq!(refused.rule(), Some(Rule::RequestSize));
        assert!(refused.to_string().contains("IN list has 1001 items"), "{refused}");

        let literal = "x".repeat(300 << 10);
        let sql = format!("SELECT count(*) FROM patients WHERE sex = '{literal}'");
        let refused = limits.check_text(&sql).expect_err("too long");
        assert_eq!(refused.rule(), Some(Rule::RequestSize));
        assert!(
            !refused.to_string().contains("xxxx"),
            "the message never echoes the SQL"
        );
    }

    #[test]
    fn explain_is_measured_through() {
        let limits = SqlLimits::default();
        let sql = format!("EXPLAIN {}", chain(2_000, "+"));
        assert_eq!(rule(limits.check_statement(&statement(&sql))), Some(Rule::RequestSize));
    }

    #[test]
    fn the_expression_count_is_bounded() {
        let limits = SqlLimits {
            max_expressions: 100,
            ..SqlLimits::default()
        };
        let columns = (0..60)
            .map(|i| format!("{i} + 1 AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {columns}");
        assert_eq!(rule(limits.check_statement(&statement(&sql))), Some(Rule::RequestSize));
    }
}
