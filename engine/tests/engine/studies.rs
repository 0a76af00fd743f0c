//! Approved studies over gRPC (`poplar.studies.v1`) against a served synthetic region: the
//! whole life from submission to a released output; every refusal named by its rule and
//! audited; a researcher's ad-hoc SQL refused; the output reproduced byte for byte from its
//! pinned snapshot after an opt-out and a new derivation committed newer snapshots (while a
//! new run honours the opt-out); every study and run kept across a restart; and the
//! stewards' `studies` and `study_runs` tables.

use std::collections::{BTreeSet, HashSet};

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use poplar_engine::Role;
use poplar_engine::Rule;
use poplar_engine::audit::{self, AuditRequest, Outcome};
use poplar_engine::auth::UsersFile;
use poplar_engine::error::RULE_METADATA;
use poplar_loaders::optout::{self, OptOutList};
use poplar_proto::studies::v1 as pb;
use poplar_proto::studies::v1::studies_service_client::StudiesServiceClient;
use prost::Message;
use tonic::transport::Channel;

use crate::common::{serve_landed, synthetic_region};

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn rule_of(status: &tonic::Status) -> Option<Rule> {
    status
        .metadata()
        .get(RULE_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(Rule::from_id)
}

/// People on the diabetes register by practice, for registers recorded since `$1`.
const SQL: &str =
    "SELECT practice, count(*) AS people FROM register_diabetes WHERE latest_code_date >= $1 GROUP BY practice";

fn submission() -> pb::SubmitRequest {
    pb::SubmitRequest {
        study_id: String::new(),
        title: "Diabetes register by practice".into(),
        purpose: "Plan diabetes reviews across the region's practices".into(),
        outputs: "One table: practice, people on the register".into(),
        sql: SQL.into(),
        parameters: vec![pb::Parameter {
            name: "since".into(),
            r#type: pb::ParameterType::Date as i32,
            min: "1990-01-01".into(),
            max: "2030-12-31".into(),
            options: vec![],
        }],
    }
}

fn since(date: &str) -> std::collections::HashMap<String, String> {
    [("since".to_string(), date.to_string())].into()
}

fn approve(study_id: &str, quota: u32, expires_in: chrono::Duration) -> pb::ReviewRequest {
    pb::ReviewRequest {
        study_id: study_id.into(),
        decision: pb::Decision::Approve as i32,
        comments: String::new(),
        run_quota: quota,
        expires_at: (chrono::Utc::now() + expires_in).to_rfc3339(),
    }
}

fn run(study_id: &str, date: &str, as_of_run: &str) -> pb::RunRequest {
    pb::RunRequest {
        study_id: study_id.into(),
        parameters: since(date),
        as_of_run: as_of_run.into(),
    }
}

fn fetch(run_id: &str, format: pb::Format) -> pb::FetchRequest {
    pb::FetchRequest {
        run_id: run_id.into(),
        format: format as i32,
    }
}

fn check(run_id: &str, decision: pb::OutputDecision) -> pb::CheckOutputRequest {
    pb::CheckOutputRequest {
        run_id: run_id.into(),
        decision: decision as i32,
        comments: "checked against the summary".into(),
    }
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_from_submission_to_a_released_reproducible_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    synthetic_region(dir.path()).await;
    // As `poplar load` does: the registers derived and committed with the snapshot.
    let landed = poplar_loaders::Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    poplar_engine::catalog::derive_registers(&landed).await.expect("derive");
    let users = dir.path().join("users.toml");
    let rae = UsersFile::add(&users, "rae", Role::Researcher).expect("researcher");
    let ray = UsersFile::add(&users, "ray", Role::Researcher).expect("another researcher");
    let (store, running, sam, _cam) = serve_landed(dir.path(), Default::default()).await;
    let mut client = StudiesServiceClient::new(connect(running.addr).await);
    let mut refused: BTreeSet<&'static str> = BTreeSet::new();
    let mut expect_rule = |status: tonic::Status, rule: Rule| {
        assert_eq!(rule_of(&status), Some(rule), "{status:?}");
        refused.insert(rule.id());
    };

    // A researcher's ad-hoc SQL over Flight SQL is refused, naming the rule.
    let mut flight = FlightServiceClient::new(connect(running.addr).await);
    let descriptor = FlightDescriptor::new_cmd(
        CommandStatementQuery {
            query: "SELECT count(*) FROM patients".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    );
    let adhoc = flight
        .get_flight_info(with_token(descriptor, &rae))
        .await
        .expect_err("ad hoc");
    expect_rule(adhoc, Rule::ApprovedStudiesOnly);

    // Submitted; a steward may not submit; a template disclosure control refuses is
    // refused at submission.
    let study = client
        .submit(with_token(submission(), &rae))
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(study.state, pb::StudyState::Submitted as i32);
    assert_eq!(study.author, "rae");
    let id = study.study_id.clone();
    expect_rule(
        client
            .submit(with_token(submission(), &sam))
            .await
            .expect_err("steward"),
        Rule::StudyRoles,
    );
    let mut person_level = submission();
    person_level.sql = "SELECT person_id FROM register_diabetes WHERE latest_code_date >= $1".into();
    expect_rule(
        client.submit(with_token(person_level, &rae)).await.expect_err("rows"),
        Rule::AggregateOnly,
    );

    // Runs before approval, own approval, approval by a researcher.
    expect_rule(
        client
            .run(with_token(run(&id, "2000-01-01", ""), &rae))
            .await
            .expect_err("early"),
        Rule::StudyState,
    );
    let day = chrono::Duration::days(1);
    expect_rule(
        client
            .review(with_token(approve(&id, 3, day), &rae))
            .await
            .expect_err("own"),
        Rule::IndependentReview,
    );
    expect_rule(
        client
            .review(with_token(approve(&id, 3, day), &ray))
            .await
            .expect_err("not a steward"),
        Rule::StudyRoles,
    );
    let approved = client
        .review(with_token(approve(&id, 3, day), &sam))
        .await
        .expect("approve")
        .into_inner();
    assert_eq!(approved.state, pb::StudyState::Approved as i32);
    let bound = approved.bound.expect("bound");
    assert_eq!(bound.sql_sha256, study.sql_sha256);
    assert!(bound.policy_version.starts_with("p1-"), "{}", bound.policy_version);
    assert_eq!(bound.run_quota, 3);

    // Out of bounds; someone else's study.
    expect_rule(
        client
            .run(with_token(run(&id, "1989-12-31", ""), &rae))
            .await
            .expect_err("bounds"),
        Rule::StudyParameters,
    );
    expect_rule(
        client
            .run(with_token(run(&id, "2000-01-01", ""), &ray))
            .await
            .expect_err("not theirs"),
        Rule::StudyRoles,
    );

    // The run: held, with its summary and pin; the researcher cannot fetch it yet.
    let first = client
        .run(with_token(run(&id, "2000-01-01", ""), &rae))
        .await
        .expect("run")
        .into_inner();
    assert_eq!(first.state, pb::OutputState::Held as i32, "{first:?}");
    let summary = first.summary.clone().expect("summary");
    assert!(
        summary.rows > 0 && summary.counts_rounded && summary.round_to == 5,
        "{summary:?}"
    );
    assert!(summary.unprotected_columns.is_empty(), "{summary:?}");
    assert!(
        summary.smallest_count.is_some_and(|c| c >= 5 && c % 5 == 0),
        "{summary:?}"
    );
    let pin = first.pin.clone().expect("pin");
    assert!(
        pin.table_versions.contains_key("_registers"),
        "the registers are pinned: {pin:?}"
    );
    assert!(pin.later_optouts.is_empty());
    expect_rule(
        client
            .fetch(with_token(fetch(&first.run_id, pb::Format::Arrow), &rae))
            .await
            .expect_err("held"),
        Rule::HeldOutput,
    );
    let steward_copy = client
        .fetch(with_token(fetch(&first.run_id, pb::Format::Arrow), &sam))
        .await
        .expect("a steward checks the output")
        .into_inner();
    assert_eq!(steward_copy.output_sha256, first.output_sha256);
    expect_rule(
        client
            .check_output(with_token(check(&first.run_id, pb::OutputDecision::Release), &rae))
            .await
            .expect_err("not a checker"),
        Rule::StudyRoles,
    );
    let released = client
        .check_output(with_token(check(&first.run_id, pb::OutputDecision::Release), &sam))
        .await
        .expect("release")
        .into_inner();
    assert_eq!(released.state, pb::OutputState::Released as i32);
    let arrow_bytes = client
        .fetch(with_token(fetch(&first.run_id, pb::Format::Arrow), &rae))
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(arrow_bytes.data, steward_copy.data);
    let sha = hex_sha256(&arrow_bytes.data);
    assert_eq!(sha, first.output_sha256, "the output is named by its hash");
    let csv = client
        .fetch(with_token(fetch(&first.run_id, pb::Format::Csv), &rae))
        .await
        .expect("csv")
        .into_inner();
    let csv = String::from_utf8(csv.data).expect("utf8");
    assert_eq!(csv.lines().next(), Some("practice,people"));
    assert_eq!(csv.lines().count() as u64, summary.rows + 1);

    // Later, someone on the register opts out, and the registers are derived again: two
    // newer snapshots. A new run honours the opt-out; the first run reproduced as of its
    // pin gives the very same bytes (and, disclosing nothing new, is released at once).
    let opted_out = first_register_member(&store).await;
    optout::apply(
        &store,
        &OptOutList {
            person_ids: HashSet::from([opted_out]),
            invalid_lines: Vec::new(),
        },
        "optout-studies",
    )
    .await
    .expect("opt out");
    poplar_engine::catalog::derive_registers(&store).await.expect("derive");
    // The server picks up new snapshots on its refresh; this one refreshes hourly, so
    // restart it — which also shows that a restart keeps every study and run.
    running.stop().await.expect("stop");
    let users_again = dir.path().join("users.toml");
    let running = poplar_engine::server::start(poplar_engine::server::ServeOptions {
        store: store.clone(),
        users: users_again,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        refresh: std::time::Duration::from_secs(3600),
        drain: std::time::Duration::from_secs(5),
        disclosure: Some(poplar_engine::disclosure::Policy::new(crate::common::NOISE_KEY.to_vec()).expect("policy")),
        limits: Default::default(),
        studies: Default::default(),
        optout_key: None,
        cluster: None,
    })
    .await
    .expect("restart");
    let mut client = StudiesServiceClient::new(connect(running.addr).await);
    let kept = client
        .get(with_token(pb::GetRequest { study_id: id.clone() }, &sam))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(kept.runs.len(), 1);
    assert_eq!(kept.runs[0].state, pb::OutputState::Released as i32);
    assert_eq!(kept.runs[0].output_sha256, first.output_sha256);
    let predates = kept.runs[0].pin.clone().expect("pin").later_optouts;
    assert_eq!(predates.len(), 1, "the steward sees the output predates an opt-out");

    let fresh = client
        .run(with_token(run(&id, "2000-01-01", ""), &rae))
        .await
        .expect("new run")
        .into_inner();
    let fresh_pin = fresh.pin.clone().expect("pin");
    assert!(fresh_pin.snapshot > pin.snapshot, "{fresh_pin:?} after {pin:?}");
    assert!(fresh_pin.later_optouts.is_empty(), "a new run reads after the opt-out");

    let again = client
        .run(with_token(run(&id, "2000-01-01", &first.run_id), &rae))
        .await
        .expect("reproduce")
        .into_inner();
    assert_eq!(again.pin.clone().expect("pin").snapshot, pin.snapshot);
    assert_eq!(
        again.output_sha256, first.output_sha256,
        "byte-identical as of its snapshot"
    );
    assert_eq!(again.state, pb::OutputState::Released as i32);
    assert_eq!(
        again.checked_by,
        poplar_engine::studies::AUTO_RELEASE,
        "no person checked it"
    );
    assert_eq!(
        again.summary.clone().expect("summary").same_as_released_run,
        first.run_id
    );
    let again_bytes = client
        .fetch(with_token(fetch(&again.run_id, pb::Format::Arrow), &rae))
        .await
        .expect("fetch again")
        .into_inner();
    assert_eq!(again_bytes.data, arrow_bytes.data);

    // What a clean-up of old Delta versions must keep: every version these runs pinned —
    // the first run's, older than what the store now serves, among them.
    let pinned = poplar_engine::studies::pinned_versions(&store).await.expect("pinned");
    let pins = [&pin, &fresh_pin];
    let mut expected: std::collections::BTreeMap<String, BTreeSet<u64>> = Default::default();
    for p in pins {
        for (table, version) in &p.table_versions {
            expected.entry(table.clone()).or_default().insert(*version);
        }
    }
    assert_eq!(pinned, expected, "the held and released runs' pins, and nothing else");
    assert!(
        pin.table_versions
            .iter()
            .any(|(table, v)| fresh_pin.table_versions.get(table).is_some_and(|newer| newer > v)),
        "the first run pins versions a newer snapshot superseded: {pin:?} vs {fresh_pin:?}"
    );

    // Quota 3: spent.
    expect_rule(
        client
            .run(with_token(run(&id, "2000-01-01", ""), &rae))
            .await
            .expect_err("quota"),
        Rule::RunQuota,
    );

    // A second study whose approval expires.
    let short = client
        .submit(with_token(submission(), &rae))
        .await
        .expect("submit")
        .into_inner();
    client
        .review(with_token(
            approve(&short.study_id, 5, chrono::Duration::seconds(2)),
            &sam,
        ))
        .await
        .expect("approve");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    expect_rule(
        client
            .run(with_token(run(&short.study_id, "2000-01-01", ""), &rae))
            .await
            .expect_err("expired"),
        Rule::ApprovalExpired,
    );
    let listed = client
        .list(with_token(pb::ListRequest {}, &rae))
        .await
        .expect("list")
        .into_inner();
    let states: Vec<i32> = listed.studies.iter().map(|s| s.state).collect();
    assert!(states.contains(&(pb::StudyState::Expired as i32)), "{states:?}");
    assert!(
        client
            .list(with_token(pb::ListRequest {}, &ray))
            .await
            .expect("list")
            .into_inner()
            .studies
            .is_empty(),
        "a researcher sees only their own studies"
    );

    // Every refusal above is in the audit log under its rule, and the chain verifies.
    let entries = audit::entries(&store).await.expect("audit");
    for rule in &refused {
        assert!(
            entries.iter().any(|e| e.record.outcome.rule() == Some(rule)),
            "no audit entry for {rule}"
        );
    }
    assert_eq!(refused.len(), 9, "{refused:?}");
    let transitions: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.record.outcome == Outcome::Answered)
        .filter_map(|e| match &e.record.request {
            AuditRequest::Study { parameters, .. } => parameters.get("action").cloned(),
            _ => None,
        })
        .collect();
    for action in ["submit", "approve", "run", "release", "fetch", "auto_release"] {
        assert!(transitions.contains(action), "{action} not audited: {transitions:?}");
    }
    assert!(audit::verify(&store).await.expect("verify").is_ok());

    // The stewards' tables.
    let catalog = poplar_engine::catalog::SnapshotCatalog::open(
        store.clone(),
        [
            poplar_engine::studies::table::Which::Studies,
            poplar_engine::studies::table::Which::Runs,
        ]
        .into_iter()
        .map(|which| poplar_engine::catalog::ExtraTable {
            name: match which {
                poplar_engine::studies::table::Which::Studies => "studies",
                poplar_engine::studies::table::Which::Runs => "study_runs",
            },
            provider: std::sync::Arc::new(poplar_engine::studies::table::StudiesTable::new(store.clone(), which)),
            visibility: poplar_engine::catalog::Visibility::StewardsOnly,
        })
        .collect(),
    )
    .await
    .expect("catalog");
    let rows = crate::common::answer(
        &catalog.current(),
        "SELECT study_id, state, runs_used FROM studies ORDER BY submitted_at",
    )
    .await;
    assert_eq!(
        rows,
        vec![format!("{id} approved 3"), format!("{} expired 0", short.study_id)]
    );
    let runs = crate::common::answer(
        &catalog.current(),
        "SELECT run_id, state, snapshot FROM study_runs ORDER BY run_id",
    )
    .await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        runs[0].starts_with(&format!("{} released {}", first.run_id, pin.snapshot)),
        "{runs:?}"
    );
    running.stop().await.expect("stop");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Someone on the diabetes register (a steward's view of the landed data).
async fn first_register_member(store: &poplar_loaders::Store) -> i64 {
    let catalog = poplar_engine::catalog::SnapshotCatalog::open(store.clone(), Vec::new())
        .await
        .expect("catalog");
    let rows = crate::common::answer(
        &catalog.current(),
        "SELECT person_id FROM register_diabetes WHERE latest_code_date >= DATE '2000-01-01' ORDER BY person_id LIMIT 1",
    )
    .await;
    rows[0].parse().expect("person id")
}
