//! A run's output: put in one canonical order and encoded as an Arrow IPC stream (the
//! bytes that are held, hashed and fetched), and the summary a steward's output check
//! starts from (in the manner of Airlock's CSV summaries: rows, suppressed cells, the
//! smallest count released, whether every count is rounded).
//!
//! Canonical order: DataFusion may return a grouped answer's rows in any order across
//! partitions, so the rows are sorted by every column before encoding. Released values are
//! themselves deterministic (sticky noise, deterministic suppression), so the same question
//! on the same snapshot gives the same bytes.

use arrow::array::{Array, RecordBatch};
use arrow::compute::{SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};

use super::model::Summary;
use crate::EngineError;
use crate::disclosure::protect::{KEY_DOMAIN_KEY, PROTECTION_KEY};
use crate::disclosure::{Policy, ReleaseStats};

/// Every row of `batches` in one batch, sorted by all its columns (nulls first).
pub fn canonical(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, EngineError> {
    let all = concat_batches(schema, batches)?;
    if all.num_rows() < 2 || all.num_columns() == 0 {
        return Ok(all);
    }
    let columns: Vec<SortColumn> = all
        .columns()
        .iter()
        .map(|values| SortColumn {
            values: values.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    let order = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(&all, &order)?)
}

/// The output as an Arrow IPC stream.
pub fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, EngineError> {
    let mut bytes = Vec::new();
    {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(bytes)
}

/// An IPC stream read back as batches.
pub fn from_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, EngineError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// An IPC stream as CSV with a header; a suppressed cell is empty.
pub fn ipc_to_csv(bytes: &[u8]) -> Result<Vec<u8>, EngineError> {
    let batches = from_ipc(bytes)?;
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
        for batch in &batches {
            writer.write(batch)?;
        }
    }
    Ok(out)
}

/// The values of an integer column as u64 (negatives and nulls skipped: a released count
/// is never negative, and a null is a suppressed cell).
fn counts(values: &dyn Array) -> Result<Vec<u64>, EngineError> {
    let cast = arrow::compute::cast(values, &DataType::Int64)?;
    let ints = cast
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .ok_or_else(|| EngineError::Server("a count column did not cast to Int64".into()))?;
    Ok(ints.iter().flatten().filter_map(|v| u64::try_from(v).ok()).collect())
}

/// What a steward sees of an output before deciding on it.
pub fn summarise(batch: &RecordBatch, stats: &ReleaseStats, policy: Option<&Policy>) -> Result<Summary, EngineError> {
    let mut smallest: Option<u64> = None;
    let mut rounded = true;
    let mut unprotected = Vec::new();
    for (field, values) in batch.schema().fields().iter().zip(batch.columns()) {
        let metadata = field.metadata();
        match metadata.get(PROTECTION_KEY).map(String::as_str) {
            Some("count") => {
                for v in counts(values.as_ref())? {
                    if v > 0 {
                        smallest = Some(smallest.map_or(v, |s| s.min(v)));
                    }
                    if policy.is_some_and(|p| !p.is_rounded(v)) {
                        rounded = false;
                    }
                }
            }
            Some(_) => {}
            None if metadata.contains_key(KEY_DOMAIN_KEY) => {}
            None => unprotected.push(field.name().clone()),
        }
    }
    Ok(Summary {
        rows: batch.num_rows() as u64,
        cells_suppressed: stats.cells_suppressed.load(std::sync::atomic::Ordering::Relaxed),
        smallest_count: smallest,
        counts_rounded: rounded,
        round_to: policy.map_or(1, |p| p.round_to),
        unprotected_columns: unprotected,
        same_as_released_run: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::collections::HashMap;
    use std::sync::Arc;

    fn batch(practices: &[&str], counts: &[Option<i64>]) -> RecordBatch {
        let key = Field::new("practice", DataType::Utf8, false)
            .with_metadata(HashMap::from([(KEY_DOMAIN_KEY.to_string(), "public".to_string())]));
        let count = Field::new("n", DataType::Int64, true).with_metadata(HashMap::from([
            (PROTECTION_KEY.to_string(), "count".to_string()),
            ("poplar.suppressed".to_string(), "null".to_string()),
        ]));
        let plain = Field::new("ratio", DataType::Utf8, true);
        let schema = Arc::new(Schema::new(vec![key, count, plain]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(practices.to_vec())),
            Arc::new(Int64Array::from(counts.to_vec())),
            Arc::new(StringArray::from(vec![None::<&str>; practices.len()])),
        ];
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    #[test]
    fn the_same_rows_in_any_order_encode_to_the_same_bytes() {
        let a = batch(&["B", "A", "C"], &[Some(10), None, Some(25)]);
        let b = batch(&["C", "B", "A"], &[Some(25), Some(10), None]);
        let schema = a.schema();
        let one = to_ipc(&canonical(&schema, &[a.slice(0, 1), a.slice(1, 2)]).expect("a")).expect("ipc");
        let two = to_ipc(&canonical(&schema, &[b]).expect("b")).expect("ipc");
        assert_eq!(one, two);
        let back = from_ipc(&one).expect("read");
        assert_eq!(back[0].num_rows(), 3);
        let csv = String::from_utf8(ipc_to_csv(&one).expect("csv")).expect("utf8");
        assert_eq!(csv.lines().next(), Some("practice,n,ratio"));
        assert_eq!(csv.lines().nth(1), Some("A,,"), "a suppressed cell is empty");
    }

    #[test]
    fn the_summary_reads_counts_keys_and_what_is_neither() {
        let policy = Policy::new(vec![7; 32]).expect("policy");
        let stats = ReleaseStats::default();
        stats.cells_suppressed.store(1, std::sync::atomic::Ordering::Relaxed);
        let summary = summarise(
            &batch(&["A", "B", "C"], &[Some(10), None, Some(0)]),
            &stats,
            Some(&policy),
        )
        .expect("summary");
        assert_eq!(summary.rows, 3);
        assert_eq!(summary.cells_suppressed, 1);
        assert_eq!(summary.smallest_count, Some(10));
        assert!(summary.counts_rounded);
        assert_eq!(summary.unprotected_columns, vec!["ratio".to_string()]);
        assert!(!summary.passes(), "an unprotected column needs a person to look");
        let odd = summarise(&batch(&["A"], &[Some(12)]), &stats, Some(&policy)).expect("summary");
        assert!(!odd.counts_rounded);
    }
}
