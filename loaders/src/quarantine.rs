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
    /// Dated after the delivery was extracted (or after today, whatever the manifest says).
    FutureDate,
    OutsideDeliveryPeriod,
    UnknownCodeSystem,
    InvalidCode,
    InvalidValue,
    /// A unit that is not in Poplar's UCUM list: the column could carry free text.
    UnknownUnit,
    /// A quantity that cannot be negative (a count, mass, cost...) is.
    NegativeValue,
    WrongColumnCount,
    DuplicatePatient,
    UnknownSubject,
    InvalidJson,
    UnexpectedResource,
    /// Two FHIR resources of one type in a delivery share an `id`: references to it are
    /// ambiguous, so both (and everything pointing at them) are quarantined.
    DuplicateResourceId,
    /// A Patient carries two different NHS numbers: which person it is cannot be known.
    ConflictingIdentifiers,
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
    /// The manifest lists the same file twice (its rows would land twice).
    DuplicateFile,
    /// A delivery, manifest or data file that is not a plain directory or regular file
    /// inside the delivery: a symbolic link, FIFO, device or directory.
    UnsafeFile,
    /// A file larger than the loader's cap (`--max-file-bytes`).
    FileTooLarge,
    /// A source or delivery directory whose name is not a plain identifier (letters,
    /// digits, `-`, `_`, `.`): it is recorded under a placeholder, never by its name.
    InvalidName,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingNhsNumber => "missing_nhs_number",
            Reason::InvalidNhsNumber => "invalid_nhs_number",
            Reason::InvalidDate => "invalid_date",
            Reason::DateOutOfRange => "date_out_of_range",
            Reason::FutureDate => "future_date",
            Reason::OutsideDeliveryPeriod => "outside_delivery_period",
            Reason::UnknownCodeSystem => "unknown_code_system",
            Reason::InvalidCode => "invalid_code",
            Reason::InvalidValue => "invalid_value",
            Reason::UnknownUnit => "unknown_unit",
            Reason::NegativeValue => "negative_value",
            Reason::WrongColumnCount => "wrong_column_count",
            Reason::DuplicatePatient => "duplicate_patient",
            Reason::UnknownSubject => "unknown_subject",
            Reason::InvalidJson => "invalid_json",
            Reason::UnexpectedResource => "unexpected_resource",
            Reason::DuplicateResourceId => "duplicate_resource_id",
            Reason::ConflictingIdentifiers => "conflicting_identifiers",
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
            Reason::DuplicateFile => "duplicate_file",
            Reason::UnsafeFile => "unsafe_file",
            Reason::FileTooLarge => "file_too_large",
            Reason::InvalidName => "invalid_name",
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

/// Whether a source or delivery directory name, or a declared file name, may be recorded
/// as it is: letters, digits, `-`, `_` and `.`, at most 64 characters, not starting with
/// `.`, and no run of ten or more digits (an NHS number). ODS codes, delivery ids (dates,
/// sequence numbers) and file names are; a name with spaces, an address, an NHS number
/// or a control character is not, and is recorded under a placeholder instead.
pub fn plain_name(name: &str) -> bool {
    let mut digits = 0;
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| {
            digits = if b.is_ascii_digit() { digits + 1 } else { 0 };
            digits < 10 && (b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// What a quarantine row and a message call a file: its name when it is a plain name
/// ([`plain_name`]), which every file kind Poplar reads is; otherwise a
/// placeholder, because a manifest's file names are the sender's text.
fn recorded_file(file: &str) -> String {
    if plain_name(file) {
        file.to_string()
    } else {
        "(file name not shown)".to_string()
    }
}

/// Text safe to print on a terminal or write to a log: control characters (ESC, CR,
/// newline...) escaped, so that a name cannot move the cursor, recolour or forge lines.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

impl Quarantined {
    pub fn record(file: &str, line: u64, reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            file: recorded_file(file),
            line: Some(line),
            reason,
            detail: detail.into(),
        }
    }

    pub fn file(file: &str, reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            file: recorded_file(file),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_file_names_are_not_recorded_and_control_characters_are_escaped() {
        assert_eq!(
            Quarantined::file("events.csv", Reason::MissingFile, "x").file,
            "events.csv"
        );
        for hostile in ["Ada Lovelace.csv", "9434765919.csv", "a/b", "\u{1b}[31m", ""] {
            assert_eq!(
                Quarantined::record(hostile, 1, Reason::InvalidValue, "x").file,
                "(file name not shown)",
                "{hostile}"
            );
        }
        assert_eq!(printable("ok-1"), "ok-1");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
