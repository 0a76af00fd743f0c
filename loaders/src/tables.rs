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
    Registers,
}

impl Table {
    /// Tables that hold one row per person-record and carry `person_id`.
    pub const PERSONAL: [Table; 4] = [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
    ];

    pub const ALL: [Table; 10] = [
        Table::Patients,
        Table::ClinicalEvents,
        Table::Medications,
        Table::Encounters,
        Table::Organisations,
        Table::Quarantine,
        Table::Deliveries,
        Table::Snapshots,
        Table::OptOuts,
        Table::Registers,
    ];

    /// Whether the engine serves this table as it is (`_optouts` is the loaders' own;
    /// `_registers` is read by the engine into `register_membership` when it is current).
    pub fn is_served(self) -> bool {
        !matches!(self, Table::OptOuts | Table::Registers)
    }

    /// The table a [`Table::name`] names.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
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
            // Derived, not landed: every register's members on the data's reference date,
            // computed once after a load and committed in the snapshot that follows it.
            Table::Registers => "_registers",
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
            Table::Registers => REGISTERS.clone(),
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

/// The Arrow type of a column kind named in a table declaration below.
macro_rules! data_type {
    (Utf8) => {
        DataType::Utf8
    };
    (Date32) => {
        DataType::Date32
    };
    (Int64) => {
        DataType::Int64
    };
    (Int32) => {
        DataType::Int32
    };
    (Float64) => {
        DataType::Float64
    };
    (Timestamp) => {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    };
}

/// The builder a row buffer fills for a column kind.
macro_rules! builder {
    (Utf8) => {
        StringBuilder
    };
    (Date32) => {
        Date32Builder
    };
    (Int64) => {
        Int64Builder
    };
    (Int32) => {
        Int32Builder
    };
    (Float64) => {
        Float64Builder
    };
}

macro_rules! nullable {
    (nullable) => {
        true
    };
    (required) => {
        false
    };
}

/// A schema from `column: Kind nullable|required` entries, in order.
macro_rules! schema {
    ($($column:ident: $kind:ident $nullability:ident),* $(,)?) => {
        Arc::new(Schema::new(vec![
            $(Field::new(stringify!($column), data_type!($kind), nullable!($nullability)),)*
        ]))
    };
}

/// A personal table, declared once: its schema, the row buffer the parsers fill and the
/// buffer's `finish`. Every personal table starts with `person_id` and `source_org`; the
/// buffer fills `source_org` from the delivery, so it holds only the other columns.
macro_rules! personal_table {
    (
        $(#[$doc:meta])*
        $table:path, $schema:ident, $rows:ident {
            $($column:ident: $kind:ident $nullability:ident),* $(,)?
        }
    ) => {
        static $schema: LazyLock<SchemaRef> = LazyLock::new(|| {
            schema![
                person_id: Int64 required,
                source_org: Utf8 required,
                $($column: $kind $nullability,)*
            ]
        });

        $(#[$doc])*
        #[derive(Default)]
        pub struct $rows {
            pub person_id: Int64Builder,
            $(pub $column: builder!($kind),)*
        }

        impl $rows {
            pub fn len(&self) -> usize {
                self.person_id.len()
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            pub fn finish(&mut self, source_org: &str) -> Result<RecordBatch, LoaderError> {
                let n = self.len();
                build_batch($table, vec![
                    Arc::new(self.person_id.finish()) as ArrayRef,
                    source_column(source_org, n),
                    $(Arc::new(self.$column.finish()) as ArrayRef,)*
                ])
            }
        }
    };
}

personal_table! {
    /// Rows of `patients` from one delivery (`source_org` is the delivery's).
    Table::Patients, PATIENTS, PatientRows {
        birth_month: Date32 nullable,
        sex: Utf8 required,
        ethnic_category: Utf8 nullable,
        ethnicity_group: Utf8 required,
        lsoa: Utf8 nullable,
        imd_decile: Int32 nullable,
        registered_practice: Utf8 nullable,
        registration_start: Date32 nullable,
        registration_end: Date32 nullable,
        death_month: Date32 nullable,
    }
}

personal_table! {
    /// Rows of `clinical_events` from one delivery.
    Table::ClinicalEvents, CLINICAL_EVENTS, EventRows {
        event_date: Date32 required,
        code_system: Utf8 required,
        code: Utf8 required,
        snomed_code: Int64 nullable,
        value: Float64 nullable,
        unit: Utf8 nullable,
        setting: Utf8 required,
    }
}

personal_table! {
    /// Rows of `medications` from one delivery.
    Table::Medications, MEDICATIONS, MedicationRows {
        issue_date: Date32 required,
        dmd_code: Int64 required,
        quantity: Float64 nullable,
    }
}

personal_table! {
    /// Rows of `encounters` from one delivery.
    Table::Encounters, ENCOUNTERS, EncounterRows {
        setting: Utf8 required,
        start_date: Date32 required,
        end_date: Date32 nullable,
        encounter_type: Utf8 nullable,
        cost: Float64 nullable,
        // The SNOMED CT encounter type a FHIR feed sent (`Encounter.type`/`serviceType`),
        // kept whether or not Poplar maps it to a category.
        encounter_snomed: Int64 nullable,
    }
}

// The tables below are built from whole columns (`build_batch`), so they need a schema only.

static ORGANISATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        ods_code: Utf8 required,
        name: Utf8 required,
        org_type: Utf8 required,
        feed_format: Utf8 required,
        pcn: Utf8 nullable,
        pcn_name: Utf8 nullable,
        sub_icb: Utf8 required,
        icb: Utf8 required,
    ]
});

static QUARANTINE: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        load_id: Utf8 required,
        source_org: Utf8 required,
        delivery: Utf8 required,
        file: Utf8 required,
        line: Int64 nullable,
        reason: Utf8 required,
        detail: Utf8 required,
        quarantined_at: Timestamp required,
    ]
});

static DELIVERIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        source_org: Utf8 required,
        delivery: Utf8 required,
        content_sha256: Utf8 required,
        period_start: Date32 nullable,
        period_end: Date32 nullable,
        load_id: Utf8 required,
        loaded_at: Timestamp required,
        status: Utf8 required,
        reason: Utf8 nullable,
        rows_read: Int64 required,
        patients_rows: Int64 required,
        clinical_events_rows: Int64 required,
        medications_rows: Int64 required,
        encounters_rows: Int64 required,
        quarantined_rows: Int64 required,
        optout_excluded_rows: Int64 required,
    ]
});

static REGISTERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        person_id: Int64 required,
        practice: Utf8 nullable,
        register: Utf8 required,
        latest_code_date: Date32 nullable,
        // What the rows were derived from: the input tables' versions, the reference date
        // and the register definitions. A reader uses the rows only when it matches what
        // it would derive itself; anything else (an opt-out applied since, a new binary's
        // definitions) is stale.
        derived_from: Utf8 required,
    ]
});

static SNAPSHOTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        snapshot: Int64 required,
        created_at: Timestamp required,
        operation: Utf8 required,
        load_id: Utf8 required,
        // JSON object: table name -> Delta version that this snapshot reads.
        table_versions: Utf8 required,
    ]
});

static OPTOUTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema![
        person_id: Int64 required,
        recorded_at: Timestamp required,
    ]
});

fn source_column(source_org: &str, rows: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows, rows * source_org.len());
    for _ in 0..rows {
        b.append_value(source_org);
    }
    Arc::new(b.finish())
}

/// Build a batch of `table` from whole columns (organisations, quarantine, deliveries, and
/// the personal tables' row buffers).
pub fn build_batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch, LoaderError> {
    Ok(RecordBatch::try_new(table.schema(), columns)?)
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
