//! The `studies` and `study_runs` tables stewards query (like `audit_log`), read afresh
//! from the store on every scan, so they show what every server recorded.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{SecondsFormat, Utc};
use deltalake::datafusion::catalog::{MemTable, Session};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, TableType};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use poplar_loaders::Store;

use super::model::Study;
use super::store::StudyStore;
use crate::EngineError;

pub const STUDIES_TABLE: &str = "studies";
pub const STUDY_RUNS_TABLE: &str = "study_runs";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Studies,
    Runs,
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

pub fn schema(which: Which) -> SchemaRef {
    let count = |name: &str, nullable: bool| Field::new(name, DataType::UInt64, nullable);
    Arc::new(Schema::new(match which {
        Which::Studies => vec![
            text("study_id", false),
            text("author", false),
            text("title", false),
            text("state", false),
            text("sql_sha256", false),
            count("approvals", false),
            count("approvals_required", false),
            text("approved_by", true),
            text("policy_version", true),
            count("run_quota", true),
            count("runs_used", false),
            text("expires_at", true),
            text("submitted_at", false),
            text("last_change_at", false),
        ],
        Which::Runs => vec![
            text("run_id", false),
            text("study_id", false),
            text("run_by", false),
            text("at", false),
            text("state", false),
            Field::new("snapshot", DataType::Int64, false),
            text("table_versions", false),
            text("output_sha256", true),
            count("rows", true),
            count("cells_suppressed", true),
            count("smallest_count", true),
            Field::new("counts_rounded", DataType::Boolean, true),
            text("checked_by", true),
            // Two-checker deployments: how many stewards have checked the output so far,
            // and how many must before it is released.
            count("checks", false),
            count("checks_required", false),
        ],
    }))
}

fn time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn to_record_batch(which: Which, studies: &[Study]) -> Result<RecordBatch, EngineError> {
    let now = Utc::now();
    let strings = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let counts = |values: Vec<Option<u64>>| -> ArrayRef { Arc::new(UInt64Array::from(values)) };
    let columns: Vec<ArrayRef> = match which {
        Which::Studies => {
            let s = studies;
            vec![
                strings(s.iter().map(|s| Some(s.id.clone())).collect()),
                strings(s.iter().map(|s| Some(s.author.clone())).collect()),
                strings(s.iter().map(|s| Some(s.submission.title.clone())).collect()),
                strings(s.iter().map(|s| Some(s.state(now).as_str().to_string())).collect()),
                strings(s.iter().map(|s| Some(s.sql_sha256.clone())).collect()),
                counts(s.iter().map(|s| Some(s.approvals.len() as u64)).collect()),
                counts(
                    s.iter()
                        .map(|s| Some(u64::from(s.submission.approvals_required)))
                        .collect(),
                ),
                strings(
                    s.iter()
                        .map(|s| {
                            (!s.approvals.is_empty())
                                .then(|| s.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>().join(","))
                        })
                        .collect(),
                ),
                strings(
                    s.iter()
                        .map(|s| s.bound.as_ref().map(|t| t.policy_version.clone()))
                        .collect(),
                ),
                counts(
                    s.iter()
                        .map(|s| s.bound.as_ref().map(|t| u64::from(t.run_quota)))
                        .collect(),
                ),
                counts(s.iter().map(|s| Some(s.runs.len() as u64)).collect()),
                strings(s.iter().map(|s| s.bound.as_ref().map(|t| time(t.expires_at))).collect()),
                strings(s.iter().map(|s| s.history.first().map(|e| time(e.at))).collect()),
                strings(s.iter().map(|s| s.history.last().map(|e| time(e.at))).collect()),
            ]
        }
        Which::Runs => {
            let runs: Vec<_> = studies
                .iter()
                .flat_map(|s| s.runs.iter().map(move |r| (s, r)))
                .collect();
            let versions = runs
                .iter()
                .map(|(_, r)| serde_json::to_string(&r.pin.table_versions).map(Some))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EngineError::Server(format!("encoding a pin: {e}")))?;
            vec![
                strings(runs.iter().map(|(_, r)| Some(r.id.clone())).collect()),
                strings(runs.iter().map(|(s, _)| Some(s.id.clone())).collect()),
                strings(runs.iter().map(|(_, r)| Some(r.by.clone())).collect()),
                strings(runs.iter().map(|(_, r)| Some(time(r.at))).collect()),
                strings(runs.iter().map(|(_, r)| Some(r.state.as_str().to_string())).collect()),
                Arc::new(Int64Array::from(
                    runs.iter().map(|(_, r)| r.pin.snapshot).collect::<Vec<_>>(),
                )),
                strings(versions),
                strings(runs.iter().map(|(_, r)| r.output_sha256.clone()).collect()),
                counts(runs.iter().map(|(_, r)| r.summary.as_ref().map(|s| s.rows)).collect()),
                counts(
                    runs.iter()
                        .map(|(_, r)| r.summary.as_ref().map(|s| s.cells_suppressed))
                        .collect(),
                ),
                counts(
                    runs.iter()
                        .map(|(_, r)| r.summary.as_ref().and_then(|s| s.smallest_count))
                        .collect(),
                ),
                Arc::new(BooleanArray::from(
                    runs.iter()
                        .map(|(_, r)| r.summary.as_ref().map(|s| s.counts_rounded))
                        .collect::<Vec<_>>(),
                )),
                strings(runs.iter().map(|(_, r)| r.checked_by.clone()).collect()),
                counts(runs.iter().map(|(_, r)| Some(r.checks.len() as u64)).collect()),
                counts(runs.iter().map(|(_, r)| Some(u64::from(r.checks_required))).collect()),
            ]
        }
    };
    Ok(RecordBatch::try_new(schema(which), columns)?)
}

/// One of the tables, read from the store on every scan.
#[derive(Debug, Clone)]
pub struct StudiesTable {
    store: Store,
    which: Which,
}

impl StudiesTable {
    pub fn new(store: Store, which: Which) -> Self {
        Self { store, which }
    }
}

#[tonic::async_trait]
impl TableProvider for StudiesTable {
    fn schema(&self) -> SchemaRef {
        schema(self.which)
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
        let studies = StudyStore::new(&self.store)
            .map_err(external)?
            .load_all()
            .await
            .map_err(external)?;
        let batch = to_record_batch(self.which, &studies).map_err(external)?;
        MemTable::try_new(schema(self.which), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
