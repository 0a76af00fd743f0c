//! A data file's statistics as the Delta log records them, read as DataFusion
//! [`Statistics`], so that a scan drops the files in which no row can match its filters
//! when the plan is made, before any file is opened.
//!
//! Only what is exact and safe to compare is read: the row count, null counts, and the
//! minimum and maximum of integer and date columns, and of string columns where both are
//! shorter than any writer's truncation (so `setting = 'inpatient'` drops a GP practice's
//! files). The others are left unknown, which keeps the file:
//! - longer strings, because writers keep only a prefix (Spark 32 characters, the Parquet
//!   writer delta-rs reads 64 bytes), and a truncated maximum need not be an upper bound;
//! - floats, because of how NaN orders;
//! - timestamps, because the log keeps milliseconds;
//! - partition columns, which have no statistics in the log (`FilesTable` prunes them on
//!   their values).

use arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use serde_json::{Map, Value};

/// The statistics of one file of a table with `schema`, from the Delta log's JSON for it
/// (`numRecords`, `minValues`, `maxValues`, `nullCount`). Unknown wherever the log says
/// nothing usable, including when `json` is missing or does not parse.
pub fn from_delta_json(json: Option<&str>, schema: &Schema) -> Statistics {
    let mut statistics = Statistics::new_unknown(schema);
    let Some(Value::Object(root)) = json.and_then(|j| serde_json::from_str::<Value>(j).ok()) else {
        return statistics;
    };
    if let Some(rows) = root.get("numRecords").and_then(Value::as_u64) {
        statistics.num_rows = exact_usize(rows);
    }
    let section = |name: &str| root.get(name).and_then(Value::as_object);
    let (minimums, maximums, nulls) = (section("minValues"), section("maxValues"), section("nullCount"));
    for (field, column) in schema.fields().iter().zip(statistics.column_statistics.iter_mut()) {
        *column = column_statistics(field.name(), field.data_type(), minimums, maximums, nulls);
    }
    statistics
}

fn column_statistics(
    name: &str,
    data_type: &DataType,
    minimums: Option<&Map<String, Value>>,
    maximums: Option<&Map<String, Value>>,
    nulls: Option<&Map<String, Value>>,
) -> ColumnStatistics {
    let bound = |section: Option<&Map<String, Value>>| {
        section
            .and_then(|s| s.get(name))
            .and_then(|v| comparable(v, data_type))
            .map_or(Precision::Absent, Precision::Exact)
    };
    ColumnStatistics {
        null_count: nulls
            .and_then(|s| s.get(name))
            .and_then(Value::as_u64)
            .map_or(Precision::Absent, exact_usize),
        min_value: bound(minimums),
        max_value: bound(maximums),
        ..ColumnStatistics::new_unknown()
    }
}

fn exact_usize(value: u64) -> Precision<usize> {
    usize::try_from(value).map_or(Precision::Absent, Precision::Exact)
}

/// A string bound of fewer bytes than this is whole: no writer truncates below 32
/// characters (of at least a byte each).
const UNTRUNCATED_BYTES: usize = 32;

/// A bound of a column of `data_type`, for the types whose bounds are exact in the log.
fn comparable(value: &Value, data_type: &DataType) -> Option<ScalarValue> {
    let text = match (data_type, value) {
        (
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64,
            Value::Number(n),
        ) if n.is_i64() || n.is_u64() => n.to_string(),
        (DataType::Date32, Value::String(s)) => s.clone(),
        (DataType::Utf8 | DataType::LargeUtf8, Value::String(s)) if s.len() < UNTRUNCATED_BYTES => s.clone(),
        _ => return None,
    };
    // Out of range for the type, or not a date: unknown, never a wrong bound.
    ScalarValue::try_from_string(text, data_type)
        .ok()
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("event_date", DataType::Date32, true),
            Field::new("code", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new("source_org", DataType::Utf8, true),
        ])
    }

    #[test]
    fn integers_dates_and_short_strings_are_exact_and_the_rest_unknown() {
        let json = r#"{"numRecords":3,
            "minValues":{"person_id":7,"event_date":"2020-01-01","code":"A","value":1.5},
            "maxValues":{"person_id":90,"event_date":"2024-12-31","code":"Z","value":9.5},
            "nullCount":{"person_id":0,"event_date":1,"code":0,"value":2}}"#;
        let s = from_delta_json(Some(json), &schema());
        assert_eq!(s.num_rows, Precision::Exact(3));
        let c = &s.column_statistics;
        assert_eq!(c[0].min_value, Precision::Exact(ScalarValue::Int64(Some(7))));
        assert_eq!(c[0].max_value, Precision::Exact(ScalarValue::Int64(Some(90))));
        assert_eq!(c[1].min_value, Precision::Exact(ScalarValue::Date32(Some(18262))));
        assert_eq!(c[1].null_count, Precision::Exact(1));
        // Short strings are whole; floats give no bounds, and their null counts are exact.
        assert_eq!(c[2].min_value, Precision::Exact(ScalarValue::Utf8(Some("A".into()))));
        assert_eq!(c[2].max_value, Precision::Exact(ScalarValue::Utf8(Some("Z".into()))));
        assert_eq!(c[3].min_value, Precision::Absent);
        assert_eq!(c[3].null_count, Precision::Exact(2));
        // A partition column is not in the log's statistics.
        assert_eq!(c[4], ColumnStatistics::new_unknown());
    }

    #[test]
    fn missing_or_malformed_statistics_are_unknown_never_wrong() {
        let unknown = Statistics::new_unknown(&schema());
        assert_eq!(from_delta_json(None, &schema()), unknown);
        assert_eq!(from_delta_json(Some("not json"), &schema()), unknown);
        assert_eq!(from_delta_json(Some("[1,2]"), &schema()), unknown);
        let s = from_delta_json(
            Some(r#"{"minValues":{"person_id":"7","event_date":"2020-13-45"},"maxValues":{"person_id":1e30}}"#),
            &schema(),
        );
        assert_eq!(s.num_rows, Precision::Absent);
        assert_eq!(s.column_statistics[0].min_value, Precision::Absent);
        assert_eq!(s.column_statistics[0].max_value, Precision::Absent);
        assert_eq!(s.column_statistics[1].min_value, Precision::Absent);
        // A string bound as long as a writer's prefix may be truncated: unknown.
        let prefix = "p".repeat(32);
        let s = from_delta_json(
            Some(&format!(
                r#"{{"minValues":{{"code":"{prefix}"}},"maxValues":{{"code":"{prefix}"}}}}"#
            )),
            &schema(),
        );
        assert_eq!(s.column_statistics[2].min_value, Precision::Absent);
        assert_eq!(s.column_statistics[2].max_value, Precision::Absent);
        // A bound out of the column's range is dropped, not wrapped.
        let narrow = Schema::new(vec![Field::new("n", DataType::Int8, true)]);
        let s = from_delta_json(Some(r#"{"maxValues":{"n":300}}"#), &narrow);
        assert_eq!(s.column_statistics[0].max_value, Precision::Absent);
    }
}
