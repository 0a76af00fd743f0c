//! Making one answer safe: groups below k withheld, small counts suppressed, counts and
//! sums noised and rounded, then secondary suppression where grouping sets put totals and
//! their breakdowns side by side.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::secondary::secondary;
use crate::disclosure::noise::{ColumnNoise, NoiseScale};

/// Ends each key value in a group key's bytes (ASCII unit separator), so ("ab", "c") and
/// ("a", "bc") seed different noise.
const KEY_SEPARATOR: u8 = 0x1f;
use super::{Cell, ProtectSpec, SuppressedCell, Suppression};

/// `array` cast to a primitive type `T` (counts to Int64, values to Float64).
fn cast_to<T: arrow::datatypes::ArrowPrimitiveType>(
    array: &ArrayRef,
) -> Result<arrow::array::PrimitiveArray<T>, arrow::error::ArrowError> {
    let cast = cast(array, &T::DATA_TYPE)?;
    Ok(cast.as_primitive::<T>().clone())
}

fn as_f64(array: &ArrayRef) -> Result<Float64Array, arrow::error::ArrowError> {
    cast_to::<arrow::datatypes::Float64Type>(array)
}

fn as_i64(array: &ArrayRef) -> Result<Int64Array, arrow::error::ArrowError> {
    cast_to::<arrow::datatypes::Int64Type>(array)
}

/// Which grouping-set columns each row aggregates over (bit set = column rolled up), from
/// DataFusion's `__grouping_id` (first key is the most significant of the low bits).
fn rolled_up(ids: &Int64Array, keys: usize) -> Vec<u64> {
    let mask = if keys >= 64 { u64::MAX } else { (1u64 << keys) - 1 };
    (0..ids.len()).map(|r| (ids.value(r) as u64) & mask).collect()
}

pub(super) fn release(
    spec: &ProtectSpec,
    schema: &SchemaRef,
    input: &RecordBatch,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let policy = &spec.policy;
    let rows = input.num_rows();
    let (people, digest) = crate::disclosure::people::read(input.column(spec.people))
        .map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()))?;
    let small: Vec<bool> = (0..rows)
        .map(|r| people.is_null(r) || (people.value(r) as u64) < policy.min_people)
        .collect();
    let key_columns: Vec<usize> = spec
        .cells
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| matches!(c, Cell::Key { .. }))
        .map(|(i, _)| i)
        .collect();
    let fine_keys: Vec<bool> = key_columns
        .iter()
        .map(|&i| spec.cells[i].0 == Cell::Key { public: false })
        .collect();
    // Each row's group key as text, per key column (secondary suppression matches
    // families on them) and joined (it seeds the question layer of the noise).
    let keys = group_keys_by_column(input, &key_columns)?;
    let group_keys: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| k.iter().flat_map(|v| v.bytes().chain([KEY_SEPARATOR])).collect())
        .collect();
    // A noised role's answer is noised at the policy's scale or not given at all: a scale
    // below the floor is an error here, never a silent zero.
    let scale = if spec.noised {
        Some(NoiseScale::new(policy.noise_sd).map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()))?)
    } else {
        None
    };
    // Each column's noise state absorbs the key, aggregate and question once; a group's draw
    // then hashes only its own people and key (the same draws as `NoiseKey::sticky`).
    let column_noise =
        |text: &str| scale.map(|scale| policy.noise_key.for_column(scale, text, spec.question.as_bytes()));
    let noise = |column: &Option<ColumnNoise>, r: usize| match column {
        Some(column) => column.draw(digest.value(r), &group_keys[r]),
        None => 0.0,
    };

    // Primary suppression and release, column by column. `true_values` keeps the true
    // counts/sums (never output) to choose secondary suppressions by size.
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.cells.len());
    let mut suppressed: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
    let mut true_values: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (i, (cell, text)) in spec.cells.iter().enumerate() {
        let column = input.column(i);
        let out_type = schema.field(i).data_type().clone();
        let noised = match cell {
            Cell::Key { .. } | Cell::GroupingId => None,
            _ => column_noise(text),
        };
        let values: Vec<Option<f64>> = match cell {
            Cell::Key { .. } | Cell::GroupingId => {
                columns.push(column.clone());
                continue;
            }
            Cell::Count { conditional, of_people } => {
                let conditional = *conditional;
                let counts = if *of_people { people.clone() } else { as_i64(column)? };
                let mut hidden = vec![false; rows];
                let out = (0..rows)
                    .map(|r| {
                        let v = if counts.is_null(r) { 0 } else { counts.value(r) } as u64;
                        if v == 0 && !small[r] && !conditional {
                            return Some(0.0);
                        }
                        if small[r] || v <= policy.suppress_up_to {
                            hidden[r] = true;
                            return None;
                        }
                        let noisy = (v as f64 + noise(&noised, r)).max(0.0);
                        // Never publish a released count that looks like a suppressed one.
                        let floor = policy.round((policy.suppress_up_to + 1) as f64);
                        Some(policy.round(noisy).max(floor))
                    })
                    .collect();
                true_values.insert(
                    i,
                    (0..rows)
                        .map(|r| if counts.is_null(r) { 0.0 } else { counts.value(r) as f64 })
                        .collect(),
                );
                suppressed.insert(i, hidden);
                out
            }
            Cell::Sum { scale } | Cell::Mean { scale } => {
                let v = as_f64(column)?;
                let s = as_f64(input.column(*scale))?;
                let mut hidden = vec![false; rows];
                let is_sum = matches!(cell, Cell::Sum { .. });
                let out = (0..rows)
                    .map(|r| {
                        if v.is_null(r) {
                            return None;
                        }
                        if small[r] {
                            hidden[r] = true;
                            return None;
                        }
                        let magnitude = if s.is_null(r) { 0.0 } else { s.value(r) };
                        // A sum as small as a suppressed count may be one (a sum of 0/1
                        // flags); and a zero sum says "nobody matched".
                        if is_sum && v.value(r).abs() <= policy.suppress_up_to as f64 {
                            hidden[r] = true;
                            return None;
                        }
                        if is_sum {
                            Some(policy.round(v.value(r) + noise(&noised, r) * magnitude))
                        } else {
                            Some(v.value(r) + noise(&noised, r) * magnitude / people.value(r).max(1) as f64)
                        }
                    })
                    .collect();
                if is_sum {
                    true_values.insert(
                        i,
                        (0..rows)
                            .map(|r| if v.is_null(r) { 0.0 } else { v.value(r).abs() })
                            .collect(),
                    );
                }
                suppressed.insert(i, hidden);
                out
            }
            Cell::Median => {
                let v = as_f64(column)?;
                let mut hidden = vec![false; rows];
                let out = (0..rows)
                    .map(|r| {
                        if small[r] && !v.is_null(r) {
                            hidden[r] = true;
                            return None;
                        }
                        // A median is one or two people's values: never released exactly.
                        (!v.is_null(r)).then(|| coarse_median(v.value(r)))
                    })
                    .collect();
                suppressed.insert(i, hidden);
                out
            }
        };
        columns.push(cast(&(Arc::new(Float64Array::from(values)) as ArrayRef), &out_type)?);
    }

    // Secondary suppression across grouping sets: additive columns only. What primary
    // suppression hid is kept apart, to tell the two reasons apart in the list.
    let primary = suppressed.clone();
    let grouping = spec.cells.iter().position(|(c, _)| *c == Cell::GroupingId);
    let masks = match grouping {
        Some(g) => rolled_up(&as_i64(input.column(g))?, key_columns.len()),
        None => vec![0; rows],
    };
    if grouping.is_some() {
        for (col, hidden) in suppressed.iter_mut() {
            if let Some(truth) = true_values.get(col) {
                secondary(&masks, &keys, truth, hidden);
            }
        }
        for (col, hidden) in &suppressed {
            let nulls = BooleanArray::from(hidden.iter().map(|h| !h).collect::<Vec<_>>());
            let kept = arrow::compute::nullif(&columns[*col], &arrow::compute::not(&nulls)?)?;
            columns[*col] = kept;
        }
    }

    list_suppressed(spec, &masks, &keys, &primary, &suppressed);
    let cells_suppressed: u64 = suppressed
        .values()
        .map(|h| h.iter().filter(|x| **x).count() as u64)
        .sum();
    spec.stats
        .cells_suppressed
        .fetch_add(cells_suppressed, Ordering::Relaxed);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    // A small group is withheld (its key not shown) when the deployment or a DISTINCT says
    // so, or when a key it shows (not rolled up) is not from a public domain.
    let withheld: Vec<bool> = (0..rows)
        .map(|r| {
            small[r]
                && (spec.drop_small_groups
                    || fine_keys.iter().enumerate().any(|(c, fine)| {
                        let bit = 1u64.checked_shl((fine_keys.len() - 1 - c) as u32).unwrap_or(0);
                        *fine && masks[r] & bit == 0
                    }))
        })
        .collect();
    let count = withheld.iter().filter(|w| **w).count();
    if count > 0 {
        spec.stats.groups_withheld.fetch_add(count as u64, Ordering::Relaxed);
        let keep = BooleanArray::from(withheld.iter().map(|w| !w).collect::<Vec<_>>());
        return filter_record_batch(&batch, &keep);
    }
    Ok(batch)
}

/// Significant figures a released median keeps.
const MEDIAN_FIGURES: i32 = 2;

/// A median rounded to [`MEDIAN_FIGURES`] significant figures: within 5% (half a unit of
/// the second figure, relative to the first) of the true median, so the value shown is
/// no longer one person's exact value (a median of 48.3 is shown as 48, of 1,234 as
/// 1,200).
pub(super) fn coarse_median(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let magnitude = v.abs().log10().floor() as i32;
    let step = 10f64.powi(magnitude - MEDIAN_FIGURES + 1);
    (v / step).round() * step
}

/// List every suppressed cell with its reason in the request's stats.
fn list_suppressed(
    spec: &ProtectSpec,
    masks: &[u64],
    keys: &[Vec<String>],
    primary: &BTreeMap<usize, Vec<bool>>,
    suppressed: &BTreeMap<usize, Vec<bool>>,
) {
    // Value columns are numbered in the statement's order, skipping keys.
    let ordinal: BTreeMap<usize, usize> = spec
        .cells
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| c.is_value())
        .enumerate()
        .map(|(ordinal, (i, _))| (i, ordinal))
        .collect();
    let cells = suppressed.iter().flat_map(|(col, hidden)| {
        let value_column = ordinal.get(col).copied().unwrap_or(usize::MAX);
        hidden.iter().enumerate().filter(|(_, h)| **h).map(move |(r, _)| {
            let n = keys[r].len();
            let keys = keys[r]
                .iter()
                .enumerate()
                .map(|(c, k)| {
                    let bit = 1u64.checked_shl((n - 1 - c) as u32).unwrap_or(0);
                    (masks[r] & bit == 0).then(|| k.clone())
                })
                .collect();
            let was_primary = primary.get(col).is_some_and(|p| p[r]);
            SuppressedCell {
                value_column,
                keys,
                reason: if was_primary {
                    Suppression::Primary
                } else {
                    Suppression::Secondary
                },
            }
        })
    });
    spec.stats.list_suppressed(cells);
}

fn group_keys_by_column(
    input: &RecordBatch,
    key_columns: &[usize],
) -> Result<Vec<Vec<String>>, arrow::error::ArrowError> {
    // One formatter per column (what `array_value_to_string` builds for every value).
    let options = FormatOptions::default().with_display_error(true);
    let formatters = key_columns
        .iter()
        .map(|&c| ArrayFormatter::try_new(input.column(c), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..input.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::coarse_median;

    #[test]
    fn medians_keep_two_significant_figures() {
        let got: Vec<f64> = [48.3, 1234.0, 0.0456, -7.25, 0.0, 99.6]
            .iter()
            .map(|v| coarse_median(*v))
            .collect();
        let want = [48.0, 1200.0, 0.046, -7.3, 0.0, 100.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }
}
