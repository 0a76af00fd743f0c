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
use deltalake::parquet::basic::Compression;
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

/// LZ4 (raw), not ZSTD: the Parquet reader makes a codec for every column chunk it opens,
/// and its ZSTD codec allocates a compression and a decompression context each time. A
/// region lands one file per source per table, so a scan opens thousands of column chunks
/// and those contexts took 9% of a scan's CPU (BENCHMARKS.md). LZ4 has no context and
/// decodes faster; its files are somewhat larger.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
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
        Some(t) => add_missing_columns(t, table).await?,
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

/// Bring a table written by an older Poplar up to the schema this one declares: a column
/// added since (`encounters.encounter_snomed`, say) is added to the Delta schema, in its
/// own commit, before new rows are written. Rows already landed read it as null; no data
/// file is rewritten. A missing column that may not be null cannot be added this way (the
/// old rows have no value for it), and is an error rather than a guess.
async fn add_missing_columns(target: DeltaTable, table: Table) -> Result<DeltaTable, LoaderError> {
    use deltalake::kernel::StructField;
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let declared = table.schema();
    let landed = target
        .snapshot()
        .map_err(|e| LoaderError::delta(table.name(), e))?
        .schema();
    let missing: Vec<&arrow::datatypes::Field> = declared
        .fields()
        .iter()
        .map(AsRef::as_ref)
        .filter(|f| landed.field(f.name()).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(target);
    }
    if let Some(required) = missing.iter().find(|f| !f.is_nullable()) {
        return Err(LoaderError::Inconsistent {
            table: table.name().into(),
            reason: format!(
                "the landed table has no column {}, which may not be null: rows already landed have no value for it",
                required.name()
            ),
        });
    }
    let fields = missing
        .iter()
        .map(|f| (*f).try_into_kernel())
        .collect::<Result<Vec<StructField>, _>>()?;
    let names: Vec<&str> = missing.iter().map(|f| f.name().as_str()).collect();
    tracing::warn!(
        table = table.name(),
        columns = ?names,
        "table was written before these columns existed: adding them (rows already landed read them as null)"
    );
    target
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(|e| LoaderError::delta(table.name(), e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::{Quarantined, Reason, quarantine_batch};
    use crate::tables::EncounterRows;
    use deltalake::datafusion::prelude::{col, lit};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
        (dir, store)
    }

    /// Encounters of one practice in today's schema, with `encounter_snomed` set.
    fn encounters(source_org: &str, snomed: i64) -> RecordBatch {
        let mut rows = EncounterRows::default();
        for (person, day) in [(1, 19_000), (2, 19_001)] {
            rows.person_id.append_value(person);
            rows.setting.append_value("gp");
            rows.start_date.append_value(day);
            rows.end_date.append_null();
            rows.encounter_type.append_value("face_to_face");
            rows.cost.append_null();
            rows.encounter_snomed.append_value(snomed);
        }
        rows.finish(source_org).expect("batch")
    }

    /// `batch` without the column `name`: what an older Poplar wrote.
    fn without(batch: &RecordBatch, name: &str) -> RecordBatch {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| batch.schema().field(i).name() != name)
            .collect();
        batch.project(&keep).expect("project")
    }

    async fn create(store: &Store, table: Table, batch: RecordBatch) {
        store
            .handle(table)
            .expect("handle")
            .write(vec![batch])
            .with_partition_columns(table.partition_columns().iter().copied())
            .await
            .expect("old table");
    }

    #[tokio::test]
    async fn a_table_written_before_a_column_existed_takes_new_rows() {
        let (_dir, store) = store();
        create(
            &store,
            Table::Encounters,
            without(&encounters("A1", 1), "encounter_snomed"),
        )
        .await;
        // Delta refuses rows of another schema as they are: this is what the loader met.
        let old = store.open(Table::Encounters).await.expect("open").expect("table");
        assert!(
            old.write(vec![encounters("B2", 185349003)])
                .with_save_mode(SaveMode::Append)
                .await
                .is_err(),
            "a plain append of the new schema is refused"
        );
        let version = write(
            &store,
            Table::Encounters,
            vec![encounters("B2", 185349003)],
            WriteMode::Replace(col("source_org").eq(lit("B2"))),
        )
        .await
        .expect("the loader's write adds the column");
        let table = store.open_at(Table::Encounters, version).await.expect("open");
        let rows = query(
            &table,
            "SELECT source_org, count(*), count(encounter_snomed), min(encounter_snomed) FROM t GROUP BY source_org ORDER BY source_org",
        )
        .await
        .expect("query");
        // The old rows read the new column as null; the new rows carry it.
        assert_eq!(
            string_values(&rows, 0).expect("text"),
            [Some("A1".to_string()), Some("B2".to_string())]
        );
        assert_eq!(int64_values(&rows, 1), [2, 2]);
        assert_eq!(int64_values(&rows, 2), [0, 2]);
        assert_eq!(int64_values(&rows, 3), [0, 185349003]);
        // Already evolved: a second write adds nothing and commits once.
        let again = write(&store, Table::Encounters, vec![encounters("C3", 1)], WriteMode::Append)
            .await
            .expect("write");
        assert_eq!(again, version + 1);
    }

    #[tokio::test]
    async fn a_missing_column_that_may_not_be_null_is_refused() {
        let (_dir, store) = store();
        let batch = || {
            quarantine_batch(
                "load",
                "A1",
                "2025-01-01",
                &[Quarantined::file(
                    "x.csv",
                    Reason::InvalidJson,
                    "line is not a JSON object",
                )],
                0,
            )
            .expect("batch")
        };
        create(&store, Table::Quarantine, without(&batch(), "detail")).await;
        let err = write(&store, Table::Quarantine, vec![batch()], WriteMode::Append)
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("no column detail, which may not be null"),
            "{err}"
        );
    }
}
