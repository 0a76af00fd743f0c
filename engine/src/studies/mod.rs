//! Approved studies: how researchers query. A study is submitted by its author, reviewed
//! by stewards who are not its author, approved (binding its SQL's hash, its parameter
//! schema, the disclosure policy version, a run quota and an expiry), and then run by its
//! author with parameter values inside their bounds. Each run goes through the gate — the
//! one request path, with disclosure control and audit — pinned to a snapshot, and its
//! output is held until a steward releases it.
//!
//! - [`params`]: typed, bounded parameters and their binding;
//! - [`model`]: the events of a study's life and the rules deciding which may come next;
//! - [`store`]: events and outputs in object storage;
//! - [`output`]: the canonical output bytes and the output checker's summary;
//! - [`table`]: the `studies` and `study_runs` tables stewards query;
//! - [`service`]: `poplar.studies.v1` over this module.
//!
//! Every request here is an audit entry (kind `study`, with the action and the study or
//! run id); a run's query adds the gate's own started/answered entries.

pub mod model;
pub mod output;
pub mod params;
pub mod service;
pub mod store;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poplar_loaders::Table;
use poplar_loaders::landing::Snapshot;
use tokio::sync::Mutex;

use crate::EngineError;
use crate::audit::{AuditRequest, bounded};
use crate::catalog::SnapshotContext;
use crate::error::Rule;
use crate::gate::Gate;
use crate::identity::Principal;
use model::{Command, Event, Pin, Recorded, Run, RunState, Study, Submission};
pub use store::StudyStore;

/// Who an automatic release is recorded as: no person checked the output.
pub const AUTO_RELEASE: &str = "poplar (auto-release)";

/// How a deployment runs studies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudiesConfig {
    /// Independent stewards' approvals a study needs (1 or 2, as the sharing agreement says).
    pub approvals_required: u32,
    /// Release an output without a steward when it passes the engine's checks (every
    /// column a released aggregate or a key, every count rounded). Off by default.
    pub auto_release: bool,
    /// Independent stewards' release decisions a held output needs (1 or 2), none of them
    /// the run's researcher; one withhold withholds it.
    pub output_checks_required: u32,
}

impl Default for StudiesConfig {
    fn default() -> Self {
        Self {
            approvals_required: 1,
            auto_release: false,
            output_checks_required: 1,
        }
    }
}

/// The studies a server holds, over the gate.
#[derive(Debug)]
pub struct Studies {
    gate: Arc<Gate>,
    store: StudyStore,
    loaded: poplar_loaders::Store,
    config: StudiesConfig,
    /// Every study, by id. Held while a request is decided and its event written (never
    /// while a query runs), so two requests to one server never decide on stale state.
    studies: Mutex<BTreeMap<String, Study>>,
}

/// A run's output, as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub output_sha256: String,
}

fn no_such(what: &str) -> EngineError {
    EngineError::InvalidRequest(format!("no such {what}"))
}

/// Study `id` if `who` may act on it: its author and stewards. Someone else is refused
/// under the roles rule (a study id is random, so saying it exists tells them nothing).
fn visible<'a>(studies: &'a BTreeMap<String, Study>, who: &Principal, id: &str) -> Result<&'a Study, EngineError> {
    match studies.get(id) {
        Some(study) if study.visible_to(who) => Ok(study),
        Some(_) => Err(EngineError::refused(
            Rule::StudyRoles,
            "only the study's author and data stewards may act on it",
        )),
        None => Err(no_such("study")),
    }
}

impl Studies {
    /// Read every study from `store`.
    pub async fn open(
        gate: Arc<Gate>,
        store: &poplar_loaders::Store,
        config: StudiesConfig,
    ) -> Result<Self, EngineError> {
        let studies = StudyStore::new(store)?;
        let all = studies.load_all().await?;
        tracing::info!(studies = all.len(), "studies read");
        Ok(Self {
            gate,
            store: studies,
            loaded: store.clone(),
            config,
            studies: Mutex::new(all.into_iter().map(|s| (s.id.clone(), s)).collect()),
        })
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    pub fn config(&self) -> StudiesConfig {
        self.config
    }

    fn audit(id: &str, action: &str, extra: BTreeMap<String, String>) -> AuditRequest {
        let mut parameters: BTreeMap<String, String> = extra.into_iter().map(|(k, v)| (k, bounded(v))).collect();
        parameters.insert("action".into(), action.into());
        AuditRequest::Study {
            id: bounded(id.to_string()),
            parameters,
        }
    }

    /// Audit a refusal or failure of `action` and return the error to send.
    async fn refuse(&self, who: &Principal, id: &str, action: &str, error: EngineError) -> EngineError {
        self.gate
            .request(who, Self::audit(id, action, BTreeMap::new()))
            .fail(error)
            .await
    }

    /// Write `event` as the study's next and fold it in; the caller holds the lock.
    async fn record(
        &self,
        studies: &mut BTreeMap<String, Study>,
        by: &str,
        id: &str,
        event: Event,
    ) -> Result<Study, EngineError> {
        let seq = studies.get(id).map_or(0, |s| s.history.len() as u64);
        let recorded = Recorded {
            study_id: id.to_string(),
            seq,
            at: Utc::now(),
            by: by.to_string(),
            event,
        };
        self.store.append(&recorded).await?;
        let study = match studies.get_mut(id) {
            Some(study) => {
                study.apply(&recorded);
                study.clone()
            }
            None => {
                let study = Study::start(&recorded)?;
                studies.insert(id.to_string(), study.clone());
                study
            }
        };
        Ok(study)
    }

    /// A new study, or a returned one resubmitted (`id`). Its SQL must plan under the
    /// author's disclosure control (a refusal is better heard now than after review).
    pub async fn submit(
        &self,
        who: &Principal,
        id: Option<&str>,
        mut submission: Submission,
    ) -> Result<Study, EngineError> {
        submission.approvals_required = self.config.approvals_required.max(1);
        let label = id.unwrap_or("new");
        if who.is_steward() {
            let e = EngineError::refused(
                Rule::StudyRoles,
                "stewards query directly; studies run under the author's disclosure control",
            );
            return Err(self.refuse(who, label, "submit", e).await);
        }
        if let Err(e) = model::check_submission(&submission) {
            return Err(self.refuse(who, label, "submit", e).await);
        }
        // Planned (not run) under the author's policy: refused here if disclosure control
        // would refuse it. Audited by the gate only if refused.
        let planning = self.gate.request(who, Self::audit(label, "submit", BTreeMap::new()));
        planning.prepare(&submission.sql).await?;
        let mut studies = self.studies.lock().await;
        let (id, event) = match id {
            Some(id) => {
                let decided =
                    visible(&studies, who, id).and_then(|s| s.decide(who, Command::Submit(submission), Utc::now()));
                match decided {
                    Ok(event) => (id.to_string(), event),
                    Err(e) => return Err(self.refuse(who, id, "submit", e).await),
                }
            }
            None => {
                let id = loop {
                    let candidate = format!("s{:08x}", rand::random::<u32>());
                    if !studies.contains_key(&candidate) {
                        break candidate;
                    }
                };
                (id, Event::Submitted(submission))
            }
        };
        let study = match self.record(&mut studies, &who.user, &id, event).await {
            Ok(study) => study,
            Err(e) => return Err(self.refuse(who, &id, "submit", e).await),
        };
        drop(studies);
        let extra = BTreeMap::from([("sql_sha256".to_string(), study.sql_sha256.clone())]);
        self.gate.request(who, Self::audit(&id, "submit", extra)).done().await?;
        Ok(study)
    }

    /// Decide `command` on study `id` for `who`, record it, and audit it as `action`.
    async fn transition(
        &self,
        who: &Principal,
        id: &str,
        action: &str,
        command: Command,
    ) -> Result<Study, EngineError> {
        self.transition_on(who, id, id, action, command).await
    }

    /// [`Self::transition`], audited under `audited` (a run's id for an output check).
    async fn transition_on(
        &self,
        who: &Principal,
        id: &str,
        audited: &str,
        action: &str,
        command: Command,
    ) -> Result<Study, EngineError> {
        let mut studies = self.studies.lock().await;
        let decided = visible(&studies, who, id).and_then(|s| s.decide(who, command, Utc::now()));
        let result = match decided {
            Ok(event) => self.record(&mut studies, &who.user, id, event).await,
            Err(e) => Err(e),
        };
        drop(studies);
        match result {
            Ok(study) => {
                self.gate
                    .request(who, Self::audit(audited, action, BTreeMap::new()))
                    .done()
                    .await?;
                Ok(study)
            }
            Err(e) => Err(self.refuse(who, audited, action, e).await),
        }
    }

    pub async fn approve(
        &self,
        who: &Principal,
        id: &str,
        run_quota: u32,
        expires_at: DateTime<Utc>,
    ) -> Result<Study, EngineError> {
        let policy_version = self.gate.policy().map(|p| p.version()).unwrap_or_default();
        let command = Command::Approve {
            run_quota,
            expires_at,
            policy_version,
        };
        self.transition(who, id, "approve", command).await
    }

    pub async fn return_to_author(&self, who: &Principal, id: &str, comments: String) -> Result<Study, EngineError> {
        self.transition(who, id, "return", Command::Return { comments }).await
    }

    pub async fn reject(&self, who: &Principal, id: &str, comments: String) -> Result<Study, EngineError> {
        self.transition(who, id, "reject", Command::Reject { comments }).await
    }

    pub async fn withdraw(&self, who: &Principal, id: &str, reason: String) -> Result<Study, EngineError> {
        self.transition(who, id, "withdraw", Command::Withdraw { reason }).await
    }

    pub async fn revoke(&self, who: &Principal, id: &str, reason: String) -> Result<Study, EngineError> {
        self.transition(who, id, "revoke", Command::Revoke { reason }).await
    }

    /// The studies `who` may see, by id.
    pub async fn list(&self, who: &Principal) -> Vec<Study> {
        let studies = self.studies.lock().await;
        studies.values().filter(|s| s.visible_to(who)).cloned().collect()
    }

    pub async fn get(&self, who: &Principal, id: &str) -> Result<Study, EngineError> {
        let studies = self.studies.lock().await;
        studies
            .get(id)
            .filter(|s| s.visible_to(who))
            .cloned()
            .ok_or_else(|| no_such("study"))
    }

    /// The study a run belongs to (run ids are `<study>-r<n>`).
    fn study_of(run_id: &str) -> &str {
        run_id.rsplit_once("-r").map_or(run_id, |(study, _)| study)
    }

    /// Run study `id` with `parameters`, as of the newest snapshot or as of the snapshot
    /// run `as_of_run` read. The run is recorded (and counts against the quota) before
    /// the query starts; its output is held.
    pub async fn run(
        &self,
        who: &Principal,
        id: &str,
        parameters: BTreeMap<String, String>,
        as_of_run: Option<&str>,
    ) -> Result<Run, EngineError> {
        let mut audited = parameters.clone();
        if let Some(earlier) = as_of_run {
            audited.insert("as_of_run".into(), earlier.to_string());
        }
        // Decide and record the start.
        let started = {
            let mut studies = self.studies.lock().await;
            let decided = async {
                let study = visible(&studies, who, id)?;
                let (context, pin) = match as_of_run {
                    Some(earlier) => {
                        let run = study.run(earlier).ok_or_else(|| no_such("run to reproduce"))?;
                        let snapshot = snapshot_of(&run.pin)?;
                        (self.gate.pinned_snapshot(snapshot).await?, run.pin.clone())
                    }
                    None => {
                        let context = self.gate.snapshot();
                        let pin = pin_of(&context)?;
                        (context, pin)
                    }
                };
                let policy_version = self.gate.policy().map(|p| p.version()).unwrap_or_default();
                let event = study.decide(
                    who,
                    Command::StartRun {
                        parameters: parameters.clone(),
                        pin,
                        policy_version,
                    },
                    Utc::now(),
                )?;
                let Event::RunStarted { run_id, .. } = &event else {
                    return Err(EngineError::Server("a run did not start as a run".into()));
                };
                let run_id = run_id.clone();
                let study = self.record(&mut studies, &who.user, id, event).await?;
                Ok::<_, EngineError>((study, run_id, context))
            }
            .await;
            match decided {
                Ok(started) => started,
                Err(e) => return Err(self.refuse(who, id, "run", e).await),
            }
        };
        let (study, run_id, context) = started;
        // The query, through the gate: policy, plan, budget, execute, release, audit.
        let values = params::bind(&study.submission.parameters, &parameters)?;
        let request = self
            .gate
            .request(who, Self::audit(&run_id, "run", audited))
            .on_snapshot(context);
        let answered = async {
            let answer = request.run(&study.submission.sql, values).await?;
            let schema = answer.schema.clone();
            let (batches, stats) = answer.collect_with_release().await?;
            let batch = output::canonical(&schema, &batches)?;
            let summary = output::summarise(&batch, &stats, self.gate.policy())?;
            let sha = self.store.put_output(output::to_ipc(&batch)?).await?;
            Ok::<_, EngineError>((sha, summary))
        }
        .await;
        let mut studies = self.studies.lock().await;
        let (sha, mut summary) = match answered {
            Ok(done) => done,
            Err(e) => {
                // The gate audited the failure; the study records that the run failed,
                // naming the rule if one refused it (never the error's text: it may quote
                // a value for a steward's eyes only).
                let reason = match e.rule() {
                    Some(rule) => format!("refused: {}", rule.id()),
                    None => "failed".to_string(),
                };
                let event = Event::RunFailed {
                    run_id: run_id.clone(),
                    reason,
                };
                if let Err(record) = self.record(&mut studies, &who.user, id, event).await {
                    tracing::error!(error = %record, "could not record a failed run");
                }
                return Err(e);
            }
        };
        let study = studies.get(id).ok_or_else(|| no_such("study"))?;
        summary.same_as_released_run = study
            .runs
            .iter()
            .find(|r| r.state == RunState::Released && r.output_sha256.as_deref() == Some(&sha))
            .map(|r| r.id.clone());
        let automatic = match (
            &summary.same_as_released_run,
            self.config.auto_release && summary.passes(),
        ) {
            (Some(earlier), _) => Some(format!("identical to released run {earlier}: nothing new is disclosed")),
            (None, true) => Some("passed the engine's checks (auto-release is on)".to_string()),
            (None, false) => None,
        };
        let held = Event::RunHeld {
            run_id: run_id.clone(),
            output_sha256: sha,
            summary,
            checks_required: self.config.output_checks_required.max(1),
        };
        let mut study = self.record(&mut studies, &who.user, id, held).await?;
        if let Some(why) = automatic {
            let released = Event::OutputChecked {
                run_id: run_id.clone(),
                released: true,
                comments: format!("released automatically: {why}"),
            };
            study = self.record(&mut studies, AUTO_RELEASE, id, released).await?;
            drop(studies);
            let extra = BTreeMap::from([("why".to_string(), why)]);
            self.gate
                .request(who, Self::audit(&run_id, "auto_release", extra))
                .done()
                .await?;
        }
        study.run(&run_id).cloned().ok_or_else(|| no_such("run"))
    }

    /// A steward releases or withholds a held output.
    pub async fn check_output(
        &self,
        who: &Principal,
        run_id: &str,
        release: bool,
        comments: String,
    ) -> Result<Run, EngineError> {
        let action = if release { "release" } else { "withhold" };
        let command = Command::CheckOutput {
            run_id: run_id.to_string(),
            release,
            comments,
        };
        let study = self
            .transition_on(who, Self::study_of(run_id), run_id, action, command)
            .await?;
        study.run(run_id).cloned().ok_or_else(|| no_such("run"))
    }

    /// A run's output: Arrow IPC bytes, or CSV. Its author only once released; stewards
    /// always (they check it).
    pub async fn fetch(&self, who: &Principal, run_id: &str, csv: bool) -> Result<Fetched, EngineError> {
        let action = "fetch";
        let found = {
            let studies = self.studies.lock().await;
            visible(&studies, who, Self::study_of(run_id)).and_then(|study| {
                let run = study.run(run_id).ok_or_else(|| no_such("run"))?;
                study.may_fetch(who, run)?;
                run.output_sha256
                    .clone()
                    .ok_or_else(|| EngineError::refused(Rule::StudyState, "this run has no output"))
            })
        };
        let sha = match found {
            Ok(sha) => sha,
            Err(e) => return Err(self.refuse(who, run_id, action, e).await),
        };
        let bytes = async {
            let ipc = self.store.get_output(&sha).await?;
            if csv { output::ipc_to_csv(&ipc) } else { Ok(ipc) }
        }
        .await;
        match bytes {
            Ok(bytes) => {
                let extra = BTreeMap::from([
                    ("format".to_string(), if csv { "csv" } else { "arrow" }.to_string()),
                    ("output_sha256".to_string(), sha.clone()),
                ]);
                self.gate
                    .request(who, Self::audit(run_id, action, extra))
                    .done()
                    .await?;
                Ok(Fetched {
                    bytes,
                    output_sha256: sha,
                })
            }
            Err(e) => Err(self.refuse(who, run_id, action, e).await),
        }
    }

    /// The snapshots opt-outs were applied in, oldest first: a run pinned before one of
    /// them predates it.
    pub async fn optout_snapshots(&self) -> Result<Vec<i64>, EngineError> {
        optout_snapshots(&self.loaded).await
    }
}

/// Which runs keep their snapshot from any clean-up: those whose output may still be
/// released or re-read (running, held, released). A failed or withheld run has nothing to
/// reproduce.
fn pins_kept(state: RunState) -> bool {
    match state {
        RunState::Running | RunState::Held | RunState::Released => true,
        RunState::Failed | RunState::Withheld => false,
    }
}

/// The Delta versions, per table, that runs pin and a clean-up of old versions (a vacuum,
/// a log or checkpoint expiry) must keep readable, so a run re-read as of its snapshot gives
/// the same bytes. Poplar has no such clean-up yet; whatever comes must ask this first.
/// Read afresh from the studies' events in `store`, so it holds without a server running.
pub async fn pinned_versions(
    store: &poplar_loaders::Store,
) -> Result<BTreeMap<String, std::collections::BTreeSet<u64>>, EngineError> {
    let mut pinned: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for study in StudyStore::new(store)?.load_all().await? {
        for run in study.runs.iter().filter(|r| pins_kept(r.state)) {
            for (table, version) in &run.pin.table_versions {
                pinned.entry(table.clone()).or_default().insert(*version);
            }
        }
    }
    Ok(pinned)
}

/// The snapshots committed by opt-out applications.
pub async fn optout_snapshots(store: &poplar_loaders::Store) -> Result<Vec<i64>, EngineError> {
    let Some(table) = store.open(Table::Snapshots).await? else {
        return Ok(Vec::new());
    };
    let batches = poplar_loaders::landing::query(
        &table,
        "SELECT snapshot FROM t WHERE operation = 'optout' ORDER BY snapshot",
    )
    .await?;
    Ok(poplar_loaders::landing::int64_values(&batches, 0))
}

/// The pin of a run that reads `context`.
fn pin_of(context: &SnapshotContext) -> Result<Pin, EngineError> {
    let snapshot = context
        .snapshot
        .as_ref()
        .ok_or_else(|| EngineError::InvalidRequest("nothing has landed yet: there is no snapshot to run on".into()))?;
    Ok(Pin {
        snapshot: snapshot.id,
        table_versions: snapshot
            .versions
            .iter()
            .map(|(t, v)| (t.name().to_string(), *v))
            .collect(),
        reference_date: context.reference_date.map(|d| d.format("%Y-%m-%d").to_string()),
    })
}

/// The snapshot a pin names.
fn snapshot_of(pin: &Pin) -> Result<Snapshot, EngineError> {
    let versions = pin
        .table_versions
        .iter()
        .map(|(name, v)| {
            Table::from_name(name)
                .map(|t| (t, *v))
                .ok_or_else(|| EngineError::Server(format!("a run's pin names an unknown table {name}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Snapshot {
        id: pin.snapshot,
        versions,
    })
}
