//! The audit log: an intact log verifies and reads as a table; tampering is found and
//! named by seq.

use crate::common::steward;
use deltalake::datafusion::prelude::SessionContext;
use object_store::{PutMode, PutOptions};
use poplar_engine::audit::{self, AuditLog, AuditRecord, AuditRequest, AuditTable, Outcome, ProblemKind};
use poplar_loaders::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// A store whose log holds entries 0 to 4.
async fn log_of_five() -> (tempfile::TempDir, Store, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    let log = AuditLog::open(&store).await.expect("open");
    for n in 0..5u64 {
        let mut record = AuditRecord::new(
            &steward(),
            AuditRequest::sql(format!("SELECT count(*) FROM patients -- {n}")),
        );
        record.rows = n;
        if n == 3 {
            record.outcome = Outcome::Refused {
                rule: "sql_policy".into(),
                message: "refused: DML".into(),
            };
        }
        log.append(record).await.expect("append");
    }
    let entries = dir.path().join("store").join(audit::AUDIT_DIR);
    (dir, store, entries)
}

fn entry_file(dir: &std::path::Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.json"))
}

async fn first_problem(store: &Store) -> (u64, ProblemKind, String) {
    let report = audit::verify(store).await.expect("verify");
    let p = report.first_problem().expect("a problem");
    (p.seq, p.kind, p.detail.clone())
}

#[tokio::test]
async fn an_intact_log_verifies_and_reads_as_a_table() {
    let (_dir, store, _) = log_of_five().await;
    let report = audit::verify(&store).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (report.entries_checked, report.head.as_ref().map(|h| h.seq)),
        (5, Some(4))
    );
    let ctx = SessionContext::new();
    ctx.register_table("audit_log", Arc::new(AuditTable::new(store.clone())))
        .expect("register");
    let sql = "SELECT count(*), sum(rows), count(*) FILTER (WHERE outcome = 'refused') FROM audit_log";
    let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
    let row = arrow::util::pretty::pretty_format_batches(&batches)
        .expect("render")
        .to_string();
    assert!(
        row.contains("| 5 ") && row.contains("| 10 ") && row.contains("| 1 "),
        "{row}"
    );
    // Read afresh on each scan.
    AuditLog::open(&store)
        .await
        .expect("open")
        .append(AuditRecord::new(&steward(), AuditRequest::sql("SELECT 1")))
        .await
        .expect("append");
    let batches = ctx
        .sql("SELECT count(*) FROM audit_log")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    assert_eq!(
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("count")
            .value(0),
        6
    );
}

#[tokio::test]
async fn an_edited_entry_is_named_by_seq() {
    let (_dir, store, entries) = log_of_five().await;
    let path = entry_file(&entries, 2);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(r#""rows":2"#), "{text}");
    std::fs::write(&path, text.replace(r#""rows":2"#, r#""rows":0"#)).expect("write");
    let (seq, kind, detail) = first_problem(&store).await;
    assert_eq!((seq, kind), (2, ProblemKind::Edited), "{detail}");
}

#[tokio::test]
async fn swapped_entries_are_reported_as_misplaced() {
    let (_dir, store, entries) = log_of_five().await;
    // Swap entries 1 and 2: each object now holds the other's seq.
    let (one, two) = (entry_file(&entries, 1), entry_file(&entries, 2));
    let (a, b) = (std::fs::read(&one).expect("read"), std::fs::read(&two).expect("read"));
    std::fs::write(&one, b).expect("write");
    std::fs::write(&two, a).expect("write");
    let (seq, kind, detail) = first_problem(&store).await;
    assert_eq!((seq, kind), (1, ProblemKind::Misplaced), "{detail}");
}

#[tokio::test]
async fn a_deleted_middle_entry_is_reported_as_a_gap() {
    let (_dir, store, entries) = log_of_five().await;
    std::fs::remove_file(entry_file(&entries, 2)).expect("delete");
    let (seq, kind, detail) = first_problem(&store).await;
    assert_eq!((seq, kind), (2, ProblemKind::Missing), "{detail}");
}

#[tokio::test]
async fn deleting_the_newest_entries_is_caught_by_head_and_the_log_will_not_reopen() {
    let (_dir, store, entries) = log_of_five().await;
    std::fs::remove_file(entry_file(&entries, 4)).expect("delete");
    std::fs::remove_file(entry_file(&entries, 3)).expect("delete");
    let (seq, kind, detail) = first_problem(&store).await;
    assert_eq!((seq, kind), (3, ProblemKind::Truncated), "{detail}");
    let refused = AuditLog::open(&store).await.expect_err("a cut tail is not continued");
    assert!(refused.to_string().contains("seq 3"), "{refused}");
}

#[tokio::test]
async fn an_entry_cannot_be_overwritten() {
    let (_dir, store, entries) = log_of_five().await;
    let before = std::fs::read(entry_file(&entries, 1)).expect("read");
    let (objects, root) = store.object_store().expect("object store");
    let path = root.join(audit::AUDIT_DIR).join(format!("{:020}.json", 1));
    let put = objects
        .put_opts(&path, b"{}".to_vec().into(), PutOptions::from(PutMode::Create))
        .await;
    assert!(matches!(put, Err(object_store::Error::AlreadyExists { .. })), "{put:?}");
    assert_eq!(std::fs::read(entry_file(&entries, 1)).expect("read"), before);
    assert!(audit::verify(&store).await.expect("verify").is_ok());
}
