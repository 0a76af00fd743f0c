//! Building a release: an aggregate over people's records grouped by anything but the
//! person becomes a `Protect` node over the same aggregate with hidden columns added —
//! distinct people per group (rule 2) and an order-free digest of who they are (the people
//! layer of the noise), both from `poplar_people`, and each sum's or mean's scale — and
//! each output column classified as the cell kind the release must make safe.

use deltalake::datafusion::common::{Result, ScalarValue};
use deltalake::datafusion::functions::math::expr_fn::abs;
use deltalake::datafusion::functions_aggregate::expr_fn::{count, max};
use deltalake::datafusion::logical_expr::expr::AggregateFunction;
use deltalake::datafusion::logical_expr::utils::grouping_set_to_exprlist;
use deltalake::datafusion::logical_expr::{Aggregate, Expr, Extension, LogicalPlan, lit};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::lineage::{self, Lineage};
use super::people;
use super::policy::SmallGroups;
use super::protect::{Cell, ProtectNode, ProtectSpec};
use super::rule::{Flow, Rewriter, pid_column, reads_tainted, refuse};
use super::same_values::{same_values, unalias};
use super::unique_rows::one_row_per_person_per_group;
use crate::error::Rule;

const PEOPLE: &str = "__ppl_people";

impl Rewriter<'_> {
    /// An aggregate over people's records grouped by something other than the person.
    pub(super) fn release(
        &self,
        input: LogicalPlan,
        flow: &Flow,
        group_expr: Vec<Expr>,
        aggr_expr: Vec<Expr>,
        from_distinct: bool,
    ) -> Result<(LogicalPlan, Flow)> {
        let schema = input.schema().clone();
        let Some(pid) = pid_column(&schema) else {
            return refuse(Rule::AggregateOnly, "internal: a person-level input lost its person");
        };
        let mut cells: Vec<(Cell, String)> = Vec::new();
        // How many distinct people each group has and an order-free digest of who they
        // are (seeds the people layer of the noise), from one set of (group, person); or,
        // where the input provably holds each person once per group, from its rows.
        let counter = if one_row_per_person_per_group(&input, &group_expr, &pid) {
            people::udaf_of_unique_rows()
        } else {
            people::udaf()
        };
        let mut hidden: Vec<Expr> = vec![counter.call(vec![pid.clone()]).alias(PEOPLE)];
        let first_hidden = aggr_expr.len();
        let mut value_cells = Vec::new();
        let mut placeholders = Vec::new();
        for (i, e) in aggr_expr.iter().enumerate() {
            let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(e) else {
                return refuse(
                    Rule::ReleasedAggregates,
                    format!("{e} is not an aggregate Poplar can release"),
                );
            };
            let name = func.name().to_ascii_lowercase();
            let args_tainted = params.args.iter().any(|x| reads_tainted(x, &schema, &flow.tainted))
                || params
                    .order_by
                    .iter()
                    .any(|s| reads_tainted(&s.expr, &schema, &flow.tainted));
            let text = e.schema_name().to_string();
            let scale_arg = || {
                params
                    .args
                    .first()
                    .cloned()
                    .unwrap_or_else(|| lit(ScalarValue::Int64(Some(0))))
            };
            let cell = match name.as_str() {
                // `count(DISTINCT person_id)` over rows whose pid is that very person_id
                // counts the people `poplar_people` counts already: the release reads it
                // from there, and the aggregate computes a cheap placeholder under the
                // column's name rather than a second set of the same people.
                "count"
                    if params.distinct
                        && params.filter.is_none()
                        && matches!(params.args.as_slice(), [arg] if same_values(&input, arg, &pid)) =>
                {
                    placeholders.push((i, count(lit(1_i64)).alias(&text)));
                    Cell::Count {
                        conditional: false,
                        of_people: true,
                    }
                }
                // Counting people (or their records) is what Poplar is for, person_id included.
                "count" => Cell::Count {
                    conditional: params.filter.is_some()
                        || params
                            .args
                            .iter()
                            .any(|a| !matches!(unalias(a), Expr::Literal(..) | Expr::Column(_))),
                    of_people: false,
                },
                _ if args_tainted => {
                    return refuse(
                        Rule::AggregateOnly,
                        format!("{text} is computed from person_id, which never leaves Poplar"),
                    );
                }
                "sum" | "avg" | "mean" => {
                    let scale = first_hidden + hidden.len();
                    hidden.push(max(abs(scale_arg())).alias(format!("__ppl_scale_{i}")));
                    if name == "sum" {
                        Cell::Sum { scale }
                    } else {
                        Cell::Mean { scale }
                    }
                }
                "median" => Cell::Median,
                "min" | "max" => {
                    return refuse(
                        Rule::ReleasedAggregates,
                        format!(
                            "{text}: the extreme of a group is one person's value; use median(…) or count people in bands"
                        ),
                    );
                }
                other => {
                    return refuse(
                        Rule::ReleasedAggregates,
                        format!("{other}(…) is not released over people's records (released: count, sum, avg, median)"),
                    );
                }
            };
            value_cells.push((cell, text));
        }

        let mut all = aggr_expr;
        for (i, placeholder) in placeholders {
            all[i] = placeholder;
        }
        let hidden_count = hidden.len();
        all.extend(hidden);
        let aggregate = Aggregate::try_new(Arc::new(input), group_expr, all)?;
        let out = aggregate.schema.clone();
        let visible = out.fields().len() - hidden_count;
        let group_width = visible - value_cells.len();
        // Key columns in the aggregate's order, each with where its values come from.
        let mut key_lineage = grouping_set_to_exprlist(&aggregate.group_expr)?
            .into_iter()
            .map(|k| lineage::of_expr(k, aggregate.input.schema(), &flow.lineage))
            .collect::<Vec<_>>()
            .into_iter();
        for i in 0..group_width {
            let name = out.field(i).name();
            cells.push((
                if name == Aggregate::INTERNAL_GROUPING_ID {
                    Cell::GroupingId
                } else {
                    Cell::Key {
                        public: key_lineage.next() == Some(Lineage::Public),
                    }
                },
                name.clone(),
            ));
        }
        // A scale column's index was counted from the first aggregate; the aggregate's
        // output starts with its group columns.
        for (cell, _) in &mut value_cells {
            if let Cell::Sum { scale } | Cell::Mean { scale } = cell {
                *scale += group_width;
            }
        }
        cells.extend(value_cells);
        let question = hex::encode(Sha256::digest(aggregate.input.display_indent().to_string().as_bytes()));
        let Some(people) = out.fields().iter().position(|f| f.name() == PEOPLE) else {
            return refuse(Rule::AggregateOnly, "internal: hidden release columns missing");
        };
        let spec = Arc::new(ProtectSpec {
            policy: self.rule.policy.clone(),
            noised: self.rule.noised,
            cells,
            people,
            question,
            drop_small_groups: from_distinct || self.rule.policy.small_groups == SmallGroups::Withhold,
            stats: self.rule.stats.clone(),
        });
        let node = ProtectNode::try_new(LogicalPlan::Aggregate(aggregate), spec)?;
        let width = node.schema.fields().len();
        Ok((
            LogicalPlan::Extension(Extension { node: Arc::new(node) }),
            Flow::safe(width),
        ))
    }
}
