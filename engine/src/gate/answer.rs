//! An answer on its way out: the record batches of an executed plan, counted, with a
//! non-steward's run-time errors withheld, and the audit entry completed when the stream
//! ends (or cancelled when it is dropped).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::guard::AuditGuard;
use crate::EngineError;
use crate::audit::Outcome;

/// What a non-steward sees when their query fails while running. A run-time error can
/// quote a value it choked on (a failed cast, say), so its text is for stewards only.
const WITHHELD: &str = "the query failed while running; details are withheld under disclosure control";
/// What the audit log records of any run-time failure: the error text may quote data.
const FAILED_WHILE_STREAMING: &str = "failed while streaming the answer";

/// A running answer: its schema and its batches. The stream owns the audit guard.
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch, EngineError>>,
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
}

struct Streaming {
    batches: SendableRecordBatchStream,
    /// Present until the completing entry has been written.
    guard: Option<AuditGuard>,
    steward: bool,
}

pub(crate) fn stream(
    schema: SchemaRef,
    batches: SendableRecordBatchStream,
    guard: AuditGuard,
    steward: bool,
) -> Answer {
    let state = Streaming {
        batches,
        guard: Some(guard),
        steward,
    };
    let batches = futures::stream::unfold(state, |mut state| async move {
        let guard = state.guard.as_mut()?;
        match state.batches.next().await {
            Some(Ok(batch)) => {
                guard.count_rows(batch.num_rows());
                Some((Ok(batch), state))
            }
            Some(Err(e)) => {
                let guard = state.guard.take()?;
                let failed = Outcome::Failed {
                    message: FAILED_WHILE_STREAMING.into(),
                };
                let error = match guard.finish(failed).await {
                    Err(audit) => audit,
                    Ok(()) if state.steward => EngineError::from(e),
                    Ok(()) => EngineError::from(DataFusionError::Execution(WITHHELD.into())),
                };
                Some((Err(error), state))
            }
            None => {
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
    }
}
