//! The disclosure-control analyzer rule. It runs after DataFusion's own analyzer rules, on
//! every plan a non-steward sends (subqueries included), and either refuses the plan with
//! the rule it breaks or rewrites it so that people's records leave the engine only
//! through a `Protect` release.
//!
//! The model. A relation is *person-level* while its rows may be one person's records; it
//! carries a hidden `__ppl_pid` column (the row's `person_id`, added at every scan of a
//! table that has one). Person-level relations may be filtered, projected, joined to each
//! other *on the same person*, unioned, windowed *per person*, aggregated *per person*
//! (`GROUP BY person_id`) and matched by subqueries *on the same person*. An aggregate over
//! person-level rows grouped by anything else is a *release*: it gains hidden aggregates
//! (distinct people, a digest of who they are, noise scales) and is wrapped in `Protect`,
//! whose output is safe. Everything above a release sees only released values, so
//! `HAVING`, `ORDER BY … LIMIT`, arithmetic and aggregates of aggregates cannot reach a true
//! small number. Person-level rows may never reach the answer, nor may any value derived
//! from `person_id` (tracked column by column as *taint*).
//!
//! Where a query's shape says "same person" (a join on `person_id`, a subquery correlated
//! on it, a window partitioned by it) the rule also *enforces* it, by adding
//! `__ppl_pid = __ppl_pid`, so a disguised cross-person construct is cut down to one person
//! rather than trusted.

use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Column, DFSchema, ExprSchema, Result, ScalarValue, TableReference};
use deltalake::datafusion::logical_expr::expr::{Exists, InSubquery, WindowFunction};
use deltalake::datafusion::logical_expr::utils::{grouping_set_to_exprlist, split_conjunction};
use deltalake::datafusion::logical_expr::{
    Aggregate, BinaryExpr, Distinct, Expr, Filter, Join, JoinType, Limit, LogicalPlan, Operator, Projection, Sort,
    Subquery, SubqueryAlias, Union, Window, lit,
};
use deltalake::datafusion::optimizer::AnalyzerRule;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::lineage::{self, Lineage};
use super::policy::Policy;
use super::protect::ReleaseStats;
use super::same_values::same_values;
use crate::error::{EngineError, Rule};

/// The hidden column carrying each person-level row's `person_id`.
pub const PID: &str = "__ppl_pid";
/// The column that identifies a person in Poplar's tables.
pub const PERSON_ID: &str = "person_id";

/// Refuse the plan under `rule`. The message names what was refused, never a value.
pub(super) fn refuse<T>(rule: Rule, message: impl Into<String>) -> Result<T> {
    Err(EngineError::refused(rule, message).into_datafusion())
}

/// The rule for one request: who asks decides whether noise applies.
#[derive(Debug)]
pub struct DisclosureControl {
    pub policy: Arc<Policy>,
    pub noised: bool,
    pub stats: Arc<ReleaseStats>,
    /// Tables only stewards may read (the catalog decides which).
    pub steward_only: Arc<BTreeSet<String>>,
}

impl AnalyzerRule for DisclosureControl {
    fn name(&self) -> &str {
        "poplar_disclosure_control"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let (plan, flow) = Rewriter {
            rule: self,
            created: std::cell::Cell::new(0),
        }
        .plan(plan, &Scope::default())?;
        if flow.person {
            return refuse(
                Rule::AggregateOnly,
                "the answer would hold people's records; aggregate them (e.g. SELECT practice, count(*) … GROUP BY practice)",
            );
        }
        if let Some(i) = flow.tainted.iter().position(|t| *t) {
            return refuse(
                Rule::AggregateOnly,
                format!(
                    "column {} of the answer is derived from person_id, which never leaves Poplar",
                    plan.schema().field(i).name()
                ),
            );
        }
        Ok(plan)
    }
}

/// What the rule knows of a relation: whether its rows are people's records, and which
/// output columns derive from `person_id`.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) person: bool,
    pub(super) tainted: Vec<bool>,
    /// Where each output column's values come from (see [`lineage`](super::lineage)).
    pub(super) lineage: Vec<Lineage>,
}

impl Flow {
    /// A relation of public reference data or released values.
    pub(super) fn safe(width: usize) -> Self {
        Self {
            person: false,
            tainted: vec![false; width],
            lineage: vec![Lineage::Public; width],
        }
    }
}

/// Where a (sub)plan sits: inside a subquery of a person-level relation, its pid column
/// can be referred to, to keep the subquery to the outer row's own person.
#[derive(Debug, Clone, Default)]
struct Scope {
    outer_pid: Option<Expr>,
    /// Inside a correlated scalar subquery: an aggregate with no GROUP BY is per person.
    correlated_scalar: bool,
}

pub(super) fn pid_column(schema: &DFSchema) -> Option<Expr> {
    schema
        .iter()
        .find(|(_, f)| f.name() == PID)
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
}

pub(super) fn pid_index(schema: &DFSchema) -> Option<usize> {
    schema.fields().iter().position(|f| f.name() == PID)
}

/// Does any column `expr` reads carry taint?
pub(super) fn reads_tainted(expr: &Expr, schema: &DFSchema, tainted: &[bool]) -> bool {
    expr.column_refs()
        .iter()
        .any(|c| schema.maybe_index_of_column(c).is_some_and(|i| tainted[i]))
}

/// Is `expr` a bare column (through aliases) that carries taint?
pub(super) fn is_tainted_column(expr: &Expr, schema: &DFSchema, tainted: &[bool]) -> bool {
    match expr {
        Expr::Alias(a) => is_tainted_column(&a.expr, schema, tainted),
        Expr::Column(c) => schema.maybe_index_of_column(c).is_some_and(|i| tainted[i]),
        _ => false,
    }
}

pub(super) struct Rewriter<'a> {
    pub(super) rule: &'a DisclosureControl,
    /// Numbers the qualifiers of pid columns the rule creates, so two never collide.
    created: std::cell::Cell<usize>,
}

impl Rewriter<'_> {
    /// Whether `plan` reads a person table (subqueries included); refuses steward-only
    /// tables on the way.
    pub(super) fn reads_people(&self, plan: &LogicalPlan) -> Result<bool> {
        let mut person = false;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let name = scan.table_name.table();
                if self.rule.steward_only.contains(name) {
                    return refuse(Rule::StewardOnlyData, format!("{name} is for data stewards only"));
                }
                if scan.source.schema().field_with_name(PERSON_ID).is_ok() {
                    person = true;
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(person)
    }

    fn fresh_qualifier(&self) -> TableReference {
        let n = self.created.get() + 1;
        self.created.set(n);
        TableReference::bare(format!("__ppl_{n}"))
    }

    fn plan(&self, plan: LogicalPlan, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        // Subtrees that never touch a person table are public reference data: untouched.
        if !self.reads_people(&plan)? {
            let width = plan.schema().fields().len();
            return Ok((plan, Flow::safe(width)));
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                let qualifier = scan.table_name.clone();
                let schema = scan.projected_schema.clone();
                if schema.field_with_unqualified_name(PERSON_ID).is_err() {
                    return refuse(
                        Rule::AggregateOnly,
                        format!("{} must be read with its person_id", qualifier.table()),
                    );
                }
                let mut exprs: Vec<Expr> = schema
                    .iter()
                    .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                    .collect();
                let mut tainted: Vec<bool> = schema.fields().iter().map(|f| f.name() == PERSON_ID).collect();
                let mut lineage: Vec<Lineage> = schema
                    .fields()
                    .iter()
                    .map(|f| lineage::of_source_column(f.name()))
                    .collect();
                exprs.push(
                    Expr::Column(Column::new(Some(qualifier.clone()), PERSON_ID)).alias_qualified(Some(qualifier), PID),
                );
                tainted.push(true);
                lineage.push(Lineage::Fine);
                let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(LogicalPlan::TableScan(scan)))?);
                Ok((
                    plan,
                    Flow {
                        person: true,
                        tainted,
                        lineage,
                    },
                ))
            }
            LogicalPlan::Projection(p) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(p.input), scope)?;
                let mut exprs = Vec::with_capacity(p.expr.len() + 1);
                let mut tainted = Vec::with_capacity(p.expr.len() + 1);
                let mut lineage = Vec::with_capacity(p.expr.len() + 1);
                for e in p.expr {
                    let (e, sub_tainted) = self.expr(e, &input, &flow)?;
                    tainted.push(sub_tainted || reads_tainted(&e, input.schema(), &flow.tainted));
                    lineage.push(lineage::of_expr(&e, input.schema(), &flow.lineage));
                    exprs.push(e);
                }
                if flow.person
                    && let Some(pid) = pid_column(input.schema())
                    && !exprs.iter().any(|e| matches!(e, Expr::Column(c) if c.name == PID))
                {
                    exprs.push(pid);
                    tainted.push(true);
                    lineage.push(Lineage::Fine);
                }
                let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?);
                Ok((
                    plan,
                    Flow {
                        person: flow.person,
                        tainted,
                        lineage,
                    },
                ))
            }
            LogicalPlan::Filter(f) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(f.input), scope)?;
                let (predicate, _) = self.expr(f.predicate, &input, &flow)?;
                Ok((LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?), flow))
            }
            LogicalPlan::Sort(s) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(s.input), scope)?;
                Ok((
                    LogicalPlan::Sort(Sort {
                        expr: s.expr,
                        input: Arc::new(input),
                        fetch: s.fetch,
                    }),
                    flow,
                ))
            }
            LogicalPlan::Limit(l) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(l.input), scope)?;
                Ok((
                    LogicalPlan::Limit(Limit {
                        skip: l.skip,
                        fetch: l.fetch,
                        input: Arc::new(input),
                    }),
                    flow,
                ))
            }
            LogicalPlan::SubqueryAlias(s) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(s.input), scope)?;
                Ok((
                    LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), s.alias)?),
                    flow,
                ))
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a, scope),
            LogicalPlan::Window(w) => self.window(w, scope),
            LogicalPlan::Join(j) => self.join(j, scope),
            LogicalPlan::Union(u) => self.union(u, scope),
            LogicalPlan::Distinct(Distinct::All(input)) => self.distinct(Arc::unwrap_or_clone(input), scope),
            LogicalPlan::Subquery(s) => {
                let (input, flow) = self.plan(Arc::unwrap_or_clone(s.subquery), scope)?;
                Ok((
                    LogicalPlan::Subquery(Subquery {
                        subquery: Arc::new(input),
                        ..s
                    }),
                    flow,
                ))
            }
            other => refuse(
                Rule::AggregateOnly,
                format!(
                    "{} over people's records is not supported under disclosure control",
                    other.display()
                ),
            ),
        }
    }

    /// Rewrite the subqueries inside an expression of a node whose input is `input`.
    /// Returns the expression and whether a subquery in it yields a value derived from
    /// `person_id`.
    fn expr(&self, expr: Expr, input: &LogicalPlan, flow: &Flow) -> Result<(Expr, bool)> {
        let mut tainted = false;
        let outer_pid = if flow.person {
            pid_column(input.schema()).and_then(|c| match c {
                Expr::Column(col) => {
                    let field = input.schema().field_from_column(&col).ok()?.clone();
                    Some(Expr::OuterReferenceColumn(field, col))
                }
                _ => None,
            })
        } else {
            None
        };
        let outer_tainted = |refs: &[Expr]| {
            refs.iter().any(|r| match r {
                Expr::OuterReferenceColumn(_, c) => {
                    input.schema().maybe_index_of_column(c).is_some_and(|i| flow.tainted[i])
                }
                _ => false,
            })
        };
        let rewritten = expr.transform_up(|e| match e {
            Expr::ScalarSubquery(sq) => {
                let correlated = !sq.outer_ref_columns.is_empty();
                if correlated && flow.person && !outer_tainted(&sq.outer_ref_columns) {
                    return refuse(
                        Rule::SamePerson,
                        "a correlated subquery over people's records must match on person_id",
                    );
                }
                let scope = Scope {
                    outer_pid: outer_pid.clone(),
                    correlated_scalar: correlated,
                };
                let (sub, sub_flow, added) = self.subquery(sq, &scope)?;
                tainted |= sub_flow.tainted.first().copied().unwrap_or(false);
                if sub_flow.person && !added && !correlated {
                    return refuse(
                        Rule::AggregateOnly,
                        "a scalar subquery over people's records must aggregate or match on person_id",
                    );
                }
                Ok(Transformed::yes(Expr::ScalarSubquery(sub)))
            }
            Expr::Exists(Exists { subquery, negated }) => {
                let scope = Scope {
                    outer_pid: outer_pid.clone(),
                    correlated_scalar: false,
                };
                let over_people = self.reads_people(&subquery.subquery)?;
                if !flow.person && over_people {
                    return refuse(
                        Rule::SamePerson,
                        "EXISTS over people's records must match the outer row's person_id",
                    );
                }
                if flow.person && over_people && !outer_tainted(&subquery.outer_ref_columns) {
                    return refuse(
                        Rule::SamePerson,
                        "EXISTS over people's records must be correlated on person_id",
                    );
                }
                let (sub, _, _) = self.subquery(subquery, &scope)?;
                Ok(Transformed::yes(Expr::Exists(Exists { subquery: sub, negated })))
            }
            Expr::InSubquery(InSubquery {
                expr,
                subquery,
                negated,
            }) => {
                let scope = Scope {
                    outer_pid: outer_pid.clone(),
                    correlated_scalar: false,
                };
                let (sub, sub_flow, added) = self.subquery(subquery, &scope)?;
                if sub_flow.person {
                    let outer_is_person = reads_tainted(&expr, input.schema(), &flow.tainted);
                    if !added || !outer_is_person || !sub_flow.tainted.first().copied().unwrap_or(false) {
                        return refuse(
                            Rule::SamePerson,
                            "IN (subquery) over people's records must match person_id IN (SELECT person_id …)",
                        );
                    }
                }
                Ok(Transformed::yes(Expr::InSubquery(InSubquery {
                    expr,
                    subquery: sub,
                    negated,
                })))
            }
            other => Ok(Transformed::no(other)),
        })?;
        Ok((rewritten.data, tainted))
    }

    /// Rewrite a subquery. A person-level subquery is kept to the outer row's own person
    /// (`inner pid = outer pid`) and its hidden pid is projected away. Returns the new
    /// subquery, its flow, and whether the same-person condition was added.
    fn subquery(&self, sq: Subquery, scope: &Scope) -> Result<(Subquery, Flow, bool)> {
        let original_width = sq.subquery.schema().fields().len();
        let (plan, flow) = self.plan(Arc::unwrap_or_clone(sq.subquery), scope)?;
        let mut outer_refs = sq.outer_ref_columns;
        let (plan, added) = match (flow.person, pid_column(plan.schema()), &scope.outer_pid) {
            (true, Some(inner), Some(outer)) => {
                let same = Expr::BinaryExpr(BinaryExpr::new(Box::new(inner), Operator::Eq, Box::new(outer.clone())));
                let filtered = LogicalPlan::Filter(Filter::try_new(same, Arc::new(plan))?);
                let keep: Vec<Expr> = filtered
                    .schema()
                    .iter()
                    .take(original_width)
                    .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                    .collect();
                outer_refs.push(outer.clone());
                (
                    LogicalPlan::Projection(Projection::try_new(keep, Arc::new(filtered))?),
                    true,
                )
            }
            (true, Some(_), None) => {
                return refuse(
                    Rule::SamePerson,
                    "a subquery over people's records is only allowed inside a query over people's records",
                );
            }
            // A correlated scalar aggregate already restricted to the outer person (the
            // aggregate's input was filtered on the outer pid: declare the reference).
            (true, None, outer) => {
                if scope.correlated_scalar
                    && let Some(outer) = outer
                {
                    outer_refs.push(outer.clone());
                }
                (plan, scope.correlated_scalar)
            }
            (false, _, _) => (plan, false),
        };
        let tainted = flow.tainted.into_iter().take(original_width).collect();
        let lineage = flow.lineage.into_iter().take(original_width).collect();
        Ok((
            Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: outer_refs,
                spans: sq.spans,
            },
            Flow {
                person: flow.person,
                tainted,
                lineage,
            },
            added,
        ))
    }

    fn aggregate(&self, a: Aggregate, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        let (input, flow) = self.plan(Arc::unwrap_or_clone(a.input), scope)?;
        let schema = input.schema().clone();
        let keys = grouping_set_to_exprlist(&a.group_expr)?;
        let tainted_keys: Vec<&Expr> = keys
            .iter()
            .copied()
            .filter(|k| reads_tainted(k, &schema, &flow.tainted))
            .collect();
        // Output columns: the group keys (then, for a per-person aggregate, the pid key
        // added after them; for grouping sets, the grouping id), then the aggregates.
        let output_taint = |aggr: &[Expr], pid_key: bool| -> Vec<bool> {
            let mut t: Vec<bool> = keys.iter().map(|k| reads_tainted(k, &schema, &flow.tainted)).collect();
            if pid_key {
                t.push(true);
            }
            if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                t.push(false);
            }
            t.extend(aggr.iter().map(|e| reads_tainted(e, &schema, &flow.tainted)));
            t
        };
        // Keys keep their lineage; a per-person aggregate's values are fine (a count per
        // person is no public domain); values over public rows stay public.
        let output_lineage = |aggr: &[Expr], pid_key: bool| -> Vec<Lineage> {
            let mut l: Vec<Lineage> = keys
                .iter()
                .map(|k| lineage::of_expr(k, &schema, &flow.lineage))
                .collect();
            if pid_key {
                l.push(Lineage::Fine);
            }
            if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                l.push(Lineage::Public);
            }
            let value = if flow.person { Lineage::Fine } else { Lineage::Public };
            l.extend(aggr.iter().map(|_| value));
            l
        };

        if !flow.person {
            let taint = output_taint(&a.aggr_expr, false);
            let lineage = output_lineage(&a.aggr_expr, false);
            let plan = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), a.group_expr, a.aggr_expr)?);
            return Ok((
                plan,
                Flow {
                    person: false,
                    tainted: taint,
                    lineage,
                },
            ));
        }
        let Some(pid) = pid_column(&schema) else {
            return refuse(Rule::AggregateOnly, "internal: a person-level input lost its person");
        };

        // Per person: GROUP BY person_id (as a bare column). Adding the hidden pid as a key
        // changes nothing when the key really is the person, and keeps it per person when
        // it is only dressed up as one; where it provably is the person, it is not added.
        if !tainted_keys.is_empty() {
            if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                return refuse(
                    Rule::AggregateOnly,
                    "GROUPING SETS, ROLLUP and CUBE cannot group by person_id",
                );
            }
            if let Some(k) = tainted_keys
                .iter()
                .find(|k| !is_tainted_column(k, &schema, &flow.tainted))
            {
                return refuse(
                    Rule::AggregateOnly,
                    format!("GROUP BY {k} is derived from person_id; group by person_id itself or by other columns"),
                );
            }
            let taint = output_taint(&a.aggr_expr, true);
            let lineage = output_lineage(&a.aggr_expr, true);
            let plan = match a.group_expr.iter().position(|k| same_values(&input, k, &pid)) {
                // GROUP BY person_id over a scan: the key already is the pid, so it is not
                // grouped on twice (a second hash key per row); the pid column the nodes
                // above expect is that key again, under the pid's name.
                Some(person_key) => {
                    let Expr::Column(pid_name) = &pid else {
                        return refuse(Rule::AggregateOnly, "internal: the pid is not a column");
                    };
                    let width = a.group_expr.len();
                    let aggregate = Aggregate::try_new(Arc::new(input), a.group_expr, a.aggr_expr)?;
                    let column = |i: usize| {
                        let (q, f) = aggregate.schema.qualified_field(i);
                        Expr::Column(Column::new(q.cloned(), f.name()))
                    };
                    let mut exprs: Vec<Expr> = (0..width).map(column).collect();
                    exprs.push(column(person_key).alias_qualified(pid_name.relation.clone(), PID));
                    exprs.extend((width..aggregate.schema.fields().len()).map(column));
                    LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(aggregate)))?)
                }
                None => {
                    let mut group = a.group_expr;
                    group.push(pid);
                    LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), group, a.aggr_expr)?)
                }
            };
            return Ok((
                plan,
                Flow {
                    person: true,
                    tainted: taint,
                    lineage,
                },
            ));
        }

        // Per person, in a correlated scalar subquery: `(SELECT count(*) FROM events e
        // WHERE e.person_id = p.person_id)`. Kept to the outer person.
        if scope.correlated_scalar && a.group_expr.is_empty() {
            let Some(outer) = &scope.outer_pid else {
                return refuse(
                    Rule::SamePerson,
                    "a correlated subquery over people's records must be inside a query over people",
                );
            };
            let same = Expr::BinaryExpr(BinaryExpr::new(Box::new(pid), Operator::Eq, Box::new(outer.clone())));
            // One filter, not two stacked: DataFusion 55's scalar_subquery_to_join pulls up
            // the correlated predicates of only the filter nearest the aggregate.
            let input = match input {
                LogicalPlan::Filter(f) => LogicalPlan::Filter(Filter::try_new(f.predicate.and(same), f.input)?),
                other => LogicalPlan::Filter(Filter::try_new(same, Arc::new(other))?),
            };
            let taint = output_taint(&a.aggr_expr, false);
            let lineage = output_lineage(&a.aggr_expr, false);
            let plan = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), a.group_expr, a.aggr_expr)?);
            return Ok((
                plan,
                Flow {
                    person: true,
                    tainted: taint,
                    lineage,
                },
            ));
        }

        self.release(input, &flow, a.group_expr, a.aggr_expr, false)
    }

    fn window(&self, w: Window, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        let (input, flow) = self.plan(Arc::unwrap_or_clone(w.input), scope)?;
        let schema = input.schema().clone();
        let mut tainted = flow.tainted.clone();
        let mut lineage = flow.lineage.clone();
        let mut exprs = Vec::with_capacity(w.window_expr.len());
        for e in w.window_expr {
            tainted.push(reads_tainted(&e, &schema, &flow.tainted));
            lineage.push(if flow.person { Lineage::Fine } else { Lineage::Public });
            if !flow.person {
                exprs.push(e);
                continue;
            }
            // Over people's records a window may only look at one person's rows.
            let pid = pid_column(&schema);
            // Keep the column's name: the nodes above refer to it.
            let name = e.schema_name().to_string();
            let e = e.transform_up(|x| match x {
                Expr::WindowFunction(mut wf) => {
                    let WindowFunction { params, .. } = wf.as_mut();
                    if !params
                        .partition_by
                        .iter()
                        .any(|p| is_tainted_column(p, &schema, &flow.tainted))
                    {
                        return refuse(
                            Rule::SamePerson,
                            "a window over people's records must PARTITION BY person_id",
                        );
                    }
                    // Enforced unless the partition already holds the pid's very values
                    // (`PARTITION BY person_id` over a scan): a second key would only
                    // make the sort and the partitioning compare twice.
                    if let Some(pid) = &pid
                        && !params.partition_by.iter().any(|p| same_values(&input, p, pid))
                    {
                        params.partition_by.push(pid.clone());
                    }
                    Ok(Transformed::yes(Expr::WindowFunction(wf)))
                }
                other => Ok(Transformed::no(other)),
            })?;
            exprs.push(if e.transformed { e.data.alias(name) } else { e.data });
        }
        let plan = LogicalPlan::Window(Window::try_new(exprs, Arc::new(input))?);
        Ok((
            plan,
            Flow {
                person: flow.person,
                tainted,
                lineage,
            },
        ))
    }

    fn join(&self, j: Join, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        let (left, lflow) = self.plan(Arc::unwrap_or_clone(j.left), scope)?;
        let (right, rflow) = self.plan(Arc::unwrap_or_clone(j.right), scope)?;
        let both = lflow.person && rflow.person;
        if both {
            // The join must say "same person": an equality between person_id columns.
            let (ls, rs) = (left.schema().clone(), right.schema().clone());
            let matches = |a: &Expr, b: &Expr| {
                (is_tainted_column(a, &ls, &lflow.tainted) && is_tainted_column(b, &rs, &rflow.tainted))
                    || (is_tainted_column(b, &ls, &lflow.tainted) && is_tainted_column(a, &rs, &rflow.tainted))
            };
            let on_person = j.on.iter().any(|(a, b)| matches(a, b))
                || j.filter.as_ref().is_some_and(|f| {
                    split_conjunction(f).into_iter().any(|c| match c {
                        Expr::BinaryExpr(BinaryExpr {
                            left,
                            op: Operator::Eq,
                            right,
                        }) => matches(left, right),
                        _ => false,
                    })
                });
            if !on_person {
                return refuse(
                    Rule::SamePerson,
                    "people's records may be joined only on the same person: JOIN … ON a.person_id = b.person_id",
                );
            }
            if !matches!(
                j.join_type,
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
            ) {
                return refuse(
                    Rule::SamePerson,
                    format!(
                        "{} joins of people's records are not supported; use IN or EXISTS",
                        j.join_type
                    ),
                );
            }
        }
        let join = Join::try_new(
            Arc::new(left),
            Arc::new(right),
            j.on,
            j.filter,
            j.join_type,
            j.join_constraint,
            j.null_equality,
            j.null_aware,
        )?;
        let mut tainted = lflow.tainted.clone();
        let mut lineage = lflow.lineage.clone();
        match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                if j.join_type == JoinType::LeftMark {
                    tainted.push(false);
                    lineage.push(Lineage::Fine);
                }
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                tainted = rflow.tainted.clone();
                lineage = rflow.lineage.clone();
                if j.join_type == JoinType::RightMark {
                    tainted.push(false);
                    lineage.push(Lineage::Fine);
                }
            }
            _ => {
                tainted.extend(rflow.tainted.iter().copied());
                lineage.extend(rflow.lineage.iter().copied());
            }
        }
        let plan = LogicalPlan::Join(join);
        let person = lflow.person || rflow.person;
        if !both {
            return Ok((
                plan,
                Flow {
                    person,
                    tainted,
                    lineage,
                },
            ));
        }
        // Enforce "same person" and keep one pid.
        let schema = plan.schema().clone();
        let pids: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() == PID)
            .map(|(i, _)| i)
            .collect();
        let [l, r] = pids.as_slice() else {
            return refuse(
                Rule::AggregateOnly,
                "internal: a join of people's records without two persons",
            );
        };
        let column = |i: usize| {
            let (q, f) = schema.qualified_field(i);
            Expr::Column(Column::new(q.cloned(), f.name()))
        };
        let (lp, rp) = (column(*l), column(*r));
        let same = lp.clone().eq(rp.clone());
        let condition = match j.join_type {
            JoinType::Left => rp.clone().is_null().or(same),
            JoinType::Right => lp.clone().is_null().or(same),
            JoinType::Full => lp.clone().is_null().or(rp.clone().is_null()).or(same),
            _ => same,
        };
        let filtered = LogicalPlan::Filter(Filter::try_new(condition, Arc::new(plan))?);
        let merged = match j.join_type {
            JoinType::Right => rp,
            JoinType::Full => deltalake::datafusion::functions::core::expr_fn::coalesce(vec![lp, rp]),
            _ => lp,
        };
        let mut exprs = Vec::new();
        let mut out_taint = Vec::new();
        let mut out_lineage = Vec::new();
        for (i, &taint) in tainted.iter().enumerate().take(schema.fields().len()) {
            if i == *l || i == *r {
                continue;
            }
            exprs.push(column(i));
            out_taint.push(taint);
            out_lineage.push(lineage.get(i).copied().unwrap_or(Lineage::Fine));
        }
        exprs.push(merged.alias_qualified(Some(self.fresh_qualifier()), PID));
        out_taint.push(true);
        out_lineage.push(Lineage::Fine);
        let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(filtered))?);
        Ok((
            plan,
            Flow {
                person: true,
                tainted: out_taint,
                lineage: out_lineage,
            },
        ))
    }

    fn union(&self, u: Union, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        let mut children = Vec::new();
        for input in u.inputs {
            children.push(self.plan(Arc::unwrap_or_clone(input), scope)?);
        }
        let person = children.iter().any(|(_, f)| f.person);
        let width = u.schema.fields().len();
        let mut tainted = vec![false; width];
        let mut lineage: Vec<Option<Lineage>> = vec![None; width];
        let mut inputs = Vec::new();
        for (plan, flow) in children {
            let schema = plan.schema().clone();
            let pid = pid_index(&schema);
            let mut exprs = Vec::new();
            let mut position = 0;
            for (i, (q, f)) in schema.iter().enumerate() {
                if Some(i) == pid {
                    continue;
                }
                if position < width {
                    tainted[position] |= flow.tainted[i];
                    let l = flow.lineage.get(i).copied().unwrap_or(Lineage::Fine);
                    lineage[position] = Some(match lineage[position] {
                        None => l,
                        Some(seen) => lineage::union(seen, l),
                    });
                }
                position += 1;
                exprs.push(Expr::Column(Column::new(q.cloned(), f.name())));
            }
            if person {
                let qualifier = self.fresh_qualifier();
                exprs.push(match pid_column(&schema) {
                    Some(c) => c.alias_qualified(Some(qualifier), PID),
                    None => lit(ScalarValue::Int64(None)).alias_qualified(Some(qualifier), PID),
                });
            }
            inputs.push(Arc::new(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::new(plan),
            )?)));
        }
        let mut lineage: Vec<Lineage> = lineage.into_iter().map(|l| l.unwrap_or(Lineage::Public)).collect();
        if person {
            tainted.push(true);
            lineage.push(Lineage::Fine);
        }
        let plan = LogicalPlan::Union(Union::try_new_with_loose_types(inputs)?);
        Ok((
            plan,
            Flow {
                person,
                tainted,
                lineage,
            },
        ))
    }

    /// `SELECT DISTINCT` over people's records: per person if it keeps person_id, else a
    /// release of the distinct groups (each covering at least k people).
    fn distinct(&self, input: LogicalPlan, scope: &Scope) -> Result<(LogicalPlan, Flow)> {
        let (input, flow) = self.plan(input, scope)?;
        if !flow.person {
            return Ok((LogicalPlan::Distinct(Distinct::All(Arc::new(input))), flow));
        }
        let schema = input.schema().clone();
        let pid = pid_index(&schema);
        let keeps_person = schema
            .fields()
            .iter()
            .enumerate()
            .any(|(i, _)| Some(i) != pid && flow.tainted[i]);
        if keeps_person {
            return Ok((LogicalPlan::Distinct(Distinct::All(Arc::new(input))), flow));
        }
        let keys: Vec<Expr> = schema
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != pid)
            .map(|(_, (q, f))| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        self.release(input, &flow, keys, vec![], true)
    }
}
