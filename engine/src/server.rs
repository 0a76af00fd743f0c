//! `poplar serve`: one gRPC server on one address, optionally with TLS, draining in-flight
//! requests on SIGTERM or Ctrl-C. It assembles the engine in dependency order — audit log,
//! snapshot catalog (given the audit log as a steward-only table), disclosure control, the
//! request path — and mounts each service on it.

use arrow_flight::flight_service_server::FlightServiceServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::EngineError;
use crate::audit::{AUDIT_TABLE, AuditLog, AuditRequest, AuditTable, Outcome};
use crate::auth::{Authenticator, UsersFile};
use crate::catalog::{ExtraTable, SnapshotCatalog, Visibility};
use crate::disclosure::{Disclosure, Policy};
use crate::flight::PoplarFlightSql;
use crate::gate::Gate;
use crate::governance::{GovernanceServiceServer, PoplarGovernance};
use crate::limits::Limits;
use crate::measures::{MeasuresServiceServer, PoplarMeasures, web};
use crate::studies::service::{PoplarStudies, StudiesServiceServer};
use crate::studies::table::{STUDIES_TABLE, STUDY_RUNS_TABLE, StudiesTable, Which};
use crate::studies::{Studies, StudiesConfig};

/// Largest gRPC message accepted: room for the longest SQL `limits` accepts and a prepared
/// statement's bound parameters, far from what one message could do to memory.
const MAX_DECODING_MESSAGE_BYTES: usize = 8 << 20;
/// How long a client has to acknowledge a keep-alive ping before its connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct ServeOptions {
    pub store: poplar_loaders::Store,
    pub users: PathBuf,
    pub addr: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often to look for a newly committed load.
    pub refresh: Duration,
    /// How long to let in-flight queries finish after a shutdown signal.
    pub drain: Duration,
    /// Disclosure control for every role but steward. None: stewards only.
    pub disclosure: Option<Policy>,
    /// How large, heavy and long a request may be.
    pub limits: Limits,
    /// How studies are approved and released.
    pub studies: StudiesConfig,
    /// The loaders' pseudonymisation key, if this deployment lets stewards apply opt-out
    /// lists from the console; None: the server never holds it.
    pub optout_key: Option<Arc<poplar_loaders::Pseudonymiser>>,
    /// A Ballista cluster to run queries on (disclosure control stays here); None: this
    /// process runs them.
    pub cluster: Option<crate::distributed::Cluster>,
}

/// A running server: its bound address and a handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    refresher: tokio::task::JoinHandle<()>,
    drain: Duration,
}

impl Running {
    /// Stop accepting, let in-flight queries finish (up to the drain time), then return.
    pub async fn stop(self) -> Result<(), EngineError> {
        // The receiver lives in the server task; if it has already ended there is no one
        // to tell, which is what stopping wants.
        let _ = self.shutdown.send(true);
        self.refresher.abort();
        match tokio::time::timeout(self.drain, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(EngineError::Server(format!("server error: {e}"))),
            Ok(Err(e)) => Err(EngineError::Server(format!("server task failed: {e}"))),
            Err(_) => {
                tracing::warn!(
                    seconds = self.drain.as_secs(),
                    "queries still running after the drain time; stopping anyway"
                );
                Ok(())
            }
        }
    }
}

/// The engine behind a server: everything but the transport.
async fn gate(options: &ServeOptions) -> Result<(Arc<Gate>, Arc<SnapshotCatalog>), EngineError> {
    let users = UsersFile::read(&options.users)?;
    if users.users.is_empty() {
        return Err(EngineError::Users {
            path: options.users.display().to_string(),
            reason: "no users: add one with `poplar users add NAME --role ROLE --users FILE`".into(),
        });
    }
    let audit = Arc::new(AuditLog::open(&options.store).await?);
    let audit_table = ExtraTable {
        name: AUDIT_TABLE,
        provider: Arc::new(AuditTable::new(options.store.clone())),
        visibility: Visibility::StewardsOnly,
    };
    let study_tables =
        [(STUDIES_TABLE, Which::Studies), (STUDY_RUNS_TABLE, Which::Runs)].map(|(name, which)| ExtraTable {
            name,
            provider: Arc::new(StudiesTable::new(options.store.clone(), which)),
            visibility: Visibility::StewardsOnly,
        });
    if let Some(cluster) = &options.cluster {
        cluster.check_reachable().await?;
    }
    let mut extra = vec![audit_table];
    extra.extend(study_tables);
    let catalog = Arc::new(SnapshotCatalog::open_with(options.store.clone(), extra, options.cluster.clone()).await?);
    let disclosure = options
        .disclosure
        .clone()
        .map(|policy| Arc::new(Disclosure::new(policy)));
    match &disclosure {
        Some(d) => restore_budgets(d, &options.store).await?,
        None => tracing::warn!("no noise key: disclosure control is off, so only stewards may query"),
    }
    let gate = Gate::new(
        catalog.clone(),
        Arc::new(Authenticator::new(users)),
        disclosure,
        audit,
        options.limits,
    );
    Ok((Arc::new(gate), catalog))
}

pub async fn start(options: ServeOptions) -> Result<Running, EngineError> {
    let (gate, catalog) = gate(&options).await?;
    let refresher = catalog.spawn_refresher(options.refresh);
    let flight = PoplarFlightSql::new(gate.clone())?;
    let studies = Arc::new(Studies::open(gate.clone(), &options.store, options.studies).await?);
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| EngineError::Server(format!("cannot listen on {}: {e}", options.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EngineError::Server(format!("no local address: {e}")))?;
    let connections = options.limits.connections;
    let incoming = crate::connections::incoming(listener, connections);
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(connections.keepalive_interval()))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some((cert, key)) = &options.tls {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| EngineError::Server(format!("{}: {e}", p.display())));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        // Several crypto back-ends are linked; tonic's rustls needs one chosen for the
        // process. An error means one is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| EngineError::Server(format!("TLS: {e}")))?;
    }
    let (shutdown, mut signal) = tokio::sync::watch::channel(false);
    let router = builder.accept_http1(true).add_routes(routes(
        gate,
        flight,
        studies,
        options.store.clone(),
        options.optout_key.clone(),
    )?);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        // A closed channel also means stop.
        let _ = signal.wait_for(|stop| *stop).await;
    }));
    tracing::info!(%addr, tls = options.tls.is_some(), "serving Arrow Flight SQL, the measures service and the dashboard");
    Ok(Running {
        addr,
        shutdown,
        task,
        refresher,
        drain: options.drain,
    })
}

/// Every service on the port: Flight SQL; the measures, studies and governance services, also as gRPC-Web for the
/// dashboard (browsers speak HTTP/1.1, so the server accepts it); gRPC server reflection
/// of Poplar's own services;
/// and, for any other plain HTTP request, the dashboard's files.
fn routes(
    gate: Arc<Gate>,
    flight: PoplarFlightSql,
    studies: Arc<Studies>,
    store: poplar_loaders::Store,
    optout_key: Option<Arc<poplar_loaders::Pseudonymiser>>,
) -> Result<tonic::service::Routes, EngineError> {
    // Both versions of reflection: grpcurl and grpcio's clients still ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(poplar_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| EngineError::Server(format!("gRPC reflection: {e}")))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(poplar_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| EngineError::Server(format!("gRPC reflection: {e}")))?;
    let measures = MeasuresServiceServer::new(PoplarMeasures::new(gate.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
    let routes = tonic::service::Routes::new(
        FlightServiceServer::new(flight).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
    )
    .add_service(tower_layer(measures))
    .add_service(tower_layer(
        StudiesServiceServer::new(PoplarStudies::new(studies)).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
    ))
    .add_service(tower_layer(
        GovernanceServiceServer::new(PoplarGovernance::new(gate.clone(), store, optout_key))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
    ))
    .add_service(reflection)
    .add_service(reflection_alpha);
    let router = routes.into_axum_router().fallback(web::serve);
    Ok(tonic::service::Routes::from(router))
}

/// The measures service, answering gRPC-Web as well as gRPC.
fn tower_layer<S>(service: S) -> tonic_web::GrpcWebService<S> {
    use tower_layer::Layer;
    tonic_web::GrpcWebLayer::new().layer(service)
}

/// Re-read today's charged answers per user from the audit log, so a restart does not
/// reset the daily budgets. An answer is charged before its provisional (`started`) entry
/// is written; entries from before answers had one are counted by their `answered` entry.
async fn restore_budgets(disclosure: &Disclosure, store: &poplar_loaders::Store) -> Result<(), EngineError> {
    let today = chrono::Utc::now().date_naive();
    let mut charged: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for entry in crate::audit::entries(store).await? {
        if entry.at.date_naive() != today {
            continue;
        }
        let record = &entry.record;
        let legacy_answer = record.outcome == Outcome::Answered
            && record.completes.is_none()
            && matches!(record.request, AuditRequest::Sql { .. });
        if record.outcome == Outcome::Started || legacy_answer {
            *charged.entry(record.user.clone()).or_default() += 1;
        }
    }
    for (user, n) in charged {
        disclosure.budget.restore(&user, today, n);
    }
    Ok(())
}

/// Resolve on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                // No SIGTERM handler possible: Ctrl-C alone (an error means no signal
                // support at all, and the server runs until killed).
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
