//! An optimizer rule that drops an equi-join key which repeats another key of the same
//! join: both of its sides are the very same columns as the other key's sides, so it can
//! never reject a pair of rows the other key accepts.
//!
//! Why disclosure control needs it: the analyzer rule enforces "same person" on every join
//! and `IN`/`EXISTS` subquery over people's records by adding `__ppl_pid = __ppl_pid`
//! beside the user's own `person_id = person_id`. Each `__ppl_pid` is `person_id` under
//! another name, so the join gets two keys holding the same values. A two-key hash join
//! hashes and compares twice the data, and it changes the statistics DataFusion uses to
//! pick the build side: at 1M patients a commissioner's `person_id IN (SELECT …)` built its
//! hash table from 14M encounters where the steward's built it from a few thousand events
//! (BENCHMARKS.md). Dropping the repeated key gives the commissioner the steward's join.
//!
//! It is exact: a key is dropped only when, on every row, its left column equals (or is
//! NULL together with) an earlier key's left column, and likewise on the right, which this
//! rule proves by tracing each column back through projections that only rename, aliases,
//! filters, sorts, limits, joins and plain group keys to one column of one plan node. The enforcement is
//! therefore kept in meaning: the remaining key compares the same values. A key it cannot
//! trace (an expression, a column from an aggregate or a union) is kept.

use deltalake::datafusion::common::Column;
use deltalake::datafusion::common::Result;
use deltalake::datafusion::common::tree_node::Transformed;
use deltalake::datafusion::logical_expr::{Expr, Join, LogicalPlan};
use deltalake::datafusion::optimizer::optimizer::ApplyOrder;
use deltalake::datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct RedundantJoinKeys;

impl OptimizerRule for RedundantJoinKeys {
    fn name(&self) -> &str {
        "poplar_redundant_join_keys"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = plan else {
            return Ok(Transformed::no(plan));
        };
        if join.on.len() < 2 {
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let origins: Vec<Option<(Origin, Origin)>> = join
            .on
            .iter()
            .map(|(l, r)| Some((origin_of(&join.left, l)?, origin_of(&join.right, r)?)))
            .collect();
        let mut keep = Vec::with_capacity(join.on.len());
        for (i, origin) in origins.iter().enumerate() {
            let repeats_earlier = origin.as_ref().is_some_and(|o| {
                origins[..i]
                    .iter()
                    .zip(&keep)
                    .any(|(e, kept)| *kept && e.as_ref() == Some(o))
            });
            keep.push(!repeats_earlier);
        }
        if keep.iter().all(|k| *k) {
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let on = join
            .on
            .iter()
            .zip(&keep)
            .filter(|(_, kept)| **kept)
            .map(|(pair, _)| pair.clone())
            .collect();
        // The output schema does not depend on the keys, so the rest of the join is kept as is.
        Ok(Transformed::yes(LogicalPlan::Join(Join { on, ..join })))
    }
}

/// Whether `a` and `b`, both columns of `plan`, hold the same value on every row (both
/// traced to one origin). The analyzer asks it before enforcing "same person" on a
/// window's partition that already is the person.
pub(super) fn same_values(plan: &LogicalPlan, a: &Expr, b: &Expr) -> bool {
    match (origin_of(plan, a), origin_of(plan, b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The expression under any aliases (the analyzer rule uses it too).
pub(super) fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// Where a column's values come from: one column of one plan node (by address: the two
/// keys of one side are traced through the same subtree, so the same node is the same
/// address).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    node: *const LogicalPlan,
    column: Column,
}

/// The origin of a join key on the side `plan`, if the key is a column.
fn origin_of(plan: &LogicalPlan, key: &Expr) -> Option<Origin> {
    let Expr::Column(column) = key else {
        return None;
    };
    Some(trace(plan, column.clone()))
}

/// Follow `column` of `plan` down to the node that computes it. Every step keeps the value
/// of each row: a renaming projection passes the value on; an alias renames; a filter,
/// sort or limit keeps rows whole; a join passes a side's value or NULL for both columns of
/// that side at once (so two columns traced to one origin are equal or NULL together); a
/// group key holds the value its group's rows share.
fn trace(plan: &LogicalPlan, column: Column) -> Origin {
    let stop = |plan: &LogicalPlan, column: Column| Origin {
        node: std::ptr::from_ref(plan),
        column,
    };
    match plan {
        LogicalPlan::Projection(p) => {
            let Ok(index) = p.schema.index_of_column(&column) else {
                return stop(plan, column);
            };
            match p.expr.get(index).map(unalias) {
                Some(Expr::Column(inner)) => trace(&p.input, inner.clone()),
                _ => stop(plan, column),
            }
        }
        LogicalPlan::SubqueryAlias(a) => match a.schema.index_of_column(&column) {
            Ok(index) if index < a.input.schema().fields().len() => {
                let (qualifier, field) = a.input.schema().qualified_field(index);
                trace(&a.input, Column::new(qualifier.cloned(), field.name()))
            }
            _ => stop(plan, column),
        },
        // A group key's value is its rows' value, so two group keys traced to one origin
        // are equal in every group. Not with grouping sets: a set that leaves one key out
        // sets it NULL while the other keeps its value.
        LogicalPlan::Aggregate(a) => {
            let is_grouping_set = a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_)));
            match a.schema.index_of_column(&column) {
                Ok(index) if !is_grouping_set && index < a.group_expr.len() => match unalias(&a.group_expr[index]) {
                    Expr::Column(inner) => trace(&a.input, inner.clone()),
                    _ => stop(plan, column),
                },
                _ => stop(plan, column),
            }
        }
        LogicalPlan::Filter(f) => trace(&f.input, column),
        LogicalPlan::Sort(s) => trace(&s.input, column),
        LogicalPlan::Limit(l) => trace(&l.input, column),
        LogicalPlan::Join(j) => {
            if j.left.schema().has_column(&column) {
                trace(&j.left, column)
            } else if j.right.schema().has_column(&column) {
                trace(&j.right, column)
            } else {
                stop(plan, column)
            }
        }
        _ => stop(plan, column),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::common::JoinType;
    use deltalake::datafusion::logical_expr::{LogicalPlanBuilder, col, lit, table_scan};
    use deltalake::datafusion::optimizer::OptimizerContext;

    /// A person table `name` as disclosure control leaves it: `person_id`, `code`, and the
    /// hidden pid, which is `person_id` under another name (or, with `computed`, an
    /// expression of it).
    fn people(name: &str, computed: bool) -> LogicalPlanBuilder {
        let schema = Schema::new(vec![
            Field::new("person_id", DataType::Int64, true),
            Field::new("code", DataType::Int64, true),
        ]);
        let person = col(format!("{name}.person_id"));
        let pid = if computed {
            person.clone() + lit(1_i64)
        } else {
            person.clone()
        };
        table_scan(Some(name), &schema, None)
            .expect("scan")
            .project(vec![
                person,
                col(format!("{name}.code")),
                pid.alias_qualified(Some(name), "__ppl_pid"),
            ])
            .expect("project")
    }

    /// `left` joined to `right` on the pairs of `keys`, with the rule applied: whether it
    /// changed the join, and the join's keys after.
    fn joined(
        left: LogicalPlanBuilder,
        right: LogicalPlanBuilder,
        join_type: JoinType,
        keys: [(&str, &str); 2],
    ) -> (bool, Vec<String>) {
        let plan = left
            .join(
                right.build().expect("right"),
                join_type,
                (keys.map(|k| k.0).to_vec(), keys.map(|k| k.1).to_vec()),
                None,
            )
            .expect("join")
            .build()
            .expect("plan");
        let out = RedundantJoinKeys
            .rewrite(plan, &OptimizerContext::new())
            .expect("rewrite");
        let LogicalPlan::Join(j) = &out.data else {
            panic!("not a join: {}", out.data);
        };
        (
            out.transformed,
            j.on.iter().map(|(l, r)| format!("{l} = {r}")).collect(),
        )
    }

    #[test]
    fn the_hidden_pid_beside_person_id_is_dropped() {
        let keys = [("a.person_id", "b.person_id"), ("a.__ppl_pid", "b.__ppl_pid")];
        let (changed, after) = joined(people("a", false), people("b", false), JoinType::Inner, keys);
        assert!(changed);
        assert_eq!(after, ["a.person_id = b.person_id"]);
    }

    #[test]
    fn through_an_alias_and_a_filter_on_one_side() {
        let right = people("b", false)
            .filter(col("b.code").eq(lit(1_i64)))
            .expect("filter")
            .alias("sq")
            .expect("alias");
        let keys = [("a.person_id", "sq.person_id"), ("a.__ppl_pid", "sq.__ppl_pid")];
        let (_, after) = joined(people("a", false), right, JoinType::LeftSemi, keys);
        assert_eq!(after, ["a.person_id = sq.person_id"]);
    }

    #[test]
    fn through_a_per_person_aggregate() {
        // (SELECT person_id, count(*) … GROUP BY person_id) as disclosure control leaves it:
        // grouped by person_id and by the hidden pid.
        let per_person = |name: &str, rollup: bool| {
            let keys = vec![col(format!("{name}.person_id")), col(format!("{name}.__ppl_pid"))];
            let group = if rollup {
                vec![Expr::GroupingSet(
                    deltalake::datafusion::logical_expr::GroupingSet::Rollup(keys),
                )]
            } else {
                keys
            };
            people(name, false)
                .aggregate(
                    group,
                    vec![deltalake::datafusion::functions_aggregate::count::count(lit(1_i64))],
                )
                .expect("aggregate")
        };
        let keys = [("a.person_id", "b.person_id"), ("a.__ppl_pid", "b.__ppl_pid")];
        let (changed, _) = joined(people("a", false), per_person("b", false), JoinType::Inner, keys);
        assert!(changed);
        // ROLLUP nulls person_id in a row where __ppl_pid keeps its value: not the same column.
        let (changed, _) = joined(people("a", false), per_person("b", true), JoinType::Inner, keys);
        assert!(!changed);
    }

    #[test]
    fn keys_on_different_columns_are_kept() {
        // a.code = b.person_id beside a.__ppl_pid = b.__ppl_pid: the left sides differ.
        let keys = [("a.code", "b.person_id"), ("a.__ppl_pid", "b.__ppl_pid")];
        let (changed, after) = joined(people("a", false), people("b", false), JoinType::Inner, keys);
        assert!(!changed);
        assert_eq!(after, ["a.code = b.person_id", "a.__ppl_pid = b.__ppl_pid"]);
    }

    #[test]
    fn a_computed_pid_is_not_traced() {
        // The hidden pid is an expression of person_id here, not person_id itself: kept.
        let keys = [("a.person_id", "b.person_id"), ("a.__ppl_pid", "b.__ppl_pid")];
        let (changed, after) = joined(people("a", true), people("b", true), JoinType::Inner, keys);
        assert!(!changed);
        assert_eq!(after.len(), 2);
    }
}
