//! The catalog over landed data: every table as the latest snapshot sees it, in one
//! immutable `SessionContext` per snapshot. A background poller builds the next context
//! when a load commits a new snapshot and swaps it in; queries already running keep the
//! one they started with, so no query ever mixes two snapshots.

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use poplar_loaders::landing::{self, Snapshot};
use poplar_loaders::{Store, Table};
use poplar_queries::REGISTERS;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::{EngineError, udfs};

/// Catalog and schema names clients see.
pub const CATALOG: &str = "poplar";
pub const SCHEMA: &str = "public";

/// One snapshot's tables, views and functions, ready to plan queries against.
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    /// Registers are computed as of this date: the end of the newest period delivered.
    pub reference_date: Option<NaiveDate>,
    pub context: SessionContext,
}

impl Loaded {
    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot.as_ref().map(|s| s.id)
    }

    /// Table and view names with their kinds, for catalog listings.
    pub async fn tables(&self) -> Result<Vec<(String, &'static str, SchemaRef)>, EngineError> {
        let mut out = Vec::new();
        let Some(schema) = self.context.catalog(CATALOG).and_then(|c| c.schema(SCHEMA)) else {
            return Ok(out);
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            if let Some(t) = schema.table(&name).await? {
                let kind = match t.table_type() {
                    deltalake::datafusion::logical_expr::TableType::View => "VIEW",
                    _ => "TABLE",
                };
                out.push((name, kind, t.schema()));
            }
        }
        Ok(out)
    }
}

pub struct Catalog {
    store: Store,
    current: RwLock<Arc<Loaded>>,
}

fn codelists_table() -> Result<Arc<dyn TableProvider>, EngineError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("codelist", DataType::Utf8, false),
        Field::new("code", DataType::Int64, false),
        Field::new("term", DataType::Utf8, false),
    ]));
    let (mut names, mut codes, mut terms) = (Vec::new(), Vec::new(), Vec::new());
    for list in poplar_queries::all_codelists()? {
        for code in list.codes {
            names.push(list.cluster);
            codes.push(code.id as i64);
            terms.push(code.term);
        }
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names)) as ArrayRef,
            Arc::new(Int64Array::from(codes)),
            Arc::new(StringArray::from(terms)),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Plain Arrow types (`Utf8`, not dictionary or view types) so that every client, ADBC and
/// JDBC included, gets the schema it was promised in `GetFlightInfo`.
fn scan_config() -> DeltaScanConfig {
    let mut config = DeltaScanConfig::new().with_wrap_partition_values(false);
    config.schema_force_view_types = false;
    config
}

async fn provider(
    store: &Store,
    snapshot: Option<&Snapshot>,
    table: Table,
    ctx: &SessionContext,
) -> Result<Arc<dyn TableProvider>, EngineError> {
    if let Some(snapshot) = snapshot
        && let Some(opened) = snapshot.open(store, table).await?
    {
        let scan = DeltaScanNext::new(opened.snapshot()?.snapshot().clone(), scan_config())?;
        opened.update_datafusion_session(&ctx.state())?;
        return Ok(Arc::new(scan));
    }
    // Never written (e.g. a store with no opt-outs yet): an empty table of the right shape.
    Ok(Arc::new(MemTable::try_new(table.schema(), vec![vec![]])?))
}

/// Internal working table, present only while registers are computed.
const LATEST_CODES: &str = "_latest_codes";

async fn collect_table(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>, EngineError> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

async fn reference_date(ctx: &SessionContext) -> Result<Option<NaiveDate>, EngineError> {
    let batches = ctx
        .sql("SELECT CAST(max(period_end) AS VARCHAR) FROM deliveries WHERE status = 'landed'")
        .await?
        .collect()
        .await?;
    let values = landing::string_values(&batches, 0)?;
    Ok(values
        .into_iter()
        .flatten()
        .next()
        .and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok()))
}

/// Build the context for one snapshot.
pub async fn load_snapshot(store: &Store, snapshot: Option<Snapshot>) -> Result<Loaded, EngineError> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    for udf in udfs::all() {
        ctx.register_udf(udf);
    }
    for table in Table::ALL.into_iter().filter(|t| t.is_served()) {
        ctx.register_table(table.name(), provider(store, snapshot.as_ref(), table, &ctx).await?)?;
    }
    ctx.register_table("codelists", codelists_table()?)?;
    // Stewards query the audit log as a table, read fresh from the store on every scan;
    // disclosure control refuses it to everyone else.
    ctx.register_table("audit_log", Arc::new(crate::audit::AuditTable::new(store.clone())))?;
    let reference = reference_date(&ctx).await?;
    if let Some(date) = reference {
        let on = format!("DATE '{}'", date.format("%Y-%m-%d"));
        let started = std::time::Instant::now();
        // Registers are computed once per snapshot, from one scan of events (trusted,
        // internal definitions, planned with the unrestricted `sql`), and served from memory.
        let latest = collect_table(&ctx, &poplar_queries::registers::latest_codes_sql(&on)).await?;
        ctx.register_table(LATEST_CODES, latest)?;
        let membership = collect_table(&ctx, &poplar_queries::registers::membership_sql(LATEST_CODES, &on)).await?;
        ctx.deregister_table(LATEST_CODES)?;
        ctx.register_table("register_membership", membership)?;
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
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "registers computed");
    }
    // `registers_on(date)` and `population_on(date)`: the same questions as of any date.
    crate::reference_date::register(&ctx).await?;
    Ok(Loaded {
        snapshot,
        reference_date: reference,
        context: ctx,
    })
}

impl Catalog {
    pub async fn open(store: Store) -> Result<Self, EngineError> {
        let snapshot = landing::latest_snapshot(&store).await?;
        let loaded = load_snapshot(&store, snapshot).await?;
        Ok(Self {
            store,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The context queries should use now.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Load the newest snapshot if it differs from the one served. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, EngineError> {
        let latest = landing::latest_snapshot(&self.store).await?;
        if latest.as_ref().map(|s| s.id) == self.current().snapshot_id() {
            return Ok(false);
        }
        let loaded = Arc::new(load_snapshot(&self.store, latest).await?);
        tracing::info!(snapshot = ?loaded.snapshot_id(), reference_date = ?loaded.reference_date, "serving a new snapshot");
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
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
