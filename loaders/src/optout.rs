//! National data opt-out. People on the list are excluded at load; `apply` removes rows
//! already landed for people newly on the list, rewriting the affected files in one Delta
//! commit per table and making the result visible in one snapshot. Only counts are kept.
//!
//! To keep excluding them in later loads without being handed the list again, the loader
//! keeps their pseudonyms (never their NHS numbers) in the private `_optouts` table, which
//! the engine never serves.

use arrow::array::Int64Array;
use deltalake::datafusion::prelude::{Expr, SessionContext, col, lit};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::LoaderError;
use crate::landing::{self, Snapshot, WriteMode};
use crate::nhs_number::NhsNumber;
use crate::pseudonym::Pseudonymiser;
use crate::store::Store;
use crate::tables::{Table, build_batch, now_micros, timestamp_array};

/// An opt-out list read from a file of NHS numbers, one per line.
#[derive(Debug, Default)]
pub struct OptOutList {
    pub person_ids: HashSet<i64>,
    /// Line numbers of entries that are not valid NHS numbers (their content is not kept).
    pub invalid_lines: Vec<usize>,
}

impl OptOutList {
    pub fn read(path: &Path, pseudonymiser: &Pseudonymiser) -> Result<Self, LoaderError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoaderError::io(path, e))?;
        Ok(Self::parse(&text, pseudonymiser))
    }

    /// A list from the text of one (NHS numbers one a line; a header `nhs_number` line,
    /// blank lines and anything after a comma are ignored). Only pseudonyms are kept.
    pub fn parse(text: &str, pseudonymiser: &Pseudonymiser) -> Self {
        let mut list = OptOutList::default();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split(',').next().unwrap_or_default().trim();
            // Allow a header line and blank lines.
            if entry.is_empty() || (i == 0 && entry.eq_ignore_ascii_case("nhs_number")) {
                continue;
            }
            match NhsNumber::parse(entry) {
                Ok(n) => {
                    list.person_ids.insert(pseudonymiser.person_id(&n));
                }
                Err(_) => list.invalid_lines.push(i + 1),
            }
        }
        list
    }
}

/// Pseudonyms already recorded as opted out, as of the snapshot.
pub async fn recorded(store: &Store, snapshot: Option<&Snapshot>) -> Result<HashSet<i64>, LoaderError> {
    let Some(snapshot) = snapshot else {
        return Ok(HashSet::new());
    };
    let Some(table) = snapshot.open(store, Table::OptOuts).await? else {
        return Ok(HashSet::new());
    };
    let batches = landing::query(&table, "SELECT person_id FROM t").await?;
    Ok(landing::int64_values(&batches, 0).into_iter().collect())
}

/// What a retroactive opt-out removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OptOutReport {
    pub newly_opted_out: usize,
    pub already_recorded: usize,
    pub invalid_entries: usize,
    pub rows_removed: BTreeMap<&'static str, u64>,
    pub snapshot: Option<i64>,
}

fn person_predicate(ids: &HashSet<i64>) -> Expr {
    let mut sorted: Vec<i64> = ids.iter().copied().collect();
    sorted.sort_unstable();
    col("person_id").in_list(sorted.into_iter().map(lit).collect(), false)
}

async fn count_matching(table: &deltalake::DeltaTable, predicate: Expr) -> Result<u64, LoaderError> {
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| LoaderError::delta("opt-out", e))?;
    let provider = table.table_provider().await?;
    let n = ctx.read_table(provider)?.filter(predicate)?.count().await?;
    Ok(n as u64)
}

/// Remove every landed row of people on `list` who are not yet recorded as opted out, and
/// record them. Must run with no other writer (the loader calls it between deliveries).
pub async fn apply(store: &Store, list: &OptOutList, load_id: &str) -> Result<OptOutReport, LoaderError> {
    let snapshot = landing::latest_snapshot(store).await?;
    landing::recover(store, snapshot.as_ref()).await?;
    let already = recorded(store, snapshot.as_ref()).await?;
    let new: HashSet<i64> = list.person_ids.difference(&already).copied().collect();
    let mut report = OptOutReport {
        newly_opted_out: new.len(),
        already_recorded: list.person_ids.len() - new.len(),
        invalid_entries: list.invalid_lines.len(),
        ..Default::default()
    };
    if new.is_empty() {
        report.snapshot = snapshot.as_ref().map(|s| s.id);
        return Ok(report);
    }
    let mut changed = BTreeMap::new();
    for table in Table::PERSONAL {
        let Some(current) = snapshot.as_ref().map(|s| s.open(store, table)) else {
            break;
        };
        let Some(current) = current.await? else { continue };
        let matching = count_matching(&current, person_predicate(&new)).await?;
        report.rows_removed.insert(table.name(), matching);
        if matching > 0
            && let Some(v) = landing::delete(store, table, person_predicate(&new)).await?
        {
            changed.insert(table, v);
        }
    }
    let at = now_micros();
    let mut ids: Vec<i64> = new.iter().copied().collect();
    ids.sort_unstable();
    let batch = build_batch(
        Table::OptOuts,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            timestamp_array(ids.iter().map(|_| at)),
        ],
    )?;
    let v = landing::write(store, Table::OptOuts, vec![batch], WriteMode::Append).await?;
    changed.insert(Table::OptOuts, v);
    let committed = landing::commit_snapshot(store, snapshot.as_ref(), &changed, "optout", load_id).await?;
    report.snapshot = Some(committed.id);
    Ok(report)
}
