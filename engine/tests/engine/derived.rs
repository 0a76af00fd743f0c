//! Registers derived after a load (`poplar_engine::derived`): a server opens them instead
//! of computing them, gets the same members, and never uses a derivation that no longer
//! matches its snapshot (here, after an opt-out removed someone on a register).

use std::collections::{BTreeSet, HashSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use poplar_engine::SnapshotContext;
use poplar_engine::catalog::SnapshotCatalog;
use poplar_engine::catalog::{Derived, derive_registers};
use poplar_loaders::Store;
use poplar_loaders::optout::{self, OptOutList};

use crate::common::fixture;

type Member = (i64, String, String);

async fn members(ctx: &SnapshotContext) -> BTreeSet<Member> {
    let batches: Vec<RecordBatch> = ctx
        .context
        .sql("SELECT person_id, practice, register FROM register_membership")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut out = BTreeSet::new();
    for b in &batches {
        let text = |i: usize| cast(b.column(i), &DataType::Utf8).expect("text");
        let (practices, registers) = (text(1), text(2));
        let (ids, practices, registers) = (
            b.column(0).as_primitive::<Int64Type>(),
            practices.as_string::<i32>(),
            registers.as_string::<i32>(),
        );
        for r in 0..b.num_rows() {
            out.insert((
                ids.value(r),
                practices.value(r).to_string(),
                registers.value(r).to_string(),
            ));
        }
    }
    out
}

async fn reopen(store: &Store) -> std::sync::Arc<SnapshotContext> {
    SnapshotCatalog::open(store.clone(), Vec::new())
        .await
        .expect("catalog")
        .current()
}

#[tokio::test]
async fn derived_registers_are_used_only_while_they_match_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (computed, _) = fixture(dir.path()).await;
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    assert!(!computed.registers_derived, "nothing derived yet: computed at open");
    let expected = members(&computed).await;
    assert!(!expected.is_empty(), "the fixture puts people on registers");

    let Derived::Committed { snapshot, rows, .. } = derive_registers(&store).await.expect("derive") else {
        panic!("a fresh load has nothing derived");
    };
    assert_eq!(rows, expected.len());
    let opened = reopen(&store).await;
    assert_eq!(opened.snapshot_id(), Some(snapshot));
    assert!(opened.registers_derived, "the derived members are current");
    assert_eq!(opened.reference_date, computed.reference_date);
    assert_eq!(members(&opened).await, expected, "derived = computed");
    assert_eq!(
        derive_registers(&store).await.expect("derive"),
        Derived::AlreadyCurrent { snapshot }
    );

    // Someone on a register opts out: their rows leave the landed tables, so the derived
    // members are stale and must not be served.
    let gone = expected.first().expect("a member").0;
    let list = OptOutList {
        person_ids: HashSet::from([gone]),
        invalid_lines: Vec::new(),
    };
    optout::apply(&store, &list, "optout-test").await.expect("opt out");
    let after = reopen(&store).await;
    assert!(!after.registers_derived, "stale derivation ignored");
    let remaining: BTreeSet<Member> = expected.iter().filter(|m| m.0 != gone).cloned().collect();
    assert!(remaining.len() < expected.len());
    assert_eq!(
        members(&after).await,
        remaining,
        "computed without the person who opted out"
    );

    assert!(matches!(
        derive_registers(&store).await.expect("derive"),
        Derived::Committed { rows, .. } if rows == remaining.len()
    ));
    let rederived = reopen(&store).await;
    assert!(rederived.registers_derived);
    assert_eq!(members(&rederived).await, remaining);
}
