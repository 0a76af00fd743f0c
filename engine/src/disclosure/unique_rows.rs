//! Whether an aggregate's input holds each person at most once per group, so a release can
//! count its people as rows (`poplar_people_of_unique_rows`) instead of through a set.
//!
//! The proof is narrow on purpose, since a wrong "unique" would count one person twice
//! and let a group of fewer than k people through rule 2:
//! - the input is one table's rows, filtered, renamed, sorted or limited, and nothing
//!   else (no join, union, unnest, window or aggregate in between: each could repeat a
//!   row or change what a row is);
//! - the table declares a primary key (non-null, jointly unique) that Poplar verified on
//!   the rows it holds, as `register_membership`'s `(person_id, register)` is checked
//!   when the snapshot opens (`catalog::membership_table`);
//! - every column of that key reaches the aggregate unchanged as a plain group key or as
//!   the pid itself (the same-values trace), or is pinned to one value by a filter in the
//!   chain (`register = 'diabetes'`, as each `register_<id>` view has), and the aggregate
//!   has no grouping sets (a set that leaves a key column out merges rows the key kept
//!   apart).
//!
//! DataFusion's own functional dependencies are not used: they pass through `Unnest`,
//! which repeats rows.

use deltalake::datafusion::common::Constraint;
use deltalake::datafusion::logical_expr::utils::split_conjunction;
use deltalake::datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableScan};

use super::same_values::{Origin, origin_of, unalias};

/// Whether no (group, person) pair occurs twice in `input`, for an aggregate grouped by
/// `group_expr` whose person column is `pid`.
pub(super) fn one_row_per_person_per_group(input: &LogicalPlan, group_expr: &[Expr], pid: &Expr) -> bool {
    if group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return false;
    }
    let Some((scan_node, scan, pinned)) = single_table_below(input) else {
        return false;
    };
    let Some(constraints) = scan.source.constraints() else {
        return false;
    };
    let table = scan.source.schema();
    let covered: Vec<_> = group_expr
        .iter()
        .chain(std::iter::once(pid))
        .filter_map(|e| origin_of(input, unalias(e)))
        .chain(pinned)
        .collect();
    let is_covered = |name: &str| covered.iter().any(|o| o.is_column_of(scan_node, name));
    constraints.iter().any(|c| match c {
        Constraint::PrimaryKey(indices) => indices
            .iter()
            .all(|&i| i < table.fields().len() && is_covered(table.field(i).name())),
        // A unique key lets NULLs repeat.
        Constraint::Unique(_) => false,
    })
}

/// The one table scan under a chain of nodes that keep rows whole and never repeat one:
/// the scan's plan node, the scan, and the origins of the columns that the chain's filters
/// pin to one value (`column = literal`), which every row left has in common.
fn single_table_below(plan: &LogicalPlan) -> Option<(&LogicalPlan, &TableScan, Vec<Origin>)> {
    match plan {
        LogicalPlan::TableScan(scan) => Some((plan, scan, Vec::new())),
        LogicalPlan::Projection(p) => single_table_below(&p.input),
        LogicalPlan::Filter(f) => {
            let (node, scan, mut pinned) = single_table_below(&f.input)?;
            for conjunct in split_conjunction(&f.predicate) {
                if let Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) = conjunct
                {
                    let column = match (unalias(left), unalias(right)) {
                        (c @ Expr::Column(_), Expr::Literal(..)) | (Expr::Literal(..), c @ Expr::Column(_)) => c,
                        _ => continue,
                    };
                    pinned.extend(origin_of(&f.input, column));
                }
            }
            Some((node, scan, pinned))
        }
        LogicalPlan::SubqueryAlias(a) => single_table_below(&a.input),
        LogicalPlan::Sort(s) => single_table_below(&s.input),
        LogicalPlan::Limit(l) => single_table_below(&l.input),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::common::Constraints;
    use deltalake::datafusion::datasource::{MemTable, provider_as_source};
    use deltalake::datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
    use std::sync::Arc;

    /// A `members(person_id, practice, register)` scan, declared unique on
    /// (person_id, register) or not, with the pid added as the analyzer adds it.
    fn members(key: Option<Constraint>) -> LogicalPlanBuilder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("practice", DataType::Utf8, false),
            Field::new("register", DataType::Utf8, false),
        ]));
        let mut table = MemTable::try_new(schema, vec![vec![]]).expect("table");
        if let Some(key) = key {
            table = table.with_constraints(Constraints::new_unverified(vec![key]));
        }
        LogicalPlanBuilder::scan("members", provider_as_source(Arc::new(table)), None)
            .expect("scan")
            .project(vec![
                col("person_id"),
                col("practice"),
                col("register"),
                col("person_id").alias("__ppl_pid"),
            ])
            .expect("projection")
    }

    fn key() -> Option<Constraint> {
        Some(Constraint::PrimaryKey(vec![0, 2]))
    }

    fn unique(plan: &LogicalPlan, groups: &[&str]) -> bool {
        let groups: Vec<Expr> = groups.iter().map(|g| col(*g)).collect();
        one_row_per_person_per_group(plan, &groups, &col("__ppl_pid"))
    }

    #[test]
    fn a_key_covered_by_group_keys_and_the_pid_is_one_row_per_person() {
        let plan = members(key()).build().expect("plan");
        assert!(unique(&plan, &["register", "practice"]));
        assert!(unique(&plan, &["register"]));
        // Filtered, renamed, sorted and limited rows are still each other's.
        let plan = members(key())
            .filter(col("practice").eq(lit("P1")))
            .expect("filter")
            .alias("m")
            .expect("alias")
            .sort(vec![col("register").sort(true, true)])
            .expect("sort")
            .limit(0, Some(10))
            .expect("limit")
            .build()
            .expect("plan");
        assert!(unique(&plan, &["register"]));
    }

    #[test]
    fn a_key_column_pinned_by_a_filter_is_covered() {
        // What `register_diabetes` is: one register's rows, the register column dropped.
        let view = members(key())
            .filter(col("register").eq(lit("diabetes")).and(col("practice").is_not_null()))
            .expect("filter")
            .project(vec![col("person_id"), col("practice"), col("__ppl_pid")])
            .expect("projection")
            .alias("register_diabetes")
            .expect("alias")
            .build()
            .expect("plan");
        assert!(unique(&view, &["practice"]));
        // Pinned to one of two values is not pinned.
        let either = members(key())
            .filter(col("register").eq(lit("diabetes")).or(col("register").eq(lit("copd"))))
            .expect("filter")
            .build()
            .expect("plan");
        assert!(!unique(&either, &["practice"]));
    }

    #[test]
    fn without_every_key_column_a_person_may_repeat() {
        let plan = members(key()).build().expect("plan");
        // Grouped by practice only: one person on two registers is two rows.
        assert!(!unique(&plan, &["practice"]));
        assert!(!unique(&plan, &[]));
        // No declared key, or only a unique key (NULLs may repeat).
        assert!(!unique(&members(None).build().expect("plan"), &["register"]));
        let plan = members(Some(Constraint::Unique(vec![0, 2]))).build().expect("plan");
        assert!(!unique(&plan, &["register"]));
    }

    #[test]
    fn a_computed_group_key_or_a_grouping_set_does_not_cover_the_key() {
        let plan = members(key()).build().expect("plan");
        let computed = vec![deltalake::datafusion::functions::expr_fn::lower(col("register"))];
        assert!(!one_row_per_person_per_group(&plan, &computed, &col("__ppl_pid")));
        let rollup = vec![Expr::GroupingSet(
            deltalake::datafusion::logical_expr::GroupingSet::Rollup(vec![col("register"), col("practice")]),
        )];
        assert!(!one_row_per_person_per_group(&plan, &rollup, &col("__ppl_pid")));
    }

    #[test]
    fn rows_that_may_repeat_are_never_proven_unique() {
        // A join can pair one member row with many rows: the same key columns, no proof.
        let other = members(key()).alias("o").expect("alias").build().expect("plan");
        let joined = members(key())
            .alias("m")
            .expect("alias")
            .join_on(
                other,
                deltalake::datafusion::common::JoinType::Inner,
                vec![col("m.practice").eq(col("o.practice"))],
            )
            .expect("join")
            .project(vec![col("m.person_id"), col("m.register"), col("m.__ppl_pid")])
            .expect("projection")
            .build()
            .expect("plan");
        assert!(!unique(&joined, &["register"]));
        // A union of the table with itself holds every row twice.
        let twice = members(key())
            .union(members(key()).build().expect("plan"))
            .expect("union")
            .build()
            .expect("plan");
        assert!(!unique(&twice, &["register"]));
    }
}
