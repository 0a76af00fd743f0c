//! Whether two columns of a plan hold the same value on every row: each is traced back to
//! the one column of one plan node that computes it. Disclosure control adds the hidden pid
//! (`__ppl_pid`, `person_id` under another name) beside the user's own `person_id` to
//! enforce "same person"; where the two provably hold the same values, enforcing it again
//! would only hash and compare twice. The analyzer asks before adding the pid to a window
//! partition or a per-person `GROUP BY`, and before taking a release's `count(DISTINCT …)`
//! from its own count of people; the optimizer rule `redundant_join_keys` asks about join
//! keys.
//!
//! The trace passes only through steps that keep each row's value: projections that only
//! rename, aliases, filters, sorts, limits, joins (which pass a side's value, or NULL for
//! both of that side's columns at once) and plain group keys. Anything else (an expression,
//! an aggregate's value, a union, a grouping set) stops it, and the columns then count as
//! different: a wrong "different" costs speed, never protection.

use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};

/// Whether `a` and `b`, both columns of `plan`, hold the same value on every row (both
/// traced to one origin).
pub(super) fn same_values(plan: &LogicalPlan, a: &Expr, b: &Expr) -> bool {
    match (origin_of(plan, a), origin_of(plan, b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The expression under any aliases.
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
pub(super) struct Origin {
    node: *const LogicalPlan,
    column: Column,
}

impl Origin {
    /// Whether this is column `name` of the node `plan` (that very node, not an equal one).
    pub(super) fn is_column_of(&self, plan: &LogicalPlan, name: &str) -> bool {
        std::ptr::eq(self.node, plan) && self.column.name == name
    }
}

/// The origin of a join key on the side `plan`, if the key is a column.
pub(super) fn origin_of(plan: &LogicalPlan, key: &Expr) -> Option<Origin> {
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
