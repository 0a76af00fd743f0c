//! One measure request through the request path: its SQL planned under the caller's
//! policy, released by disclosure control, audited with the measure's id and parameters,
//! and read back as cells, each with its released counts or why they were withheld.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use poplar_queries::measures::{ESP_AGE_BAND_COLUMN, Level, Measure, Request};

use crate::EngineError;
use crate::audit::AuditRequest;
use crate::disclosure::{SuppressedCell, Suppression};
use crate::gate::Gate;
use crate::identity::{Principal, Role};

/// Where a cell sits: its area (`None`: every area asked for together, the comparator)
/// and its category in each breakdown (`None`: that breakdown's total).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CellKey {
    pub area: Option<String>,
    pub categories: Vec<Option<String>>,
}

/// One released count, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Count {
    Released(f64),
    Withheld(Suppression),
}

impl Count {
    pub fn value(self) -> Option<f64> {
        match self {
            Count::Released(v) => Some(v),
            Count::Withheld(_) => None,
        }
    }
}

/// A cell's released numerator and denominator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Counts {
    pub numerator: Count,
    pub denominator: Count,
}

/// The cells of one answer: per cell, per ESP age band for a standardised rate (the band
/// is `None` otherwise).
pub(super) type Cells = HashMap<CellKey, BTreeMap<Option<String>, Counts>>;

/// The most answers [`Answers`] keeps before it starts again.
const MAX_KEPT_ANSWERS: usize = 1_024;

/// Released answers already given, by snapshot, role and query: the same question asked
/// again (a dashboard reopened, a second team member) is answered from here. It holds only
/// released cells, never a true count, and starts again with each new snapshot.
#[derive(Debug, Default)]
pub(super) struct Answers {
    snapshot: Option<i64>,
    kept: HashMap<(Role, String), Kept>,
}

#[derive(Debug, Clone)]
struct Kept {
    cells: Arc<Cells>,
    rows: u64,
    cells_suppressed: u64,
    groups_withheld: u64,
}

impl Answers {
    fn get(&mut self, snapshot: Option<i64>, key: &(Role, String)) -> Option<Kept> {
        if self.snapshot != snapshot {
            self.kept.clear();
            self.snapshot = snapshot;
        }
        self.kept.get(key).cloned()
    }

    fn keep(&mut self, snapshot: Option<i64>, key: (Role, String), kept: Kept) {
        if self.snapshot != snapshot {
            self.kept.clear();
            self.snapshot = snapshot;
        }
        if self.kept.len() >= MAX_KEPT_ANSWERS {
            self.kept.clear();
        }
        self.kept.insert(key, kept);
    }
}

/// Run `request` for `measure` as `principal` and read the released cells (or give the
/// same released cells again, audited, if this role asked it of this snapshot before).
pub(super) async fn run(
    gate: &Gate,
    answers: &Mutex<Answers>,
    principal: &Principal,
    measure: &Measure,
    request: &Request,
) -> Result<Arc<Cells>, EngineError> {
    let mut parameters = BTreeMap::from([
        ("level".to_string(), request.level.name().to_string()),
        ("period".to_string(), request.period.label()),
    ]);
    if let Some((level, code)) = &request.parent {
        parameters.insert("parent".into(), format!("{level} {code}"));
    }
    if !request.breakdown.is_empty() {
        let names: Vec<&str> = request.breakdown.iter().map(|d| d.name()).collect();
        parameters.insert("breakdown".into(), names.join(","));
    }
    let audit = AuditRequest::Measure {
        id: measure.id.clone(),
        parameters,
    };
    let pending = gate.request(principal, audit);
    let sql = match measure.sql(request) {
        Ok(sql) => sql,
        Err(e) => return Err(pending.fail(super::convert::bad_request(e)).await),
    };
    let snapshot = gate.snapshot().snapshot_id();
    let key = (principal.role, sql);
    let again = answers.lock().unwrap_or_else(|p| p.into_inner()).get(snapshot, &key);
    if let Some(kept) = again {
        pending
            .answered_again(kept.rows, kept.cells_suppressed, kept.groups_withheld)
            .await?;
        return Ok(kept.cells);
    }
    let answer = pending.run(&key.1, Vec::new()).await?;
    let (batches, release) = answer.collect_with_release().await?;
    // Every suppressed cell must be marked; an incomplete list would show a suppressed
    // cell as an empty one, so it is an error, not a guess.
    let suppressed = release.suppressed_cells().ok_or_else(|| {
        EngineError::Server("too many suppressed cells to mark them all; ask for fewer areas or breakdowns".into())
    })?;
    let cells = Arc::new(read(request, &batches, &suppressed)?);
    let kept = Kept {
        cells: cells.clone(),
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        cells_suppressed: suppressed.len() as u64,
        groups_withheld: release.groups_withheld.load(Ordering::Relaxed),
    };
    answers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keep(snapshot, key, kept);
    Ok(cells)
}

/// The key columns of the query's aggregate, in its GROUP BY order: the area (unless the
/// whole region is the one area), the breakdowns, the ESP band of a standardised rate.
fn key_columns(request: &Request, esp: bool) -> Vec<String> {
    let mut columns = Vec::new();
    if request.level != Level::Region {
        columns.push("area_code".to_string());
    }
    columns.extend(request.breakdown.iter().map(|d| d.name().to_string()));
    if esp {
        columns.push(ESP_AGE_BAND_COLUMN.to_string());
    }
    columns
}

fn read(request: &Request, batches: &[RecordBatch], suppressed: &[SuppressedCell]) -> Result<Cells, EngineError> {
    let mut reasons: HashMap<(usize, &[Option<String>]), Suppression> = HashMap::new();
    for cell in suppressed {
        reasons.insert((cell.value_column, cell.keys.as_slice()), cell.reason);
    }
    let mut cells = Cells::new();
    for batch in batches {
        let schema = batch.schema();
        let esp = schema.index_of(ESP_AGE_BAND_COLUMN).is_ok();
        let text = |name: &str| -> Result<arrow::array::StringArray, EngineError> {
            let i = schema
                .index_of(name)
                .map_err(|_| EngineError::Server(format!("a measure answer has no {name} column")))?;
            Ok(cast(batch.column(i), &DataType::Utf8)?.as_string::<i32>().clone())
        };
        let number = |name: &str| -> Result<arrow::array::Float64Array, EngineError> {
            let i = schema
                .index_of(name)
                .map_err(|_| EngineError::Server(format!("a measure answer has no {name} column")))?;
            Ok(cast(batch.column(i), &DataType::Float64)?
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone())
        };
        let keys: Vec<arrow::array::StringArray> = key_columns(request, esp)
            .iter()
            .map(|c| text(c))
            .collect::<Result<_, _>>()?;
        let (numerator, denominator) = (number("numerator")?, number("denominator")?);
        let breakdowns = request.breakdown.len();
        for r in 0..batch.num_rows() {
            let key: Vec<Option<String>> = keys
                .iter()
                .map(|k| (!k.is_null(r)).then(|| k.value(r).to_string()))
                .collect();
            let count = |column: &arrow::array::Float64Array, value_column: usize| -> Count {
                if !column.is_null(r) {
                    return Count::Released(column.value(r));
                }
                match reasons.get(&(value_column, key.as_slice())) {
                    Some(reason) => Count::Withheld(*reason),
                    // NULL and not suppressed: a SUM over no rows, which is nothing.
                    None => Count::Released(0.0),
                }
            };
            let counts = Counts {
                numerator: count(&numerator, 0),
                denominator: count(&denominator, 1),
            };
            let mut parts = key.clone().into_iter();
            let area = if request.level == Level::Region {
                // The region is the one area; its rows are all "the area".
                Some(poplar_queries::measures::REGION_CODE.to_string())
            } else {
                parts.next().flatten()
            };
            let categories: Vec<Option<String>> = parts.by_ref().take(breakdowns).collect();
            let band = if esp { parts.next().flatten() } else { None };
            cells
                .entry(CellKey { area, categories })
                .or_default()
                .insert(band, counts);
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use poplar_queries::measures::Dimension;
    use std::sync::Arc;

    #[test]
    fn suppressed_cells_are_marked_with_their_reason_and_empty_sums_are_zero() {
        let request = Request::new(Level::Pcn, "2023/24".parse().expect("period"))
            .by(Dimension::Sex)
            .with_totals();
        let schema = Arc::new(Schema::new(vec![
            Field::new("area_code", DataType::Utf8, true),
            Field::new("sex", DataType::Utf8, true),
            Field::new("numerator", DataType::Float64, true),
            Field::new("denominator", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("N1"), Some("N1"), Some("N1"), None])),
                Arc::new(StringArray::from(vec![Some("female"), Some("male"), None, None])),
                Arc::new(Float64Array::from(vec![None, None, None, Some(40.0)])),
                Arc::new(Int64Array::from(vec![Some(100), Some(120), Some(220), Some(900)])),
            ],
        )
        .expect("batch");
        let suppressed = vec![
            SuppressedCell {
                value_column: 0,
                keys: vec![Some("N1".into()), Some("female".into())],
                reason: Suppression::Primary,
            },
            SuppressedCell {
                value_column: 0,
                keys: vec![Some("N1".into()), Some("male".into())],
                reason: Suppression::Secondary,
            },
        ];
        let cells = read(&request, &[batch], &suppressed).expect("cells");
        let at = |area: Option<&str>, sex: Option<&str>| {
            cells[&CellKey {
                area: area.map(str::to_string),
                categories: vec![sex.map(str::to_string)],
            }][&None]
        };
        assert_eq!(
            at(Some("N1"), Some("female")).numerator,
            Count::Withheld(Suppression::Primary)
        );
        assert_eq!(
            at(Some("N1"), Some("male")).numerator,
            Count::Withheld(Suppression::Secondary)
        );
        assert_eq!(at(Some("N1"), Some("male")).denominator, Count::Released(120.0));
        assert_eq!(
            at(Some("N1"), None).numerator,
            Count::Released(0.0),
            "NULL, not suppressed: none"
        );
        assert_eq!(at(None, None).numerator, Count::Released(40.0));
    }
}
