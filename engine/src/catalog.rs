//! The catalog over landed data: every table as one snapshot sees it, in one immutable
//! [`SnapshotContext`] per snapshot. A background poller builds the next context when a
//! load commits a new snapshot and swaps it in; queries already running keep the one they
//! started with, so no query ever mixes two snapshots.
//!
//! The catalog decides who may see each table ([`Visibility`]); disclosure control and the
//! catalog listings both ask it. Tables that are not landed data (the audit log, and the
//! services' own tables later) are handed in by the server as [`ExtraTable`]s, so the
//! catalog depends on none of them.

use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::datasource::empty::EmptyTable;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::logical_expr::TableType;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use poplar_loaders::landing::{self, Snapshot, WriteMode};
use poplar_loaders::{Store, Table};
use poplar_queries::REGISTERS;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::distributed::Cluster;
use crate::files::{self, FilesTable};
use crate::first_row::FirstRowPerPartition;
use crate::identity::Principal;
use crate::reference::codelists_table;
use crate::yielding::YieldingJoins;
use crate::{EngineError, as_of, derived, sync, udfs};

/// Catalog and schema names clients see.
pub const CATALOG: &str = "poplar";
pub const SCHEMA: &str = "public";
/// The reference table of every codelist's codes and terms.
const CODELISTS: &str = "codelists";
/// Every register's members on the reference date, held in memory per snapshot.
const REGISTER_MEMBERSHIP: &str = "register_membership";

/// Who may read a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Everyone signed in (under disclosure control unless a steward).
    Everyone,
    /// Data stewards only: feed quality, load history, opt-outs, the audit log.
    StewardsOnly,
}

/// A table the server serves beside the landed ones.
#[derive(Debug, Clone)]
pub struct ExtraTable {
    pub name: &'static str,
    pub provider: Arc<dyn TableProvider>,
    pub visibility: Visibility,
}

/// How a catalog listing describes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Table,
    View,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "TABLE",
            TableKind::View => "VIEW",
        }
    }
}

/// Landed personal tables and reference data are for everyone; feed quality, load history
/// and opt-outs are for stewards. A table not named here is stewards-only by default.
fn landed_visibility(table: Table) -> Visibility {
    if Table::PERSONAL.contains(&table) || table == Table::Organisations {
        Visibility::Everyone
    } else {
        Visibility::StewardsOnly
    }
}

/// One snapshot's tables, views and functions, ready to plan queries against.
pub struct SnapshotContext {
    pub snapshot: Option<Snapshot>,
    /// Registers are computed as of this date: the end of the newest period delivered.
    pub reference_date: Option<NaiveDate>,
    /// Whether `register_membership` was read from the snapshot's derived registers
    /// ([`crate::derived`]) rather than computed when the snapshot was opened.
    pub registers_derived: bool,
    pub context: SessionContext,
    steward_only: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for SnapshotContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotContext")
            .field("snapshot", &self.snapshot_id())
            .field("reference_date", &self.reference_date)
            .finish_non_exhaustive()
    }
}

impl SnapshotContext {
    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot.as_ref().map(|s| s.id)
    }

    /// The tables only stewards may read (disclosure control refuses them to others).
    pub fn steward_only(&self) -> Arc<BTreeSet<String>> {
        self.steward_only.clone()
    }

    pub fn visible_to(&self, table: &str, principal: &Principal) -> bool {
        principal.is_steward() || !self.steward_only.contains(table)
    }

    /// The tables and views `principal` may see, with their kinds, for catalog listings.
    pub async fn tables(&self, principal: &Principal) -> Result<Vec<(String, TableKind, SchemaRef)>, EngineError> {
        let mut out = Vec::new();
        let Some(schema) = self.context.catalog(CATALOG).and_then(|c| c.schema(SCHEMA)) else {
            return Ok(out);
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            if !self.visible_to(&name, principal) {
                continue;
            }
            if let Some(t) = schema.table(&name).await? {
                let kind = match t.table_type() {
                    TableType::View => TableKind::View,
                    TableType::Base | TableType::Temporary => TableKind::Table,
                };
                out.push((name, kind, t.schema()));
            }
        }
        Ok(out)
    }
}

/// Plain Arrow types (`Utf8`, not dictionary or view types) so that every client, ADBC and
/// JDBC included, gets the schema it was promised in `GetFlightInfo`.
fn scan_config() -> DeltaScanConfig {
    let mut config = DeltaScanConfig::new().with_wrap_partition_values(false);
    config.schema_force_view_types = false;
    config
}

/// A landed table as `snapshot` sees it: the snapshot's Parquet files (see `files`), in the
/// schema the Delta scan gives it (plain types), on a single node and on a cluster alike.
async fn landed_provider(
    store: &Store,
    snapshot: Option<&Snapshot>,
    table: Table,
    cluster: bool,
) -> Result<Arc<dyn TableProvider>, EngineError> {
    if let Some(snapshot) = snapshot
        && let Some(opened) = snapshot.open(store, table).await?
    {
        let schema = DeltaScanNext::new(opened.snapshot()?.snapshot().clone(), scan_config())?.schema();
        return Ok(Arc::new(FilesTable::from_delta(store, table.name(), &opened, schema)?));
    }
    // Never written (e.g. a store with no opt-outs yet): an empty table of the right shape.
    if cluster {
        return Ok(Arc::new(EmptyTable::new(table.schema())));
    }
    Ok(Arc::new(MemTable::try_new(table.schema(), vec![vec![]])?))
}

async fn collect_table(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>, EngineError> {
    let (schema, batches) = collect_rows(ctx, sql).await?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// The answer to `sql` and its schema.
async fn collect_rows(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<arrow::array::RecordBatch>), EngineError> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await?))
}

/// The end of the newest period any landed delivery covers.
async fn reference_date(ctx: &SessionContext) -> Result<Option<NaiveDate>, EngineError> {
    let batches = ctx
        .sql("SELECT CAST(max(period_end) AS VARCHAR) FROM deliveries WHERE status = 'landed'")
        .await?
        .collect()
        .await?;
    let values = landing::string_values(&batches, 0)?;
    // No landed delivery yet: no reference date, no registers. A date that does not parse
    // would silently leave the registers out, so it is an error.
    values
        .into_iter()
        .flatten()
        .next()
        .map(|s| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map_err(|e| EngineError::Config(format!("deliveries.period_end {s:?} is not a date: {e}")))
        })
        .transpose()
}

/// The session every snapshot starts from: Poplar's catalog names, no
/// `information_schema` (it would list steward-only tables), Poplar's functions. A
/// cluster's front end also gets Ballista's settings, Poplar's codecs and the planner
/// that sends work to the cluster (see `distributed`), and reads the store itself for the
/// parts of plans that run here. DataFusion's own settings may be tuned by whoever runs
/// the server through `DATAFUSION_*` environment variables
/// (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=8`), read by DataFusion; a value that does not
/// parse stops the server rather than being ignored. Disclosure control does not depend on
/// them: its rules run in the analyzer, which no setting turns off.
fn base_context(store: &Store, cluster: Option<&Cluster>) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::from_env()
        .map_err(|e| EngineError::Config(format!("a DATAFUSION_* environment variable does not parse: {e}")))?
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_information_schema(false);
    let ctx = match cluster {
        Some(cluster) => {
            let state = SessionStateBuilder::new()
                .with_default_features()
                .with_config(cluster.session_config(config))
                .with_query_planner(cluster.planner())
                .with_physical_optimizer_rule(Arc::new(YieldingJoins))
                .build();
            SessionContext::new_with_state(state)
        }
        None => SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_default_features()
                .with_config(config)
                .with_physical_optimizer_rule(Arc::new(YieldingJoins))
                // One server only: a cluster's executors decode plans of DataFusion's own
                // operators, and its scheduler makes the physical plan.
                .with_physical_optimizer_rule(Arc::new(FirstRowPerPartition))
                .build(),
        ),
    };
    // Landed tables are scanned as their Parquet files, from this store's object store.
    files::register_store(&ctx.runtime_env(), store)?;
    for udf in udfs::all() {
        ctx.register_udf(udf);
    }
    Ok(ctx)
}

/// Register membership as of `on`, served from memory, with a view per register and the
/// registered population. The members are the snapshot's derived ones when they are
/// current (`derived`), else computed here from one scan of events (trusted internal
/// definitions, planned with the unrestricted session).
async fn register_registers(
    ctx: &SessionContext,
    on: NaiveDate,
    derived: Option<Arc<dyn TableProvider>>,
) -> Result<(), EngineError> {
    let on = format!("DATE '{}'", on.format("%Y-%m-%d"));
    let started = std::time::Instant::now();
    let from_derived = derived.is_some();
    let membership: Arc<dyn TableProvider> = match derived {
        Some(members) => members,
        None => {
            let latest = collect_table(ctx, &poplar_queries::registers::latest_codes_sql(&on)).await?;
            ctx.register_table(as_of::LATEST_CODES, latest)?;
            let (schema, members) = collect_rows(
                ctx,
                &poplar_queries::registers::membership_sql(as_of::LATEST_CODES, &on),
            )
            .await?;
            ctx.deregister_table(as_of::LATEST_CODES)?;
            crate::membership::in_memory(schema, members, ctx.copied_config().target_partitions())?
        }
    };
    ctx.register_table(REGISTER_MEMBERSHIP, membership)?;
    for register in REGISTERS {
        ctx.sql(&format!(
            "CREATE VIEW register_{id} AS SELECT person_id, practice, latest_code_date FROM register_membership WHERE register = '{id}'",
            id = register.id
        ))
        .await?;
    }
    ctx.sql(&format!(
        "CREATE VIEW registered_population AS {}",
        poplar_queries::registers::registered_population_sql(&on)
    ))
    .await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        derived = from_derived,
        "registers ready"
    );
    Ok(())
}

/// Build the context for one snapshot: landed tables, reference data, the server's extra
/// tables, registers as of the reference date, and the as-of-date functions.
pub async fn open_snapshot(
    store: &Store,
    snapshot: Option<Snapshot>,
    extra: &[ExtraTable],
    cluster: Option<&Cluster>,
) -> Result<SnapshotContext, EngineError> {
    let ctx = base_context(store, cluster)?;
    let mut steward_only = BTreeSet::new();
    for table in Table::ALL.into_iter().filter(|t| t.is_served()) {
        ctx.register_table(
            table.name(),
            landed_provider(store, snapshot.as_ref(), table, cluster.is_some()).await?,
        )?;
        if landed_visibility(table) == Visibility::StewardsOnly {
            steward_only.insert(table.name().to_string());
        }
    }
    // Not served, but named so that no one but a steward could read it if it ever were.
    for table in Table::ALL.into_iter().filter(|t| !t.is_served()) {
        steward_only.insert(table.name().to_string());
    }
    ctx.register_table(CODELISTS, codelists_table()?)?;
    for table in extra {
        ctx.register_table(table.name, table.provider.clone())?;
        if table.visibility == Visibility::StewardsOnly {
            steward_only.insert(table.name.to_string());
        }
    }
    let reference = reference_date(&ctx).await?;
    let mut registers_derived = false;
    if let Some(date) = reference {
        let derived = match &snapshot {
            Some(s) => {
                let key = derived::derivation_key(s, date);
                derived::read(
                    store,
                    s,
                    &key,
                    scan_config(),
                    cluster.is_some(),
                    ctx.copied_config().target_partitions(),
                )
                .await?
            }
            None => None,
        };
        registers_derived = derived.is_some();
        register_registers(&ctx, date, derived).await?;
    }
    as_of::register(&ctx, reference).await?;
    Ok(SnapshotContext {
        snapshot,
        reference_date: reference,
        registers_derived,
        context: ctx,
        steward_only: Arc::new(steward_only),
    })
}

/// What [`derive_registers`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Derived {
    /// Nothing has landed yet (no snapshot or no landed delivery): no registers.
    NothingLanded,
    /// The newest snapshot already has current derived registers.
    AlreadyCurrent { snapshot: i64 },
    /// Derived and committed as snapshot `snapshot`.
    Committed { snapshot: i64, rows: usize, seconds: f64 },
}

/// Derive the registers of the store's newest snapshot and commit them in the snapshot
/// that follows it, unless they are already current. Run by the store's one writer right
/// after it commits (as `poplar load` and `poplar optout apply` do); see [`derived`].
pub async fn derive_registers(store: &Store) -> Result<Derived, EngineError> {
    let started = std::time::Instant::now();
    let Some(snapshot) = landing::latest_snapshot(store).await? else {
        return Ok(Derived::NothingLanded);
    };
    let opened = open_snapshot(store, Some(snapshot.clone()), &[], None).await?;
    let Some(reference) = opened.reference_date else {
        return Ok(Derived::NothingLanded);
    };
    if opened.registers_derived {
        return Ok(Derived::AlreadyCurrent { snapshot: snapshot.id });
    }
    let key = derived::derivation_key(&snapshot, reference);
    let members = opened.context.table(REGISTER_MEMBERSHIP).await?.collect().await?;
    let rows = members.iter().map(|b| b.num_rows()).sum();
    let batches = derived::rows(members, &key)?;
    let version = landing::write(store, Table::Registers, batches, WriteMode::Overwrite).await?;
    let next = landing::commit_snapshot(
        store,
        Some(&snapshot),
        &BTreeMap::from([(Table::Registers, version)]),
        "derive",
        &format!("derive-{}", snapshot.id),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(snapshot = next.id, rows, seconds, "registers derived and committed");
    Ok(Derived::Committed {
        snapshot: next.id,
        rows,
        seconds,
    })
}

/// The snapshot being served, swapped when a load commits a newer one.
#[derive(Debug)]
pub struct SnapshotCatalog {
    store: Store,
    extra: Vec<ExtraTable>,
    /// The cluster that runs queries, if this process is a cluster's front end.
    cluster: Option<Cluster>,
    current: RwLock<Arc<SnapshotContext>>,
    /// The earlier snapshot last opened for a pinned study run: reproducing runs of one
    /// study asks for the same snapshot again and again.
    pinned: tokio::sync::Mutex<Option<Arc<SnapshotContext>>>,
}

impl SnapshotCatalog {
    pub async fn open(store: Store, extra: Vec<ExtraTable>) -> Result<Self, EngineError> {
        Self::open_with(store, extra, None).await
    }

    /// Like [`Self::open`]; with a cluster, queries run on it (releases stay here).
    pub async fn open_with(
        store: Store,
        extra: Vec<ExtraTable>,
        cluster: Option<Cluster>,
    ) -> Result<Self, EngineError> {
        let snapshot = landing::latest_snapshot(&store).await?;
        let context = open_snapshot(&store, snapshot, &extra, cluster.as_ref()).await?;
        Ok(Self {
            store,
            extra,
            cluster,
            current: RwLock::new(Arc::new(context)),
            pinned: tokio::sync::Mutex::new(None),
        })
    }

    /// `snapshot`'s context: the one served if it is current, else opened (the previous
    /// such one is kept). Its tables read the Delta versions the snapshot names, so a
    /// question asked of it again gets the same rows, whatever loaded since.
    pub async fn open_at(&self, snapshot: Snapshot) -> Result<Arc<SnapshotContext>, EngineError> {
        let current = self.current();
        if current.snapshot.as_ref() == Some(&snapshot) {
            return Ok(current);
        }
        let mut pinned = self.pinned.lock().await;
        if let Some(context) = pinned.as_ref()
            && context.snapshot.as_ref() == Some(&snapshot)
        {
            return Ok(context.clone());
        }
        let context = Arc::new(open_snapshot(&self.store, Some(snapshot), &self.extra, self.cluster.as_ref()).await?);
        *pinned = Some(context.clone());
        Ok(context)
    }

    /// The context queries should use now.
    pub fn current(&self) -> Arc<SnapshotContext> {
        sync::read(&self.current).clone()
    }

    /// Load the newest snapshot if it differs from the one served. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, EngineError> {
        let latest = landing::latest_snapshot(&self.store).await?;
        if latest.as_ref().map(|s| s.id) == self.current().snapshot_id() {
            return Ok(false);
        }
        let context = Arc::new(open_snapshot(&self.store, latest, &self.extra, self.cluster.as_ref()).await?);
        tracing::info!(snapshot = ?context.snapshot_id(), reference_date = ?context.reference_date, "serving a new snapshot");
        *sync::write(&self.current) = context;
        Ok(true)
    }

    /// Poll for new snapshots every `every` until the returned task is dropped/aborted.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let catalog = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = catalog.refresh().await {
                    tracing::warn!(error = %e, "could not refresh the catalog; still serving the previous snapshot");
                }
            }
        })
    }
}
