//! A study's life as a sequence of events, and the rules that decide which event may come
//! next. The state is never stored: it is the fold of the events ([`Study::apply`]), so
//! what a steward reads, what a restart rebuilds and what the audit log records are the
//! same facts. Deciding ([`Study::decide`]) is pure: it sees the study, who asks, what
//! they ask and the time, and returns the event to persist or the rule the request breaks.
//!
//! ```text
//!             submit                approve (× approvals required)
//!   (author) ────────▶ SUBMITTED ─────────────────────────────────▶ APPROVED ──▶ runs
//!                        │  ▲  │ return (comments)        reject        │ │ expiry passes
//!                        │  │  ▼                            │           │ ▼
//!                        │  └ RETURNED ── resubmit          ▼           │ EXPIRED
//!                        │                               REJECTED       │
//!            withdraw (author, from SUBMITTED, RETURNED, APPROVED)      │ revoke (steward)
//!                        ▼                                              ▼
//!                    WITHDRAWN                                       REVOKED
//!
//!   run:  RUNNING ──▶ HELD ──▶ RELEASED | WITHHELD      (or RUNNING ──▶ FAILED)
//! ```
//!
//! Owners: the author submits, resubmits, withdraws and runs; stewards other than the
//! author review, revoke and check outputs. A run counts against the quota when it starts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::params::{self, ParamSpec};
use crate::error::{EngineError, Rule};
use crate::identity::Principal;

/// What a study asks, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub title: String,
    pub purpose: String,
    pub outputs: String,
    pub sql: String,
    pub parameters: Vec<ParamSpec>,
    /// Independent approvals it needs (the deployment's setting when it was submitted).
    pub approvals_required: u32,
}

/// What an approval binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub sql_sha256: String,
    pub parameters_sha256: String,
    pub policy_version: String,
    pub run_quota: u32,
    pub expires_at: DateTime<Utc>,
}

/// The snapshot a run read: every table's Delta version (the derived registers' too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub snapshot: i64,
    pub table_versions: BTreeMap<String, u64>,
    pub reference_date: Option<String>,
}

/// What the steward's output check starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub rows: u64,
    pub cells_suppressed: u64,
    pub smallest_count: Option<u64>,
    pub counts_rounded: bool,
    pub round_to: u64,
    pub unprotected_columns: Vec<String>,
    pub same_as_released_run: Option<String>,
}

impl Summary {
    /// Whether an output passes the engine's own checks, for deployments that release
    /// those automatically: every column protected or a key, every count rounded.
    pub fn passes(&self) -> bool {
        self.unprotected_columns.is_empty() && self.counts_rounded
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Event {
    Submitted(Submission),
    Approved(Terms),
    Returned {
        comments: String,
    },
    Rejected {
        comments: String,
    },
    Withdrawn {
        reason: String,
    },
    Revoked {
        reason: String,
    },
    RunStarted {
        run_id: String,
        parameters: BTreeMap<String, String>,
        pin: Pin,
    },
    RunHeld {
        run_id: String,
        output_sha256: String,
        summary: Summary,
        /// Independent stewards' releases the output needs (the deployment's setting when
        /// it was held; events written before the setting existed needed one).
        #[serde(default = "one")]
        checks_required: u32,
    },
    RunFailed {
        run_id: String,
        reason: String,
    },
    OutputChecked {
        run_id: String,
        released: bool,
        comments: String,
    },
}

impl Event {
    pub fn action(&self) -> &'static str {
        match self {
            Event::Submitted(_) => "submit",
            Event::Approved(_) => "approve",
            Event::Returned { .. } => "return",
            Event::Rejected { .. } => "reject",
            Event::Withdrawn { .. } => "withdraw",
            Event::Revoked { .. } => "revoke",
            Event::RunStarted { .. } => "run",
            Event::RunHeld { .. } => "hold",
            Event::RunFailed { .. } => "fail",
            Event::OutputChecked { released: true, .. } => "release",
            Event::OutputChecked { released: false, .. } => "withhold",
        }
    }

    /// The text a steward reads in the history beside the action.
    pub fn comments(&self) -> String {
        match self {
            Event::Returned { comments } | Event::Rejected { comments } => comments.clone(),
            Event::Withdrawn { reason } | Event::Revoked { reason } | Event::RunFailed { reason, .. } => reason.clone(),
            Event::OutputChecked { run_id, comments, .. } => format!("{run_id}: {comments}"),
            Event::RunStarted { run_id, .. } | Event::RunHeld { run_id, .. } => run_id.clone(),
            Event::Approved(terms) => format!(
                "quota {} until {}",
                terms.run_quota,
                terms.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Event::Submitted(_) => String::new(),
        }
    }
}

fn one() -> u32 {
    1
}

/// An event as stored: its place in the study's sequence, when, and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub study_id: String,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub by: String,
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Submitted,
    Approved,
    Returned,
    Rejected,
    Withdrawn,
    Revoked,
}

/// The state a reader sees: the phase, with an approval past its expiry as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Submitted,
    Approved,
    Returned,
    Rejected,
    Withdrawn,
    Revoked,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::Approved => "approved",
            State::Returned => "returned",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
            State::Revoked => "revoked",
            State::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Held,
    Released,
    Withheld,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Held => "held",
            RunState::Released => "released",
            RunState::Withheld => "withheld",
            RunState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub by: String,
    pub at: DateTime<Utc>,
    pub parameters: BTreeMap<String, String>,
    pub pin: Pin,
    pub state: RunState,
    pub output_sha256: Option<String>,
    pub summary: Option<Summary>,
    pub checked_by: Option<String>,
    pub check_comments: String,
    /// Every checker's decision, in order.
    pub checks: Vec<OutputCheck>,
    pub checks_required: u32,
}

/// One steward's output-check decision.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputCheck {
    pub by: String,
    pub at: DateTime<Utc>,
    pub released: bool,
    pub comments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
    pub terms: Terms,
}

/// A study as its events make it.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    pub id: String,
    pub author: String,
    pub submission: Submission,
    pub sql_sha256: String,
    pub phase: Phase,
    /// Approvals of the current submission.
    pub approvals: Vec<Approval>,
    /// The terms runs are bound by, once approved.
    pub bound: Option<Terms>,
    pub runs: Vec<Run>,
    pub history: Vec<Recorded>,
}

/// What someone asks of a study.
#[derive(Debug, Clone)]
pub enum Command {
    Submit(Submission),
    /// `policy_version`: the server's now, which the approval binds.
    Approve {
        run_quota: u32,
        expires_at: DateTime<Utc>,
        policy_version: String,
    },
    Return {
        comments: String,
    },
    Reject {
        comments: String,
    },
    Withdraw {
        reason: String,
    },
    Revoke {
        reason: String,
    },
    /// Start a run: `run_id` is the next run's; `policy_version` the server's now.
    StartRun {
        parameters: BTreeMap<String, String>,
        pin: Pin,
        policy_version: String,
    },
    CheckOutput {
        run_id: String,
        release: bool,
        comments: String,
    },
}

pub fn sql_sha256(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

fn refused(rule: Rule, message: impl Into<String>) -> EngineError {
    EngineError::refused(rule, message)
}

/// Check a submission's own content (not who sends it).
pub fn check_submission(s: &Submission) -> Result<(), EngineError> {
    for (what, text, max) in [
        ("title", &s.title, 200),
        ("purpose", &s.purpose, 10_000),
        ("outputs", &s.outputs, 10_000),
    ] {
        if text.trim().is_empty() || text.len() > max {
            return Err(EngineError::InvalidRequest(format!(
                "a study needs a {what} (at most {max} bytes)"
            )));
        }
    }
    if s.sql.trim().is_empty() {
        return Err(EngineError::InvalidRequest("a study needs its SQL".into()));
    }
    params::check_specs(&s.parameters)
}

impl Study {
    /// A study from its first event (which must be its submission).
    pub fn start(first: &Recorded) -> Result<Self, EngineError> {
        let Event::Submitted(submission) = &first.event else {
            return Err(EngineError::Server(format!(
                "study {}: its first event is not its submission",
                first.study_id
            )));
        };
        let mut study = Study {
            id: first.study_id.clone(),
            author: first.by.clone(),
            submission: submission.clone(),
            sql_sha256: sql_sha256(&submission.sql),
            phase: Phase::Submitted,
            approvals: Vec::new(),
            bound: None,
            runs: Vec::new(),
            history: Vec::new(),
        };
        study.history.push(first.clone());
        Ok(study)
    }

    /// Fold the next event in. Events are applied as they were decided, so this only
    /// records; it does not judge.
    pub fn apply(&mut self, recorded: &Recorded) {
        match &recorded.event {
            Event::Submitted(submission) => {
                self.submission = submission.clone();
                self.sql_sha256 = sql_sha256(&submission.sql);
                self.phase = Phase::Submitted;
                self.approvals.clear();
                self.bound = None;
            }
            Event::Approved(terms) => {
                self.approvals.push(Approval {
                    by: recorded.by.clone(),
                    at: recorded.at,
                    terms: terms.clone(),
                });
                if self.approvals.len() as u32 >= self.submission.approvals_required.max(1) {
                    self.phase = Phase::Approved;
                    self.bound = Some(strictest(&self.approvals));
                }
            }
            Event::Returned { .. } => {
                self.phase = Phase::Returned;
                self.approvals.clear();
            }
            Event::Rejected { .. } => self.phase = Phase::Rejected,
            Event::Withdrawn { .. } => self.phase = Phase::Withdrawn,
            Event::Revoked { .. } => self.phase = Phase::Revoked,
            Event::RunStarted {
                run_id,
                parameters,
                pin,
            } => self.runs.push(Run {
                id: run_id.clone(),
                by: recorded.by.clone(),
                at: recorded.at,
                parameters: parameters.clone(),
                pin: pin.clone(),
                state: RunState::Running,
                output_sha256: None,
                summary: None,
                checked_by: None,
                check_comments: String::new(),
                checks: Vec::new(),
                checks_required: 1,
            }),
            Event::RunHeld {
                run_id,
                output_sha256,
                summary,
                checks_required,
            } => {
                if let Some(run) = self.run_mut(run_id) {
                    run.state = RunState::Held;
                    run.output_sha256 = Some(output_sha256.clone());
                    run.summary = Some(summary.clone());
                    run.checks_required = (*checks_required).max(1);
                }
            }
            Event::RunFailed { run_id, .. } => {
                if let Some(run) = self.run_mut(run_id) {
                    run.state = RunState::Failed;
                }
            }
            Event::OutputChecked {
                run_id,
                released,
                comments,
            } => {
                if let Some(run) = self.run_mut(run_id) {
                    run.checks.push(OutputCheck {
                        by: recorded.by.clone(),
                        at: recorded.at,
                        released: *released,
                        comments: comments.clone(),
                    });
                    // One withhold withholds; a release needs as many releases as the run
                    // requires (an automatic release, given only to what discloses nothing
                    // new or passes the engine's checks where the deployment allows, is whole).
                    let releases = run.checks.iter().filter(|c| c.released).count() as u32;
                    let automatic = recorded.by == super::AUTO_RELEASE;
                    let decided = if !*released {
                        Some(RunState::Withheld)
                    } else if automatic || releases >= run.checks_required {
                        Some(RunState::Released)
                    } else {
                        None
                    };
                    if let Some(state) = decided {
                        run.state = state;
                        let checkers: Vec<&str> = run.checks.iter().map(|c| c.by.as_str()).collect();
                        run.checked_by = Some(checkers.join(","));
                        run.check_comments = comments.clone();
                    }
                }
            }
        }
        self.history.push(recorded.clone());
    }

    fn run_mut(&mut self, run_id: &str) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.id == run_id)
    }

    pub fn run(&self, run_id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == run_id)
    }

    pub fn state(&self, now: DateTime<Utc>) -> State {
        match self.phase {
            Phase::Approved if self.bound.as_ref().is_some_and(|t| now >= t.expires_at) => State::Expired,
            Phase::Approved => State::Approved,
            Phase::Submitted => State::Submitted,
            Phase::Returned => State::Returned,
            Phase::Rejected => State::Rejected,
            Phase::Withdrawn => State::Withdrawn,
            Phase::Revoked => State::Revoked,
        }
    }

    /// The next run's id.
    pub fn next_run_id(&self) -> String {
        format!("{}-r{}", self.id, self.runs.len() + 1)
    }

    /// Decide whether `who` may do `command` to this study at `now`: the event to record,
    /// or the rule it breaks.
    pub fn decide(&self, who: &Principal, command: Command, now: DateTime<Utc>) -> Result<Event, EngineError> {
        let state = self.state(now);
        let is_author = who.user == self.author;
        let steward_only = |what: &str| {
            if who.is_steward() {
                Ok(())
            } else {
                Err(refused(Rule::StudyRoles, format!("only data stewards {what}")))
            }
        };
        let author_only = |what: &str| {
            if is_author {
                Ok(())
            } else {
                Err(refused(Rule::StudyRoles, format!("only the study's author {what}")))
            }
        };
        let in_state = |allowed: &[State], what: &str| {
            if allowed.contains(&state) {
                Ok(())
            } else {
                Err(refused(
                    Rule::StudyState,
                    format!("a study that is {} cannot be {what}", state.as_str()),
                ))
            }
        };
        match command {
            Command::Submit(submission) => {
                author_only("resubmits it")?;
                in_state(&[State::Returned], "resubmitted (only a returned one can)")?;
                check_submission(&submission)?;
                Ok(Event::Submitted(submission))
            }
            Command::Approve {
                run_quota,
                expires_at,
                policy_version,
            } => {
                self.check_reviewer(who, is_author)?;
                in_state(&[State::Submitted], "approved")?;
                if run_quota == 0 {
                    return Err(EngineError::InvalidRequest(
                        "an approval needs a run quota of 1 or more".into(),
                    ));
                }
                if expires_at <= now {
                    return Err(EngineError::InvalidRequest(
                        "an approval's expiry must be in the future".into(),
                    ));
                }
                Ok(Event::Approved(Terms {
                    sql_sha256: self.sql_sha256.clone(),
                    parameters_sha256: params::specs_sha256(&self.submission.parameters)?,
                    policy_version,
                    run_quota,
                    expires_at,
                }))
            }
            Command::Return { comments } => {
                self.check_reviewer(who, is_author)?;
                in_state(&[State::Submitted], "returned")?;
                if comments.trim().is_empty() {
                    return Err(EngineError::InvalidRequest(
                        "returning a study needs comments for its author".into(),
                    ));
                }
                Ok(Event::Returned { comments })
            }
            Command::Reject { comments } => {
                self.check_reviewer(who, is_author)?;
                in_state(&[State::Submitted], "rejected")?;
                Ok(Event::Rejected { comments })
            }
            Command::Withdraw { reason } => {
                author_only("withdraws it")?;
                in_state(
                    &[State::Submitted, State::Returned, State::Approved, State::Expired],
                    "withdrawn",
                )?;
                Ok(Event::Withdrawn { reason })
            }
            Command::Revoke { reason } => {
                steward_only("revoke a study")?;
                in_state(&[State::Approved, State::Expired], "revoked")?;
                Ok(Event::Revoked { reason })
            }
            Command::StartRun {
                parameters,
                pin,
                policy_version,
            } => {
                author_only("runs it")?;
                if state == State::Expired {
                    return Err(refused(Rule::ApprovalExpired, "the study's approval has expired"));
                }
                in_state(&[State::Approved], "run (a study runs once approved)")?;
                let terms = self
                    .bound
                    .as_ref()
                    .ok_or_else(|| EngineError::Server(format!("study {} is approved without terms", self.id)))?;
                let used = self.runs.len() as u64;
                if used >= u64::from(terms.run_quota) {
                    return Err(refused(
                        Rule::RunQuota,
                        format!("all {} approved runs have been used", terms.run_quota),
                    ));
                }
                if terms.sql_sha256 != self.sql_sha256
                    || terms.parameters_sha256 != params::specs_sha256(&self.submission.parameters)?
                {
                    return Err(refused(
                        Rule::ApprovalBinding,
                        "the SQL or its parameters differ from what was approved",
                    ));
                }
                if terms.policy_version != policy_version {
                    return Err(refused(
                        Rule::ApprovalBinding,
                        "the disclosure policy has changed since approval; the study must be approved again",
                    ));
                }
                params::bind(&self.submission.parameters, &parameters)?;
                Ok(Event::RunStarted {
                    run_id: self.next_run_id(),
                    parameters,
                    pin,
                })
            }
            Command::CheckOutput {
                run_id,
                release,
                comments,
            } => {
                steward_only("check outputs")?;
                let run = self
                    .run(&run_id)
                    .ok_or_else(|| EngineError::InvalidRequest("no such run".into()))?;
                if run.by == who.user {
                    return Err(refused(Rule::IndependentReview, "no one checks their own output"));
                }
                if run.state != RunState::Held {
                    return Err(refused(
                        Rule::StudyState,
                        format!("an output that is {} cannot be checked", run.state.as_str()),
                    ));
                }
                if run.checks.iter().any(|c| c.by == who.user) {
                    return Err(refused(
                        Rule::IndependentReview,
                        "each output check must come from a different steward",
                    ));
                }
                Ok(Event::OutputChecked {
                    run_id,
                    released: release,
                    comments,
                })
            }
        }
    }

    /// A reviewer is a steward, not the author, and has not approved this submission yet.
    /// Own review is checked first: it is the rule an author trying it breaks.
    fn check_reviewer(&self, who: &Principal, is_author: bool) -> Result<(), EngineError> {
        if is_author {
            return Err(refused(Rule::IndependentReview, "no one reviews their own study"));
        }
        if !who.is_steward() {
            return Err(refused(Rule::StudyRoles, "only data stewards review studies"));
        }
        if self.approvals.iter().any(|a| a.by == who.user) {
            return Err(refused(
                Rule::IndependentReview,
                "each approval must come from a different steward",
            ));
        }
        Ok(())
    }

    /// Whether `who` may read this study (its author and stewards).
    pub fn visible_to(&self, who: &Principal) -> bool {
        who.is_steward() || who.user == self.author
    }

    /// Whether `who` may fetch `run`'s output: a steward any output; its author a released
    /// one.
    pub fn may_fetch(&self, who: &Principal, run: &Run) -> Result<(), EngineError> {
        if who.is_steward() {
            return Ok(());
        }
        if who.user != self.author {
            return Err(refused(
                Rule::StudyRoles,
                "only the study's author and stewards fetch outputs",
            ));
        }
        match run.state {
            RunState::Released => Ok(()),
            RunState::Held | RunState::Withheld => Err(refused(
                Rule::HeldOutput,
                format!(
                    "this output is {}; it can be fetched once a steward releases it",
                    run.state.as_str()
                ),
            )),
            RunState::Running | RunState::Failed => Err(refused(
                Rule::StudyState,
                format!("a run that is {} has no output", run.state.as_str()),
            )),
        }
    }
}

/// The strictest of the approvals' terms: the fewest runs and the earliest expiry.
fn strictest(approvals: &[Approval]) -> Terms {
    let mut terms = approvals[0].terms.clone();
    for a in &approvals[1..] {
        terms.run_quota = terms.run_quota.min(a.terms.run_quota);
        terms.expires_at = terms.expires_at.min(a.terms.expires_at);
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn researcher() -> Principal {
        Principal::new("rae", Role::Researcher)
    }
    fn steward(name: &str) -> Principal {
        Principal::new(name, Role::Steward)
    }

    fn submission(approvals_required: u32) -> Submission {
        Submission {
            title: "Diabetes by practice".into(),
            purpose: "Service planning".into(),
            outputs: "One table: practice, count".into(),
            sql: "SELECT practice, count(*) AS n FROM register_diabetes WHERE practice = $1 GROUP BY practice".into(),
            parameters: vec![ParamSpec {
                name: "practice".into(),
                kind: params::ParamKind::Choice,
                min: None,
                max: None,
                options: vec!["F00001".into()],
            }],
            approvals_required,
        }
    }

    struct Log {
        study: Study,
        seq: u64,
    }

    impl Log {
        fn new(approvals_required: u32) -> Self {
            let first = Recorded {
                study_id: "s1".into(),
                seq: 0,
                at: Utc::now(),
                by: "rae".into(),
                event: Event::Submitted(submission(approvals_required)),
            };
            Log {
                study: Study::start(&first).expect("start"),
                seq: 1,
            }
        }

        /// Decide and, if allowed, apply.
        fn act(&mut self, who: &Principal, command: Command, now: DateTime<Utc>) -> Result<(), EngineError> {
            let event = self.study.decide(who, command, now)?;
            let recorded = Recorded {
                study_id: "s1".into(),
                seq: self.seq,
                at: now,
                by: who.user.clone(),
                event,
            };
            self.seq += 1;
            self.study.apply(&recorded);
            Ok(())
        }
    }

    fn approve(quota: u32, days: i64) -> Command {
        Command::Approve {
            run_quota: quota,
            expires_at: Utc::now() + chrono::Duration::days(days),
            policy_version: "p1-test".into(),
        }
    }

    fn run(practice: &str) -> Command {
        Command::StartRun {
            parameters: BTreeMap::from([("practice".to_string(), practice.to_string())]),
            pin: Pin {
                snapshot: 3,
                table_versions: BTreeMap::new(),
                reference_date: None,
            },
            policy_version: "p1-test".into(),
        }
    }

    fn rule(result: Result<(), EngineError>) -> Option<Rule> {
        result.expect_err("refused").rule()
    }

    #[test]
    fn a_study_goes_from_submission_to_held_and_released_output() {
        let now = Utc::now();
        let mut log = Log::new(1);
        assert_eq!(rule(log.act(&researcher(), run("F00001"), now)), Some(Rule::StudyState));
        assert_eq!(
            rule(log.act(&researcher(), approve(2, 30), now)),
            Some(Rule::IndependentReview)
        );
        let other = Principal::new("ray", Role::Researcher);
        assert_eq!(rule(log.act(&other, approve(2, 30), now)), Some(Rule::StudyRoles));
        log.act(&steward("sam"), approve(2, 30), now).expect("approve");
        assert_eq!(log.study.state(now), State::Approved);
        assert_eq!(rule(log.act(&other, run("F00001"), now)), Some(Rule::StudyRoles));
        assert_eq!(
            rule(log.act(&researcher(), run("F99999"), now)),
            Some(Rule::StudyParameters)
        );
        log.act(&researcher(), run("F00001"), now).expect("run");
        let run_id = log.study.runs[0].id.clone();
        assert_eq!(log.study.runs[0].state, RunState::Running);
        hold(&mut log, &run_id, 1, now);
        let held = log.study.run(&run_id).expect("run").clone();
        assert_eq!(
            log.study.may_fetch(&researcher(), &held).expect_err("held").rule(),
            Some(Rule::HeldOutput)
        );
        assert!(log.study.may_fetch(&steward("sam"), &held).is_ok());
        let check = |release| Command::CheckOutput {
            run_id: run_id.clone(),
            release,
            comments: "fine".into(),
        };
        assert_eq!(rule(log.act(&researcher(), check(true), now)), Some(Rule::StudyRoles));
        log.act(&steward("sam"), check(true), now).expect("release");
        let released = log.study.run(&run_id).expect("run").clone();
        assert_eq!(released.state, RunState::Released);
        assert!(log.study.may_fetch(&researcher(), &released).is_ok());
        assert_eq!(
            rule(log.act(&steward("sam"), check(false), now)),
            Some(Rule::StudyState)
        );
        // Quota 2: one more run, then spent.
        log.act(&researcher(), run("F00001"), now).expect("second run");
        assert_eq!(rule(log.act(&researcher(), run("F00001"), now)), Some(Rule::RunQuota));
    }

    #[test]
    fn two_approvals_from_different_stewards_bind_the_strictest_terms() {
        let now = Utc::now();
        let mut log = Log::new(2);
        log.act(&steward("sam"), approve(5, 30), now).expect("first");
        assert_eq!(log.study.state(now), State::Submitted, "one of two");
        assert_eq!(
            rule(log.act(&steward("sam"), approve(5, 30), now)),
            Some(Rule::IndependentReview)
        );
        log.act(&steward("sue"), approve(3, 60), now).expect("second");
        assert_eq!(log.study.state(now), State::Approved);
        let bound = log.study.bound.clone().expect("bound");
        assert_eq!(bound.run_quota, 3);
        assert_eq!(bound.expires_at, log.study.approvals[0].terms.expires_at);
        assert_eq!(bound.sql_sha256, sql_sha256(&log.study.submission.sql));
    }

    /// The run's output held (as the server records it when the query ends), needing
    /// `checks` releases.
    fn hold(log: &mut Log, run_id: &str, checks: u32, now: DateTime<Utc>) {
        log.study.apply(&Recorded {
            study_id: "s1".into(),
            seq: 99,
            at: now,
            by: "rae".into(),
            event: Event::RunHeld {
                run_id: run_id.to_string(),
                output_sha256: "ab".into(),
                summary: Summary::default(),
                checks_required: checks,
            },
        });
    }

    /// A new run of `log`'s study, held and needing `checks` releases.
    fn held_run(log: &mut Log, checks: u32, now: DateTime<Utc>) -> String {
        log.act(&researcher(), run("F00001"), now).expect("run");
        let run_id = log.study.runs.last().expect("run").id.clone();
        hold(log, &run_id, checks, now);
        run_id
    }

    #[test]
    fn two_checkers_release_an_output_and_one_withhold_withholds_it() {
        let now = Utc::now();
        let mut log = Log::new(1);
        log.act(&steward("sam"), approve(3, 30), now).expect("approve");
        let check = |run_id: &str, release| Command::CheckOutput {
            run_id: run_id.to_string(),
            release,
            comments: "checked".into(),
        };
        let first = held_run(&mut log, 2, now);
        log.act(&steward("sam"), check(&first, true), now).expect("first check");
        let run = log.study.run(&first).expect("run").clone();
        assert_eq!(run.state, RunState::Held, "one of two checks releases nothing");
        assert!(log.study.may_fetch(&researcher(), &run).is_err());
        assert_eq!(
            rule(log.act(&steward("sam"), check(&first, true), now)),
            Some(Rule::IndependentReview),
            "the same steward twice"
        );
        log.act(&steward("sue"), check(&first, true), now)
            .expect("second check");
        let run = log.study.run(&first).expect("run").clone();
        assert_eq!(run.state, RunState::Released);
        assert_eq!(run.checked_by.as_deref(), Some("sam,sue"));
        assert_eq!(run.checks.len(), 2);
        assert!(log.study.may_fetch(&researcher(), &run).is_ok());

        let second = held_run(&mut log, 2, now);
        log.act(&steward("sam"), check(&second, true), now)
            .expect("first check");
        log.act(&steward("sue"), check(&second, false), now).expect("withhold");
        assert_eq!(log.study.run(&second).expect("run").state, RunState::Withheld);
        assert_eq!(
            rule(log.act(&steward("sid"), check(&second, true), now)),
            Some(Rule::StudyState),
            "a withheld output is decided"
        );
    }

    #[test]
    fn a_steward_who_ran_a_study_never_checks_its_output() {
        // Stewards do not submit studies, but a run's researcher is never its checker
        // whatever their role: the rule is on the person.
        let now = Utc::now();
        let mut log = Log::new(1);
        log.act(&steward("sam"), approve(3, 30), now).expect("approve");
        let run_id = held_run(&mut log, 2, now);
        let own = Principal::new("rae", Role::Steward);
        let check = Command::CheckOutput {
            run_id,
            release: true,
            comments: "mine".into(),
        };
        assert_eq!(rule(log.act(&own, check, now)), Some(Rule::IndependentReview));
    }

    #[test]
    fn expiry_revocation_withdrawal_and_policy_change_end_runs() {
        let now = Utc::now();
        let mut log = Log::new(1);
        log.act(&steward("sam"), approve(5, 1), now).expect("approve");
        let later = now + chrono::Duration::days(2);
        assert_eq!(log.study.state(later), State::Expired);
        assert_eq!(
            rule(log.act(&researcher(), run("F00001"), later)),
            Some(Rule::ApprovalExpired)
        );
        let changed = Command::StartRun {
            parameters: BTreeMap::from([("practice".to_string(), "F00001".to_string())]),
            pin: Pin {
                snapshot: 1,
                table_versions: BTreeMap::new(),
                reference_date: None,
            },
            policy_version: "p1-other".into(),
        };
        assert_eq!(rule(log.act(&researcher(), changed, now)), Some(Rule::ApprovalBinding));
        assert_eq!(
            rule(log.act(&researcher(), Command::Revoke { reason: "x".into() }, now)),
            Some(Rule::StudyRoles)
        );
        log.act(
            &steward("sam"),
            Command::Revoke {
                reason: "breach".into(),
            },
            now,
        )
        .expect("revoke");
        assert_eq!(rule(log.act(&researcher(), run("F00001"), now)), Some(Rule::StudyState));
        assert_eq!(
            rule(log.act(&researcher(), Command::Withdraw { reason: "x".into() }, now)),
            Some(Rule::StudyState)
        );
    }

    #[test]
    fn a_returned_study_is_resubmitted_by_its_author_and_reviewed_afresh() {
        let now = Utc::now();
        let mut log = Log::new(1);
        let back = Command::Return {
            comments: "group by PCN instead".into(),
        };
        log.act(&steward("sam"), back, now).expect("return");
        assert_eq!(log.study.state(now), State::Returned);
        let mut revised = submission(1);
        revised.sql = revised.sql.replace("count(*)", "count(DISTINCT person_id)");
        assert_eq!(
            rule(log.act(&steward("sam"), Command::Submit(revised.clone()), now)),
            Some(Rule::StudyRoles)
        );
        log.act(&researcher(), Command::Submit(revised), now).expect("resubmit");
        assert_eq!(log.study.state(now), State::Submitted);
        assert_ne!(log.study.sql_sha256, sql_sha256(&submission(1).sql));
        log.act(&steward("sam"), Command::Reject { comments: "no".into() }, now)
            .expect("reject");
        assert_eq!(
            rule(log.act(&steward("sue"), approve(1, 1), now)),
            Some(Rule::StudyState)
        );
        assert_eq!(log.study.history.len(), 4);
    }
}
