//! Registers derived once per snapshot and committed beside it, so that opening a snapshot
//! costs the same however much data it holds. Computing every register's members scans
//! all clinical events (seconds at a million patients); doing it in each server, at every
//! start and every new snapshot, made start-up grow with the data.
//!
//! The writer (a load, an opt-out) calls [`crate::catalog::derive_registers`] after it
//! commits: the members are computed by the very code a server would run, written to the
//! `_registers` Delta table and committed in a snapshot of their own. Each
//! row carries what it was derived from ([`derivation_key`]: the input tables' versions,
//! the reference date and a digest of the register definitions compiled into the binary).
//! A server uses the rows only when that key is the one it would derive itself; otherwise
//! (a snapshot between a load and its derivation, an opt-out since, a binary with other
//! definitions) it computes the members in memory as before. A stale derivation can
//! therefore cost time but never change an answer.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use poplar_loaders::landing::Snapshot;
use poplar_loaders::{Store, Table};
use sha2::{Digest, Sha256};

use crate::EngineError;
use crate::files::FilesTable;

/// The tables register membership is computed from (the reference date is in the key).
const INPUTS: [Table; 2] = [Table::Patients, Table::ClinicalEvents];

/// The column that says what a row was derived from.
const DERIVED_FROM: &str = "derived_from";

/// A digest of everything compiled in that decides who is on a register: the SQL of the
/// registers and the registered population, every codelist's codes, and the version of
/// Poplar (whose functions, such as `age_on`, the SQL calls).
static DEFINITIONS: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    hash.update(poplar_queries::registers::latest_codes_sql("R"));
    hash.update(poplar_queries::registers::membership_sql("L", "R"));
    hash.update(poplar_queries::registers::registered_population_sql("R"));
    // A codelist that does not parse fails the server's own start-up; here it only
    // changes the digest, so nothing derived is trusted.
    match poplar_queries::all_codelists() {
        Ok(lists) => {
            for list in lists {
                hash.update(list.cluster);
                for code in list.codes {
                    hash.update(code.id.to_le_bytes());
                }
            }
        }
        Err(e) => hash.update(e.to_string()),
    }
    hex::encode(&hash.finalize()[..8])
});

/// What rows derived for `snapshot` on `reference` say they were derived from.
pub fn derivation_key(snapshot: &Snapshot, reference: NaiveDate) -> String {
    let versions: Vec<String> = INPUTS
        .iter()
        .map(|t| match snapshot.version(*t) {
            Some(v) => format!("{}={v}", t.name()),
            None => format!("{}=none", t.name()),
        })
        .collect();
    format!(
        "{} reference={reference} definitions={}",
        versions.join(" "),
        *DEFINITIONS
    )
}

/// `register_membership` for `snapshot` from its derived rows, if it has rows derived
/// from exactly `key`; `None` if it has none or they are stale. In memory for a single
/// node (split over `partitions`, its key declared once checked: `membership`); for a
/// cluster's front end (`as_files`), the `_registers` files themselves, so the
/// executors read them from the store like any table (checked current here all the same).
pub(crate) async fn read(
    store: &Store,
    snapshot: &Snapshot,
    key: &str,
    config: DeltaScanConfig,
    as_files: bool,
    partitions: usize,
) -> Result<Option<Arc<dyn TableProvider>>, EngineError> {
    let Some(table) = snapshot.open(store, Table::Registers).await? else {
        return Ok(None);
    };
    let ctx = SessionContext::new();
    let scan = DeltaScanNext::new(table.snapshot()?.snapshot().clone(), config)?;
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("derived", Arc::new(scan))?;
    let batches = ctx
        .sql(&format!(
            "SELECT person_id, practice, register, latest_code_date, {DERIVED_FROM} FROM derived"
        ))
        .await?
        .collect()
        .await?;
    // A column of another type than the one written (a table not written by Poplar) is
    // as stale as a wrong key.
    let current = batches.iter().all(|b| {
        b.column(4)
            .as_string_opt::<i32>()
            .is_some_and(|from| from.null_count() == 0 && from.iter().all(|v| v == Some(key)))
    });
    if !current {
        return Ok(None);
    }
    let Some(first) = batches.first() else {
        // No rows at all: nothing says what they were derived from, so compute instead
        // (cheap when no one is on a register).
        return Ok(None);
    };
    let schema = Arc::new(first.schema().project(&[0, 1, 2, 3])?);
    if as_files {
        let files = FilesTable::from_delta(store, Table::Registers.name(), &table, schema)?;
        return Ok(Some(Arc::new(files)));
    }
    let membership = batches
        .iter()
        .map(|b| b.project(&[0, 1, 2, 3]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(crate::membership::in_memory(schema, membership, partitions)?))
}

/// `members` (batches of `register_membership`) as rows of `_registers`, each saying it was
/// derived from `key`.
pub(crate) fn rows(members: Vec<RecordBatch>, key: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let schema: SchemaRef = Table::Registers.schema();
    members
        .into_iter()
        .map(|batch| {
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.push(Arc::new(StringArray::from(vec![key; batch.num_rows()])));
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn snapshot(patients: u64, events: u64) -> Snapshot {
        Snapshot {
            id: 3,
            versions: BTreeMap::from([
                (Table::Patients, patients),
                (Table::ClinicalEvents, events),
                (Table::Deliveries, 9),
            ]),
        }
    }

    #[test]
    fn the_key_changes_with_every_input_and_the_reference_date() {
        let day = NaiveDate::from_ymd_opt(2026, 9, 30).expect("date");
        let key = derivation_key(&snapshot(1, 2), day);
        assert!(
            key.starts_with("patients=1 clinical_events=2 reference=2026-09-30 definitions="),
            "{key}"
        );
        assert_ne!(
            key,
            derivation_key(&snapshot(2, 2), day),
            "an opt-out rewrites patients"
        );
        assert_ne!(key, derivation_key(&snapshot(1, 3), day));
        assert_ne!(key, derivation_key(&snapshot(1, 2), day.succ_opt().expect("date")));
        // The ledger alone moving (a delivery that landed nothing) changes no member.
        let mut ledger_only = snapshot(1, 2);
        ledger_only.versions.insert(Table::Deliveries, 10);
        assert_eq!(key, derivation_key(&ledger_only, day));
    }
}
