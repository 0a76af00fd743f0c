//! The log as the `audit_log` table stewards query, read afresh from the store on every
//! scan.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::{MemTable, Session};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, TableType};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use poplar_loaders::Store;

use super::AuditEntry;
use super::log::entries;
use crate::EngineError;

/// The table's name in the catalog.
pub const AUDIT_TABLE: &str = "audit_log";

/// The columns of the `audit_log` table.
pub fn audit_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        count("seq"),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("user", false),
        text("role", false),
        text("kind", false),
        text("request", false),
        text("plan_hash", true),
        text("outcome", false),
        text("rule", true),
        text("detail", true),
        count("rows"),
        count("cells_suppressed"),
        count("groups_withheld"),
        count("duration_ms"),
        Field::new("completes", DataType::UInt64, true),
        text("hash", false),
    ]))
}

/// The entries as one batch of [`audit_schema`].
pub fn to_record_batch(entries: &[AuditEntry]) -> Result<RecordBatch, EngineError> {
    let strings = |f: &dyn Fn(&AuditEntry) -> Option<String>| -> ArrayRef {
        Arc::new(entries.iter().map(f).collect::<StringArray>())
    };
    let counts =
        |f: &dyn Fn(&AuditEntry) -> u64| -> ArrayRef { Arc::new(entries.iter().map(f).collect::<UInt64Array>()) };
    let at: ArrayRef = Arc::new(
        TimestampMillisecondArray::from_iter_values(entries.iter().map(|e| e.at.timestamp_millis()))
            .with_timezone("UTC"),
    );
    let columns = vec![
        counts(&|e| e.seq),
        at,
        strings(&|e| Some(e.record.user.clone())),
        strings(&|e| Some(e.record.role.clone())),
        strings(&|e| Some(e.record.request.kind().to_string())),
        strings(&|e| Some(e.record.request.text())),
        strings(&|e| e.record.plan_hash.clone()),
        strings(&|e| Some(e.record.outcome.status().to_string())),
        strings(&|e| e.record.outcome.rule().map(str::to_string)),
        strings(&|e| e.record.outcome.detail()),
        counts(&|e| e.record.rows),
        counts(&|e| e.record.cells_suppressed),
        counts(&|e| e.record.groups_withheld),
        counts(&|e| e.record.duration_ms),
        Arc::new(entries.iter().map(|e| e.record.completes).collect::<UInt64Array>()),
        strings(&|e| Some(e.hash.clone())),
    ];
    Ok(RecordBatch::try_new(audit_schema(), columns)?)
}

/// The log as a table (`audit_log`), read afresh from the store on every scan.
#[derive(Debug, Clone)]
pub struct AuditTable {
    store: Store,
}

impl AuditTable {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        audit_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let external = |e: EngineError| DataFusionError::External(Box::new(e));
        let entries = entries(&self.store).await.map_err(external)?;
        let batch = to_record_batch(&entries).map_err(external)?;
        MemTable::try_new(audit_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{GENESIS_HASH, seal};
    use crate::audit::sample_record as record;
    use chrono::Utc;

    #[test]
    fn the_table_has_a_row_per_entry() {
        let entry = seal(&record(7), 0, GENESIS_HASH, Utc::now()).expect("seal");
        let batch = to_record_batch(&[entry]).expect("batch");
        assert_eq!((batch.num_rows(), batch.num_columns()), (1, 16));
    }
}
