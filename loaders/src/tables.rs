//! The canonical de-identified tables: their names, Arrow schemas, partitioning, and the
//! row buffers the parsers fill. This is the contract with the engine and outside readers;
//! README.md documents it for people.

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::{Arc, LazyLock};

use crate::LoaderError;

/// Every table Poplar lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Patients,
    ClinicalEvents,
    Medications,
    Encounters,
    Organisations,
    Quarantine,
    Deliveries,
    Snapshots,
    OptOuts,
}

impl Table {
    /// Tables that hold one row per person-record and carry `person_id`.
    pub const PERSONAL: [Table; 4] = [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
    ];

    /// Tables a delivery writes to, in the order the loader commits them.
    pub const DELIVERY_TARGETS: [Table; 5] = [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
        Table::Quarantine,
    ];

    pub const ALL: [Table; 9] = [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
        Table::Organisations,
        Table::Quarantine,
        Table::Deliveries,
        Table::Snapshots,
        Table::OptOuts,
    ];

    /// Whether the engine serves this table (`_optouts` is the loaders' own).
    pub fn is_served(self) -> bool {
        self != Table::OptOuts
    }

    /// The table's directory name under the store root.
    pub fn name(self) -> &'static str {
        match self {
            Table::Patients => "patients",
            Table::ClinicalEvents => "clinical_events",
            Table::Medications => "medications",
            Table::Encounters => "encounters",
            Table::Organisations => "organisations",
            Table::Quarantine => "quarantine",
            Table::Deliveries => "deliveries",
            Table::Snapshots => "snapshots",
            // Loader-private: pseudonyms of people who opted out, so that later loads keep
            // excluding them. Never served by the engine.
            Table::OptOuts => "_optouts",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Patients => PATIENTS.clone(),
            Table::ClinicalEvents => CLINICAL_EVENTS.clone(),
            Table::Medications => MEDICATIONS.clone(),
            Table::Encounters => ENCOUNTERS.clone(),
            Table::Organisations => ORGANISATIONS.clone(),
            Table::Quarantine => QUARANTINE.clone(),
            Table::Deliveries => DELIVERIES.clone(),
            Table::Snapshots => SNAPSHOTS.clone(),
            Table::OptOuts => OPTOUTS.clone(),
        }
    }

    /// Hive-style partition columns. Personal tables partition by source organisation so
    /// that a delivery replaces one partition and per-organisation queries prune whole
    /// directories; within a partition files are sorted by date so per-period filters
    /// prune row groups by their statistics.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Patients | Table::ClinicalEvents | Table::Medications | Table::Encounters => &["source_org"],
            _ => &[],
        }
    }

    /// The date column that a delivery's period applies to; `None` when a delivery replaces
    /// the source's rows whatever their date (patients: a delivery is the full current list).
    pub fn period_column(self) -> Option<&'static str> {
        match self {
            Table::ClinicalEvents => Some("event_date"),
            Table::Medications => Some("issue_date"),
            Table::Encounters => Some("start_date"),
            _ => None,
        }
    }
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}
fn date(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Date32, nullable)
}
fn int64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}
fn int32(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int32, nullable)
}
fn float64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Float64, nullable)
}
fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

static PATIENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        int64("person_id", false),
        utf8("source_org", false),
        date("birth_month", true),
        utf8("sex", false),
        utf8("ethnic_category", true),
        utf8("ethnicity_group", false),
        utf8("lsoa", true),
        int32("imd_decile", true),
        utf8("registered_practice", true),
        date("registration_start", true),
        date("registration_end", true),
        date("death_month", true),
    ]))
});

static CLINICAL_EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        int64("person_id", false),
        utf8("source_org", false),
        date("event_date", false),
        utf8("code_system", false),
        utf8("code", false),
        int64("snomed_code", true),
        float64("value", true),
        utf8("unit", true),
        utf8("setting", false),
    ]))
});

static MEDICATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        int64("person_id", false),
        utf8("source_org", false),
        date("issue_date", false),
        int64("dmd_code", false),
        float64("quantity", true),
    ]))
});

static ENCOUNTERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        int64("person_id", false),
        utf8("source_org", false),
        utf8("setting", false),
        date("start_date", false),
        date("end_date", true),
        utf8("encounter_type", true),
        float64("cost", true),
    ]))
});

static ORGANISATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8("ods_code", false),
        utf8("name", false),
        utf8("org_type", false),
        utf8("feed_format", false),
        utf8("pcn", true),
        utf8("pcn_name", true),
        utf8("sub_icb", false),
        utf8("icb", false),
    ]))
});

static QUARANTINE: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8("load_id", false),
        utf8("source_org", false),
        utf8("delivery", false),
        utf8("file", false),
        int64("line", true),
        utf8("reason", false),
        utf8("detail", false),
        timestamp("quarantined_at"),
    ]))
});

static DELIVERIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8("source_org", false),
        utf8("delivery", false),
        utf8("content_sha256", false),
        date("period_start", true),
        date("period_end", true),
        utf8("load_id", false),
        timestamp("loaded_at"),
        utf8("status", false),
        utf8("reason", true),
        int64("rows_read", false),
        int64("patients_rows", false),
        int64("clinical_events_rows", false),
        int64("medications_rows", false),
        int64("encounters_rows", false),
        int64("quarantined_rows", false),
        int64("optout_excluded_rows", false),
    ]))
});

static SNAPSHOTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        int64("snapshot", false),
        timestamp("created_at"),
        utf8("operation", false),
        utf8("load_id", false),
        // JSON object: table name -> Delta version that this snapshot reads.
        utf8("table_versions", false),
    ]))
});

static OPTOUTS: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![int64("person_id", false), timestamp("recorded_at")])));

/// Rows of `patients` from one delivery (`source_org` is the delivery's).
#[derive(Default)]
pub struct PatientRows {
    pub person_id: Int64Builder,
    pub birth_month: Date32Builder,
    pub sex: StringBuilder,
    pub ethnic_category: StringBuilder,
    pub ethnicity_group: StringBuilder,
    pub lsoa: StringBuilder,
    pub imd_decile: Int32Builder,
    pub registered_practice: StringBuilder,
    pub registration_start: Date32Builder,
    pub registration_end: Date32Builder,
    pub death_month: Date32Builder,
}

/// Rows of `clinical_events` from one delivery.
#[derive(Default)]
pub struct EventRows {
    pub person_id: Int64Builder,
    pub event_date: Date32Builder,
    pub code_system: StringBuilder,
    pub code: StringBuilder,
    pub snomed_code: Int64Builder,
    pub value: Float64Builder,
    pub unit: StringBuilder,
    pub setting: StringBuilder,
}

/// Rows of `medications` from one delivery.
#[derive(Default)]
pub struct MedicationRows {
    pub person_id: Int64Builder,
    pub issue_date: Date32Builder,
    pub dmd_code: Int64Builder,
    pub quantity: Float64Builder,
}

/// Rows of `encounters` from one delivery.
#[derive(Default)]
pub struct EncounterRows {
    pub person_id: Int64Builder,
    pub setting: StringBuilder,
    pub start_date: Date32Builder,
    pub end_date: Date32Builder,
    pub encounter_type: StringBuilder,
    pub cost: Float64Builder,
}

fn source_column(source_org: &str, rows: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows, rows * source_org.len());
    for _ in 0..rows {
        b.append_value(source_org);
    }
    Arc::new(b.finish())
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, LoaderError> {
    Ok(RecordBatch::try_new(table.schema(), columns)?)
}

/// `len`, `is_empty` and `finish` for a row buffer whose columns are `person_id`, then
/// `source_org` (filled from the delivery), then the listed builders in schema order.
macro_rules! row_buffer {
    ($rows:ident, $table:expr, [$($column:ident),* $(,)?]) => {
        impl $rows {
            pub fn len(&self) -> usize {
                self.person_id.len()
            }
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
            pub fn finish(&mut self, source_org: &str) -> Result<RecordBatch, LoaderError> {
                let n = self.len();
                batch($table, vec![
                    Arc::new(self.person_id.finish()) as ArrayRef,
                    source_column(source_org, n),
                    $(Arc::new(self.$column.finish()) as ArrayRef,)*
                ])
            }
        }
    };
}

row_buffer!(
    PatientRows,
    Table::Patients,
    [
        birth_month,
        sex,
        ethnic_category,
        ethnicity_group,
        lsoa,
        imd_decile,
        registered_practice,
        registration_start,
        registration_end,
        death_month,
    ]
);
row_buffer!(
    EventRows,
    Table::ClinicalEvents,
    [event_date, code_system, code, snomed_code, value, unit, setting]
);
row_buffer!(MedicationRows, Table::Medications, [issue_date, dmd_code, quantity]);
row_buffer!(
    EncounterRows,
    Table::Encounters,
    [setting, start_date, end_date, encounter_type, cost]
);

/// Build a small table (organisations, quarantine, ledger) from whole columns.
pub fn build_batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, LoaderError> {
    batch(table, columns)
}

/// Microseconds since the epoch, UTC, for `timestamp` columns.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(crate) fn timestamp_array(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_tables_carry_person_id_and_source_org() {
        for table in Table::PERSONAL {
            let schema = table.schema();
            assert!(schema.field_with_name("person_id").is_ok(), "{table:?}");
            assert!(schema.field_with_name("source_org").is_ok(), "{table:?}");
            assert_eq!(table.partition_columns(), &["source_org"]);
        }
    }

    #[test]
    fn row_buffers_build_batches_of_the_declared_schema() {
        let mut events = EventRows::default();
        events.person_id.append_value(1);
        events.event_date.append_value(19_000);
        events.code_system.append_value("snomed");
        events.code.append_value("111552007");
        events.snomed_code.append_value(111552007);
        events.value.append_null();
        events.unit.append_null();
        events.setting.append_value("gp");
        let batch = events.finish("P81001").expect("builds");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), Table::ClinicalEvents.schema());
    }
}
