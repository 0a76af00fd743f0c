//! The audit guard of an answer that streams. Before the first row leaves, it appends a
//! provisional `started` entry; when the answer ends it appends the entry that completes
//! it — answered, failed, or, if the guard is dropped first (the client went away, the
//! request was cancelled), cancelled. A server killed mid-answer leaves the provisional
//! entry alone, which is what a steward should see: an answer began and never ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::EngineError;
use crate::audit::{AuditLog, AuditRecord, Outcome};
use crate::disclosure::ReleaseStats;

#[derive(Debug)]
pub(crate) struct AuditGuard {
    log: Arc<AuditLog>,
    record: AuditRecord,
    started: Instant,
    stats: Arc<ReleaseStats>,
    /// The provisional entry's seq.
    provisional: u64,
    rows: u64,
    finished: bool,
}

impl AuditGuard {
    /// Append the provisional entry. No answer may start without it.
    pub(crate) async fn begin(
        log: Arc<AuditLog>,
        record: AuditRecord,
        started: Instant,
        stats: Arc<ReleaseStats>,
    ) -> Result<Self, EngineError> {
        let mut provisional = record.clone();
        provisional.outcome = Outcome::Started;
        provisional.duration_ms = elapsed_ms(started);
        let entry = log.append(provisional).await?;
        Ok(Self {
            log,
            record,
            started,
            stats,
            provisional: entry.seq,
            rows: 0,
            finished: false,
        })
    }

    pub(crate) fn count_rows(&mut self, rows: usize) {
        self.rows += rows as u64;
    }

    fn completion(&self, outcome: Outcome) -> AuditRecord {
        let mut record = self.record.clone();
        record.outcome = outcome;
        record.rows = self.rows;
        record.cells_suppressed = self.stats.cells_suppressed.load(Ordering::Relaxed);
        record.groups_withheld = self.stats.groups_withheld.load(Ordering::Relaxed);
        record.duration_ms = elapsed_ms(self.started);
        record.completes = Some(self.provisional);
        record
    }

    /// Append the completing entry.
    pub(crate) async fn finish(mut self, outcome: Outcome) -> Result<(), EngineError> {
        self.finished = true;
        let record = self.completion(outcome);
        self.log.append(record).await.map(drop)
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped before the answer ended: record the cancellation. Drop cannot wait, so
        // the append runs on the runtime; if there is none (the process is ending), the
        // provisional entry alone says the answer never ended.
        let record = self.completion(Outcome::Cancelled);
        let log = self.log.clone();
        let user = record.user.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = log.append(record).await {
                        tracing::error!(error = %e, %user, "could not record a cancelled answer in the audit log");
                    }
                });
            }
            Err(_) => tracing::error!(%user, "no runtime to record a cancelled answer; its provisional entry stands"),
        }
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
