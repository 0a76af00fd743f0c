//! An answer on its way out: the record batches of an executed plan, counted, with a
//! non-steward's run-time errors withheld, and the audit entry completed when the stream
//! ends (or cancelled when it is dropped). The answer holds its query's slot, and stops
//! the query's work when its time limit passes.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::guard::AuditGuard;
use crate::EngineError;
use crate::audit::Outcome;
use crate::disclosure::ReleaseStats;
use crate::error::Rule;
use crate::limits::{Slot, Spilled};

/// What a non-steward sees when their query fails while running. A run-time error can
/// quote a value it choked on (a failed cast, say), so its text is for stewards only.
const WITHHELD: &str = "the query failed while running; details are withheld under disclosure control";
/// What the audit log records of any run-time failure: the error text may quote data.
const FAILED_WHILE_STREAMING: &str = "failed while streaming the answer";

/// A running answer: its schema and its batches. The stream owns the audit guard.
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch, EngineError>>,
    /// What disclosure control did to the answer (complete once the stream has ended).
    pub release: Arc<ReleaseStats>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Answer {
    /// Every batch, for services that answer in one message (the audit entry is completed
    /// before this returns).
    pub async fn collect(self) -> Result<Vec<RecordBatch>, EngineError> {
        self.batches.try_collect().await
    }

    /// Every batch and what disclosure control did to them (which cells it suppressed and
    /// why), for services that mark each suppressed cell.
    pub async fn collect_with_release(self) -> Result<(Vec<RecordBatch>, Arc<ReleaseStats>), EngineError> {
        let release = self.release.clone();
        let batches = self.batches.try_collect().await?;
        Ok((batches, release))
    }
}

struct Streaming {
    /// Dropped (and with it the query's work) when the answer ends early.
    batches: Option<SendableRecordBatchStream>,
    /// The query's slot, held until its answer ends.
    _slot: Slot,
    deadline: Instant,
    time_limit: Duration,
    /// Present until the completing entry has been written.
    guard: Option<AuditGuard>,
    steward: bool,
    /// The running plan, whose metrics say at the end what it spilled.
    plan: Arc<dyn ExecutionPlan>,
}

/// What a running answer holds besides its batches: its slot, its time limit and its plan.
pub(crate) struct Running {
    pub slot: Slot,
    pub deadline: Instant,
    pub time_limit: Duration,
    pub plan: Arc<dyn ExecutionPlan>,
}

pub(crate) fn stream(
    schema: SchemaRef,
    batches: SendableRecordBatchStream,
    guard: AuditGuard,
    steward: bool,
    running: Running,
    release: Arc<ReleaseStats>,
) -> Answer {
    let state = Streaming {
        batches: Some(batches),
        _slot: running.slot,
        deadline: running.deadline,
        time_limit: running.time_limit,
        guard: Some(guard),
        steward,
        plan: running.plan,
    };
    let batches = futures::stream::unfold(state, |mut state| async move {
        let guard = state.guard.as_mut()?;
        let next = tokio::time::timeout_at(state.deadline, state.batches.as_mut()?.next()).await;
        match next {
            Ok(Some(Ok(batch))) => {
                guard.count_rows(batch.num_rows());
                Some((Ok(batch), state))
            }
            Err(_elapsed) => {
                // Stop the work now, not when the transport drops the answer.
                state.batches = None;
                let guard = state.guard.take()?;
                let limit = EngineError::refused(
                    Rule::TimeLimit,
                    format!(
                        "the query ran longer than {} s and was stopped",
                        state.time_limit.as_secs()
                    ),
                );
                let error = match guard.finish(Outcome::from(&limit)).await {
                    Err(audit) => audit,
                    Ok(()) => limit,
                };
                Some((Err(error), state))
            }
            Ok(Some(Err(e))) => {
                state.batches = None;
                let guard = state.guard.take()?;
                let error = EngineError::from(e);
                // A limit refusal names no data: everyone may read it. Any other run-time
                // error's text may quote a value.
                let outcome = match error.rule() {
                    Some(_) => Outcome::from(&error),
                    None => Outcome::Failed {
                        message: FAILED_WHILE_STREAMING.into(),
                    },
                };
                let error = match guard.finish(outcome).await {
                    Err(audit) => audit,
                    Ok(()) if state.steward || error.rule().is_some() => error,
                    Ok(()) => EngineError::from(DataFusionError::Execution(WITHHELD.into())),
                };
                Some((Err(error), state))
            }
            Ok(None) => {
                state.batches = None;
                let spilled = Spilled::of(state.plan.as_ref());
                if spilled.spills > 0 {
                    tracing::info!(
                        spills = spilled.spills,
                        spilled_bytes = spilled.bytes,
                        spilled_rows = spilled.rows,
                        "the query spilled to disk to stay inside its memory limit"
                    );
                }
                let guard = state.guard.take()?;
                match guard.finish(Outcome::Answered).await {
                    Ok(()) => None,
                    Err(audit) => Some((Err(audit), state)),
                }
            }
        }
    });
    Answer {
        schema,
        batches: batches.boxed(),
        release,
    }
}
