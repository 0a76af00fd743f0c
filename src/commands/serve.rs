//! `poplar serve`: flags and environment into `ServeOptions`, then serve until a signal.
//! The noise-key lookup lives here because it is serving's secret; `demo` reuses it.

use anyhow::Context;
use clap::Args;
use poplar_engine::disclosure::Policy;
use poplar_engine::server::{ServeOptions, shutdown_signal, start};
use poplar_loaders::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Store root: a directory, file:// or s3:// URL.
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
    /// Users file (TOML; tokens stored as SHA-256).
    #[arg(long, env = "POPLAR_USERS")]
    users: PathBuf,
    #[arg(long, env = "POPLAR_ADDR", default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// PEM certificate chain; with --tls-key, serve TLS.
    #[arg(long, env = "POPLAR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "POPLAR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Secret that seeds disclosure control's sticky noise (≥ 32 bytes; else
    /// POPLAR_NOISE_KEY). Without one, only stewards may query.
    #[arg(long, env = "POPLAR_NOISE_KEY_FILE")]
    noise_key_file: Option<PathBuf>,
    /// Disclosure-control settings (TOML) that tighten the compiled-in floors.
    #[arg(long, env = "POPLAR_DISCLOSURE")]
    disclosure: Option<PathBuf>,
    /// Seconds between checks for a newly committed load.
    #[arg(long, default_value_t = 2, env = "POPLAR_SERVE_REFRESH_SECS")]
    refresh_secs: u64,
    /// Seconds in-flight queries may run after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30, env = "POPLAR_SERVE_DRAIN_SECS")]
    drain_secs: u64,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = args.tls_cert.zip(args.tls_key);
    let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
    let running = start(ServeOptions {
        store: Store::parse(&args.store)?,
        users: args.users,
        addr: args.addr,
        tls,
        refresh: Duration::from_secs(args.refresh_secs.max(1)),
        drain: Duration::from_secs(args.drain_secs),
        disclosure: disclosure_policy(args.noise_key_file.as_deref(), args.disclosure.as_deref())?,
    })
    .await?;
    println!("poplar: serving Arrow Flight SQL at {scheme}://{}", running.addr);
    shutdown_signal().await;
    println!("poplar: shutting down; letting queries in flight finish");
    running.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The environment variable holding the noise key when no file is given.
pub const NOISE_KEY_ENV: &str = "POPLAR_NOISE_KEY";

/// Disclosure control from the noise key (file, else environment) and optional settings.
pub fn disclosure_policy(key_file: Option<&Path>, settings: Option<&Path>) -> anyhow::Result<Option<Policy>> {
    let key = match key_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => match std::env::var(NOISE_KEY_ENV) {
            Ok(key) => key.into_bytes(),
            Err(_) => return Ok(None),
        },
    };
    Ok(Some(Policy::from_file(key.trim_ascii().to_vec(), settings)?))
}
