//! Running the heavy part of a query on an Apache Ballista cluster while disclosure control
//! stays in this process.
//!
//! Disclosure control has two halves, and neither may leave the front end: the analyzer
//! rule that refuses or rewrites the plan (it has run before any plan is shipped), and the
//! release (`Protect`), which holds the noise key and sees the true counts. So
//! [`ClusterPlanner`] cuts the optimized plan where it must run here: every `Protect` (and
//! everything above one), `EXPLAIN`, statements, and scans of tables only this process has
//! (the audit log). Each largest part below such a cut that reads landed data is sent to
//! the scheduler as one `DistributedQueryExec`; a `Protect` then releases what came back,
//! here. A steward's query has no `Protect`, so all of it runs on the cluster.
//!
//! What crosses the wire is the logical plan, encoded by [`PoplarLogicalCodec`]: landed
//! tables as their Parquet file lists ([`crate::files`]), the compiled-in codelists by
//! name, everything else by Ballista's and DataFusion's own codecs. A `Protect` node is
//! never encoded: the codec refuses it, so a mistake here fails the query instead of
//! releasing on the cluster.

use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use datafusion_proto::protobuf::LogicalPlanNode;
use deltalake::datafusion::catalog::Session;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{DFSchemaRef, Result as DfResult, TableReference, exec_err, internal_err};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::datasource::empty::EmptyTable;
use deltalake::datafusion::datasource::file_format::FileFormatFactory;
use deltalake::datafusion::datasource::source_as_provider;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::execution::context::QueryPlanner;
use deltalake::datafusion::logical_expr::{
    AggregateUDF, Expr, Extension, LogicalPlan, ScalarUDF, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
    WindowUDF,
};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use deltalake::datafusion::prelude::SessionConfig;
use std::fmt;
use std::sync::Arc;

use crate::EngineError;
use crate::cluster_job::ClusterJobExec;
use crate::disclosure::SessionPlanner;
use crate::disclosure::protect::{ProtectNode, ProtectPlanner};
use crate::files::{FilesSpec, FilesTable};
use crate::reference::Codelists;

/// How long a front end waits for its scheduler to accept a connection at start.
const SCHEDULER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a Poplar front end sends work: a Ballista scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `http://HOST:PORT`, as Ballista's client connects to it.
    scheduler_url: String,
}

impl Cluster {
    /// `df://HOST:PORT` (Ballista's scheme), or `http://HOST:PORT`.
    pub fn parse(raw: &str) -> Result<Self, EngineError> {
        let bad = |reason: &str| EngineError::Config(format!("--cluster {raw:?}: {reason} (expected df://HOST:PORT)"));
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "df" && url.scheme() != "http" {
            return Err(bad("the scheme must be df://"));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let port = url.port().ok_or_else(|| bad("no port"))?;
        if !matches!(url.path(), "" | "/") {
            return Err(bad("a scheduler address has no path"));
        }
        Ok(Self {
            scheduler_url: format!("http://{host}:{port}"),
        })
    }

    pub fn scheduler_url(&self) -> &str {
        &self.scheduler_url
    }

    /// Whether the scheduler accepts connections. A front end checks before it serves: one
    /// that cannot reach its cluster would otherwise start and then fail every query.
    pub async fn check_reachable(&self) -> Result<(), EngineError> {
        let address = self.scheduler_url.trim_start_matches("http://");
        let unreachable = |reason: String| {
            EngineError::Config(format!(
                "--cluster: cannot reach the Ballista scheduler at {address} ({reason}); \
                 start `poplar scheduler` there first, or check the address"
            ))
        };
        match tokio::time::timeout(SCHEDULER_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!(
                "no answer in {} s",
                SCHEDULER_CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The planner of this cluster's front end: releases here, the rest on the cluster.
    pub fn planner(&self) -> Arc<ClusterPlanner> {
        Arc::new(ClusterPlanner {
            scheduler_url: self.scheduler_url.clone(),
            codec: Arc::new(PoplarLogicalCodec::default()),
        })
    }

    /// A session configuration for a front end of this cluster: Ballista's settings and
    /// Poplar's codecs, and the planner disclosure control installs (so a release is
    /// planned here however the session was built).
    pub fn session_config(&self, config: SessionConfig) -> SessionConfig {
        config
            .upgrade_for_ballista()
            // Ballista 55's adaptive planner drops the one row a global aggregate owes
            // over an empty join (`count(*)` answers no rows instead of 0: its
            // empty-propagation rule misses a stage shape). The static planner answers as a
            // single node does; a release must see every row the question has.
            .with_ballista_adaptive_query_planner(false)
            .with_ballista_logical_extension_codec(Arc::new(PoplarLogicalCodec::default()))
            .with_ballista_physical_extension_codec(physical_codec())
            .with_extension(Arc::new(SessionPlanner(self.planner())))
    }
}

/// The physical codec of every node. No Poplar operator ever runs on the cluster
/// (`ProtectExec` is the only one, and it stays here), so Ballista's own codec (shuffles,
/// and DataFusion's operators through its default) is the whole of it; an operator it
/// does not know fails to encode, loudly.
pub fn physical_codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(BallistaPhysicalExtensionCodec::default())
}

/// How the codec marks the table providers it encodes itself.
const FILES: u8 = b'F';
const CODELISTS: u8 = b'C';
const EMPTY: u8 = b'E';

/// Poplar's logical codec, wrapping Ballista's (which encodes its own nodes and the file
/// formats): landed tables as file lists, the compiled-in codelists by name, empty tables
/// by their schema alone.
#[derive(Debug, Default)]
pub struct PoplarLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

/// Whether the codec can send `provider` to the scheduler (else the scan runs here).
pub fn shippable(provider: &dyn TableProvider) -> bool {
    let any: &dyn std::any::Any = provider;
    any.is::<FilesTable>() || any.is::<Codelists>() || any.is::<EmptyTable>()
}

impl LogicalExtensionCodec for PoplarLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> DfResult<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        if node.node.as_any().is::<ProtectNode>() {
            return internal_err!("a release (Protect) never leaves the front end");
        }
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        match buf.split_first() {
            Some((&FILES, spec)) => {
                let spec: FilesSpec = serde_json::from_slice(spec)
                    .map_err(|e| deltalake::datafusion::error::DataFusionError::External(Box::new(e)))?;
                Ok(Arc::new(FilesTable::try_new(schema, spec).map_err(external)?))
            }
            Some((&CODELISTS, _)) => {
                let table = crate::reference::codelists_table().map_err(external)?;
                if table.schema() != schema {
                    return exec_err!("the codelists differ between this node and the front end (another build?)");
                }
                Ok(table)
            }
            Some((&EMPTY, _)) => Ok(Arc::new(EmptyTable::new(schema))),
            _ => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(files) = any.downcast_ref::<FilesTable>() {
            buf.push(FILES);
            serde_json::to_writer(&mut *buf, files.spec())
                .map_err(|e| deltalake::datafusion::error::DataFusionError::External(Box::new(e)))?;
            return Ok(());
        }
        if any.is::<Codelists>() {
            buf.push(CODELISTS);
            return Ok(());
        }
        if any.is::<EmptyTable>() {
            buf.push(EMPTY);
            return Ok(());
        }
        self.ballista.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> DfResult<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        self.ballista.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

fn external(e: EngineError) -> deltalake::datafusion::error::DataFusionError {
    deltalake::datafusion::error::DataFusionError::External(Box::new(e))
}

/// Where a part of a plan may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// Anywhere, and it reads nothing (`VALUES`, `SELECT 1`): not worth a round trip.
    Anywhere,
    /// On the cluster: it reads landed data and everything in it can be sent.
    Cluster,
    /// Only here: a release, `EXPLAIN`, a statement, or a table only this process has.
    Here,
}

/// Where `node` itself (not its inputs or subqueries) may run.
fn own_place(node: &LogicalPlan) -> DfResult<Place> {
    Ok(match node {
        LogicalPlan::TableScan(scan) => match source_as_provider(&scan.source) {
            Ok(provider) if shippable(provider.as_ref()) => Place::Cluster,
            _ => Place::Here,
        },
        // Every extension node: `Protect` above all, and any other is unknown to the
        // scheduler anyway.
        LogicalPlan::Extension(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::DescribeTable(_) => Place::Here,
        _ => Place::Anywhere,
    })
}

/// Whether all of `plan`, subqueries included, can run on the cluster.
fn all_shippable(plan: &LogicalPlan) -> DfResult<bool> {
    let mut ok = true;
    plan.apply_with_subqueries(|node| {
        if own_place(node)? == Place::Here {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(ok)
}

/// Cut `plan`: every largest part that may run on the cluster and reads landed data,
/// under a part that must run here, becomes a [`Distributed`] leaf. Returns the plan and
/// where its root may run.
fn cut(plan: LogicalPlan) -> DfResult<(LogicalPlan, Place)> {
    let mut place = own_place(&plan)?;
    // A subquery in an expression runs with its node: the node can go only if all of it can.
    let mut subqueries_ok = true;
    plan.apply_subqueries(|sub| {
        if !all_shippable(sub)? {
            subqueries_ok = false;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if !subqueries_ok {
        place = Place::Here;
    }
    let mut inputs = Vec::new();
    let plan = plan
        .map_children(|child| {
            let (child, at) = cut(child)?;
            inputs.push(at);
            Ok(Transformed::no(child))
        })?
        .data;
    let place = inputs.iter().copied().fold(place, Ord::max);
    if place != Place::Here {
        return Ok((plan, place));
    }
    let mut at = inputs.into_iter();
    let plan = plan
        .map_children(|child| {
            Ok(match at.next() {
                Some(Place::Cluster) => Transformed::yes(distributed(child)),
                _ => Transformed::no(child),
            })
        })?
        .data;
    Ok((plan, Place::Here))
}

fn distributed(plan: LogicalPlan) -> LogicalPlan {
    LogicalPlan::Extension(Extension {
        node: Arc::new(Distributed { plan }),
    })
}

/// The optimized `plan` cut for a cluster (see [`cut`]); a plan that may run wholly on the
/// cluster is sent whole.
pub fn cut_for_cluster(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    let (plan, place) = cut(plan)?;
    Ok(match place {
        Place::Cluster => distributed(plan),
        Place::Anywhere | Place::Here => plan,
    })
}

/// A part of a plan that runs on the cluster. A leaf here: its plan is the scheduler's to
/// plan, not this process's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
struct Distributed {
    plan: LogicalPlan,
}

impl UserDefinedLogicalNodeCore for Distributed {
    fn name(&self) -> &str {
        "Distributed"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.plan.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Distributed")
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        if !inputs.is_empty() {
            return internal_err!("Distributed takes no inputs");
        }
        Ok(self.clone())
    }
}

/// Plans a [`Distributed`] part as a `DistributedQueryExec` for the scheduler, cancelled
/// there if its answer is dropped unfinished ([`ClusterJobExec`]).
#[derive(Debug)]
struct DistributedPlanner {
    scheduler_url: String,
    codec: Arc<PoplarLogicalCodec>,
}

#[async_trait::async_trait]
impl ExtensionPlanner for DistributedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &deltalake::datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(part) = node.as_any().downcast_ref::<Distributed>() else {
            return Ok(None);
        };
        let job = DistributedQueryExec::<LogicalPlanNode>::with_extension(
            self.scheduler_url.clone(),
            session.config().ballista_config(),
            part.plan.clone(),
            self.codec.clone(),
            session.session_id().to_string(),
        );
        Ok(Some(Arc::new(ClusterJobExec::new(job, self.scheduler_url.clone()))))
    }
}

/// A cluster front end's query planner: releases here, the rest on the cluster.
#[derive(Debug)]
pub struct ClusterPlanner {
    scheduler_url: String,
    codec: Arc<PoplarLogicalCodec>,
}

#[async_trait::async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = cut_for_cluster(logical_plan.clone())?;
        let distributed = Arc::new(DistributedPlanner {
            scheduler_url: self.scheduler_url.clone(),
            codec: self.codec.clone(),
        });
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ProtectPlanner), distributed])
            .create_physical_plan(&plan, session_state)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disclosure::protect::ProtectSpec;
    use crate::disclosure::{Policy, ReleaseStats};
    use crate::files::DataFile;
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::catalog::MemTable;
    use deltalake::datafusion::datasource::provider_as_source;
    use deltalake::datafusion::functions_aggregate::count::count;
    use deltalake::datafusion::logical_expr::{LogicalPlanBuilder, lit};

    #[tokio::test]
    async fn a_front_end_checks_that_its_scheduler_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cluster = Cluster::parse(&format!("df://127.0.0.1:{port}")).expect("parse");
        cluster.check_reachable().await.expect("reachable while listening");
        drop(listener);
        let err = cluster.check_reachable().await.expect_err("nothing listens now");
        let message = err.to_string();
        assert!(matches!(err, EngineError::Config(_)), "{message}");
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(message.contains("poplar scheduler"), "{message}");
    }

    fn files_table() -> FilesTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("source_org", DataType::Utf8, false),
        ]));
        let spec = FilesSpec {
            table: "patients".into(),
            store_url: "file://".into(),
            partition_columns: vec!["source_org".into()],
            files: vec![DataFile {
                path: "store/patients/source_org=A1/part-0.parquet".into(),
                size: 1234,
                partitions: vec![Some("A1".into())],
                stats: Some(r#"{"numRecords":2}"#.into()),
            }],
        };
        FilesTable::try_new(schema, spec).expect("files table")
    }

    fn scan(provider: Arc<dyn TableProvider>) -> LogicalPlanBuilder {
        LogicalPlanBuilder::scan("t", provider_as_source(provider), None).expect("scan")
    }

    fn protect(input: LogicalPlan) -> LogicalPlan {
        let spec = ProtectSpec {
            policy: Arc::new(Policy::new(vec![7; 32]).expect("policy")),
            noised: true,
            cells: Vec::new(),
            people: 0,
            question: String::new(),
            drop_small_groups: false,
            stats: Arc::new(ReleaseStats::default()),
        };
        LogicalPlan::Extension(Extension {
            node: Arc::new(ProtectNode::try_new(input, Arc::new(spec)).expect("protect")),
        })
    }

    fn is_distributed(plan: &LogicalPlan) -> bool {
        matches!(plan, LogicalPlan::Extension(e) if e.node.as_any().is::<Distributed>())
    }

    #[test]
    fn a_cluster_is_a_scheduler_address() {
        let cluster = Cluster::parse("df://10.0.0.1:50050").expect("df url");
        assert_eq!(cluster.scheduler_url(), "http://10.0.0.1:50050");
        for bad in ["10.0.0.1:50050", "df://10.0.0.1", "grpc://h:1", "df://h:1/x", "df://:1"] {
            assert!(Cluster::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_release_stays_here_and_its_input_goes_to_the_cluster() {
        let aggregate = scan(Arc::new(files_table()))
            .aggregate(Vec::<Expr>::new(), vec![count(lit(1))])
            .expect("aggregate")
            .build()
            .expect("plan");
        let cut = cut_for_cluster(protect(aggregate.clone())).expect("cut");
        let LogicalPlan::Extension(release) = &cut else {
            panic!("the root must stay the release: {cut}");
        };
        assert!(release.node.as_any().is::<ProtectNode>());
        assert!(is_distributed(&release.node.inputs()[0].clone()), "{cut}");
        // No release: all of it goes.
        assert!(is_distributed(&cut_for_cluster(aggregate).expect("cut")));
        // A table only this process has keeps its part here.
        let memory = Arc::new(MemTable::try_new(files_table().schema(), vec![vec![]]).expect("memtable"));
        let local = scan(memory).build().expect("plan");
        assert!(!is_distributed(&cut_for_cluster(local).expect("cut")));
    }

    #[test]
    fn the_codec_sends_file_lists_and_never_a_release() {
        let codec = PoplarLogicalCodec::default();
        let table = files_table();
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&TableReference::bare("t"), Arc::new(files_table()), &mut buf)
            .expect("encode");
        let decoded = codec
            .try_decode_table_provider(
                &buf,
                &TableReference::bare("t"),
                table.schema(),
                &TaskContext::default(),
            )
            .expect("decode");
        let any: &dyn std::any::Any = decoded.as_ref();
        let decoded = any.downcast_ref::<FilesTable>().expect("a files table");
        assert_eq!(decoded.spec(), table.spec());

        let release = protect(LogicalPlan::EmptyRelation(
            deltalake::datafusion::logical_expr::EmptyRelation {
                produce_one_row: true,
                schema: Arc::new(deltalake::datafusion::common::DFSchema::empty()),
            },
        ));
        let LogicalPlan::Extension(node) = release else {
            panic!("an extension");
        };
        assert!(codec.try_encode(&node, &mut Vec::new()).is_err());
    }
}
