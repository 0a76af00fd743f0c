//! `poplar.governance.v1`: the stewards' console over gRPC — feed status per source,
//! opt-outs applied (and applying one, where the deployment gives the server the loaders'
//! key), audit search and verification, and the users. Stewards only: anyone
//! else is refused under the steward-only-data rule. Every call is audited through the
//! gate. (The review queue and output checking are the studies service's.)

pub mod feeds;

use std::sync::Arc;

use chrono::{NaiveDate, SecondsFormat, Utc};
use poplar_loaders::optout::OptOutList;
use poplar_loaders::{Pseudonymiser, Store, Table};
use poplar_proto::governance::v1 as pb;
use poplar_proto::governance::v1::governance_service_server::GovernanceService;
use tonic::{Request, Response, Status};

pub use poplar_proto::governance::v1::governance_service_server::GovernanceServiceServer;

use crate::EngineError;
use crate::audit::{self, AuditRequest};
use crate::catalog::SnapshotContext;
use crate::error::Rule;
use crate::gate::Gate;
use crate::identity::Principal;

/// Most audit entries one search returns.
const MAX_AUDIT_RESULTS: u32 = 1_000;
const DEFAULT_AUDIT_RESULTS: u32 = 100;

#[derive(Debug)]
pub struct PoplarGovernance {
    gate: Arc<Gate>,
    store: Store,
    /// The loaders' key, where the deployment lets stewards apply opt-outs from here.
    optout_key: Option<Arc<Pseudonymiser>>,
    /// One opt-out application at a time from this server.
    applying: tokio::sync::Mutex<()>,
}

impl PoplarGovernance {
    pub fn new(gate: Arc<Gate>, store: Store, optout_key: Option<Arc<Pseudonymiser>>) -> Self {
        Self {
            gate,
            store,
            optout_key,
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// The caller, if a steward; anyone else's call is refused and audited.
    async fn steward<T>(&self, request: &Request<T>, rpc: &str) -> Result<Principal, Status> {
        let who = self
            .gate
            .authenticate(crate::flight::bearer(request), rpc)
            .await
            .map_err(Status::from)?;
        if who.is_steward() {
            return Ok(who);
        }
        let refused = EngineError::refused(Rule::StewardOnlyData, "the stewards' console is for data stewards");
        let audit = AuditRequest::Call { rpc: rpc.to_string() };
        Err(Status::from(self.gate.request(&who, audit).fail(refused).await))
    }
}

fn date(text: Option<String>) -> Option<NaiveDate> {
    text.and_then(|t| NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok())
}

fn text(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

async fn rows(snapshot: &SnapshotContext, sql: &str) -> Result<Vec<arrow::array::RecordBatch>, EngineError> {
    Ok(snapshot.context.sql(sql).await?.collect().await?)
}

/// The sources, the ledger and the quarantine counts as `snapshot` sees them (trusted
/// internal SQL over steward-only tables, for a steward).
async fn feed_rows(
    snapshot: &SnapshotContext,
) -> Result<(Vec<String>, Vec<feeds::Delivery>, Vec<(String, String, u64)>), EngineError> {
    use poplar_loaders::landing::{int64_values, string_values};
    let organisations = rows(snapshot, "SELECT ods_code FROM organisations ORDER BY ods_code").await?;
    let sources = string_values(&organisations, 0)?.into_iter().flatten().collect();
    let ledger = rows(
        snapshot,
        "SELECT source_org, delivery, CAST(period_start AS VARCHAR), CAST(period_end AS VARCHAR), \
         CAST(loaded_at AS VARCHAR), status, \
         patients_rows + clinical_events_rows + medications_rows + encounters_rows \
         FROM deliveries",
    )
    .await?;
    let mut columns = Vec::with_capacity(6);
    for i in 0..6 {
        columns.push(string_values(&ledger, i)?);
    }
    let mut columns = columns.into_iter();
    let mut next = || columns.next().unwrap_or_default();
    let (source, delivery, start, end, loaded, status) = (next(), next(), next(), next(), next(), next());
    let landed_rows = int64_values(&ledger, 6);
    let deliveries = (0..source.len())
        .map(|i| feeds::Delivery {
            source_org: source[i].clone().unwrap_or_default(),
            delivery: delivery[i].clone().unwrap_or_default(),
            period_start: date(start[i].clone()),
            period_end: date(end[i].clone()),
            loaded_at: date(loaded[i].clone()),
            landed: status[i].as_deref() == Some("landed"),
            rows_landed: u64::try_from(landed_rows.get(i).copied().unwrap_or(0)).unwrap_or(0),
        })
        .collect();
    let quarantine = rows(
        snapshot,
        "SELECT source_org, reason, count(*) FROM quarantine GROUP BY source_org, reason",
    )
    .await?;
    let (q_source, q_reason) = (string_values(&quarantine, 0)?, string_values(&quarantine, 1)?);
    let q_rows = int64_values(&quarantine, 2);
    let quarantined = (0..q_source.len())
        .map(|i| {
            (
                q_source[i].clone().unwrap_or_default(),
                q_reason[i].clone().unwrap_or_default(),
                u64::try_from(q_rows.get(i).copied().unwrap_or(0)).unwrap_or(0),
            )
        })
        .collect();
    Ok((sources, deliveries, quarantined))
}

#[tonic::async_trait]
impl GovernanceService for PoplarGovernance {
    async fn feed_status(
        &self,
        request: Request<pb::FeedStatusRequest>,
    ) -> Result<Response<pb::FeedStatusResponse>, Status> {
        let rpc = "Governance/FeedStatus";
        let who = self.steward(&request, rpc).await?;
        let late_after = match request.into_inner().late_after_days {
            0 => feeds::DEFAULT_LATE_AFTER_DAYS,
            days => days,
        };
        let (sources, deliveries, quarantined) = self
            .gate
            .metadata(&who, rpc, |snapshot| async move { feed_rows(&snapshot).await })
            .await
            .map_err(Status::from)?;
        let (feeds, region_end) =
            feeds::status(&sources, &deliveries, &quarantined, Utc::now().date_naive(), late_after);
        Ok(Response::new(pb::FeedStatusResponse {
            feeds: feeds
                .into_iter()
                .map(|f| pb::Feed {
                    source_org: f.source_org,
                    last_delivery: f.last_delivery.unwrap_or_default(),
                    last_loaded_at: text(f.last_loaded_at),
                    period_start: text(f.period_start),
                    period_end: text(f.period_end),
                    deliveries_landed: f.deliveries_landed,
                    deliveries_rejected: f.deliveries_rejected,
                    rows_landed: f.rows_landed,
                    quarantined: f
                        .quarantined
                        .into_iter()
                        .map(|(reason, rows)| pb::QuarantineCount { reason, rows })
                        .collect(),
                    days_behind: f.days_behind.unwrap_or(-1),
                    days_since_last_delivery: f.days_since_last_delivery.unwrap_or(-1),
                    late: f.late,
                })
                .collect(),
            data_as_of: text(region_end),
            late_after_days: late_after,
        }))
    }

    async fn opt_outs(&self, request: Request<pb::OptOutsRequest>) -> Result<Response<pb::OptOutsResponse>, Status> {
        let rpc = "Governance/OptOuts";
        let who = self.steward(&request, rpc).await?;
        let store = self.store.clone();
        let answer = self
            .gate
            .metadata(&who, rpc, |_| async move {
                use poplar_loaders::landing::{int64_values, query, string_values};
                let people = match store.open(Table::OptOuts).await? {
                    Some(table) => int64_values(&query(&table, "SELECT count(*) FROM t").await?, 0)
                        .first()
                        .copied()
                        .unwrap_or(0),
                    None => 0,
                };
                let applications = match store.open(Table::Snapshots).await? {
                    Some(table) => {
                        let batches = query(
                            &table,
                            "SELECT snapshot, CAST(created_at AS VARCHAR), load_id FROM t \
                             WHERE operation = 'optout' ORDER BY snapshot",
                        )
                        .await?;
                        let (at, run) = (string_values(&batches, 1)?, string_values(&batches, 2)?);
                        int64_values(&batches, 0)
                            .into_iter()
                            .enumerate()
                            .map(|(i, snapshot)| pb::OptOutApplication {
                                snapshot,
                                at: at[i].clone().unwrap_or_default(),
                                run_id: run[i].clone().unwrap_or_default(),
                            })
                            .collect()
                    }
                    None => Vec::new(),
                };
                Ok(pb::OptOutsResponse {
                    people: u64::try_from(people).unwrap_or(0),
                    applications,
                })
            })
            .await
            .map_err(Status::from)?;
        Ok(Response::new(answer))
    }

    async fn apply_opt_out(
        &self,
        request: Request<pb::ApplyOptOutRequest>,
    ) -> Result<Response<pb::ApplyOptOutResponse>, Status> {
        let rpc = "Governance/ApplyOptOut";
        let who = self.steward(&request, rpc).await?;
        let text = request.into_inner().nhs_numbers;
        let store = self.store.clone();
        let key = self.optout_key.clone();
        let _one_at_a_time = self.applying.lock().await;
        let answer = self
            .gate
            .metadata(&who, rpc, |_| async move {
                let key = key.ok_or_else(|| {
                    EngineError::InvalidRequest(
                        "this server does not hold the pseudonymisation key: apply the list with \
                         `poplar optout apply`, or start the server with --optout-key-file"
                            .into(),
                    )
                })?;
                // The loaders' own path: pseudonymise, remove landed rows, record the
                // pseudonyms, one snapshot; then the registers derived again, as `poplar
                // optout apply` does. The NHS numbers go no further than `parse`.
                let list = OptOutList::parse(&text, &key);
                drop(text);
                let run_id = format!("optout-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
                let report = poplar_loaders::optout::apply(&store, &list, &run_id).await?;
                crate::catalog::derive_registers(&store).await?;
                let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                Ok(pb::ApplyOptOutResponse {
                    newly_opted_out: count(report.newly_opted_out),
                    already_recorded: count(report.already_recorded),
                    invalid_entries: count(report.invalid_entries),
                    rows_removed: report
                        .rows_removed
                        .into_iter()
                        .map(|(table, rows)| pb::RowsRemoved {
                            table: table.to_string(),
                            rows,
                        })
                        .collect(),
                    snapshot: report.snapshot.unwrap_or(0),
                })
            })
            .await
            .map_err(Status::from)?;
        tracing::info!(
            newly_opted_out = answer.newly_opted_out,
            snapshot = answer.snapshot,
            "opt-out applied from the console"
        );
        Ok(Response::new(answer))
    }

    async fn search_audit(
        &self,
        request: Request<pb::SearchAuditRequest>,
    ) -> Result<Response<pb::SearchAuditResponse>, Status> {
        let rpc = "Governance/SearchAudit";
        let who = self.steward(&request, rpc).await?;
        let filter = request.into_inner();
        let store = self.store.clone();
        let entries = self
            .gate
            .metadata(&who, rpc, |_| async move { audit::entries(&store).await })
            .await
            .map_err(Status::from)?;
        let limit = match filter.limit {
            0 => DEFAULT_AUDIT_RESULTS,
            n => n.min(MAX_AUDIT_RESULTS),
        } as usize;
        let matches = |e: &audit::AuditEntry| {
            let r = &e.record;
            (filter.user.is_empty() || r.user == filter.user)
                && (filter.kind.is_empty() || r.request.kind() == filter.kind)
                && (filter.outcome.is_empty() || r.outcome.status() == filter.outcome)
                && (filter.rule.is_empty() || r.outcome.rule() == Some(filter.rule.as_str()))
                && (filter.contains.is_empty() || r.request.text().contains(&filter.contains))
        };
        let found = entries
            .iter()
            .rev()
            .filter(|e| matches(e))
            .take(limit)
            .map(|e| pb::AuditEntry {
                seq: e.seq,
                at: e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                user: e.record.user.clone(),
                role: e.record.role.clone(),
                kind: e.record.request.kind().to_string(),
                request: e.record.request.text(),
                outcome: e.record.outcome.status().to_string(),
                rule: e.record.outcome.rule().unwrap_or_default().to_string(),
                detail: e.record.outcome.detail().unwrap_or_default(),
                rows: e.record.rows,
                cells_suppressed: e.record.cells_suppressed,
                hash: e.hash.clone(),
            })
            .collect();
        Ok(Response::new(pb::SearchAuditResponse { entries: found }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let rpc = "Governance/VerifyAudit";
        let who = self.steward(&request, rpc).await?;
        let store = self.store.clone();
        let report = self
            .gate
            .metadata(&who, rpc, |_| async move { audit::verify(&store).await })
            .await
            .map_err(Status::from)?;
        let last = report.last.clone();
        Ok(Response::new(pb::VerifyAuditResponse {
            ok: report.is_ok(),
            entries_checked: report.entries_checked,
            head_seq: last.as_ref().map_or(0, |h| h.seq),
            head_hash: last.map(|h| h.hash).unwrap_or_default(),
            problems: report.problems.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let rpc = "Governance/ListUsers";
        let who = self.steward(&request, rpc).await?;
        let gate = self.gate.clone();
        let users = self
            .gate
            .metadata(&who, rpc, |_| async move { Ok(gate.users()) })
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users
                .into_iter()
                .map(|(name, role)| pb::User {
                    name,
                    role: role.as_str().to_string(),
                })
                .collect(),
        }))
    }
}
