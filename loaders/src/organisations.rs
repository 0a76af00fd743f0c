//! The `organisations` reference table, rebuilt from the source registry when it changes.

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use std::sync::Arc;

use crate::LoaderError;
use crate::landing::{self, Snapshot, WriteMode};
use crate::registry::Registry;
use crate::store::Store;
use crate::tables::{Table, build_batch};

pub fn organisations_batch(registry: &Registry) -> Result<RecordBatch, LoaderError> {
    let mut columns: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut sources: Vec<_> = registry.sources.iter().collect();
    sources.sort_by(|a, b| a.ods.cmp(&b.ods));
    for s in sources {
        let format = match s.format {
            crate::registry::FeedFormat::Csv => "csv",
            crate::registry::FeedFormat::FhirNdjson => "fhir_ndjson",
        };
        let values = [
            Some(s.ods.as_str()),
            Some(s.name.as_str()),
            Some(s.org_type.as_str()),
            Some(format),
            s.pcn.as_deref(),
            s.pcn_name.as_deref(),
            Some(s.sub_icb.as_str()),
            Some(s.icb.as_str()),
        ];
        for (b, v) in columns.iter_mut().zip(values) {
            b.append_option(v);
        }
    }
    build_batch(
        Table::Organisations,
        columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect(),
    )
}

/// Overwrite `organisations` if the registry differs from what the snapshot holds.
/// Returns the new version when it wrote.
pub async fn refresh(
    store: &Store,
    snapshot: Option<&Snapshot>,
    registry: &Registry,
) -> Result<Option<u64>, LoaderError> {
    let wanted = organisations_batch(registry)?;
    if let Some(snapshot) = snapshot
        && let Some(current) = snapshot.open(store, Table::Organisations).await?
    {
        let rows = landing::query(&current, "SELECT * FROM t ORDER BY ods_code").await?;
        // Compare rendered values: the reader may choose other string encodings.
        let render = |b: &[RecordBatch]| arrow::util::pretty::pretty_format_batches(b).map(|t| t.to_string());
        if render(&rows)? == render(std::slice::from_ref(&wanted))? {
            return Ok(None);
        }
    }
    landing::write(store, Table::Organisations, vec![wanted], WriteMode::Overwrite)
        .await
        .map(Some)
}
