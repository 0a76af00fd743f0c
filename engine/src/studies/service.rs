//! `poplar.studies.v1`: the studies over gRPC. Only translates: wire messages to the
//! module's requests and back, engine errors to statuses (with the rule's id).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use poplar_proto::studies::v1 as pb;
use poplar_proto::studies::v1::studies_service_server::StudiesService;
use tonic::{Request, Response, Status};

pub use poplar_proto::studies::v1::studies_service_server::StudiesServiceServer;

use super::Studies;
use super::model::{self, Run, RunState, State, Study, Submission};
use super::params::{ParamKind, ParamSpec};
use crate::EngineError;
use crate::identity::Principal;

#[derive(Debug)]
pub struct PoplarStudies {
    studies: Arc<Studies>,
}

impl PoplarStudies {
    pub fn new(studies: Arc<Studies>) -> Self {
        Self { studies }
    }

    async fn principal<T>(&self, request: &Request<T>, rpc: &str) -> Result<Principal, Status> {
        self.studies
            .gate()
            .authenticate(crate::flight::bearer(request), rpc)
            .await
            .map_err(Status::from)
    }

    async fn study(&self, study: Study) -> Result<Response<pb::Study>, Status> {
        let optouts = self.studies.optout_snapshots().await.map_err(Status::from)?;
        Ok(Response::new(study_to_pb(&study, &optouts)))
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(message.into())
}

fn kind_from_pb(value: i32) -> Result<ParamKind, EngineError> {
    match pb::ParameterType::try_from(value) {
        Ok(pb::ParameterType::Date) => Ok(ParamKind::Date),
        Ok(pb::ParameterType::Integer) => Ok(ParamKind::Integer),
        Ok(pb::ParameterType::Choice) => Ok(ParamKind::Choice),
        Ok(pb::ParameterType::Codelist) => Ok(ParamKind::Codelist),
        Ok(pb::ParameterType::RegisterList) => Ok(ParamKind::RegisterList),
        Ok(pb::ParameterType::AreaList) => Ok(ParamKind::AreaList),
        Ok(pb::ParameterType::Unspecified) | Err(_) => Err(bad("every parameter needs a type")),
    }
}

fn kind_to_pb(kind: ParamKind) -> pb::ParameterType {
    match kind {
        ParamKind::Date => pb::ParameterType::Date,
        ParamKind::Integer => pb::ParameterType::Integer,
        ParamKind::Choice => pb::ParameterType::Choice,
        ParamKind::Codelist => pb::ParameterType::Codelist,
        ParamKind::RegisterList => pb::ParameterType::RegisterList,
        ParamKind::AreaList => pb::ParameterType::AreaList,
    }
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn spec_from_pb(p: pb::Parameter) -> Result<ParamSpec, EngineError> {
    Ok(ParamSpec {
        kind: kind_from_pb(p.r#type)?,
        name: p.name,
        min: optional(p.min),
        max: optional(p.max),
        options: p.options,
    })
}

fn state_to_pb(state: State) -> pb::StudyState {
    match state {
        State::Submitted => pb::StudyState::Submitted,
        State::Approved => pb::StudyState::Approved,
        State::Returned => pb::StudyState::Returned,
        State::Rejected => pb::StudyState::Rejected,
        State::Withdrawn => pb::StudyState::Withdrawn,
        State::Revoked => pb::StudyState::Revoked,
        State::Expired => pb::StudyState::Expired,
    }
}

fn run_state_to_pb(state: RunState) -> pb::OutputState {
    match state {
        RunState::Running => pb::OutputState::Running,
        RunState::Held => pb::OutputState::Held,
        RunState::Released => pb::OutputState::Released,
        RunState::Withheld => pb::OutputState::Withheld,
        RunState::Failed => pb::OutputState::Failed,
    }
}

fn approval_to_pb(by: &str, at: Option<DateTime<Utc>>, t: &model::Terms) -> pb::Approval {
    pb::Approval {
        by: by.to_string(),
        at: at.map(time).unwrap_or_default(),
        sql_sha256: t.sql_sha256.clone(),
        parameters_sha256: t.parameters_sha256.clone(),
        policy_version: t.policy_version.clone(),
        run_quota: t.run_quota,
        expires_at: time(t.expires_at),
    }
}

/// A run as the wire shows it; `optouts` are the snapshots opt-outs were applied in.
pub fn run_to_pb(study_id: &str, run: &Run, optouts: &[i64]) -> pb::StudyRun {
    pb::StudyRun {
        run_id: run.id.clone(),
        study_id: study_id.to_string(),
        run_by: run.by.clone(),
        at: time(run.at),
        parameters: run.parameters.clone().into_iter().collect(),
        pin: Some(pb::Pin {
            snapshot: run.pin.snapshot,
            table_versions: run.pin.table_versions.clone().into_iter().collect(),
            reference_date: run.pin.reference_date.clone().unwrap_or_default(),
            later_optouts: optouts.iter().copied().filter(|s| *s > run.pin.snapshot).collect(),
        }),
        state: run_state_to_pb(run.state) as i32,
        summary: run.summary.as_ref().map(|s| pb::OutputSummary {
            rows: s.rows,
            cells_suppressed: s.cells_suppressed,
            smallest_count: s.smallest_count,
            counts_rounded: s.counts_rounded,
            round_to: u32::try_from(s.round_to).unwrap_or(u32::MAX),
            unprotected_columns: s.unprotected_columns.clone(),
            same_as_released_run: s.same_as_released_run.clone().unwrap_or_default(),
        }),
        output_sha256: run.output_sha256.clone().unwrap_or_default(),
        checked_by: run.checked_by.clone().unwrap_or_default(),
        check_comments: run.check_comments.clone(),
        checks: run
            .checks
            .iter()
            .map(|c| pb::OutputCheck {
                by: c.by.clone(),
                at: time(c.at),
                decision: if c.released {
                    pb::OutputDecision::Release
                } else {
                    pb::OutputDecision::Withhold
                } as i32,
                comments: c.comments.clone(),
            })
            .collect(),
        checks_required: run.checks_required,
    }
}

pub fn study_to_pb(s: &Study, optouts: &[i64]) -> pb::Study {
    pb::Study {
        study_id: s.id.clone(),
        author: s.author.clone(),
        title: s.submission.title.clone(),
        purpose: s.submission.purpose.clone(),
        outputs: s.submission.outputs.clone(),
        sql: s.submission.sql.clone(),
        sql_sha256: s.sql_sha256.clone(),
        parameters: s
            .submission
            .parameters
            .iter()
            .map(|p| pb::Parameter {
                name: p.name.clone(),
                r#type: kind_to_pb(p.kind) as i32,
                min: p.min.clone().unwrap_or_default(),
                max: p.max.clone().unwrap_or_default(),
                options: p.options.clone(),
            })
            .collect(),
        state: state_to_pb(s.state(Utc::now())) as i32,
        approvals: s
            .approvals
            .iter()
            .map(|a| approval_to_pb(&a.by, Some(a.at), &a.terms))
            .collect(),
        approvals_required: s.submission.approvals_required,
        bound: s.bound.as_ref().map(|t| {
            let by = s.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>().join(",");
            approval_to_pb(&by, s.approvals.last().map(|a| a.at), t)
        }),
        runs_used: u32::try_from(s.runs.len()).unwrap_or(u32::MAX),
        history: s
            .history
            .iter()
            .map(|e| pb::Event {
                seq: e.seq,
                at: time(e.at),
                by: e.by.clone(),
                action: e.event.action().to_string(),
                comments: e.event.comments(),
            })
            .collect(),
        runs: s.runs.iter().map(|r| run_to_pb(&s.id, r, optouts)).collect(),
    }
}

#[tonic::async_trait]
impl StudiesService for PoplarStudies {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::Study>, Status> {
        let who = self.principal(&request, "Studies/Submit").await?;
        let r = request.into_inner();
        let parameters = match r
            .parameters
            .into_iter()
            .map(spec_from_pb)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) => p,
            Err(e) => {
                return Err(Status::from(self.studies.refuse(&who, "new", "submit", e).await));
            }
        };
        let submission = Submission {
            title: r.title,
            purpose: r.purpose,
            outputs: r.outputs,
            sql: r.sql,
            parameters,
            approvals_required: 0,
        };
        let id = optional(r.study_id);
        let study = self
            .studies
            .submit(&who, id.as_deref(), submission)
            .await
            .map_err(Status::from)?;
        self.study(study).await
    }

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let who = self.principal(&request, "Studies/List").await?;
        let studies = self.studies.list(&who).await;
        let optouts = self.studies.optout_snapshots().await.map_err(Status::from)?;
        self.studies
            .gate()
            .metadata(&who, "Studies/List", |_| async { Ok(()) })
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::ListResponse {
            studies: studies.iter().map(|s| study_to_pb(s, &optouts)).collect(),
        }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::Study>, Status> {
        let who = self.principal(&request, "Studies/Get").await?;
        let id = request.into_inner().study_id;
        let studies = &self.studies;
        let study = studies
            .gate()
            .metadata(&who, "Studies/Get", |_| async { studies.get(&who, &id).await })
            .await
            .map_err(Status::from)?;
        self.study(study).await
    }

    async fn review(&self, request: Request<pb::ReviewRequest>) -> Result<Response<pb::Study>, Status> {
        let who = self.principal(&request, "Studies/Review").await?;
        let r = request.into_inner();
        let study = match pb::Decision::try_from(r.decision) {
            Ok(pb::Decision::Approve) => {
                let expires = match DateTime::parse_from_rfc3339(&r.expires_at) {
                    Ok(t) => t.with_timezone(&Utc),
                    Err(_) => {
                        let e = bad("an approval needs expires_at as an RFC 3339 time");
                        return Err(Status::from(self.studies.refuse(&who, &r.study_id, "approve", e).await));
                    }
                };
                self.studies.approve(&who, &r.study_id, r.run_quota, expires).await
            }
            Ok(pb::Decision::Return) => self.studies.return_to_author(&who, &r.study_id, r.comments).await,
            Ok(pb::Decision::Reject) => self.studies.reject(&who, &r.study_id, r.comments).await,
            Ok(pb::Decision::Unspecified) | Err(_) => {
                let e = bad("a review needs a decision: approve, return or reject");
                return Err(Status::from(self.studies.refuse(&who, &r.study_id, "review", e).await));
            }
        }
        .map_err(Status::from)?;
        self.study(study).await
    }

    async fn withdraw(&self, request: Request<pb::EndRequest>) -> Result<Response<pb::Study>, Status> {
        let who = self.principal(&request, "Studies/Withdraw").await?;
        let r = request.into_inner();
        let study = self
            .studies
            .withdraw(&who, &r.study_id, r.reason)
            .await
            .map_err(Status::from)?;
        self.study(study).await
    }

    async fn revoke(&self, request: Request<pb::EndRequest>) -> Result<Response<pb::Study>, Status> {
        let who = self.principal(&request, "Studies/Revoke").await?;
        let r = request.into_inner();
        let study = self
            .studies
            .revoke(&who, &r.study_id, r.reason)
            .await
            .map_err(Status::from)?;
        self.study(study).await
    }

    async fn run(&self, request: Request<pb::RunRequest>) -> Result<Response<pb::StudyRun>, Status> {
        let who = self.principal(&request, "Studies/Run").await?;
        let r = request.into_inner();
        let parameters: BTreeMap<String, String> = r.parameters.into_iter().collect();
        let as_of = optional(r.as_of_run);
        let run = self
            .studies
            .run(&who, &r.study_id, parameters, as_of.as_deref())
            .await
            .map_err(Status::from)?;
        let optouts = self.studies.optout_snapshots().await.map_err(Status::from)?;
        Ok(Response::new(run_to_pb(&r.study_id, &run, &optouts)))
    }

    async fn check_output(&self, request: Request<pb::CheckOutputRequest>) -> Result<Response<pb::StudyRun>, Status> {
        let who = self.principal(&request, "Studies/CheckOutput").await?;
        let r = request.into_inner();
        let release = match pb::OutputDecision::try_from(r.decision) {
            Ok(pb::OutputDecision::Release) => true,
            Ok(pb::OutputDecision::Withhold) => false,
            Ok(pb::OutputDecision::Unspecified) | Err(_) => {
                let e = bad("an output check needs a decision: release or withhold");
                return Err(Status::from(self.studies.refuse(&who, &r.run_id, "check", e).await));
            }
        };
        let run = self
            .studies
            .check_output(&who, &r.run_id, release, r.comments)
            .await
            .map_err(Status::from)?;
        let optouts = self.studies.optout_snapshots().await.map_err(Status::from)?;
        let study_id = Studies::study_of(&r.run_id).to_string();
        Ok(Response::new(run_to_pb(&study_id, &run, &optouts)))
    }

    async fn fetch(&self, request: Request<pb::FetchRequest>) -> Result<Response<pb::FetchResponse>, Status> {
        let who = self.principal(&request, "Studies/Fetch").await?;
        let r = request.into_inner();
        let csv = pb::Format::try_from(r.format) == Ok(pb::Format::Csv);
        let fetched = self.studies.fetch(&who, &r.run_id, csv).await.map_err(Status::from)?;
        Ok(Response::new(pb::FetchResponse {
            data: fetched.bytes,
            output_sha256: fetched.output_sha256,
        }))
    }
}
