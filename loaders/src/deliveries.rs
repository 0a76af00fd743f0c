//! The `deliveries` table, Poplar's delivery ledger: one row per (source, delivery) with
//! its content hash, outcome and row counts. The loader reads it (as of the latest
//! snapshot) to skip deliveries already landed and to refuse stale ones.

use arrow::array::{ArrayRef, Date32Builder, Int64Builder, StringBuilder};
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::LoaderError;
use crate::dates::date32;
use crate::landing::{Snapshot, query, string_values};
use crate::store::Store;
use crate::tables::{Table, build_batch, timestamp_array};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Landed,
    Rejected,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Landed => "landed",
            Status::Rejected => "rejected",
        }
    }
}

/// What the ledger knows of a delivery.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub content_sha256: String,
    pub status: String,
}

/// Ledger state as of a snapshot.
#[derive(Debug, Default)]
pub struct Ledger {
    pub entries: HashMap<(String, String), LedgerEntry>,
    /// Per source, the newest delivery id that landed.
    pub latest_landed: HashMap<String, String>,
}

impl Ledger {
    pub async fn read(store: &Store, snapshot: Option<&Snapshot>) -> Result<Self, LoaderError> {
        let mut ledger = Ledger::default();
        let Some(snapshot) = snapshot else { return Ok(ledger) };
        let Some(table) = snapshot.open(store, Table::Deliveries).await? else {
            return Ok(ledger);
        };
        let batches = query(&table, "SELECT source_org, delivery, content_sha256, status FROM t").await?;
        let columns = (0..4)
            .map(|i| string_values(&batches, i))
            .collect::<Result<Vec<_>, _>>()?;
        // Row i of the result is (columns[0][i], ..., columns[3][i]).
        #[allow(clippy::needless_range_loop)] // `i` indexes four columns, not one
        for i in 0..columns[0].len() {
            let text = |c: usize| columns[c][i].clone().unwrap_or_default();
            let key = (text(0), text(1));
            let status = text(3);
            if status == Status::Landed.as_str() {
                let latest = ledger.latest_landed.entry(key.0.clone()).or_default();
                if *latest < key.1 {
                    *latest = key.1.clone();
                }
            }
            ledger.entries.insert(
                key,
                LedgerEntry {
                    content_sha256: text(2),
                    status,
                },
            );
        }
        Ok(ledger)
    }

    pub fn is_unchanged_landing(&self, source: &str, delivery: &str, sha: &str) -> bool {
        self.entries
            .get(&(source.to_string(), delivery.to_string()))
            .is_some_and(|e| e.content_sha256 == sha && e.status == Status::Landed.as_str())
    }
}

/// One ledger row to write.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub source_org: String,
    pub delivery: String,
    pub content_sha256: String,
    pub period: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    pub status: Status,
    pub reason: Option<String>,
    pub rows_read: u64,
    pub landed: BTreeMap<Table, u64>,
    pub quarantined: u64,
    pub optout_excluded: u64,
}

pub fn deliveries_batch(load_id: &str, at_micros: i64, rows: &[LedgerRow]) -> Result<RecordBatch, LoaderError> {
    let n = rows.len();
    let mut source = StringBuilder::new();
    let mut delivery = StringBuilder::new();
    let mut sha = StringBuilder::new();
    let mut start = Date32Builder::new();
    let mut end = Date32Builder::new();
    let mut load = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut counts: Vec<Int64Builder> = (0..7).map(|_| Int64Builder::with_capacity(n)).collect();
    for r in rows {
        source.append_value(&r.source_org);
        delivery.append_value(&r.delivery);
        sha.append_value(&r.content_sha256);
        start.append_option(r.period.map(|p| date32(p.0)));
        end.append_option(r.period.map(|p| date32(p.1)));
        load.append_value(load_id);
        status.append_value(r.status.as_str());
        reason.append_option(r.reason.as_deref());
        let landed = |t: Table| r.landed.get(&t).copied().unwrap_or(0) as i64;
        let values = [
            r.rows_read as i64,
            landed(Table::Patients),
            landed(Table::ClinicalEvents),
            landed(Table::Medications),
            landed(Table::Encounters),
            r.quarantined as i64,
            r.optout_excluded as i64,
        ];
        for (b, v) in counts.iter_mut().zip(values) {
            b.append_value(v);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(source.finish()),
        Arc::new(delivery.finish()),
        Arc::new(sha.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(load.finish()),
        timestamp_array(std::iter::repeat_n(at_micros, n)),
        Arc::new(status.finish()),
        Arc::new(reason.finish()),
    ];
    columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    build_batch(Table::Deliveries, columns)
}
