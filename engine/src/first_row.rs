//! "The latest row per person": `row_number() OVER (PARTITION BY … ORDER BY …) = 1` without
//! numbering every row.
//!
//! Commissioners write this often (the latest code, value or contact per person). DataFusion
//! sorts the rows by partition and order keys, numbers every row in `BoundedWindowAggExec`,
//! then filters all but the first. The numbering is the slow part: it keeps state per
//! partition, and with one partition per person it took 230 ms of CPU for 210,000 rows in
//! the suite's window question (BENCHMARKS.md), longer than the sort. In rows already sorted
//! by the partition keys, the row numbered 1 is the first row of each run of equal keys, so
//! this rule replaces the window under such a filter with [`FirstRowExec`], which keeps those
//! rows (and gives them their number, 1) by comparing neighbouring keys.
//!
//! The filter and any projection between them stay as they were: they now see only rows
//! numbered 1, and keep all of them. The rule runs on one server's plans only; a cluster's
//! scheduler plans its own, where the window is left as DataFusion made it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{partition, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Result, ScalarValue, internal_err};
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::Operator;
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use deltalake::datafusion::physical_expr::window::StandardWindowExpr;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use deltalake::datafusion::physical_plan::filter::FilterExec;
use deltalake::datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use deltalake::datafusion::physical_plan::projection::ProjectionExec;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
};
use futures::StreamExt;

/// Replaces a row-numbering window under `= 1` with [`FirstRowExec`]; see the module docs.
#[derive(Debug, Default)]
pub struct FirstRowPerPartition;

impl PhysicalOptimizerRule for FirstRowPerPartition {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match first_row_under(&node)? {
            Some(child) => node
                .replace_children(vec![child], ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))
                .map(Transformed::yes),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "first_row_per_partition"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// If `node` is a filter keeping the rows a sorted `row_number()` window numbered 1 (through
/// at most one projection), its new input: the same, with the window replaced.
fn first_row_under(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = plan_as::<FilterExec>(node) else {
        return Ok(None);
    };
    let Some(mut column) = column_equal_to_one(filter.predicate()) else {
        return Ok(None);
    };
    // Through a projection, the column it passes on from the window.
    let projection = plan_as::<ProjectionExec>(filter.input());
    let input = match projection {
        Some(projected) => {
            let Some(source) = projected.expr().get(column).and_then(|e| expr_as::<Column>(&e.expr)) else {
                return Ok(None);
            };
            column = source.index();
            projected.input()
        }
        None => filter.input(),
    };
    let Some(window) = plan_as::<BoundedWindowAggExec>(input) else {
        return Ok(None);
    };
    let [expr] = window.window_expr() else {
        return Ok(None);
    };
    let numbered = column == window.input().schema().fields().len()
        && window.input_order_mode == InputOrderMode::Sorted
        && !expr.partition_by().is_empty()
        && window.schema().field(column).data_type() == &DataType::UInt64
        && is_row_number(expr.as_any());
    if !numbered {
        return Ok(None);
    }
    let first: Arc<dyn ExecutionPlan> = Arc::new(FirstRowExec::new(
        Arc::clone(window.input()),
        expr.partition_by().to_vec(),
        window.schema(),
        window.properties().as_ref().clone(),
    ));
    Ok(Some(match projection {
        Some(_) => Arc::clone(filter.input())
            .replace_children(vec![first], ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))?,
        None => first,
    }))
}

/// The column an `= 1` (either way round) compares, if that is the whole predicate.
fn column_equal_to_one(predicate: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    let binary = expr_as::<BinaryExpr>(predicate)?;
    if *binary.op() != Operator::Eq {
        return None;
    }
    let is_one = |e: &Arc<dyn PhysicalExpr>| {
        expr_as::<Literal>(e).is_some_and(|l| {
            let value = l.value();
            value.data_type().is_integer() && ScalarValue::new_one(&value.data_type()).is_ok_and(|one| &one == value)
        })
    };
    let column = |e: &Arc<dyn PhysicalExpr>| expr_as::<Column>(e).map(Column::index);
    match (column(binary.left()), column(binary.right())) {
        (Some(index), None) if is_one(binary.right()) => Some(index),
        (None, Some(index)) if is_one(binary.left()) => Some(index),
        _ => None,
    }
}

fn plan_as<T: 'static>(node: &Arc<dyn ExecutionPlan>) -> Option<&T> {
    let any: &dyn Any = node.as_ref();
    any.downcast_ref()
}

fn expr_as<T: 'static>(expr: &Arc<dyn PhysicalExpr>) -> Option<&T> {
    let any: &dyn Any = expr.as_ref();
    any.downcast_ref()
}

fn is_row_number(expr: &dyn Any) -> bool {
    expr.downcast_ref::<StandardWindowExpr>()
        .and_then(|e| e.get_standard_func_expr().as_any().downcast_ref::<WindowUDFExpr>())
        .is_some_and(|f| f.fun().name() == "row_number")
}

/// The first row of each run of equal partition keys in its sorted input, numbered 1: what
/// a `row_number()` window under `= 1` keeps. Its schema and properties are the window's.
#[derive(Debug)]
pub struct FirstRowExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl FirstRowExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        properties: PlanProperties,
    ) -> Self {
        Self {
            input,
            partition_by,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for FirstRowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.partition_by.iter().map(|k| k.to_string()).collect();
        write!(f, "FirstRowExec: partition_by=[{}]", keys.join(", "))
    }
}

impl ExecutionPlan for FirstRowExec {
    fn name(&self) -> &str {
        "FirstRowExec"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for key in &self.partition_by {
            if f(key)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }
    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Ok([input]) = <[_; 1]>::try_from(children) else {
            return internal_err!("FirstRowExec takes one input");
        };
        Ok(Arc::new(Self::new(
            input,
            self.partition_by.clone(),
            self.schema.clone(),
            self.properties.as_ref().clone(),
        )))
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input_schema = self.input.schema();
        let fields = self
            .partition_by
            .iter()
            .map(|key| Ok(SortField::new(key.data_type(&input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut firsts = Firsts {
            keys: self.partition_by.clone(),
            converter: RowConverter::new(fields)?,
            previous: None,
            schema: self.schema.clone(),
        };
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let rows = self.input.execute(partition, context)?.map(move |batch| {
            let timer = metrics.elapsed_compute().timer();
            let kept = firsts.of(&batch?);
            timer.done();
            kept.inspect(|kept| metrics.record_output(kept.num_rows()))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), rows)))
    }
}

/// The state of one partition's stream: the keys of the last row seen, so that a run of
/// equal keys crossing into the next batch is not started twice.
struct Firsts {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    previous: Option<OwnedRow>,
    schema: SchemaRef,
}

impl Firsts {
    fn of(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let keys = self
            .keys
            .iter()
            .map(|key| key.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let key_at = |converter: &RowConverter, row: usize| -> Result<OwnedRow> {
            let one: Vec<ArrayRef> = keys.iter().map(|k| k.slice(row, 1)).collect();
            Ok(converter.convert_columns(&one)?.row(0).owned())
        };
        let continues = match &self.previous {
            Some(previous) => previous.row() == key_at(&self.converter, 0)?.row(),
            None => false,
        };
        self.previous = Some(key_at(&self.converter, rows - 1)?);
        let starts: UInt32Array = partition(&keys)?
            .ranges()
            .into_iter()
            .skip(usize::from(continues))
            .map(|run| {
                u32::try_from(run.start).map_err(|_| arrow::error::ArrowError::ComputeError("batch too long".into()))
            })
            .collect::<Result<_, _>>()?;
        let firsts = take_record_batch(batch, &starts)?;
        let mut columns = firsts.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from_value(1, firsts.num_rows())));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::SessionStateBuilder;
    use deltalake::datafusion::physical_plan::{collect, displayable};
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    /// People with several events over three small batches, so runs cross batch edges;
    /// ties on date are broken by the code, and one person has a NULL date.
    fn events() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person", DataType::Int64, true),
            Field::new("day", DataType::Int64, true),
            Field::new("code", DataType::Utf8, false),
        ]));
        let rows: [(Option<i64>, Option<i64>, &str); 12] = [
            (Some(1), Some(5), "a"),
            (Some(1), Some(9), "b"),
            (Some(2), Some(3), "c"),
            (Some(3), Some(1), "d"),
            (Some(1), Some(9), "a"),
            (Some(2), Some(3), "b"),
            (Some(3), None, "e"),
            (Some(4), Some(2), "f"),
            (None, Some(7), "g"),
            (Some(2), Some(8), "h"),
            (None, Some(8), "i"),
            (Some(3), Some(1), "j"),
        ];
        let batches = rows
            .chunks(4)
            .map(|chunk| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.0))),
                        Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.1))),
                        Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.2))),
                    ],
                )
                .expect("batch")
            })
            .collect();
        MemTable::try_new(schema, vec![batches]).expect("table")
    }

    /// The plan and answer of `sql`, with the rule on or off; batches of 2 rows, so that
    /// partitions cross batches inside the plan too.
    async fn run(sql: &str, rule: bool) -> (String, String) {
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new().with_batch_size(2).with_target_partitions(2));
        if rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(FirstRowPerPartition));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.register_table("events", Arc::new(events())).expect("register");
        let plan = ctx
            .sql(sql)
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plan");
        let text = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.expect("runs");
        (text, pretty_format_batches(&batches).expect("format").to_string())
    }

    #[tokio::test]
    async fn the_latest_row_per_person_is_the_windows_answer() {
        let sql = "SELECT person, code, latest FROM (SELECT person, code, row_number() OVER \
                   (PARTITION BY person ORDER BY day DESC, code) AS latest FROM events) WHERE latest = 1 \
                   ORDER BY person NULLS FIRST";
        let (with_rule, answer) = run(sql, true).await;
        let (without, expected) = run(sql, false).await;
        assert!(with_rule.contains("FirstRowExec"), "{with_rule}");
        assert!(!with_rule.contains("BoundedWindowAggExec"), "{with_rule}");
        assert!(without.contains("BoundedWindowAggExec"), "{without}");
        assert_eq!(answer, expected);
        // By hand: person 1's latest is day 9 code a; 3's NULL date sorts first (DESC).
        for row in [
            "|        | i    | 1      |",
            "| 1      | a    | 1      |",
            "| 3      | e    | 1      |",
        ] {
            assert!(answer.contains(row), "{answer}");
        }
    }

    #[tokio::test]
    async fn other_numbers_and_other_functions_keep_the_window() {
        for sql in [
            "SELECT person FROM (SELECT person, row_number() OVER (PARTITION BY person ORDER BY day) AS r \
             FROM events) WHERE r = 2",
            "SELECT person FROM (SELECT person, rank() OVER (PARTITION BY person ORDER BY day) AS r \
             FROM events) WHERE r = 1",
            "SELECT person FROM (SELECT person, row_number() OVER (ORDER BY day) AS r FROM events) WHERE r = 1",
            // A second function in the same window, used above: the window must stay.
            "SELECT person, c FROM (SELECT person, row_number() OVER (PARTITION BY person ORDER BY day) AS r, \
             count(*) OVER (PARTITION BY person ORDER BY day) AS c FROM events) WHERE r = 1",
        ] {
            let sql = format!("{sql} ORDER BY person NULLS FIRST");
            let (plan, answer) = run(&sql, true).await;
            assert!(!plan.contains("FirstRowExec"), "{sql}\n{plan}");
            assert_eq!(answer, run(&sql, false).await.1, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_number_compared_either_way_round_and_used_above_is_one() {
        let sql = "SELECT person, latest + 10 AS shifted FROM (SELECT person, row_number() OVER \
                   (PARTITION BY person ORDER BY day, code) AS latest FROM events) WHERE 1 = latest \
                   ORDER BY person NULLS LAST";
        let (plan, answer) = run(sql, true).await;
        assert!(plan.contains("FirstRowExec"), "{plan}");
        assert_eq!(answer, run(sql, false).await.1);
    }
}
