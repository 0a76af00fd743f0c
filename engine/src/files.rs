//! A Delta snapshot read as the plain list of its Parquet files, for a Ballista cluster.
//!
//! deltalake 1.1 cannot serialise its physical scan (`DeltaScanExec`; delta-rs #4171), so a
//! scan of a Delta table cannot be shipped from the scheduler to the executors. Poplar
//! writes every table it serves, and writes them with neither deletion vectors nor column
//! mapping, so a snapshot is exactly its add actions: the files, their sizes and their
//! partition values. [`FilesTable`] holds that list and scans it with DataFusion's own
//! Parquet source, which DataFusion's and Ballista's codecs already carry. A table with a
//! deletion vector or column mapping is refused when it is opened
//! ([`EngineError::NotPlainParquet`]): reading
//! its files plainly would resurrect deleted rows (an opt-out!) or misname columns.
//!
//! It is also the single-node scan: the Delta scan's wrapper around the Parquet source
//! (a file id column on every row, a per-batch expression for partition values) cost up to
//! half of a question's time (BENCHMARKS.md), and Poplar needs none of what it adds.
//!
//! Pruning when the plan is made: a filter on `source_org` (the hive partition column)
//! drops whole files on their partition values, and the other filters drop files on the
//! Delta log's per-file statistics (see `file_stats`), as the Delta scan did. Within the
//! files that are read, filters prune row groups in the Parquet source as they do for any
//! Parquet scan.

use crate::page_index::PageIndexCachingFactory;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use deltalake::DeltaTable;
use deltalake::datafusion::catalog::Session;
use deltalake::datafusion::common::pruning::PrunableStatistics;
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::{
    ColumnStatistics, DFSchema, Result as DfResult, ScalarValue, Statistics, plan_err,
};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::datasource::table_schema::TableSchema;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use deltalake::datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use object_store::path::Path as ObjectPath;
use poplar_loaders::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use url::Url;

use crate::EngineError;
use crate::file_stats;

fn not_plain(table: &str, reason: String) -> EngineError {
    EngineError::NotPlainParquet {
        table: table.to_string(),
        reason,
    }
}

/// One data file of a snapshot: where it is, its size, and its partition values in the
/// order of [`FilesTable`]'s partition columns (`None` for a null partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub size: u64,
    pub partitions: Vec<Option<String>>,
    /// The file's statistics as the Delta log records them (JSON), if it has any.
    #[serde(default)]
    pub stats: Option<String>,
}

/// What a [`FilesTable`] is, apart from its schema (which a plan carries anyway): what the
/// codec sends between the front end, the scheduler and the executors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesSpec {
    /// The table's name, for messages.
    pub table: String,
    /// `s3://bucket` or `file://`: the object store every node registers for the store.
    pub store_url: String,
    /// Hive partition columns (string-typed), in the Delta table's order.
    pub partition_columns: Vec<String>,
    pub files: Vec<DataFile>,
}

/// A snapshot of a table as its Parquet files, with the table's schema as Poplar serves it.
#[derive(Debug)]
pub struct FilesTable {
    schema: SchemaRef,
    spec: FilesSpec,
    /// Per file of `spec`, in its order: what the Delta log says of its rows, for pruning.
    statistics: Vec<Arc<Statistics>>,
}

impl FilesTable {
    /// A table from its spec and schema (the codec's way back). The partition columns must
    /// be string columns of the schema and every file must name a value for each.
    pub fn try_new(schema: SchemaRef, spec: FilesSpec) -> Result<Self, EngineError> {
        let unreadable = |reason: String| not_plain(&spec.table, reason);
        for column in &spec.partition_columns {
            match schema.field_with_name(column) {
                Ok(field) if field.data_type() == &DataType::Utf8 => {}
                Ok(field) => {
                    return Err(unreadable(format!(
                        "partition column {column} is {}, not a string",
                        field.data_type()
                    )));
                }
                Err(_) => return Err(unreadable(format!("partition column {column} is not in the schema"))),
            }
        }
        if let Some(file) = spec
            .files
            .iter()
            .find(|f| f.partitions.len() != spec.partition_columns.len())
        {
            return Err(unreadable(format!(
                "a file has {} partition values for {} partition columns",
                file.partitions.len(),
                spec.partition_columns.len()
            )));
        }
        ObjectStoreUrl::parse(&spec.store_url).map_err(|e| unreadable(e.to_string()))?;
        let statistics = spec
            .files
            .iter()
            .map(|f| Arc::new(file_stats::from_delta_json(f.stats.as_deref(), &schema)))
            .collect();
        Ok(Self {
            schema,
            spec,
            statistics,
        })
    }

    /// The snapshot `table` is at, served with `schema` (the schema the single-node Delta
    /// scan serves, so both paths answer in the same types and column order; it may leave
    /// out file columns). Fails if the snapshot has a deletion vector or column mapping.
    pub fn from_delta(store: &Store, name: &str, table: &DeltaTable, schema: SchemaRef) -> Result<Self, EngineError> {
        let unreadable = |reason: String| not_plain(name, reason);
        let state = table.snapshot().map_err(|e| unreadable(e.to_string()))?;
        if let Some(mode) = state.metadata().configuration().get("delta.columnMapping.mode")
            && !mode.eq_ignore_ascii_case("none")
        {
            return Err(unreadable(format!(
                "it uses column mapping ({}), so its files' column names are not its own",
                mode
            )));
        }
        let partition_columns = state.metadata().partition_columns().to_vec();
        let table_url = table.table_url().clone();
        let mut files = Vec::new();
        for file in state.log_data().iter() {
            if file.deletion_vector_descriptor().is_some() {
                return Err(unreadable(
                    "a file has a deletion vector: read plainly, it would bring deleted rows back".into(),
                ));
            }
            let relative = file.path();
            // Poplar writes files under the table's own directory, by relative paths; an
            // absolute one (a shallow clone) would be another table's data.
            if Url::parse(&relative).is_ok() || relative.starts_with('/') {
                return Err(unreadable("a file lies outside the table's directory".into()));
            }
            let path = object_path(&table_url, &relative).map_err(|e| unreadable(e.to_string()))?;
            let values = file.partition_values_map();
            files.push(DataFile {
                path,
                size: u64::try_from(file.size()).map_err(|e| unreadable(e.to_string()))?,
                partitions: partition_columns
                    .iter()
                    .map(|c| values.get(c).cloned().flatten())
                    .collect(),
                stats: file.stats(),
            });
        }
        let spec = FilesSpec {
            table: name.to_string(),
            store_url: store_url(store.root()),
            partition_columns,
            files,
        };
        Self::try_new(schema, spec)
    }

    pub fn spec(&self) -> &FilesSpec {
        &self.spec
    }

    /// The same files served with fewer columns (e.g. `_registers` without its key column).
    pub fn with_schema(&self, schema: SchemaRef) -> Result<Self, EngineError> {
        Self::try_new(schema, self.spec.clone())
    }

    /// The columns stored in the files (every column but the partition columns), in order.
    fn file_schema(&self) -> SchemaRef {
        let fields: Vec<FieldRef> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.spec.partition_columns.contains(f.name()))
            .cloned()
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Where column `i` of the table is in the scan's output (file columns, then partition
    /// columns).
    fn scan_index(&self, file_schema: &Schema, i: usize) -> DfResult<usize> {
        let name = self.schema.field(i).name();
        if let Some(p) = self.spec.partition_columns.iter().position(|c| c == name) {
            return Ok(file_schema.fields().len() + p);
        }
        match file_schema.index_of(name) {
            Ok(j) => Ok(j),
            Err(e) => plan_err!("column {name} of {}: {e}", self.spec.table),
        }
    }

    /// The files that may hold rows matching `filters`: a file is dropped only when a filter
    /// is false or null for every row it can hold, judged on its partition values or on its
    /// statistics in the Delta log. Returns their indices in the spec.
    fn pruned(&self, state: &dyn Session, filters: &[Expr]) -> DfResult<Vec<usize>> {
        let mut keep = vec![true; self.spec.files.len()];
        self.prune_on_partition_values(state, filters, &mut keep)?;
        self.prune_on_statistics(state, filters, &mut keep);
        Ok((0..keep.len()).filter(|&i| keep[i]).collect())
    }

    /// File `i` as the Parquet scan reads it: its partition values, and its statistics in
    /// the scan's column order (file columns, then partition columns). Exact, as the log
    /// has them; the scan's own statistics are made inexact from them (see `scan`).
    fn partitioned_file(&self, file_schema: &Schema, i: usize) -> PartitionedFile {
        let file = &self.spec.files[i];
        let logged = &self.statistics[i];
        let mut columns: Vec<ColumnStatistics> = file_schema
            .fields()
            .iter()
            .map(|f| {
                self.schema
                    .index_of(f.name())
                    .ok()
                    .and_then(|j| logged.column_statistics.get(j).cloned())
                    .unwrap_or_else(ColumnStatistics::new_unknown)
            })
            .collect();
        let mut values = Vec::with_capacity(file.partitions.len());
        for value in &file.partitions {
            let scalar = ScalarValue::Utf8(value.clone());
            columns.push(match value {
                Some(_) => ColumnStatistics {
                    null_count: Precision::Exact(0),
                    min_value: Precision::Exact(scalar.clone()),
                    max_value: Precision::Exact(scalar.clone()),
                    ..ColumnStatistics::new_unknown()
                },
                None => ColumnStatistics::new_unknown(),
            });
            values.push(scalar);
        }
        let statistics = Statistics {
            num_rows: logged.num_rows,
            total_byte_size: usize::try_from(file.size).map_or(Precision::Absent, Precision::Exact),
            column_statistics: columns,
        };
        PartitionedFile::new(file.path.clone(), file.size)
            .with_partition_values(values)
            .with_statistics(Arc::new(statistics))
    }

    /// Whether `filter` reads partition columns and nothing else (and gives the same answer
    /// each time it is evaluated).
    fn on_partition_columns_alone(&self, filter: &Expr) -> bool {
        let columns = filter.column_refs();
        !filter.is_volatile()
            && !columns.is_empty()
            && columns
                .iter()
                .all(|c| self.spec.partition_columns.iter().any(|p| p == &c.name))
    }

    /// Each filter on partition columns alone is evaluated once per file, on the file's
    /// partition values.
    fn prune_on_partition_values(&self, state: &dyn Session, filters: &[Expr], keep: &mut [bool]) -> DfResult<()> {
        let applicable: Vec<&Expr> = filters.iter().filter(|f| self.on_partition_columns_alone(f)).collect();
        if applicable.is_empty() || self.spec.files.is_empty() {
            return Ok(());
        }
        let fields: Vec<Field> = self
            .spec
            .partition_columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns: Vec<ArrayRef> = (0..self.spec.partition_columns.len())
            .map(|i| {
                Arc::new(StringArray::from_iter(
                    self.spec.files.iter().map(|f| f.partitions[i].as_deref()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let df_schema = DFSchema::try_from(schema)?;
        for filter in applicable {
            let expr = state.create_physical_expr(filter.clone(), &df_schema)?;
            let values = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
            // The scan reports these filters exact, so one that cannot be applied must fail.
            let Some(mask) = values.as_any().downcast_ref::<BooleanArray>() else {
                return plan_err!("filter {filter} on partition columns is not a predicate");
            };
            for (i, k) in keep.iter_mut().enumerate() {
                *k &= mask.is_valid(i) && mask.value(i);
            }
        }
        Ok(())
    }

    /// Each filter is turned into a predicate on the files' statistics (DataFusion's
    /// `PruningPredicate`, as for row groups) and files for which it cannot hold are dropped.
    /// Pruning only saves work: a filter that cannot be judged this way (a subquery, a
    /// column without statistics) keeps every file, and the filter still runs on the rows.
    fn prune_on_statistics(&self, state: &dyn Session, filters: &[Expr], keep: &mut [bool]) {
        let Ok(df_schema) = DFSchema::try_from(self.schema.clone()) else {
            return;
        };
        for filter in filters.iter().filter(|f| !f.is_volatile()) {
            // Files without statistics in the log are kept, and left out of the judgement:
            // DataFusion reads one column's bounds as one array, which an unknown bound
            // among known ones would make unreadable for every file.
            let candidates: Vec<usize> = (0..keep.len())
                .filter(|&i| keep[i] && self.statistics[i].num_rows != Precision::Absent)
                .collect();
            if candidates.is_empty() {
                return;
            }
            let Ok(expr) = state.create_physical_expr(filter.clone(), &df_schema) else {
                continue;
            };
            // `None` when the filter says nothing about the statistics (always true).
            let Some(predicate) = PruningPredicateBuilder::new()
                .with_file_schema(self.schema.clone())
                .build(expr)
            else {
                continue;
            };
            let statistics = PrunableStatistics::new(
                candidates.iter().map(|&i| self.statistics[i].clone()).collect(),
                self.schema.clone(),
            );
            let Ok(mask) = predicate.prune(&statistics) else {
                continue;
            };
            for (&i, may_match) in candidates.iter().zip(mask) {
                keep[i] = may_match;
            }
        }
    }
}

/// `files` in at most `groups` groups of about equal bytes, largest files first.
fn balanced(files: Vec<PartitionedFile>, groups: usize) -> Vec<FileGroup> {
    let groups = groups.clamp(1, files.len().max(1));
    let mut sorted = files;
    sorted.sort_by(|a, b| {
        b.object_meta
            .size
            .cmp(&a.object_meta.size)
            .then_with(|| a.object_meta.location.cmp(&b.object_meta.location))
    });
    let mut buckets: Vec<(u64, Vec<PartitionedFile>)> = (0..groups).map(|_| (0, Vec::new())).collect();
    for file in sorted {
        if let Some(bucket) = buckets.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            bucket.0 += file.object_meta.size;
            bucket.1.push(file);
        }
    }
    buckets
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

/// Each group's statistics and the scan's, merged from its files' and made inexact.
fn estimated(groups: Vec<FileGroup>, schema: &Schema) -> DfResult<(Vec<FileGroup>, Statistics)> {
    let groups = groups
        .into_iter()
        .map(|group| {
            let merged = Statistics::try_merge_iter(group.iter().filter_map(|f| f.statistics.as_deref()), schema)?;
            Ok(group.with_statistics(Arc::new(merged.to_inexact())))
        })
        .collect::<DfResult<Vec<FileGroup>>>()?;
    let scan = Statistics::try_merge_iter(groups.iter().filter_map(|g| g.file_statistics(None)), schema)?;
    Ok((groups, scan.to_inexact()))
}

#[async_trait::async_trait]
impl TableProvider for FilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // A filter on partition columns alone is exact: a file is kept only if it holds for
        // the file's partition values, which every row of the file has. Any other filter
        // only prunes (files, row groups) and still runs on the rows.
        Ok(filters
            .iter()
            .map(|f| {
                if self.on_partition_columns_alone(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let file_schema = self.file_schema();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let files = self.pruned(state, filters)?;
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(Arc::new(self.schema.project(&wanted)?))));
        }
        let indices = wanted
            .iter()
            .map(|&i| self.scan_index(&file_schema, i))
            .collect::<DfResult<Vec<_>>>()?;
        // As the table's schema has them (a required partition column stays required).
        let partition_fields = self
            .spec
            .partition_columns
            .iter()
            .map(|c| Ok(Arc::new(self.schema.field_with_name(c)?.clone())))
            .collect::<DfResult<Vec<FieldRef>>>()?;
        let options = state.table_options().parquet.clone();
        let table_schema = TableSchema::builder(file_schema.clone())
            .with_table_partition_cols(partition_fields)
            .build();
        // File columns, then partition columns: the order of each file's statistics.
        let scan_schema = table_schema.table_schema().clone();
        // What `ParquetFormat::create_physical_plan` builds, with a reader that keeps each
        // file's page index in the metadata cache (`page_index.rs`).
        let store_url = ObjectStoreUrl::parse(&self.spec.store_url)?;
        let reader_factory = PageIndexCachingFactory::new(
            state.runtime_env().object_store(&store_url)?,
            state.runtime_env().cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(table_schema)
            .with_table_parquet_options(options.clone())
            .with_parquet_file_reader_factory(Arc::new(reader_factory));
        if let Some(hint) = options.global.metadata_size_hint {
            source = source.with_metadata_size_hint(hint);
        }
        let files = files
            .into_iter()
            .map(|i| self.partitioned_file(&file_schema, i))
            .collect();
        // The optimizer sees the log's figures as estimates (inexact): join order and
        // build sides follow them, but no answer is ever read from them in place of a scan.
        let (groups, statistics) = estimated(balanced(files, state.config().target_partitions()), &scan_schema)?;
        let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(indices))?
            // A limit is only safe to apply in the scan when nothing filters the rows.
            .with_limit(if filters.is_empty() { limit } else { None })
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The object store URL of a store root: `s3://bucket` for S3, `file://` for local files.
pub fn store_url(root: &Url) -> String {
    match root.host_str() {
        Some(host) if root.scheme() != "file" => format!("{}://{host}", root.scheme()),
        _ => format!("{}://", root.scheme()),
    }
}

/// The object store path of `relative` (as written in the Delta log) under `table_url`.
fn object_path(table_url: &Url, relative: &str) -> Result<String, String> {
    let prefix = ObjectPath::from_url_path(table_url.path()).map_err(|e| e.to_string())?;
    // As deltalake reads a log path: already encoded if it parses, else encoded here.
    let relative = ObjectPath::parse(relative).unwrap_or_else(|_| ObjectPath::from(relative));
    Ok(ObjectPath::from_iter(prefix.parts().chain(relative.parts())).to_string())
}

/// Register the store's object store in `runtime` under [`store_url`], so that scans of
/// [`FilesTable`]s (on this node, whichever node it is) can read it. Credentials come from
/// this node's environment (the `AWS_*` variables), never from a plan or session settings.
/// Local files need nothing: DataFusion registers `file://` itself.
pub fn register_store(runtime: &RuntimeEnv, store: &Store) -> Result<(), EngineError> {
    if store.root().scheme() == "file" {
        return Ok(());
    }
    let unreadable = |reason: String| not_plain("(the store)", reason);
    let (object_store, _) = store.object_store().map_err(|e| unreadable(e.to_string()))?;
    let url = Url::parse(&store_url(store.root())).map_err(|e| unreadable(e.to_string()))?;
    runtime.register_object_store(&url, object_store);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::logical_expr::{col, lit};
    use deltalake::datafusion::prelude::SessionContext;

    fn table(orgs: &[Option<&str>]) -> FilesTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("source_org", DataType::Utf8, true),
            Field::new("event_date", DataType::Date32, true),
        ]));
        let files = orgs
            .iter()
            .enumerate()
            .map(|(i, org)| DataFile {
                path: format!("store/t/part-{i}.parquet"),
                size: 100 + i as u64,
                partitions: vec![org.map(str::to_string)],
                stats: None,
            })
            .collect();
        let spec = FilesSpec {
            table: "t".into(),
            store_url: "file://".into(),
            partition_columns: vec!["source_org".into()],
            files,
        };
        FilesTable::try_new(schema, spec).expect("table")
    }

    fn kept(table: &FilesTable, filters: &[Expr]) -> Vec<String> {
        let state = SessionContext::new().state();
        table
            .pruned(&state, filters)
            .expect("pruned")
            .into_iter()
            .map(|i| table.spec.files[i].path.clone())
            .collect()
    }

    #[test]
    fn a_filter_on_the_organisation_drops_other_organisations_files() {
        let t = table(&[Some("A1"), Some("B2"), None, Some("A1")]);
        assert_eq!(
            kept(&t, &[col("source_org").eq(lit("A1"))]),
            ["store/t/part-0.parquet", "store/t/part-3.parquet"]
        );
        // Null partition values never match an equality, and a filter on other columns
        // keeps every file (the Parquet reader prunes row groups for it).
        assert_eq!(
            kept(&t, &[col("source_org").not_eq(lit("A1"))]),
            ["store/t/part-1.parquet"]
        );
        assert_eq!(kept(&t, &[col("person_id").eq(lit(1i64))]).len(), 4);
        // Several filters: all must hold.
        assert!(kept(&t, &[col("source_org").eq(lit("A1")), col("source_org").eq(lit("B2"))]).is_empty());
    }

    #[test]
    fn the_logs_statistics_drop_files_no_row_of_which_can_match() {
        let mut t = table(&[Some("A1"), Some("A1"), Some("B2")]);
        let stats = [
            r#"{"numRecords":5,"minValues":{"event_date":"2019-01-01"},"maxValues":{"event_date":"2019-12-31"},"nullCount":{"event_date":0}}"#,
            r#"{"numRecords":5,"minValues":{"event_date":"2020-01-01"},"maxValues":{"event_date":"2024-12-31"},"nullCount":{"event_date":0}}"#,
        ];
        let mut spec = t.spec().clone();
        spec.files[0].stats = Some(stats[0].into());
        spec.files[1].stats = Some(stats[1].into());
        // The third file has no statistics: it can never be dropped on them.
        t = FilesTable::try_new(t.schema(), spec).expect("table");
        let from_2020 = col("event_date").gt_eq(lit(ScalarValue::Date32(Some(18262))));
        assert_eq!(
            kept(&t, std::slice::from_ref(&from_2020)),
            ["store/t/part-1.parquet", "store/t/part-2.parquet"]
        );
        // With a partition filter as well, both kinds of pruning apply.
        assert_eq!(
            kept(&t, &[from_2020, col("source_org").eq(lit("A1"))]),
            ["store/t/part-1.parquet"]
        );
        // A filter the statistics cannot judge keeps every file.
        assert_eq!(kept(&t, &[col("person_id").eq(lit(3i64))]).len(), 3);
    }

    #[test]
    fn filters_on_partition_columns_alone_are_exact() {
        let t = table(&[Some("A1")]);
        let on_org = col("source_org").eq(lit("A1"));
        let mixed = col("source_org").eq(lit("A1")).or(col("person_id").eq(lit(1i64)));
        let pushdown = t.supports_filters_pushdown(&[&on_org, &mixed]).expect("pushdown");
        assert_eq!(
            pushdown,
            [TableProviderFilterPushDown::Exact, TableProviderFilterPushDown::Inexact]
        );
    }

    #[test]
    fn partition_columns_must_be_strings_of_the_schema_with_a_value_per_file() {
        let t = table(&[Some("A1")]);
        let mut spec = t.spec().clone();
        spec.partition_columns = vec!["event_date".into()];
        assert!(FilesTable::try_new(t.schema(), spec).is_err());
        let mut spec = t.spec().clone();
        spec.files[0].partitions.clear();
        assert!(FilesTable::try_new(t.schema(), spec).is_err());
        let mut spec = t.spec().clone();
        spec.partition_columns = vec!["missing".into()];
        assert!(FilesTable::try_new(t.schema(), spec).is_err());
    }

    #[test]
    fn object_store_urls_name_the_bucket_or_the_local_file_system() {
        let s3 = Url::parse("s3://bucket/prefix/store/").expect("url");
        assert_eq!(store_url(&s3), "s3://bucket");
        let local = Url::parse("file:///data/store/").expect("url");
        assert_eq!(store_url(&local), "file://");
        let table = Url::parse("s3://bucket/prefix/store/patients/").expect("url");
        assert_eq!(
            object_path(&table, "source_org=A1/part-0.parquet").expect("path"),
            "prefix/store/patients/source_org=A1/part-0.parquet"
        );
    }
}
