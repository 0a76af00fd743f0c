//! The request path over gRPC, from a real Flight client against a served fixture: every
//! exit is audited (answers in two entries, refusals with their typed rule, metadata calls,
//! failed sign-ins and unknown tokens), and a client that walks away mid-answer leaves a
//! provisional entry completed as cancelled, with the chain still verifying.

use std::net::SocketAddr;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandGetTables, CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, HandshakeRequest, Ticket};
use futures::StreamExt;
use poplar_engine::Rule;
use poplar_engine::audit::{self, AuditEntry, AuditRequest, Outcome};
use poplar_engine::error::RULE_METADATA;
use poplar_engine::limits::{Limits, QueryLimits};
use poplar_engine::server::Running;
use poplar_loaders::Store;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::common::{fixture, serve_landed};

struct Served {
    _dir: tempfile::TempDir,
    store: Store,
    running: Running,
    steward: String,
    commissioner: String,
}

async fn serve() -> Served {
    serve_with(Limits::default()).await
}

async fn serve_with(limits: Limits) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture(dir.path()).await;
    let (store, running, steward, commissioner) = serve_landed(dir.path(), limits).await;
    Served {
        _dir: dir,
        store,
        running,
        steward,
        commissioner,
    }
}

async fn client(addr: SocketAddr) -> FlightServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    FlightServiceClient::new(channel)
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn statement(sql: &str) -> FlightDescriptor {
    FlightDescriptor::new_cmd(
        CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    )
}

async fn entries(store: &Store) -> Vec<AuditEntry> {
    audit::entries(store).await.expect("entries")
}

/// Waits (briefly) for the log to hold an entry matching `wanted`: a cancellation is
/// recorded by a task the dropped stream spawns.
async fn eventually(store: &Store, wanted: impl Fn(&AuditEntry) -> bool) -> AuditEntry {
    for _ in 0..100 {
        if let Some(found) = entries(store).await.into_iter().find(&wanted) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no such audit entry in {:#?}", entries(store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exit_of_the_request_path_is_audited() {
    let served = serve().await;
    let mut flight = client(served.running.addr).await;

    // A wrong token at sign-in: refused, audited with the user as claimed, never the token.
    let mut handshake = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    let basic = format!("Basic {}", base64_encode("cam:ppl_not_the_token"));
    handshake
        .metadata_mut()
        .insert("authorization", basic.parse().expect("header"));
    let refused = flight.handshake(handshake).await.expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let signed = eventually(&served.store, |e| e.record.request == AuditRequest::SignIn).await;
    assert_eq!(signed.record.user, "cam");
    assert_eq!(signed.record.outcome.rule(), Some(audit::UNAUTHENTICATED));
    let raw = serde_json::to_string(&signed).expect("json");
    assert!(!raw.contains("ppl_not_the_token"), "the token is never logged");

    // No token at all on a metadata call: refused and audited under the call's name.
    let no_token = tonic::Request::new(FlightDescriptor::new_cmd(
        CommandGetTables::default().as_any().encode_to_vec(),
    ));
    let refused = flight.get_flight_info(no_token).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    eventually(&served.store, |e| {
        e.record.request
            == AuditRequest::Call {
                rpc: "GetTables".into(),
            }
            && e.record.outcome.rule() == Some(audit::UNAUTHENTICATED)
    })
    .await;

    // A metadata call that answers is audited too.
    let info = flight
        .get_flight_info(with_token(
            FlightDescriptor::new_cmd(CommandGetTables::default().as_any().encode_to_vec()),
            &served.commissioner,
        ))
        .await
        .expect("info")
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut tables = flight
        .do_get(with_token(ticket, &served.commissioner))
        .await
        .expect("tables")
        .into_inner();
    while tables.next().await.is_some() {}
    let listed = eventually(&served.store, |e| {
        e.record.request
            == AuditRequest::Call {
                rpc: "GetTables".into(),
            }
            && e.record.outcome == Outcome::Answered
    })
    .await;
    assert_eq!(
        (listed.record.user.as_str(), listed.record.role.as_str()),
        ("cam", "commissioner")
    );

    // A refusal's rule reaches the client as a typed value and the audit log by its id.
    let refused = flight
        .get_flight_info(with_token(statement("SELECT * FROM patients"), &served.commissioner))
        .await
        .expect_err("person-level rows");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let rule = refused.metadata().get(RULE_METADATA).and_then(|v| v.to_str().ok());
    assert_eq!(rule.and_then(Rule::from_id), Some(Rule::AggregateOnly));
    let logged = eventually(
        &served.store,
        |e| matches!(&e.record.request, AuditRequest::Sql { text, .. } if text == "SELECT * FROM patients"),
    )
    .await;
    assert_eq!(
        logged.record.outcome.rule().and_then(Rule::from_id),
        Some(Rule::AggregateOnly)
    );

    // An answer: a provisional entry, then one that completes it with the rows sent.
    let sql = "SELECT count(*) AS n FROM patients";
    let ticket = Ticket::new(
        arrow_flight::sql::TicketStatementQuery {
            statement_handle: poplar_engine::flight::StatementHandle {
                sql: sql.into(),
                params: Vec::new(),
            }
            .encode_to_vec()
            .into(),
        }
        .as_any()
        .encode_to_vec(),
    );
    let mut answer = flight
        .do_get(with_token(ticket, &served.steward))
        .await
        .expect("answer")
        .into_inner();
    while let Some(message) = answer.next().await {
        message.expect("data");
    }
    let is_sql = |e: &AuditEntry| matches!(&e.record.request, AuditRequest::Sql { text, .. } if text == sql);
    let done = eventually(&served.store, |e| is_sql(e) && e.record.outcome == Outcome::Answered).await;
    let started = entries(&served.store)
        .await
        .into_iter()
        .find(|e| is_sql(e) && e.record.outcome == Outcome::Started)
        .expect("provisional entry");
    assert_eq!(done.record.completes, Some(started.seq));
    assert!(started.seq < done.seq);
    assert_eq!(done.record.rows, 1);

    let report = audit::verify(&served.store).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    served.running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_answer_is_recorded_as_cancelled() {
    let served = serve().await;
    let mut flight = client(served.running.addr).await;
    // Far more rows than one message: the server is still streaming when the client goes.
    let sql = "SELECT value FROM generate_series(1, 50000000) AS t(value)";
    let info = flight
        .get_flight_info(with_token(statement(sql), &served.steward))
        .await
        .expect("info")
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut answer = flight
        .do_get(with_token(ticket, &served.steward))
        .await
        .expect("answer")
        .into_inner();
    // The schema, then the first batch: rows have left, so the provisional entry exists.
    for _ in 0..2 {
        answer.next().await.expect("a message").expect("data");
    }
    drop(answer);
    drop(flight);

    let is_sql = |e: &AuditEntry| matches!(&e.record.request, AuditRequest::Sql { text, .. } if text == sql);
    let cancelled = eventually(&served.store, |e| is_sql(e) && e.record.outcome == Outcome::Cancelled).await;
    let started = entries(&served.store)
        .await
        .into_iter()
        .find(|e| is_sql(e) && e.record.outcome == Outcome::Started)
        .expect("provisional entry");
    assert_eq!(cancelled.record.completes, Some(started.seq));
    assert!(cancelled.record.rows > 0, "rows that left are counted");
    let report = audit::verify(&served.store).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    served.running.stop().await.expect("stop");
}

/// Run `sql` to its end as `token`: the rows, or the status it failed with.
async fn run(flight: &mut FlightServiceClient<Channel>, sql: &str, token: &str) -> Result<usize, tonic::Status> {
    let info = flight
        .get_flight_info(with_token(statement(sql), token))
        .await?
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut answer = flight.do_get(with_token(ticket, token)).await?.into_inner();
    let mut messages = 0;
    while let Some(message) = answer.next().await {
        message?;
        messages += 1;
    }
    Ok(messages)
}

fn rule_of(status: &tonic::Status) -> Option<Rule> {
    status
        .metadata()
        .get(RULE_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(Rule::from_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_over_grpc_and_the_server_keeps_answering() {
    let limits = Limits {
        query: QueryLimits {
            time: Duration::from_secs(2),
            ..QueryLimits::default()
        },
        ..Limits::default()
    };
    let served = serve_with(limits).await;
    let mut flight = client(served.running.addr).await;

    // The red team's stack-overflow query: refused before planning, typed, audited.
    let chain = format!(
        "SELECT count(*) AS n FROM patients WHERE imd_decile = {}",
        vec!["1"; 2_000].join("+")
    );
    let refused = run(&mut flight, &chain, &served.commissioner)
        .await
        .expect_err("too deep");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(rule_of(&refused), Some(Rule::RequestSize));
    eventually(&served.store, |e| {
        e.record.outcome.rule() == Some(Rule::RequestSize.id()) && e.record.user == "cam"
    })
    .await;

    // A query that would run for minutes is stopped at the time limit; its work is dropped.
    let endless = "SELECT count(*) AS n FROM generate_series(1, 1000000000000) AS t(v)";
    let started = std::time::Instant::now();
    let stopped = run(&mut flight, endless, &served.steward).await.expect_err("stopped");
    assert_eq!(stopped.code(), tonic::Code::DeadlineExceeded, "{stopped}");
    assert_eq!(rule_of(&stopped), Some(Rule::TimeLimit));
    assert!(started.elapsed() < Duration::from_secs(30), "stopped near the limit");
    let is_endless = |e: &AuditEntry| matches!(&e.record.request, AuditRequest::Sql { text, .. } if text == endless);
    let logged = eventually(&served.store, |e| {
        is_endless(e) && e.record.outcome.rule() == Some(Rule::TimeLimit.id())
    })
    .await;
    assert!(logged.record.completes.is_some(), "completes the provisional entry");

    // A cross join's batches come from its build side, not from a scan, so nothing below it
    // gives way to the runtime: stopped at the time limit, its work must still end, not spin
    // on a worker thread after the client has its answer.
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let idle = tasks();
    let product = "SELECT count(*) AS n FROM generate_series(1, 1000) AS c(z) CROSS JOIN \
                   (SELECT x, y FROM generate_series(1, 100000) AS a(x) CROSS JOIN generate_series(1, 100000) AS b(y)) AS ab";
    let stopped = run(&mut flight, product, &served.steward).await.expect_err("stopped");
    assert_eq!(rule_of(&stopped), Some(Rule::TimeLimit), "{stopped}");
    let mut waited = 0;
    while tasks() > idle && waited < 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(
        tasks() <= idle,
        "the cross join's work ends with its answer: {} tasks alive, {idle} before it",
        tasks()
    );

    // And the server still answers.
    run(&mut flight, "SELECT count(*) AS n FROM patients", &served.steward)
        .await
        .expect("still serving");

    // Failed sign-ins are slowed, then the name is refused even with the right token.
    let sign_in = |user: &str, token: &str| {
        let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
        let basic = format!("Basic {}", base64_encode(&format!("{user}:{token}")));
        request
            .metadata_mut()
            .insert("authorization", basic.parse().expect("header"));
        request
    };
    let started = std::time::Instant::now();
    for _ in 0..poplar_engine::gate::MAX_FAILURES {
        let refused = flight
            .handshake(sign_in("cam", "ppl_wrong"))
            .await
            .expect_err("wrong token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
    assert!(
        started.elapsed() >= poplar_engine::gate::FAILURE_DELAY * poplar_engine::gate::MAX_FAILURES as u32,
        "each failure waited"
    );
    let throttled = flight
        .handshake(sign_in("cam", &served.commissioner))
        .await
        .expect_err("throttled");
    assert_eq!(throttled.code(), tonic::Code::ResourceExhausted);
    assert_eq!(rule_of(&throttled), Some(Rule::SignInThrottle));
    eventually(&served.store, |e| {
        e.record.request == AuditRequest::SignIn && e.record.outcome.rule() == Some(Rule::SignInThrottle.id())
    })
    .await;
    // Another user is not affected.
    flight
        .handshake(sign_in("sam", &served.steward))
        .await
        .expect("sam signs in");

    let report = audit::verify(&served.store).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    served.running.stop().await.expect("stop");
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_to_the_server_are_closed_and_make_way() {
    use poplar_engine::limits::ConnectionLimits;
    use tokio::io::AsyncReadExt;
    let limits = Limits {
        connections: ConnectionLimits {
            max: 4,
            handshake: Duration::from_millis(500),
            idle: Duration::from_secs(120),
        },
        ..Limits::default()
    };
    let served = serve_with(limits).await;
    let addr = served.running.addr;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    // A real client gets in while the silent ones are open.
    let mut flight = client(addr).await;
    run(&mut flight, "SELECT count(*) AS n FROM patients", &served.steward)
        .await
        .expect("answered");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut open = 0;
    for stream in &mut silent {
        let mut buf = [0u8; 64];
        // The server's preface may be waiting to be read first; then the end.
        let ended = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false);
        if !ended {
            open += 1;
        }
    }
    assert_eq!(open, 0, "silent connections left open");
    served.running.stop().await.expect("stop");
}
