//! Request limits on the hand-built fixture, as the red team sent them: statements just
//! inside the SQL limits plan and answer on an ordinary test thread's stack (a debug build's
//! frames are larger than a release build's, so a release server has more room); one past a
//! limit is refused before anything plans it; a query past its memory spills to disk where
//! its operators can and is refused with the memory rule where they cannot.

use std::time::Instant;

use poplar_engine::limits::{Spilled, SqlLimits};
use poplar_engine::{Principal, QuerySession, Role, Rule};

use crate::common::{disclosure, fixture, steward};

fn commissioner() -> Principal {
    Principal::new("cam", Role::Commissioner)
}

fn chain(terms: usize, op: &str) -> String {
    format!(
        "SELECT count(*) AS n FROM patients WHERE imd_decile = {}",
        vec!["1"; terms].join(op)
    )
}

#[tokio::test]
async fn hostile_shapes_are_answered_within_the_limits_and_refused_past_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = fixture(dir.path()).await;
    let limits = SqlLimits::default();
    let depth = limits.max_depth - 10;
    let items = (0..limits.max_list_items)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let inside = [
        ("a chain of + just inside the depth limit", chain(depth, "+")),
        (
            "a chain of OR just inside the depth limit",
            chain(depth / 2, " OR imd_decile = "),
        ),
        (
            "an IN list at the item limit",
            format!("SELECT count(*) AS n FROM patients WHERE imd_decile IN ({items})"),
        ),
    ];
    for (what, sql) in &inside {
        for who in [commissioner(), steward()] {
            let session = QuerySession::new(&loaded, &who, Some(&disclosure())).expect("session");
            let started = Instant::now();
            session
                .sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{what} as {}: {e}", who.role));
            // Reported, not asserted: timing belongs to benchmarks.
            println!("{what} as {}: {:?}", who.role, started.elapsed());
        }
    }

    let past = [
        ("2,000 + terms", chain(2_000, "+")),
        ("3,000 ORs", chain(3_000, " OR imd_decile = ")),
        (
            "an IN list one past the item limit",
            format!("SELECT count(*) AS n FROM patients WHERE imd_decile IN ({items},0)"),
        ),
        (
            "a 5 MB string literal",
            format!(
                "SELECT count(*) AS n FROM patients WHERE sex = '{}'",
                "x".repeat(5 << 20)
            ),
        ),
    ];
    for (what, sql) in &past {
        for who in [commissioner(), steward()] {
            let session = QuerySession::new(&loaded, &who, Some(&disclosure())).expect("session");
            let refused = session.sql(sql).await.expect_err(what);
            assert_eq!(refused.rule(), Some(Rule::RequestSize), "{what}: {refused}");
            assert!(
                refused.to_string().len() < 300,
                "{what}: the message never echoes the SQL"
            );
        }
    }
}

#[tokio::test]
async fn a_query_past_its_memory_is_refused_with_the_memory_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = fixture(dir.path()).await;
    // A self-join's hash table cannot spill: with too little memory it must stop, typed.
    let sql = "SELECT count(*) AS n FROM clinical_events a JOIN clinical_events b ON a.person_id = b.person_id \
               JOIN clinical_events c ON b.person_id = c.person_id";
    let roomy = QuerySession::new(&loaded, &steward(), None)
        .expect("session")
        .with_memory_limit(256 << 20)
        .expect("pool");
    roomy.sql(sql).await.expect("answers with room");
    let tight = QuerySession::new(&loaded, &steward(), None)
        .expect("session")
        .with_memory_limit(1 << 10)
        .expect("pool");
    let refused = tight.sql(sql).await.expect_err("too little memory");
    assert_eq!(refused.rule(), Some(Rule::MemoryLimit), "{refused}");
}

/// Runs `sql` as a steward with a memory pool of `bytes`: the answer and what it spilled.
async fn run_within(
    loaded: &poplar_engine::SnapshotContext,
    sql: &str,
    bytes: usize,
) -> (Vec<arrow::array::RecordBatch>, Spilled) {
    let session = QuerySession::new(loaded, &steward(), None)
        .expect("session")
        .with_memory_limit(bytes)
        .expect("pool");
    let plan = session.plan(sql).await.expect("plans");
    let physical = session.physical(plan).await.expect("physical plan");
    let batches = deltalake::datafusion::physical_plan::collect(physical.clone(), session.task_ctx())
        .await
        .expect("answers");
    (batches, Spilled::of(physical.as_ref()))
}

#[tokio::test]
async fn a_hash_aggregate_past_its_memory_spills_and_gives_the_same_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = fixture(dir.path()).await;
    // Half a million groups hold more hash table than the tight pool, so the aggregation
    // writes its state to disk and merges it back, instead of failing. (No ORDER BY: a
    // sort reserves memory of its own up front, which a pool this small cannot give it.)
    let sql = "SELECT value % 500000 AS k, count(*) AS n FROM generate_series(1, 2000000) GROUP BY value % 500000";
    let groups = |batches: &[arrow::array::RecordBatch]| {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let mut rows: Vec<(i64, i64)> = batches
            .iter()
            .flat_map(|b| {
                let keys = b.column(0).as_primitive::<Int64Type>().clone();
                let counts = b.column(1).as_primitive::<Int64Type>().clone();
                (0..b.num_rows()).map(move |r| (keys.value(r), counts.value(r)))
            })
            .collect();
        rows.sort_unstable();
        rows
    };
    let (roomy, roomy_spilled) = run_within(&loaded, sql, 1 << 30).await;
    assert_eq!(roomy_spilled, Spilled::default(), "nothing spills with room");
    let (tight, tight_spilled) = run_within(&loaded, sql, TIGHT).await;
    assert!(tight_spilled.spills > 0 && tight_spilled.bytes > 0, "{tight_spilled:?}");
    let roomy = groups(&roomy);
    assert_eq!(roomy.len(), 500_000);
    assert_eq!(groups(&tight), roomy, "the same answer, spilled or not");
}

/// A pool the spill test's hash table outgrows.
const TIGHT: usize = 24 << 20;
