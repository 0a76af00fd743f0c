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
//! rule proves by tracing each column to its origin (`same_values`). The enforcement is
//! therefore kept in meaning: the remaining key compares the same values. A key it cannot
//! trace (an expression, a column from an aggregate or a union) is kept.

use deltalake::datafusion::common::Result;
use deltalake::datafusion::common::tree_node::Transformed;
use deltalake::datafusion::logical_expr::{Join, LogicalPlan};
use deltalake::datafusion::optimizer::optimizer::ApplyOrder;
use deltalake::datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::same_values::{Origin, origin_of};

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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::common::JoinType;
    use deltalake::datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit, table_scan};
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
