//! `poplar serve`: flags and environment into `ServeOptions`, then serve until a signal.
//! The noise-key lookup lives here because it is serving's secret; `demo` reuses it.

use anyhow::Context;
use clap::Args;
use poplar_engine::disclosure::Policy;
use poplar_engine::distributed::Cluster;
use poplar_engine::limits::{ConnectionLimits, Limits, QueryLimits, SqlLimits};
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
    /// Independent stewards' approvals a study needs before it may run (1 or 2).
    #[arg(long, default_value_t = 1, env = "POPLAR_STUDY_APPROVALS", value_parser = clap::value_parser!(u32).range(1..=2))]
    study_approvals: u32,
    /// Release a study's output without a steward when it passes the engine's checks
    /// (every column a released aggregate or a key, every count rounded).
    #[arg(long, env = "POPLAR_STUDY_AUTO_RELEASE")]
    study_auto_release: bool,
    /// Independent stewards' release decisions a held study output needs (1 or 2), never
    /// the run's researcher.
    #[arg(long, default_value_t = 1, env = "POPLAR_OUTPUT_CHECKS", value_parser = clap::value_parser!(u32).range(1..=2))]
    output_checks: u32,
    /// The loaders' pseudonymisation key, so stewards can apply an opt-out list from the
    /// console (`poplar.governance.v1` ApplyOptOut). Without it the server never holds the
    /// key and opt-outs are applied with `poplar optout apply`.
    #[arg(long, env = "POPLAR_OPTOUT_KEY_FILE")]
    optout_key_file: Option<PathBuf>,
    /// Run queries on an Apache Ballista cluster (`df://HOST:PORT` of a `poplar
    /// scheduler`); disclosure control and releases stay in this process. Without it this
    /// process runs every query.
    #[arg(long, env = "POPLAR_CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// How large, heavy and long requests may be (see `poplar_engine::limits`).
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Memory for all running queries together (e.g. 4GiB, 512MiB); each of the
    /// concurrent queries gets an equal share and spills to disk or stops within it.
    #[arg(long, default_value = "4GiB", env = "POPLAR_MEMORY_LIMIT", value_parser = parse_bytes)]
    memory_limit: usize,
    /// Queries that run at once; more wait for a slot within their time limit.
    #[arg(long, default_value_t = 4, env = "POPLAR_MAX_CONCURRENT_QUERIES", value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_queries: u16,
    /// Seconds a query may take, waiting for a slot included; then it is stopped.
    #[arg(long, default_value_t = 300, env = "POPLAR_QUERY_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    query_timeout_secs: u64,
    /// Largest SQL text accepted, in bytes.
    #[arg(long, default_value = "256KiB", env = "POPLAR_MAX_SQL_BYTES", value_parser = parse_bytes)]
    max_sql_bytes: usize,
    /// Open connections at once; more are closed when accepted.
    #[arg(long, default_value_t = 512, env = "POPLAR_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a connection may stay silent before it is closed (a live client is pinged
    /// more often than this).
    #[arg(long, default_value_t = 120, env = "POPLAR_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(4..))]
    idle_timeout_secs: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            sql: SqlLimits {
                max_bytes: self.max_sql_bytes,
                ..defaults.sql
            },
            query: QueryLimits {
                memory_bytes: self.memory_limit,
                concurrent: usize::from(self.max_concurrent_queries),
                time: Duration::from_secs(self.query_timeout_secs),
            },
            connections: ConnectionLimits {
                max: self.max_connections as usize,
                idle: Duration::from_secs(self.idle_timeout_secs),
                ..defaults.connections
            },
        }
    }
}

/// A size such as `4GiB`, `512MiB`, `64KiB` or a number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| "expected a number of bytes, optionally with KiB, MiB or GiB".to_string())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" | "KB" => 10,
        "MiB" | "M" | "MB" => 20,
        "GiB" | "G" | "GB" => 30,
        other => return Err(format!("unknown unit {other:?}: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| "the size must be more than 0 and fit in memory".to_string())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // DataFusion reads its own settings from these (see `poplar_engine::catalog`); say which
    // are in force, since they change how fast (not what) the server answers. Names only:
    // some settings carry secrets (Parquet decryption keys).
    let tuned: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("DATAFUSION_"))
        .collect();
    if !tuned.is_empty() {
        tracing::info!(settings = %tuned.join(" "), "DataFusion settings from the environment");
    }
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
        limits: args.limits.limits(),
        studies: poplar_engine::studies::StudiesConfig {
            approvals_required: args.study_approvals,
            auto_release: args.study_auto_release,
            output_checks_required: args.output_checks,
        },
        optout_key: match &args.optout_key_file {
            Some(path) => Some(std::sync::Arc::new(poplar_loaders::Pseudonymiser::from_file_or_env(
                Some(path),
            )?)),
            None => None,
        },
        cluster: args.cluster.as_deref().map(Cluster::parse).transpose()?,
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

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("256KiB"), Ok(256 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("4TB").is_err());
    }
}
