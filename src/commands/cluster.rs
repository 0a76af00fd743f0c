//! `poplar scheduler` and `poplar executor`: the processes of an Apache Ballista cluster
//! that runs queries for `poplar serve --cluster` (see `poplar_cluster`). Each reads the
//! store with its own environment's credentials.

use clap::Args;
use poplar_cluster::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};
use poplar_loaders::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct SchedulerArgs {
    /// Store root: a directory, file:// or s3:// URL (the same one the front end serves).
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
    /// Address to listen on for executors and front ends.
    #[arg(long, env = "POPLAR_SCHEDULER_ADDR", default_value = "127.0.0.1:50050")]
    addr: SocketAddr,
    /// Host name executors and front ends reach this scheduler at (default: --addr's IP).
    #[arg(long, env = "POPLAR_SCHEDULER_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is taken as lost and its tasks
    /// are run again elsewhere.
    #[arg(long, env = "POPLAR_EXECUTOR_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..))]
    executor_timeout_secs: u64,
    /// Attempts of one task before its query fails.
    #[arg(long, env = "POPLAR_TASK_MAX_FAILURES", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100))]
    task_max_failures: u64,
}

#[derive(Args)]
pub struct ExecutorArgs {
    /// Store root: a directory, file:// or s3:// URL (the same one the front end serves).
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
    /// The scheduler, HOST:PORT.
    #[arg(long, env = "POPLAR_SCHEDULER", default_value = "127.0.0.1:50050")]
    scheduler: String,
    /// Host to listen on.
    #[arg(long, env = "POPLAR_EXECUTOR_BIND_HOST", default_value = "127.0.0.1")]
    bind_host: String,
    /// Host the scheduler, other executors and front ends reach this executor at (default:
    /// --bind-host).
    #[arg(long, env = "POPLAR_EXECUTOR_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Arrow Flight port (results and shuffle data).
    #[arg(long, env = "POPLAR_EXECUTOR_FLIGHT_PORT", default_value_t = 50061)]
    flight_port: u16,
    /// gRPC port the scheduler sends tasks to.
    #[arg(long, env = "POPLAR_EXECUTOR_GRPC_PORT", default_value_t = 50062)]
    grpc_port: u16,
    /// Tasks to run at once (default: one per core).
    #[arg(long, env = "POPLAR_EXECUTOR_TASKS", default_value_t = 0)]
    tasks: usize,
    /// Directory for shuffle and spill files (default: a temporary directory).
    #[arg(long, env = "POPLAR_EXECUTOR_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler (keep well under its
    /// --executor-timeout-secs).
    #[arg(long, env = "POPLAR_EXECUTOR_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_secs: u64,
}

pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.executor_timeout_secs);
    run_scheduler(SchedulerOptions {
        store: Store::parse(&args.store)?,
        bind: args.addr,
        external_host: args.external_host.unwrap_or_else(|| args.addr.ip().to_string()),
        executor_timeout: timeout,
        // Look for lost executors a few times per timeout.
        expire_interval: timeout / 4,
        task_max_failures: usize::try_from(args.task_max_failures)?,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    let (host, port) = args
        .scheduler
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--scheduler {:?}: expected HOST:PORT", args.scheduler))?;
    let port: u16 = port
        .parse()
        .map_err(|e| anyhow::anyhow!("--scheduler {:?}: bad port: {e}", args.scheduler))?;
    run_executor(ExecutorOptions {
        store: Store::parse(&args.store)?,
        scheduler: (host.to_string(), port),
        external_host: args.external_host.unwrap_or_else(|| args.bind_host.clone()),
        bind_host: args.bind_host,
        flight_port: args.flight_port,
        grpc_port: args.grpc_port,
        concurrent_tasks: args.tasks,
        work_dir: args.work_dir,
        heartbeat: Duration::from_secs(args.heartbeat_secs),
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
