//! The cluster's part of a plan, cancelled on the scheduler when its answer is dropped
//! before it ends.
//!
//! Ballista's `DistributedQueryExec` submits a job and streams its result, but dropping
//! that stream (a query stopped at its time limit, a client gone mid-answer) leaves the
//! job running on the executors until it finishes: the front end's slot is free again
//! while the cluster keeps working, and a user can start as many such jobs as they like.
//! [`ClusterJobExec`] wraps it: it displays and plans as the `DistributedQueryExec` it
//! holds, and its stream asks the scheduler to cancel the job when dropped unfinished.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion_proto::protobuf::LogicalPlanNode;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::common::{Result as DfResult, internal_err};
use deltalake::datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_plan::execution_plan::ReplaceChildrenOptions;
use deltalake::datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// The cluster's part of a plan: a `DistributedQueryExec` whose job is cancelled on the
/// scheduler when its stream is dropped before the end.
#[derive(Debug)]
pub struct ClusterJobExec {
    job: Arc<DistributedQueryExec<LogicalPlanNode>>,
    scheduler_url: String,
}

impl ClusterJobExec {
    pub fn new(job: DistributedQueryExec<LogicalPlanNode>, scheduler_url: String) -> Self {
        Self {
            job: Arc::new(job),
            scheduler_url,
        }
    }

    /// The scheduler's id for the job, once the scheduler has accepted it.
    pub fn job_id(&self) -> Option<String> {
        self.job.job_id().map(|id| id.to_string())
    }
}

impl DisplayAs for ClusterJobExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        self.job.fmt_as(t, f)
    }
}

impl ExecutionPlan for ClusterJobExec {
    fn name(&self) -> &str {
        self.job.name()
    }
    fn schema(&self) -> SchemaRef {
        self.job.schema()
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        self.job.properties()
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("ClusterJobExec takes no inputs");
        }
        Ok(self)
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(deltalake::datafusion::physical_plan::ChildrenPropertiesMode::Keep),
        )
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let results = self.job.execute(partition, context)?;
        Ok(Box::pin(CancelledIfDropped {
            results,
            job: self.job.clone(),
            scheduler_url: self.scheduler_url.clone(),
            ended: false,
        }))
    }
}

/// The job's results; dropped before their end, the job is cancelled.
struct CancelledIfDropped {
    results: SendableRecordBatchStream,
    job: Arc<DistributedQueryExec<LogicalPlanNode>>,
    scheduler_url: String,
    /// The results ended (or failed): the scheduler has finished the job itself.
    ended: bool,
}

impl Stream for CancelledIfDropped {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.results.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        next
    }
}

impl RecordBatchStream for CancelledIfDropped {
    fn schema(&self) -> SchemaRef {
        self.results.schema()
    }
}

impl Drop for CancelledIfDropped {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Not yet accepted: nothing runs on the cluster yet that the scheduler could name.
        let Some(job_id) = self.job.job_id().map(|id| id.to_string()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                job_id,
                "a cluster job's answer was dropped outside a runtime; the job was not cancelled"
            );
            return;
        };
        let scheduler_url = self.scheduler_url.clone();
        runtime.spawn(async move {
            let cancelled = async {
                SchedulerGrpcClient::connect(scheduler_url)
                    .await?
                    .cancel_job(CancelJobParams { job_id: job_id.clone() })
                    .await
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            };
            match cancelled.await {
                Ok(_) => tracing::info!(job_id, "the cluster job of a stopped query was cancelled"),
                Err(e) => {
                    tracing::warn!(job_id, error = %e, "the cluster job of a stopped query could not be cancelled")
                }
            }
        });
    }
}
