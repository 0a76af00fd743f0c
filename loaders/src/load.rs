//! `poplar load`: discover deliveries, parse them in parallel, land them in groups, each
//! group made visible by one snapshot.
//!
//! Supersession, per table (documented in README.md):
//! - `patients`: a delivery is the source's full current list and replaces all its rows;
//! - `clinical_events`, `medications`, `encounters`: a delivery replaces the source's rows
//!   whose date falls in the period its manifest declares; rows outside it are kept;
//! - `quarantine`, `deliveries`: replaced for the same (source, delivery), so re-running a
//!   delivery never doubles its quarantine rows.

use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use deltalake::datafusion::prelude::{Expr, col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dates::date32;
use crate::deliveries::{Ledger, LedgerRow, Status, deliveries_batch};
use crate::delivery::{self, Delivery, RejectedDelivery};
use crate::landing::{self, Recovered, Snapshot, WriteMode};
use crate::lookup::PostcodeLookup;
use crate::optout::{self, OptOutList, OptOutReport};
use crate::parse::{ParseContext, ParsedDelivery, parse_delivery};
use crate::pseudonym::Pseudonymiser;
use crate::quarantine::{Quarantined, Reason, quarantine_batch};
use crate::registry::Registry;
use crate::store::Store;
use crate::tables::{Table, now_micros};
use crate::{LoaderError, organisations};

/// The usual bound on source rows parsed and committed together (`--group-rows`).
pub const DEFAULT_GROUP_ROWS: u64 = 4_000_000;

pub struct LoadOptions {
    pub registry: PathBuf,
    pub input: PathBuf,
    pub store: Store,
    pub postcodes: PathBuf,
    pub imd: PathBuf,
    pub optout: Option<PathBuf>,
    /// Upper bound on source rows parsed and committed together (memory vs. commits);
    /// [`DEFAULT_GROUP_ROWS`] unless the caller has a reason to choose.
    pub group_rows: u64,
    /// The largest data file read ([`crate::delivery::DEFAULT_MAX_FILE_BYTES`] unless the
    /// operator chooses): a larger one rejects its delivery as `file_too_large`.
    pub max_file_bytes: u64,
    pub progress: bool,
}

/// Counts for one source in this run.
#[derive(Debug, Default, Clone)]
pub struct SourceSummary {
    pub deliveries: usize,
    pub rows_read: u64,
    pub landed: BTreeMap<&'static str, u64>,
    pub quarantined: u64,
    pub optout_excluded: u64,
    /// What the source sent that Poplar did not understand, by kind
    /// (`unknown_code_system`, `unknown_encounter_class`, ...) and code, with counts: what
    /// a steward asks the source to fix.
    pub not_understood: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub load_id: String,
    pub landed_deliveries: usize,
    pub skipped_unchanged: usize,
    pub rejected: Vec<RejectedDelivery>,
    pub rows_landed: BTreeMap<&'static str, u64>,
    pub quarantined: BTreeMap<&'static str, u64>,
    pub optout_excluded: u64,
    pub unmatched_postcodes: u64,
    pub source_rows_read: u64,
    pub retroactive_optout: Option<OptOutReport>,
    pub recovered: Vec<Recovered>,
    pub snapshot: Option<i64>,
    pub per_source: BTreeMap<String, SourceSummary>,
    pub elapsed: Duration,
    /// Wall time spent parsing groups (summed over groups; it overlaps landing).
    pub parse_time: Duration,
    /// Wall time spent landing groups (summed over groups).
    pub land_time: Duration,
}

/// A delivery that parsed, ready to land.
struct Parsed {
    delivery: Delivery,
    batches: BTreeMap<Table, RecordBatch>,
    quarantined: Vec<Quarantined>,
    rows_read: u64,
    optout_excluded: u64,
    unmatched_postcodes: u64,
    not_understood: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

enum Outcome {
    Landed(Box<Parsed>),
    Rejected(RejectedDelivery),
}

pub async fn load(options: &LoadOptions, pseudonymiser: &Pseudonymiser) -> Result<LoadReport, LoaderError> {
    let started = Instant::now();
    let load_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut report = LoadReport {
        load_id: load_id.clone(),
        ..Default::default()
    };
    let store = &options.store;
    // Everything the load writes on a local store is private to the loader's user.
    crate::store::private_files();

    let registry = Registry::from_file(&options.registry)?;
    let lookup = PostcodeLookup::from_files(&options.postcodes, &options.imd)?;

    // Put every table back to the last snapshot before touching anything.
    let snapshot = landing::latest_snapshot(store).await?;
    report.recovered = landing::recover(store, snapshot.as_ref()).await?;
    for r in &report.recovered {
        tracing::warn!(table = r.table.name(), from = r.from_version, to = ?r.to_version, "rolled back commits of an unfinished load");
    }

    // Opt-outs: a new list is applied to landed data first, then excluded while parsing.
    if let Some(path) = &options.optout {
        let list = OptOutList::read(path, pseudonymiser)?;
        if !list.invalid_lines.is_empty() {
            tracing::warn!(
                entries = list.invalid_lines.len(),
                "opt-out list has entries that are not valid NHS numbers; they were skipped"
            );
        }
        report.retroactive_optout = Some(optout::apply(store, &list, &load_id).await?);
    }
    let mut snapshot = landing::latest_snapshot(store).await?;
    let optouts = optout::recorded(store, snapshot.as_ref()).await?;
    let ledger = Ledger::read(store, snapshot.as_ref()).await?;

    // Reference data first: the registry becomes `organisations` when it changed.
    if let Some(v) = organisations::refresh(store, snapshot.as_ref(), &registry).await? {
        let changed = BTreeMap::from([(Table::Organisations, v)]);
        snapshot = Some(landing::commit_snapshot(store, snapshot.as_ref(), &changed, "organisations", &load_id).await?);
    }

    let (found, mut rejected) = delivery::discover(&options.input)?;
    let mut to_load = Vec::new();
    for d in found {
        if ledger.is_unchanged_landing(d.source_org(), d.id(), &d.content_sha256) {
            report.skipped_unchanged += 1;
            continue;
        }
        if registry.source(d.source_org()).is_none() {
            rejected.push(d.reject(Quarantined::file(
                delivery::MANIFEST,
                Reason::UnknownSource,
                "the source is not in the registry",
            )));
            continue;
        }
        if ledger
            .latest_landed
            .get(d.source_org())
            .is_some_and(|latest| latest.as_str() > d.id())
        {
            rejected.push(d.reject(Quarantined::file(
                delivery::MANIFEST,
                Reason::StaleDelivery,
                "a newer delivery from this source has already landed",
            )));
            continue;
        }
        to_load.push(d);
    }

    let total_rows: u64 = to_load
        .iter()
        .flat_map(|d| d.manifest.files.iter().map(|f| f.rows))
        .sum();
    let bar = progress_bar(options.progress, total_rows);
    let shared = Arc::new(ParseShared {
        registry,
        pseudonymiser: pseudonymiser.clone(),
        lookup,
        optouts,
        max_file_bytes: options.max_file_bytes,
        bar: bar.clone(),
    });

    // Rejected deliveries are recorded (quarantine + ledger) in the first group.
    let mut pending_rejections: Vec<Outcome> = rejected.into_iter().map(Outcome::Rejected).collect();
    let groups = group_deliveries(to_load, options.group_rows);
    let group_count = groups.len().max(usize::from(!pending_rejections.is_empty()));
    let mut groups = groups.into_iter();
    // Parsing is CPU work on rayon's threads; landing is mostly one Parquet encoder per
    // table and waiting on the store. So the next group is parsed while this one lands:
    // at most two groups are in memory at once. Parsing never reads the store, and each
    // group is still made visible by its own snapshot, in order.
    let mut next = groups.next().map(|group| spawn_parse(&shared, group));
    for index in 0..group_count {
        let mut outcomes = match next.take() {
            Some(parsing) => {
                let (outcomes, parse_time) = join_parse(parsing).await?;
                report.parse_time += parse_time;
                outcomes
            }
            None => Vec::new(),
        };
        next = groups.next().map(|group| spawn_parse(&shared, group));
        outcomes.append(&mut pending_rejections);
        bar.set_message(format!("landing group {}/{}", index + 1, group_count));
        let landing_started = Instant::now();
        snapshot = Some(land_group(store, snapshot.as_ref(), &load_id, outcomes, &mut report).await?);
        report.land_time += landing_started.elapsed();
        tracing::debug!(
            group = index + 1,
            of = group_count,
            landing_seconds = landing_started.elapsed().as_secs_f64(),
            "group landed"
        );
    }
    bar.finish_and_clear();

    report.snapshot = snapshot.map(|s| s.id);
    report.elapsed = started.elapsed();
    Ok(report)
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} rows ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// What parsing a group needs, owned so the next group can be parsed on another thread
/// while this one lands.
struct ParseShared {
    registry: Registry,
    pseudonymiser: Pseudonymiser,
    lookup: PostcodeLookup,
    optouts: HashSet<i64>,
    max_file_bytes: u64,
    bar: ProgressBar,
}

type ParseTask = tokio::task::JoinHandle<(Vec<Outcome>, Duration)>;

/// Parse one group's deliveries in parallel (rayon), off the async runtime's threads.
fn spawn_parse(shared: &Arc<ParseShared>, group: Vec<Delivery>) -> ParseTask {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let outcomes = group
            .into_par_iter()
            .map(|d| {
                let outcome = parse_one(
                    d,
                    &shared.registry,
                    &shared.pseudonymiser,
                    &shared.lookup,
                    &shared.optouts,
                    shared.max_file_bytes,
                );
                shared.bar.inc(match &outcome {
                    Outcome::Landed(p) => p.delivery.manifest.files.iter().map(|f| f.rows).sum(),
                    Outcome::Rejected(_) => 0,
                });
                outcome
            })
            .collect();
        (outcomes, started.elapsed())
    })
}

/// The parsed group; a panic while parsing is re-raised here, as it was before parsing
/// moved off this thread.
async fn join_parse(task: ParseTask) -> Result<(Vec<Outcome>, Duration), LoaderError> {
    match task.await {
        Ok(parsed) => Ok(parsed),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(LoaderError::ParseCancelled),
    }
}

/// Split deliveries into commit groups of at most `group_rows` source rows, never two
/// deliveries of one source in a group (the later must supersede the earlier in order).
fn group_deliveries(deliveries: Vec<Delivery>, group_rows: u64) -> Vec<Vec<Delivery>> {
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    let mut current: Vec<Delivery> = Vec::new();
    let mut rows = 0u64;
    let mut sources: HashSet<String> = HashSet::new();
    for d in deliveries {
        let n: u64 = d.manifest.files.iter().map(|f| f.rows).sum();
        if !current.is_empty() && (rows + n > group_rows || sources.contains(d.source_org())) {
            groups.push(std::mem::take(&mut current));
            rows = 0;
            sources.clear();
        }
        rows += n;
        sources.insert(d.source_org().to_string());
        current.push(d);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn parse_one(
    d: Delivery,
    registry: &Registry,
    pseudonymiser: &Pseudonymiser,
    lookup: &PostcodeLookup,
    optouts: &HashSet<i64>,
    max_file_bytes: u64,
) -> Outcome {
    let Some(source) = registry.source(d.source_org()) else {
        return Outcome::Rejected(d.reject(Quarantined::file(
            delivery::MANIFEST,
            Reason::UnknownSource,
            "the source is not in the registry",
        )));
    };
    let ctx = ParseContext {
        pseudonymiser,
        lookup,
        optouts,
        source,
        max_file_bytes,
    };
    match parse_delivery(&d, &ctx).and_then(|parsed| into_batches(d.source_org(), parsed)) {
        Ok((batches, parsed)) => Outcome::Landed(Box::new(Parsed {
            batches,
            quarantined: parsed.quarantined,
            rows_read: parsed.rows_read,
            optout_excluded: parsed.optout_excluded,
            unmatched_postcodes: parsed.unmatched_postcodes,
            not_understood: parsed.not_understood,
            delivery: d,
        })),
        Err(problem) => Outcome::Rejected(d.reject(problem)),
    }
}

/// Build and sort this delivery's batches: patients by person, events by date then person
/// (so row-group date statistics prune periods).
fn into_batches(
    source_org: &str,
    mut parsed: ParsedDelivery,
) -> Result<(BTreeMap<Table, RecordBatch>, ParsedDelivery), Quarantined> {
    let build = |table: Table, result: Result<RecordBatch, LoaderError>| -> Result<RecordBatch, Quarantined> {
        // Arrow's messages are about schemas, but are not echoed all the same: a detail
        // names the table, never what it held.
        let batch =
            result.map_err(|_| Quarantined::file(table.name(), Reason::InvalidValue, "rows do not fit the table"))?;
        let sort_columns: &[&str] = match table {
            Table::Patients => &["person_id"],
            Table::ClinicalEvents => &["event_date", "person_id"],
            Table::Medications => &["issue_date", "person_id"],
            _ => &["start_date", "person_id"],
        };
        sort_batch(&batch, sort_columns)
            .map_err(|_| Quarantined::file(table.name(), Reason::InvalidValue, "rows could not be sorted"))
    };
    let mut batches = BTreeMap::new();
    batches.insert(
        Table::Patients,
        build(Table::Patients, parsed.patients.finish(source_org))?,
    );
    batches.insert(
        Table::ClinicalEvents,
        build(Table::ClinicalEvents, parsed.events.finish(source_org))?,
    );
    batches.insert(
        Table::Medications,
        build(Table::Medications, parsed.medications.finish(source_org))?,
    );
    batches.insert(
        Table::Encounters,
        build(Table::Encounters, parsed.encounters.finish(source_org))?,
    );
    Ok((batches, parsed))
}

fn sort_batch(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let sort: Vec<SortColumn> = columns
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .map(|values| SortColumn {
            values: values.clone(),
            options: None,
        })
        .collect();
    let indices = match primitive_sort_indices(&sort) {
        Some(indices) => indices,
        None => lexsort_to_indices(&sort, None)?,
    };
    take_record_batch(batch, &indices)
}

/// The sort order of rows keyed by up to two integer columns (a date and the person, or
/// the person alone) with no NULLs, from one sort of plain keys: Arrow's `lexsort` compares
/// through a dynamic comparator per pair, a visible share of a load's time. `None` for
/// anything else, which `lexsort` then sorts. Ties keep their order (a stable sort), so
/// the same delivery always lands in the same order.
fn primitive_sort_indices(sort: &[SortColumn]) -> Option<arrow::array::UInt32Array> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Date32Type, Int64Type};
    let key = |c: &SortColumn| -> Option<Vec<i64>> {
        if c.values.null_count() > 0 {
            return None;
        }
        match c.values.data_type() {
            DataType::Int64 => Some(c.values.as_primitive::<Int64Type>().values().to_vec()),
            DataType::Date32 => Some(
                c.values
                    .as_primitive::<Date32Type>()
                    .values()
                    .iter()
                    .map(|&d| i64::from(d))
                    .collect(),
            ),
            _ => None,
        }
    };
    let rows = u32::try_from(sort.first()?.values.len()).ok()?;
    let mut order: Vec<u32> = (0..rows).collect();
    match sort {
        [only] => {
            let a = key(only)?;
            order.sort_by_key(|&i| a[i as usize]);
        }
        [first, second] => {
            let (a, b) = (key(first)?, key(second)?);
            order.sort_by_key(|&i| (a[i as usize], b[i as usize]));
        }
        _ => return None,
    }
    Some(arrow::array::UInt32Array::from(order))
}

fn date_lit(d: NaiveDate) -> Expr {
    lit(ScalarValue::Date32(Some(date32(d))))
}

fn any_of(terms: Vec<Expr>) -> Option<Expr> {
    terms.into_iter().reduce(Expr::or)
}

/// Commit one group: personal tables, quarantine, ledger, then the snapshot.
async fn land_group(
    store: &Store,
    snapshot: Option<&Snapshot>,
    load_id: &str,
    outcomes: Vec<Outcome>,
    report: &mut LoadReport,
) -> Result<Snapshot, LoaderError> {
    let at = now_micros();
    let mut changed: BTreeMap<Table, u64> = BTreeMap::new();
    let mut per_table: BTreeMap<Table, (Vec<RecordBatch>, Vec<Expr>)> = BTreeMap::new();
    let mut quarantine_batches = Vec::new();
    let mut delivery_keys = Vec::new();
    let mut ledger_rows = Vec::new();

    for outcome in outcomes {
        match outcome {
            Outcome::Landed(p) => {
                let Parsed {
                    delivery,
                    batches,
                    quarantined,
                    rows_read,
                    optout_excluded,
                    unmatched_postcodes,
                    not_understood,
                } = *p;
                let m = delivery.manifest;
                let landed: BTreeMap<Table, u64> = batches.iter().map(|(t, b)| (*t, b.num_rows() as u64)).collect();
                let source = col("source_org").eq(lit(m.source.as_str()));
                for (table, batch) in batches {
                    let predicate = match table.period_column() {
                        Some(c) => source
                            .clone()
                            .and(col(c).gt_eq(date_lit(m.period_start)))
                            .and(col(c).lt_eq(date_lit(m.period_end))),
                        None => source.clone(),
                    };
                    let entry = per_table.entry(table).or_default();
                    if batch.num_rows() > 0 {
                        entry.0.push(batch);
                    }
                    entry.1.push(predicate);
                }
                quarantine_batches.push(quarantine_batch(load_id, &m.source, &m.delivery, &quarantined, at)?);
                report.landed_deliveries += 1;
                report.source_rows_read += rows_read;
                report.optout_excluded += optout_excluded;
                report.unmatched_postcodes += unmatched_postcodes;
                let summary = report.per_source.entry(m.source.clone()).or_default();
                summary.deliveries += 1;
                summary.rows_read += rows_read;
                summary.quarantined += quarantined.len() as u64;
                summary.optout_excluded += optout_excluded;
                for (kind, codes) in not_understood {
                    let entry = summary.not_understood.entry(kind).or_default();
                    for (code, n) in codes {
                        *entry.entry(code).or_default() += n;
                    }
                }
                for (t, n) in &landed {
                    *report.rows_landed.entry(t.name()).or_default() += n;
                    *summary.landed.entry(t.name()).or_default() += n;
                }
                for q in &quarantined {
                    *report.quarantined.entry(q.reason.code()).or_default() += 1;
                }
                delivery_keys.push((m.source.clone(), m.delivery.clone()));
                ledger_rows.push(LedgerRow {
                    source_org: m.source,
                    delivery: m.delivery,
                    content_sha256: delivery.content_sha256,
                    period: Some((m.period_start, m.period_end)),
                    status: Status::Landed,
                    reason: None,
                    rows_read,
                    landed,
                    quarantined: quarantined.len() as u64,
                    optout_excluded,
                });
            }
            Outcome::Rejected(r) => {
                quarantine_batches.push(quarantine_batch(
                    load_id,
                    &r.source_org,
                    &r.delivery,
                    std::slice::from_ref(&r.problem),
                    at,
                )?);
                delivery_keys.push((r.source_org.clone(), r.delivery.clone()));
                ledger_rows.push(LedgerRow {
                    source_org: r.source_org.clone(),
                    delivery: r.delivery.clone(),
                    content_sha256: r.content_sha256.clone(),
                    period: None,
                    status: Status::Rejected,
                    reason: Some(r.problem.reason.code().to_string()),
                    rows_read: 0,
                    landed: BTreeMap::new(),
                    quarantined: 1,
                    optout_excluded: 0,
                });
                *report.quarantined.entry(r.problem.reason.code()).or_default() += 1;
                report.rejected.push(r);
            }
        }
    }

    for (table, (batches, predicates)) in per_table {
        let Some(predicate) = any_of(predicates) else { continue };
        let batches = if batches.len() > 1 {
            vec![concat_batches(&table.schema(), &batches)?]
        } else {
            batches
        };
        let v = landing::write(store, table, batches, WriteMode::Replace(predicate)).await?;
        changed.insert(table, v);
    }
    let by_delivery = any_of(
        delivery_keys
            .iter()
            .map(|(s, d)| {
                col("source_org")
                    .eq(lit(s.clone()))
                    .and(col("delivery").eq(lit(d.clone())))
            })
            .collect(),
    );
    if let Some(predicate) = by_delivery {
        let batches = vec![concat_batches(&Table::Quarantine.schema(), &quarantine_batches)?];
        let v = landing::write(store, Table::Quarantine, batches, WriteMode::Replace(predicate.clone())).await?;
        changed.insert(Table::Quarantine, v);
        let v = landing::write(
            store,
            Table::Deliveries,
            vec![deliveries_batch(load_id, at, &ledger_rows)?],
            WriteMode::Replace(predicate),
        )
        .await?;
        changed.insert(Table::Deliveries, v);
    }
    landing::commit_snapshot(store, snapshot, &changed, "load", load_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn events(dates: Vec<Option<i32>>, people: Vec<i64>) -> RecordBatch {
        let n = people.len();
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_date", DataType::Date32, true),
            Field::new("person_id", DataType::Int64, false),
            Field::new("code", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from(dates)),
                Arc::new(Int64Array::from(people)),
                Arc::new(StringArray::from((0..n).map(|i| format!("c{i}")).collect::<Vec<_>>())),
            ],
        )
        .expect("batch")
    }

    fn lexsorted(batch: &RecordBatch, columns: &[&str]) -> RecordBatch {
        let sort: Vec<SortColumn> = columns
            .iter()
            .map(|c| SortColumn {
                values: batch.column_by_name(c).expect("column").clone(),
                options: None,
            })
            .collect();
        take_record_batch(batch, &lexsort_to_indices(&sort, None).expect("sort")).expect("take")
    }

    #[test]
    fn rows_sort_by_date_then_person_as_lexsort_sorts_them() {
        // Distinct keys (so any correct sort gives one order), negative values included.
        let batch = events(
            vec![Some(3), Some(-2), Some(3), Some(0), Some(-2), Some(19_000)],
            vec![7, 9, -4, 1, 2, 5],
        );
        let sorted = sort_batch(&batch, &["event_date", "person_id"]).expect("sort");
        assert_eq!(sorted, lexsorted(&batch, &["event_date", "person_id"]));
        let by_person = sort_batch(&batch, &["person_id"]).expect("sort");
        assert_eq!(by_person, lexsorted(&batch, &["person_id"]));
        // Ties keep their order: rows 0 and 1 share both keys.
        let ties = events(vec![Some(1), Some(1), Some(0)], vec![4, 4, 4]);
        let sorted = sort_batch(&ties, &["event_date", "person_id"]).expect("sort");
        let codes = sorted.column(2).as_any().downcast_ref::<StringArray>().expect("codes");
        assert_eq!(codes.iter().flatten().collect::<Vec<_>>(), vec!["c2", "c0", "c1"]);
    }

    #[test]
    fn a_null_key_is_left_to_lexsort() {
        let batch = events(vec![Some(2), None, Some(1)], vec![1, 2, 3]);
        let sorted = sort_batch(&batch, &["event_date", "person_id"]).expect("sort");
        assert_eq!(sorted, lexsorted(&batch, &["event_date", "person_id"]));
    }
}
