//! Committing rows to Delta tables, and the snapshot that makes a set of commits visible.
//!
//! Delta commits are atomic per table, but a delivery writes to five tables. Poplar makes
//! the *snapshot* its single commit point: after a group of deliveries is written to every
//! table and to the ledger, one row appended to `snapshots` records the Delta version of
//! every table. Poplar's readers (the engine, the loader's own view of what has landed)
//! read each table as of the latest snapshot, so a crash between table commits leaves
//! nothing half-visible; the next run first restores any table that moved past the
//! snapshot (`recover`) and then loads again.

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::{Expr, SessionContext};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::LoaderError;
use crate::store::Store;
use crate::tables::{Table, build_batch, now_micros, timestamp_array};

/// Rows per Parquet row group: small enough that date statistics prune a period within a
/// source's partition, large enough to scan efficiently.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// How a write treats rows already in the table.
pub enum WriteMode {
    Append,
    /// Replace the whole table (reference data).
    Overwrite,
    /// Delete rows matching the predicate and add the new ones, in one commit.
    Replace(Expr),
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is within zstd's range"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Write `batches` to `table`, creating it on first write. Returns the new Delta version.
pub async fn write(
    store: &Store,
    table: Table,
    batches: Vec<RecordBatch>,
    mode: WriteMode,
) -> Result<u64, LoaderError> {
    let target = match store.open(table).await? {
        Some(t) => t,
        None => store.handle(table)?,
    };
    // An empty input still has to commit (a delivery with no rows of a kind supersedes the
    // rows it replaces), so hand the writer one empty batch of the right schema.
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(table.schema())]
    } else {
        batches
    };
    let mut builder = target
        .write(batches)
        .with_table_name(table.name())
        .with_writer_properties(writer_properties())
        .with_partition_columns(table.partition_columns().iter().copied());
    builder = match mode {
        WriteMode::Append => builder.with_save_mode(SaveMode::Append),
        WriteMode::Overwrite => builder.with_save_mode(SaveMode::Overwrite),
        WriteMode::Replace(predicate) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate),
    };
    let written = builder.await.map_err(|e| LoaderError::delta(table.name(), e))?;
    version_of(&written, table)
}

/// Delete rows matching `predicate`; returns the new version.
pub async fn delete(store: &Store, table: Table, predicate: Expr) -> Result<Option<u64>, LoaderError> {
    let Some(target) = store.open(table).await? else {
        return Ok(None);
    };
    let (deleted, _metrics) = target
        .delete()
        .with_predicate(predicate)
        .await
        .map_err(|e| LoaderError::delta(table.name(), e))?;
    version_of(&deleted, table).map(Some)
}

fn version_of(t: &DeltaTable, table: Table) -> Result<u64, LoaderError> {
    t.version().ok_or_else(|| LoaderError::Inconsistent {
        table: table.name().into(),
        reason: "table has no version after a commit".into(),
    })
}

/// Run SQL over one Delta table registered as `t`.
pub async fn query(table: &DeltaTable, sql: &str) -> Result<Vec<RecordBatch>, LoaderError> {
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| LoaderError::delta("query", e))?;
    let provider = table.table_provider().await?;
    ctx.register_table("t", provider)?;
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// A consistent cut across every table: what readers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: i64,
    pub versions: BTreeMap<Table, u64>,
}

impl Snapshot {
    pub fn version(&self, table: Table) -> Option<u64> {
        self.versions.get(&table).copied()
    }

    /// Open `table` as this snapshot sees it (`None` if the snapshot predates the table).
    pub async fn open(&self, store: &Store, table: Table) -> Result<Option<DeltaTable>, LoaderError> {
        match self.version(table) {
            Some(v) => Ok(Some(store.open_at(table, v).await?)),
            None => Ok(None),
        }
    }
}

/// The newest snapshot, or `None` before the first load.
pub async fn latest_snapshot(store: &Store) -> Result<Option<Snapshot>, LoaderError> {
    let Some(table) = store.open(Table::Snapshots).await? else {
        return Ok(None);
    };
    let batches = query(
        &table,
        "SELECT snapshot, table_versions FROM t ORDER BY snapshot DESC LIMIT 1",
    )
    .await?;
    let inconsistent = |reason: &str| LoaderError::Inconsistent {
        table: Table::Snapshots.name().into(),
        reason: reason.into(),
    };
    let (Some(id), Some(Some(versions))) = (
        int64_values(&batches, 0).first().copied(),
        string_values(&batches, 1)?.into_iter().next(),
    ) else {
        return Ok(None);
    };
    let by_name: BTreeMap<String, u64> =
        serde_json::from_str(&versions).map_err(|_| inconsistent("table_versions is not a JSON object of versions"))?;
    let versions = by_name
        .into_iter()
        .map(|(name, v)| Table::from_name(&name).map(|t| (t, v)))
        .collect::<Option<BTreeMap<Table, u64>>>()
        .ok_or_else(|| inconsistent("table_versions names a table Poplar does not land"))?;
    Ok(Some(Snapshot { id, versions }))
}

/// Record a new snapshot: `previous` with `changed` versions applied.
pub async fn commit_snapshot(
    store: &Store,
    previous: Option<&Snapshot>,
    changed: &BTreeMap<Table, u64>,
    operation: &str,
    load_id: &str,
) -> Result<Snapshot, LoaderError> {
    let mut versions = previous.map(|s| s.versions.clone()).unwrap_or_default();
    versions.extend(changed);
    let id = previous.map_or(1, |s| s.id + 1);
    // Stored by table name (sorted by name), the form outside readers parse.
    let by_name: BTreeMap<&str, u64> = versions.iter().map(|(t, v)| (t.name(), *v)).collect();
    let json = serde_json::to_string(&by_name).map_err(|e| LoaderError::Inconsistent {
        table: Table::Snapshots.name().into(),
        reason: e.to_string(),
    })?;
    let batch = build_batch(
        Table::Snapshots,
        vec![
            Arc::new(Int64Array::from(vec![id])),
            timestamp_array([now_micros()]),
            Arc::new(StringArray::from(vec![operation])),
            Arc::new(StringArray::from(vec![load_id])),
            Arc::new(StringArray::from(vec![json])),
        ],
    )?;
    write(store, Table::Snapshots, vec![batch], WriteMode::Append).await?;
    Ok(Snapshot { id, versions })
}

/// What recovery did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub table: Table,
    pub from_version: u64,
    pub to_version: Option<u64>,
}

/// Bring every table back to what the snapshot says, undoing commits of a run that died
/// before it recorded its snapshot.
pub async fn recover(store: &Store, snapshot: Option<&Snapshot>) -> Result<Vec<Recovered>, LoaderError> {
    let mut recovered = Vec::new();
    for table in Table::ALL {
        if table == Table::Snapshots {
            continue;
        }
        let Some(current) = store.open(table).await? else {
            continue;
        };
        let Some(latest) = current.version() else { continue };
        match snapshot.and_then(|s| s.version(table)) {
            Some(v) if latest > v => {
                let (_restored, _metrics) = current
                    .restore()
                    .with_version_to_restore(v)
                    .await
                    .map_err(|e| LoaderError::delta(table.name(), e))?;
                recovered.push(Recovered {
                    table,
                    from_version: latest,
                    to_version: Some(v),
                });
            }
            Some(_) => {}
            None => {
                // The table was created by a run that never committed a snapshot: nothing in
                // it was ever visible. Empty it (a later write re-fills it).
                if has_rows(&current).await? {
                    let (_deleted, _metrics) = current
                        .delete()
                        .await
                        .map_err(|e| LoaderError::delta(table.name(), e))?;
                    recovered.push(Recovered {
                        table,
                        from_version: latest,
                        to_version: None,
                    });
                }
            }
        }
    }
    Ok(recovered)
}

async fn has_rows(table: &DeltaTable) -> Result<bool, LoaderError> {
    let batches = query(table, "SELECT 1 FROM t LIMIT 1").await?;
    Ok(batches.iter().any(|b| b.num_rows() > 0))
}

/// A column of a query result as text, whatever string encoding the reader chose
/// (DataFusion may hand back `Utf8View`).
pub fn string_values(batches: &[RecordBatch], column: usize) -> Result<Vec<Option<String>>, LoaderError> {
    let mut out = Vec::new();
    for b in batches {
        let cast = arrow::compute::cast(b.column(column), &arrow::datatypes::DataType::Utf8)?;
        if let Some(a) = cast.as_any().downcast_ref::<StringArray>() {
            out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())));
        }
    }
    Ok(out)
}

/// A column of a query result as i64 values (nulls as 0).
pub fn int64_values(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        if let Some(a) = b.column(column).as_any().downcast_ref::<Int64Array>() {
            out.extend((0..a.len()).map(|i| if a.is_null(i) { 0 } else { a.value(i) }));
        }
    }
    out
}
