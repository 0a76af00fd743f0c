//! What disclosure control did to an answer, told to the Flight SQL client: the last
//! message of a `DoGet` stream carries it as `app_metadata` (JSON), since the counts are
//! known only once the answer has run — after its schema, and maybe its rows, were sent.
//!
//! The count rides on a message the stream sends anyway (the last record batch, or the
//! schema of an empty answer), not on a message of its own: a data-less `FlightData`
//! is legal, but not every client's reader accepts one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use arrow_flight::FlightData;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::disclosure::ReleaseStats;

/// The `app_metadata` of an answer's last message.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseSummary {
    /// Value cells suppressed (primary or secondary), shown as NULL.
    pub cells_suppressed: u64,
    /// Small groups left out of the answer, their keys not shown (see the schema's
    /// `poplar.small_groups` for why).
    pub groups_withheld: u64,
}

impl ReleaseSummary {
    fn of(stats: &ReleaseStats) -> Self {
        Self {
            cells_suppressed: stats.cells_suppressed.load(Ordering::Relaxed),
            groups_withheld: stats.groups_withheld.load(Ordering::Relaxed),
        }
    }
}

/// `inner` with its last message held back until the stream ends, then sent with the
/// release's summary as `app_metadata`. An error ends the stream without one.
pub(super) fn with_release_summary<S>(inner: S, stats: Arc<ReleaseStats>) -> WithReleaseSummary<S>
where
    S: Stream<Item = Result<FlightData, Status>> + Unpin,
{
    WithReleaseSummary {
        inner,
        stats,
        held: None,
        failed: None,
        done: false,
    }
}

pub(super) struct WithReleaseSummary<S> {
    inner: S,
    stats: Arc<ReleaseStats>,
    /// The message most recently received, sent when the next one arrives.
    held: Option<FlightData>,
    /// An error received while a message was held: sent after it.
    failed: Option<Status>,
    done: bool,
}

impl<S> Stream for WithReleaseSummary<S>
where
    S: Stream<Item = Result<FlightData, Status>> + Unpin,
{
    type Item = Result<FlightData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(status) = this.failed.take() {
            return Poll::Ready(Some(Err(status)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(message))) => {
                    if let Some(previous) = this.held.replace(message) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    let Some(previous) = this.held.take() else {
                        return Poll::Ready(Some(Err(status)));
                    };
                    this.failed = Some(status);
                    return Poll::Ready(Some(Ok(previous)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let Some(mut last) = this.held.take() else {
                        return Poll::Ready(None);
                    };
                    let summary = ReleaseSummary::of(&this.stats);
                    match serde_json::to_vec(&summary) {
                        Ok(json) => last.app_metadata = json.into(),
                        Err(e) => {
                            return Poll::Ready(Some(Err(Status::internal(format!(
                                "cannot encode the release summary: {e}"
                            )))));
                        }
                    }
                    return Poll::Ready(Some(Ok(last)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream};

    fn message(n: u8) -> FlightData {
        FlightData {
            data_body: vec![n].into(),
            ..Default::default()
        }
    }

    fn stats(cells: u64, groups: u64) -> Arc<ReleaseStats> {
        let stats = ReleaseStats::default();
        stats.cells_suppressed.store(cells, Ordering::Relaxed);
        stats.groups_withheld.store(groups, Ordering::Relaxed);
        Arc::new(stats)
    }

    #[tokio::test]
    async fn only_the_last_message_carries_the_summary() {
        let inner = stream::iter(vec![Ok(message(1)), Ok(message(2)), Ok(message(3))]);
        let out: Vec<_> = with_release_summary(inner, stats(4, 2)).collect().await;
        let out: Vec<FlightData> = out.into_iter().map(|m| m.expect("ok")).collect();
        assert_eq!(out.iter().map(|m| m.data_body[0]).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(out[0].app_metadata.is_empty() && out[1].app_metadata.is_empty());
        let summary: serde_json::Value = serde_json::from_slice(&out[2].app_metadata).expect("json");
        assert_eq!(
            summary,
            serde_json::json!({"cells_suppressed": 4, "groups_withheld": 2})
        );
    }

    #[tokio::test]
    async fn a_failed_answer_ends_with_its_error_and_no_summary() {
        let inner = stream::iter(vec![Ok(message(1)), Ok(message(2)), Err(Status::internal("boom"))]);
        let out: Vec<_> = with_release_summary(inner, stats(0, 0)).collect().await;
        assert_eq!(out.len(), 3, "every message, then the error");
        assert!(
            out[..2]
                .iter()
                .all(|m| m.as_ref().is_ok_and(|m| m.app_metadata.is_empty()))
        );
        assert!(out[2].is_err());
    }

    #[tokio::test]
    async fn an_empty_stream_stays_empty() {
        let inner = stream::iter(Vec::<Result<FlightData, Status>>::new());
        assert_eq!(with_release_summary(inner, stats(0, 0)).count().await, 0);
    }
}
