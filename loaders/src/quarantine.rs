//! Why a record or a whole delivery was not landed. Reason codes are stable strings that
//! stewards filter on; details are fixed phrases naming columns, never record content.

use arrow::array::{ArrayRef, Int64Builder, StringBuilder};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

use crate::LoaderError;
use crate::tables::{Table, build_batch, timestamp_array};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // Record-level: the row is quarantined, the rest of the delivery lands.
    MissingNhsNumber,
    InvalidNhsNumber,
    InvalidDate,
    DateOutOfRange,
    OutsideDeliveryPeriod,
    UnknownCodeSystem,
    InvalidCode,
    InvalidValue,
    WrongColumnCount,
    DuplicatePatient,
    UnknownSubject,
    InvalidJson,
    UnexpectedResource,
    // Delivery-level: nothing from the delivery lands.
    UnknownSource,
    MissingManifest,
    InvalidManifest,
    MissingFile,
    UnreadableFile,
    TruncatedFile,
    ChecksumMismatch,
    RowCountMismatch,
    WrongHeader,
    FormatMismatch,
    StaleDelivery,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingNhsNumber => "missing_nhs_number",
            Reason::InvalidNhsNumber => "invalid_nhs_number",
            Reason::InvalidDate => "invalid_date",
            Reason::DateOutOfRange => "date_out_of_range",
            Reason::OutsideDeliveryPeriod => "outside_delivery_period",
            Reason::UnknownCodeSystem => "unknown_code_system",
            Reason::InvalidCode => "invalid_code",
            Reason::InvalidValue => "invalid_value",
            Reason::WrongColumnCount => "wrong_column_count",
            Reason::DuplicatePatient => "duplicate_patient",
            Reason::UnknownSubject => "unknown_subject",
            Reason::InvalidJson => "invalid_json",
            Reason::UnexpectedResource => "unexpected_resource",
            Reason::UnknownSource => "unknown_source",
            Reason::MissingManifest => "missing_manifest",
            Reason::InvalidManifest => "invalid_manifest",
            Reason::MissingFile => "missing_file",
            Reason::UnreadableFile => "unreadable_file",
            Reason::TruncatedFile => "truncated_file",
            Reason::ChecksumMismatch => "checksum_mismatch",
            Reason::RowCountMismatch => "row_count_mismatch",
            Reason::WrongHeader => "wrong_header",
            Reason::FormatMismatch => "format_mismatch",
            Reason::StaleDelivery => "stale_delivery",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// One quarantined record (or, with `line: None`, a rejected file or delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub file: String,
    pub line: Option<u64>,
    pub reason: Reason,
    /// A fixed phrase about the fault (which column, what was expected). Built only from
    /// column names and constants: never from the record's values.
    pub detail: String,
}

impl Quarantined {
    pub fn record(file: &str, line: u64, reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: Some(line),
            reason,
            detail: detail.into(),
        }
    }

    pub fn file(file: &str, reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: None,
            reason,
            detail: detail.into(),
        }
    }
}

/// Build `quarantine` rows for one delivery.
pub fn quarantine_batch(
    load_id: &str,
    source_org: &str,
    delivery: &str,
    records: &[Quarantined],
    at_micros: i64,
) -> Result<RecordBatch, LoaderError> {
    let n = records.len();
    let repeat = |value: &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * value.len());
        for _ in 0..n {
            b.append_value(value);
        }
        Arc::new(b.finish())
    };
    let mut file = StringBuilder::new();
    let mut line = Int64Builder::with_capacity(n);
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    for r in records {
        file.append_value(&r.file);
        line.append_option(r.line.map(|l| l as i64));
        reason.append_value(r.reason.code());
        detail.append_value(&r.detail);
    }
    build_batch(
        Table::Quarantine,
        vec![
            repeat(load_id),
            repeat(source_org),
            repeat(delivery),
            Arc::new(file.finish()),
            Arc::new(line.finish()),
            Arc::new(reason.finish()),
            Arc::new(detail.finish()),
            timestamp_array(std::iter::repeat_n(at_micros, n)),
        ],
    )
}
