//! Reference data compiled into every Poplar binary: the codelists table. A leaf, so the
//! catalog serves it and a cluster's codec rebuilds it by name (see `distributed`).

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::logical_expr::TableType;
use std::sync::Arc;

use crate::EngineError;

/// The reference table of codelists: compiled into every Poplar binary, so a cluster's
/// nodes rebuild it by name instead of receiving its rows (see `distributed`).
#[derive(Debug)]
pub struct Codelists(MemTable);

#[async_trait::async_trait]
impl TableProvider for Codelists {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        self.0.table_type()
    }
    async fn scan(
        &self,
        state: &dyn deltalake::datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[deltalake::datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> deltalake::datafusion::common::Result<Arc<dyn deltalake::datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

pub fn codelists_table() -> Result<Arc<dyn TableProvider>, EngineError> {
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
    Ok(Arc::new(Codelists(MemTable::try_new(schema, vec![vec![batch]])?)))
}
