//! `poplar serve`: Flight SQL on a TCP address, optionally with TLS, draining in-flight
//! queries on SIGTERM or Ctrl-C.

use arrow_flight::flight_service_server::FlightServiceServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::EngineError;
use crate::audit::AuditLog;
use crate::auth::{Authenticator, UsersFile};
use crate::catalog::Catalog;
use crate::flight::PoplarFlightSql;
use crate::session::Disclosure;

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
    pub disclosure: Option<crate::disclosure::Policy>,
}

/// A running server: its bound address and a handle to stop it.
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
        let _ = self.shutdown.send(true);
        self.refresher.abort();
        match tokio::time::timeout(self.drain, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(EngineError::InvalidRequest(format!("server error: {e}"))),
            Ok(Err(e)) => Err(EngineError::InvalidRequest(format!("server task failed: {e}"))),
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

pub async fn start(options: ServeOptions) -> Result<Running, EngineError> {
    let users = UsersFile::read(&options.users)?;
    if users.users.is_empty() {
        return Err(EngineError::Users {
            path: options.users.display().to_string(),
            reason: "no users: add one with `poplar users add NAME --role ROLE --users FILE`".into(),
        });
    }
    let audit = Arc::new(AuditLog::open(&options.store).await?);
    let catalog = Arc::new(Catalog::open(options.store.clone()).await?);
    let refresher = catalog.spawn_refresher(options.refresh);
    let disclosure = options.disclosure.map(|policy| Arc::new(Disclosure::new(policy)));
    match &disclosure {
        Some(d) => restore_budgets(d, &options.store).await?,
        None => tracing::warn!("no noise key: disclosure control is off, so only stewards may query"),
    }
    let service = PoplarFlightSql::new(catalog, Arc::new(Authenticator::new(users)), disclosure, audit)?;
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| EngineError::InvalidRequest(format!("cannot listen on {}: {e}", options.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some((cert, key)) = &options.tls {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| EngineError::InvalidRequest(format!("{}: {e}", p.display())));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        // Several crypto back-ends are linked; tonic's rustls needs one chosen for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| EngineError::InvalidRequest(format!("TLS: {e}")))?;
    }
    let (shutdown, mut signal) = tokio::sync::watch::channel(false);
    let router = builder.add_service(FlightServiceServer::new(service).max_decoding_message_size(64 << 20));
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = signal.wait_for(|stop| *stop).await;
    }));
    tracing::info!(%addr, tls = options.tls.is_some(), "serving Arrow Flight SQL");
    Ok(Running {
        addr,
        shutdown,
        task,
        refresher,
        drain: options.drain,
    })
}

/// Re-read today's answers per user from the audit log, so a restart does not reset the
/// daily budgets.
async fn restore_budgets(disclosure: &Disclosure, store: &poplar_loaders::Store) -> Result<(), EngineError> {
    let today = chrono::Utc::now().date_naive();
    let mut answered: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for entry in crate::audit::entries(store).await? {
        if entry.at.date_naive() == today && entry.record.outcome == crate::audit::Outcome::Answered {
            *answered.entry(entry.record.user.clone()).or_default() += 1;
        }
    }
    for (user, n) in answered {
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
