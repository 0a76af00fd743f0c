//! The physical `ProtectExec` operator and the query planner that turns a `Protect` node
//! into it. The operator gathers the whole aggregate into one partition, because secondary
//! suppression looks at the whole answer at once.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::Session;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::common::{Result as DfResult, internal_err};
use deltalake::datafusion::execution::context::QueryPlanner;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use deltalake::datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use std::fmt;
use std::sync::Arc;

use super::release::release;
use super::{ProtectNode, ProtectSpec, protected_field};

#[derive(Debug)]
pub struct ProtectExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<ProtectSpec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ProtectExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: Arc<ProtectSpec>) -> DfResult<Self> {
        let in_schema = input.schema();
        if spec.cells.len() > in_schema.fields().len() {
            return internal_err!("Protect has more cells than its input has columns");
        }
        let fields: Vec<Field> = (0..spec.cells.len())
            .map(|i| protected_field(in_schema.field(i), &spec.cells[i].0))
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, spec.metadata(in_schema.metadata())));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            spec,
            schema,
            properties,
        })
    }
}

impl DisplayAs for ProtectExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ProtectExec: min_people={}, noise={}",
            self.spec.policy.min_people, self.spec.noised
        )
    }
}

impl ExecutionPlan for ProtectExec {
    fn name(&self) -> &str {
        "ProtectExec"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        // Secondary suppression looks at the whole answer at once.
        vec![Distribution::SinglePartition]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("ProtectExec takes one input");
        }
        Ok(Arc::new(ProtectExec::new(children.swap_remove(0), self.spec.clone())?))
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(deltalake::datafusion::physical_plan::ChildrenPropertiesMode::Recompute),
        )
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ProtectExec has one partition");
        }
        let input = self.input.execute(0, context)?;
        let (spec, schema, in_schema) = (self.spec.clone(), self.schema.clone(), self.input.schema());
        let released = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let whole = concat_batches(&in_schema, &batches)?;
            Ok(release(&spec, &schema, &whole)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(released),
        )))
    }
}

/// Plans a `Protect` node as [`ProtectExec`] (the single-node and the cluster planner both).
pub(crate) struct ProtectPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for ProtectPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &deltalake::datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(protect) = node.as_any().downcast_ref::<ProtectNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("Protect takes one input");
        };
        Ok(Some(Arc::new(ProtectExec::new(input.clone(), protect.spec.clone())?)))
    }
}

/// DataFusion's planner, taught to plan `Protect`.
#[derive(Debug)]
pub struct PoplarQueryPlanner;

#[async_trait::async_trait]
impl QueryPlanner for PoplarQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ProtectPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
