//! Poplar's Apache Ballista processes: the scheduler (`poplar scheduler`) and the executors
//! (`poplar executor`) that run the parts of queries a cluster front end
//! (`poplar serve --cluster`) sends them.
//!
//! Every node is the same Poplar build, with the same pieces the front end uses: Poplar's
//! logical codec (landed tables as Parquet file lists, the compiled-in codelists) around
//! Ballista's own, Ballista's physical codec, Poplar's SQL functions and the release
//! pass's `poplar_people` aggregate (the hidden column a release reads), and the store's
//! object store, built from each node's own environment (`AWS_*`): no credential is ever
//! in a plan or a session's settings.
//!
//! Nothing here knows disclosure control: no release runs on a cluster (the front end's
//! planner keeps `Protect` at home, and the codec refuses to encode it). The scheduler and
//! executors are therefore as trusted as the store they read and must not be reachable by
//! users; see the README.

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaCodec;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use ballista_scheduler::scheduler_server::SessionBuilder;
use deltalake::datafusion::execution::FunctionRegistry;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use deltalake::datafusion::prelude::SessionConfig;
use poplar_engine::EngineError;
use poplar_engine::distributed::{PoplarLogicalCodec, physical_codec};
use poplar_engine::files::register_store;
use poplar_engine::yielding::YieldingJoins;
use poplar_loaders::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything that can stop a scheduler or an executor.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("ballista: {0}")]
    Ballista(#[from] BallistaError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("configuration: {0}")]
    Config(String),
}

/// Poplar's codecs, as Ballista's scheduler and executors take them.
pub fn codec() -> BallistaCodec {
    BallistaCodec::new(Arc::new(PoplarLogicalCodec::default()), physical_codec())
}

/// Every function a plan from a Poplar front end may call: DataFusion's, Poplar's SQL
/// functions, and `poplar_people` and its set-free variant (which users cannot call: only the release rewrite
/// writes it, and the front end's analyzer has already run).
pub fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    for udf in poplar_engine::udfs::all() {
        registry.scalar_functions.insert(udf.name().to_string(), Arc::new(udf));
    }
    for people in [
        poplar_engine::disclosure::people::udaf(),
        poplar_engine::disclosure::people::udaf_of_unique_rows(),
    ] {
        registry.aggregate_functions.insert(people.name().to_string(), people);
    }
    registry
}

/// The scheduler's session for each job: Ballista's defaults, the store, Poplar's
/// functions, and joins that yield (`poplar_engine::yielding`). The scheduler plans the
/// scans, so it reads the store too.
pub fn session_builder(store: Store) -> SessionBuilder {
    Arc::new(move |config: SessionConfig| {
        let state: SessionState = ballista_core::utils::default_session_builder(config)?;
        // The executors run the plans this session makes: their joins must yield too.
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rule(Arc::new(YieldingJoins))
            .build();
        register_store(state.runtime_env(), &store).map_err(external)?;
        for udf in poplar_engine::udfs::all() {
            state.register_udf(Arc::new(udf))?;
        }
        state.register_udaf(poplar_engine::disclosure::people::udaf())?;
        state.register_udaf(poplar_engine::disclosure::people::udaf_of_unique_rows())?;
        Ok(state)
    })
}

/// Each executor session's runtime: spill files under `work_dir`, and the store.
pub fn runtime_producer(store: Store, work_dir: Option<PathBuf>) -> RuntimeProducer {
    Arc::new(move |_config: &SessionConfig| {
        let mut builder = RuntimeEnvBuilder::new();
        if let Some(dir) = &work_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        let runtime = builder.build()?;
        register_store(&runtime, &store).map_err(external)?;
        Ok(Arc::new(runtime))
    })
}

/// The session configuration every node starts from (Ballista's).
pub fn config_producer() -> ConfigProducer {
    Arc::new(SessionConfig::new_with_ballista)
}

fn external(e: EngineError) -> deltalake::datafusion::error::DataFusionError {
    deltalake::datafusion::error::DataFusionError::External(Box::new(e))
}

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub store: Store,
    pub bind: SocketAddr,
    /// The host executors and front ends reach this scheduler at.
    pub external_host: String,
    /// An executor silent for this long is taken as lost and its tasks run elsewhere.
    pub executor_timeout: Duration,
    /// How often the scheduler looks for lost executors.
    pub expire_interval: Duration,
    /// Attempts of a task before its job fails.
    pub task_max_failures: usize,
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(options: SchedulerOptions) -> Result<(), ClusterError> {
    let timeout = options.executor_timeout.as_secs().max(1);
    let config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.external_host.clone(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: options.expire_interval.as_secs().clamp(1, timeout),
        no_executors_grace_period_seconds: timeout,
        task_max_failures: options.task_max_failures,
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        override_session_builder: Some(session_builder(options.store.clone())),
        override_config_producer: Some(config_producer()),
        override_logical_codec: Some(Arc::new(PoplarLogicalCodec::default())),
        override_physical_codec: Some(physical_codec()),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!(addr = %options.bind, "scheduler listening");
    start_server(cluster, options.bind, Arc::new(config)).await?;
    Ok(())
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub store: Store,
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    pub bind_host: String,
    /// The host the scheduler, other executors and front ends reach this executor at.
    pub external_host: String,
    /// Arrow Flight (results and shuffles) port.
    pub flight_port: u16,
    /// gRPC port the scheduler launches tasks on.
    pub grpc_port: u16,
    /// Tasks at once; 0: one per core.
    pub concurrent_tasks: usize,
    pub work_dir: Option<PathBuf>,
    pub heartbeat: Duration,
}

/// Run an executor until the process is stopped.
pub async fn run_executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    let (scheduler_host, scheduler_port) = options.scheduler.clone();
    let mut config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(options.external_host.clone()),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host,
        scheduler_port,
        work_dir: options
            .work_dir
            .as_ref()
            .map(|d| {
                d.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ClusterError::Config("--work-dir is not UTF-8".into()))
            })
            .transpose()?,
        executor_heartbeat_interval_seconds: options.heartbeat.as_secs().max(1),
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        // Ballista's own logging set-up is for its binaries; Poplar's goes to stderr.
        print_thread_info: false,
        override_function_registry: Some(Arc::new(function_registry())),
        override_runtime_producer: Some(runtime_producer(options.store.clone(), options.work_dir.clone())),
        override_config_producer: Some(config_producer()),
        override_logical_codec: Some(Arc::new(PoplarLogicalCodec::default())),
        override_physical_codec: Some(physical_codec()),
        ..Default::default()
    };
    if options.concurrent_tasks > 0 {
        config.vcores = options.concurrent_tasks;
    }
    tracing::info!(
        flight = options.flight_port,
        grpc = options.grpc_port,
        "executor starting"
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// A scheduler and `executors` executors in this process, on 127.0.0.1 ports the system
/// picks, with the same codecs, functions, sessions and store as the real processes: for
/// tests. Returns the scheduler's address (`df://` it for a front end).
pub async fn start_in_process(store: Store, executors: usize) -> Result<SocketAddr, ClusterError> {
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_with_builder(
        session_builder(store.clone()),
        config_producer(),
        codec(),
    )
    .await?;
    let url = format!("http://127.0.0.1:{}", addr.port());
    for _ in 0..executors {
        let client = ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::connect(url.clone())
            .await
            .map_err(|e| ClusterError::Config(format!("connecting to the in-process scheduler: {e}")))?;
        ballista_executor::new_standalone_executor_from_builder(
            client,
            2,
            config_producer(),
            runtime_producer(store.clone(), None),
            codec(),
            function_registry(),
        )
        .await?;
    }
    Ok(addr)
}
