//! `register_membership` as a single server holds it: in memory, split over the session's
//! partitions so both cores share a question over it, and declared unique on
//! `(person_id, register)` once that is checked on the rows themselves.
//!
//! The key lets a release count a group's people as its rows instead of through a set of
//! them (`disclosure::unique_rows`). That is only sound if the key holds, and the rows come
//! from SQL over registrations (a person registered at two practices on the reference date
//! would be on a register twice) or from a derived table in the store, so the key is
//! declared only after every row has been checked. Where it does not hold, releases count
//! people through the set as before: slower, never less protected.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::common::{Constraint, Constraints, HashMap, HashSet};
use std::sync::Arc;

use crate::EngineError;

/// The columns that identify a row: one person on one register.
const KEY: [&str; 2] = ["person_id", "register"];

/// The members as a table of `partitions` partitions, with its key declared if it holds.
pub(crate) fn in_memory(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    partitions: usize,
) -> Result<Arc<MemTable>, EngineError> {
    let key = verified_key(&schema, &batches);
    let partitions = partitions.max(1);
    let mut split: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
    for (i, batch) in batches.into_iter().enumerate() {
        split[i % partitions].push(batch);
    }
    let table = MemTable::try_new(schema, split)?;
    Ok(Arc::new(match key {
        Some(key) => table.with_constraints(Constraints::new_unverified(vec![key])),
        None => table,
    }))
}

/// `PRIMARY KEY (person_id, register)` if no row has a NULL in either and no pair occurs
/// twice; `None` (and a warning with counts only) otherwise.
fn verified_key(schema: &SchemaRef, batches: &[RecordBatch]) -> Option<Constraint> {
    let (Ok(person), Ok(register)) = (schema.index_of(KEY[0]), schema.index_of(KEY[1])) else {
        return None;
    };
    if schema.field(person).data_type() != &DataType::Int64 || schema.field(register).data_type() != &DataType::Utf8 {
        return None;
    }
    // Registers are a handful of names: number them, then check (person, number) pairs.
    let mut register_numbers: HashMap<&str, u32> = HashMap::default();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut seen: HashSet<(i64, u32)> = HashSet::with_capacity_and_hasher(rows, Default::default());
    let mut repeated = 0u64;
    for batch in batches {
        let people = batch.column(person).as_primitive::<arrow::datatypes::Int64Type>();
        let registers = batch.column(register).as_string::<i32>();
        if people.null_count() > 0 || registers.null_count() > 0 {
            tracing::warn!(
                "register_membership has rows without a person or a register: releases over it count people through a set"
            );
            return None;
        }
        for (pid, name) in people.values().iter().zip(registers.iter().flatten()) {
            let next = u32::try_from(register_numbers.len()).unwrap_or(u32::MAX);
            let number = *register_numbers.entry(name).or_insert(next);
            if !seen.insert((*pid, number)) {
                repeated += 1;
            }
        }
    }
    if repeated > 0 {
        tracing::warn!(
            repeated,
            "register_membership holds a person on one register more than once (registered at two practices on the reference date?): releases over it count people through a set"
        );
        return None;
    }
    Some(Constraint::PrimaryKey(vec![person, register]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::datasource::TableProvider;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Int64, true),
            Field::new("practice", DataType::Utf8, true),
            Field::new("register", DataType::Utf8, true),
        ]))
    }

    fn batch(people: Vec<Option<i64>>, registers: Vec<Option<&str>>) -> RecordBatch {
        let practices = vec![Some("P1"); people.len()];
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(people)),
                Arc::new(StringArray::from(practices)),
                Arc::new(StringArray::from(registers)),
            ],
        )
        .expect("batch")
    }

    fn key_of(batches: Vec<RecordBatch>) -> Vec<Constraint> {
        let table = in_memory(schema(), batches, 2).expect("table");
        table
            .constraints()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn unique_members_get_the_key_and_are_split_over_partitions() {
        let batches = vec![
            batch(vec![Some(1), Some(1)], vec![Some("asthma"), Some("copd")]),
            batch(vec![Some(2)], vec![Some("asthma")]),
            batch(vec![Some(3)], vec![Some("asthma")]),
        ];
        assert_eq!(key_of(batches.clone()), vec![Constraint::PrimaryKey(vec![0, 2])]);
        assert_eq!(in_memory(schema(), batches, 2).expect("table").batches.len(), 2);
    }

    #[test]
    fn a_person_twice_on_one_register_or_a_null_leaves_the_key_undeclared() {
        // The repeat is in another batch than the first row.
        let repeated = vec![
            batch(vec![Some(1)], vec![Some("asthma")]),
            batch(vec![Some(1)], vec![Some("asthma")]),
        ];
        assert_eq!(key_of(repeated), vec![]);
        assert_eq!(
            key_of(vec![batch(vec![None, Some(2)], vec![Some("asthma"), Some("asthma")])]),
            vec![]
        );
        assert_eq!(key_of(vec![batch(vec![Some(1)], vec![None])]), vec![]);
        // No rows: nothing can repeat.
        assert_eq!(key_of(vec![]), vec![Constraint::PrimaryKey(vec![0, 2])]);
    }
}
