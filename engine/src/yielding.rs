//! Joins give way to the runtime, so that a query stopped at its time limit stops working.
//!
//! A query's work runs on Tokio tasks, and an aborted task only ends at its next `.await`
//! that returns `Pending`. DataFusion makes each plan's scans (its leaves) spend Tokio's
//! cooperative budget per batch, which is enough while every batch comes from a scan. A
//! join's batches do not: a cross join makes one batch per row of its build side for each
//! probe batch, so `generate_series(1, 1000) CROSS JOIN (a CROSS JOIN b)` gives millions of
//! batches between two polls of a scan, and the aggregate above it never yields. The time
//! limit then answers the client, but the work spins on a worker thread (or, with both
//! workers taken, the timer that should stop it never fires). With zero-column batches
//! (`count(*)`) the memory limit never sees it either.
//!
//! This rule wraps the output of every operator with more than one input (the joins) and of
//! `UnnestExec` in DataFusion's `CooperativeExec`: one unit of budget per batch, so the
//! task yields every 128 batches, wherever they come from.

use std::any::Any;
use std::sync::Arc;

use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::coop::CooperativeExec;
use deltalake::datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use deltalake::datafusion::physical_plan::unnest::UnnestExec;

/// Wraps every join's (and unnest's) output in `CooperativeExec`; see the module docs.
#[derive(Debug, Default)]
pub struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        // Children first, then the node's own output: an already wrapped node (this rule
        // run twice, or a plan decoded on a cluster) is left as it is.
        let plan = plan
            .transform_up(|node| {
                let any: &dyn Any = node.as_ref();
                let children = node.children();
                if any.is::<CooperativeExec>() || !children.iter().any(|child| multiplies(child)) {
                    return Ok(Transformed::no(node));
                }
                let wrapped = children
                    .into_iter()
                    .map(|child| match multiplies(child) {
                        true => Arc::new(CooperativeExec::new(Arc::clone(child))) as Arc<dyn ExecutionPlan>,
                        false => Arc::clone(child),
                    })
                    .collect();
                // The wrapper keeps its input's partitioning and ordering.
                node.replace_children(wrapped, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))
                    .map(Transformed::yes)
            })?
            .data;
        Ok(match multiplies(&plan) {
            true => Arc::new(CooperativeExec::new(plan)),
            false => plan,
        })
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `node` can give many batches for one batch of input: a join (any operator with
/// more than one input) or an unnest.
fn multiplies(node: &Arc<dyn ExecutionPlan>) -> bool {
    let any: &dyn Any = node.as_ref();
    node.children().len() > 1 || any.is::<UnnestExec>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::physical_plan::displayable;
    use deltalake::datafusion::prelude::SessionContext;

    async fn optimized(sql: &str) -> String {
        let ctx = SessionContext::new();
        let plan = ctx
            .sql(sql)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical");
        let once = YieldingJoins.optimize(plan, &ConfigOptions::default()).expect("rule");
        let twice = YieldingJoins
            .optimize(Arc::clone(&once), &ConfigOptions::default())
            .expect("rule");
        let text = displayable(once.as_ref()).indent(false).to_string();
        assert_eq!(
            text,
            displayable(twice.as_ref()).indent(false).to_string(),
            "idempotent"
        );
        text
    }

    #[tokio::test]
    async fn every_join_output_spends_budget_and_scans_are_left_alone() {
        let plan = optimized(
            "SELECT count(*) FROM generate_series(1, 10) AS c(z) CROSS JOIN \
             (SELECT x FROM generate_series(1, 10) AS a(x) JOIN generate_series(1, 10) AS b(y) ON x = y)",
        )
        .await;
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("CrossJoinExec") || line.starts_with("HashJoinExec") {
                assert!(
                    lines[i - 1].starts_with("CooperativeExec"),
                    "a join's output is cooperative:\n{plan}"
                );
            }
        }
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("CooperativeExec")).count(),
            2,
            "only the two joins are wrapped:\n{plan}"
        );
    }

    #[tokio::test]
    async fn an_unnest_spends_budget() {
        let plan = optimized("SELECT unnest(make_array(1, 2, 3))").await;
        assert!(plan.contains("CooperativeExec"), "{plan}");
    }
}
