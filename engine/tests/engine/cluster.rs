//! The same questions on an in-process Ballista cluster (a scheduler and two executors
//! built exactly as `poplar scheduler` and `poplar executor` build theirs): stewards get
//! the single node's answers cell for cell, other roles get the very same releases (same
//! suppression, same noise), the red team is still refused, and every release runs in the
//! front end on top of what the cluster returned.

use arrow::array::{Array, Float64Array};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::physical_plan::displayable;
use poplar_engine::distributed::Cluster;
use poplar_engine::{Principal, QuerySession, Role, SnapshotCatalog, SnapshotContext};
use poplar_loaders::Store;

use crate::common::{disclosure, run_slt_with, steward, synthetic_region};

/// Every row of `who`'s answer to `sql` as text, sorted (a cluster returns rows in its own
/// order), with `*` for a suppressed (NULL) cell. Floating-point values to 9 significant
/// digits: a cluster adds them up in another order, which moves the last bits.
async fn rows(loaded: &SnapshotContext, who: &Principal, sql: &str) -> Vec<String> {
    let session = QuerySession::new(loaded, who, Some(&disclosure())).expect("session");
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::new().with_null("*");
    let mut out = Vec::new();
    for b in &batches {
        let columns: Vec<Box<dyn Fn(usize) -> String + '_>> = b
            .columns()
            .iter()
            .map(|c| -> Box<dyn Fn(usize) -> String + '_> {
                if let Some(floats) = c.as_any().downcast_ref::<Float64Array>() {
                    Box::new(move |r| match floats.is_null(r) {
                        true => "*".to_string(),
                        false => format!("{:.8e}", floats.value(r)),
                    })
                } else {
                    let f = ArrayFormatter::try_new(c.as_ref(), &options).expect("format");
                    Box::new(move |r| f.value(r).to_string())
                }
            })
            .collect();
        for r in 0..b.num_rows() {
            out.push(columns.iter().map(|c| c(r)).collect::<Vec<_>>().join("|"));
        }
    }
    out.sort();
    out
}

/// Questions that read every kind of table the cluster reads: landed tables by
/// partition and not, derived registers, views over them, the codelists, joins.
fn questions() -> Vec<String> {
    let mut questions: Vec<String> = poplar_queries::REGISTERS
        .iter()
        .map(|r| format!("SELECT practice, count(*) FROM register_{} GROUP BY practice", r.id))
        .collect();
    questions.extend(
        [
            "SELECT practice, count(*) FROM (SELECT person_id, practice FROM register_membership GROUP BY person_id, practice HAVING count(*) >= 2) GROUP BY practice",
            "SELECT CAST(imd_decile AS VARCHAR), count(DISTINCT person_id) FROM registered_population GROUP BY imd_decile",
            "SELECT setting, sum(cost), avg(cost) FROM encounters GROUP BY setting",
            "SELECT p.sex, count(*) FROM patients p JOIN clinical_events e ON p.person_id = e.person_id GROUP BY p.sex",
            "SELECT c.codelist, count(DISTINCT e.person_id) FROM clinical_events e JOIN codelists c ON e.snomed_code = c.code GROUP BY c.codelist",
            "SELECT source_org, count(*) FROM medications WHERE source_org IN (SELECT ods_code FROM organisations WHERE org_type = 'gp_practice') GROUP BY ROLLUP (source_org)",
            "SELECT count(*) FROM patients WHERE person_id IN (SELECT person_id FROM register_copd)",
            // Registers as of another date: planned here, their inner plan sent to the cluster.
            "SELECT register, count(*) FROM registers_on(DATE '2025-03-31') GROUP BY register",
            "SELECT sex, count(*) FROM population_on(DATE '2025-03-31') GROUP BY sex",
            // A global aggregate over an empty join owes one row (Ballista's adaptive
            // planner answered none: see `Cluster::session_config`).
            "SELECT count(*) FROM patients p JOIN (SELECT person_id FROM clinical_events ORDER BY event_date DESC, person_id LIMIT 1) e ON p.person_id = e.person_id WHERE p.sex = 'none'",
        ]
        .map(String::from),
    );
    questions
}

/// The physical plan `who`'s query runs as, as text.
async fn physical_plan(loaded: &SnapshotContext, who: &Principal, sql: &str) -> String {
    let session = QuerySession::new(loaded, who, Some(&disclosure())).expect("session");
    let plan = session
        .physical(session.plan(sql).await.expect("plan"))
        .await
        .expect("physical plan");
    displayable(plan.as_ref()).indent(true).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_answers_as_one_node_and_releases_in_the_front_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (single, _) = synthetic_region(dir.path()).await;
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    // As `poplar load` does after it commits: the cluster reads these from the store.
    poplar_engine::catalog::derive_registers(&store)
        .await
        .expect("derive registers");
    let scheduler = poplar_cluster::start_in_process(store.clone(), 2)
        .await
        .expect("in-process cluster");
    let cluster = Cluster::parse(&format!("df://127.0.0.1:{}", scheduler.port())).expect("cluster url");
    let on_cluster = SnapshotCatalog::open_with(store, Vec::new(), Some(cluster))
        .await
        .expect("cluster catalog")
        .current();
    assert!(on_cluster.registers_derived, "the cluster reads the derived registers");

    let cam = Principal::new("cam", Role::Commissioner);
    let ann = Principal::new("ann", Role::Analyst);
    let mut suppressed = 0;
    for sql in questions() {
        let truth = rows(&single, &steward(), &sql).await;
        assert!(!truth.is_empty(), "{sql}: no rows");
        assert_eq!(rows(&on_cluster, &steward(), &sql).await, truth, "steward: {sql}");
        for who in [&cam, &ann] {
            let released = rows(&single, who, &sql).await;
            suppressed += released.iter().filter(|r| r.contains('*')).count();
            assert_eq!(rows(&on_cluster, who, &sql).await, released, "{}: {sql}", who.role);
        }
    }
    assert!(suppressed > 0, "the questions must exercise suppression");

    // The red team's attacks are refused or blocked on the cluster as on one node.
    run_slt_with(on_cluster.clone(), cam.clone(), Some(disclosure()), "red_team.slt").await;

    // Where each part runs: a release in the front end over the cluster's answer; a
    // steward's whole query on the cluster.
    let sql = "SELECT practice, count(*) FROM register_diabetes GROUP BY practice";
    let text = physical_plan(&on_cluster, &cam, sql).await;
    let protect = text
        .find("ProtectExec")
        .unwrap_or_else(|| panic!("no release:\n{text}"));
    let remote = text
        .find("DistributedQueryExec")
        .unwrap_or_else(|| panic!("nothing on the cluster:\n{text}"));
    assert!(
        protect < remote,
        "the release must sit above the cluster's part:\n{text}"
    );
    assert!(
        !text[remote..].contains("ProtectExec"),
        "no release below the cluster's part:\n{text}"
    );
    let text = physical_plan(&on_cluster, &steward(), sql).await;
    let above = &text[..text.find("DistributedQueryExec").unwrap_or_else(|| panic!("{text}"))];
    assert!(
        above
            .lines()
            .all(|l| l.trim() == "CooperativeExec" || l.trim().is_empty()),
        "a steward's query runs wholly on the cluster:\n{text}"
    );

    // EXPLAIN through the request path: a commissioner sees the release in the logical
    // plan and not the physical plan (made from the data); a steward sees the cluster's part.
    let explained = rows(&on_cluster, &cam, &format!("EXPLAIN {sql}")).await.join("\n");
    assert!(explained.contains("Protect: "), "{explained}");
    assert!(
        explained.contains(poplar_engine::session::PHYSICAL_PLAN_WITHHELD) && !explained.contains("Exec"),
        "{explained}"
    );
    let explained = rows(&on_cluster, &steward(), &format!("EXPLAIN {sql}"))
        .await
        .join("\n");
    assert!(explained.contains("DistributedQueryExec"), "{explained}");

    pruning(&dir.path().join("store")).await;
    a_dropped_answer_cancels_its_job(&on_cluster, scheduler.port()).await;
}

/// A query whose answer is dropped unfinished (its time limit passed, its client went
/// away) has its job cancelled on the scheduler, not left running on the executors.
async fn a_dropped_answer_cancels_its_job(on_cluster: &SnapshotContext, port: u16) {
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use ballista_core::serde::protobuf::{GetJobStatusParams, job_status};
    use deltalake::datafusion::physical_plan::ExecutionPlan;
    use futures::StreamExt;
    use poplar_engine::cluster_job::ClusterJobExec;
    use std::time::Duration;

    // Long enough that it is still running when its answer is dropped.
    let sql = "SELECT count(*) FROM clinical_events a CROSS JOIN clinical_events b CROSS JOIN patients c";
    let session = QuerySession::new(on_cluster, &steward(), Some(&disclosure())).expect("session");
    let plan = session
        .physical(session.plan(sql).await.expect("plan"))
        .await
        .expect("physical plan");
    let mut jobs = Vec::new();
    let mut nodes: Vec<std::sync::Arc<dyn ExecutionPlan>> = vec![plan.clone()];
    while let Some(node) = nodes.pop() {
        let any: &dyn std::any::Any = node.as_ref();
        if any.is::<ClusterJobExec>() {
            jobs.push(node.clone());
        }
        nodes.extend(node.children().into_iter().cloned());
    }
    assert_eq!(
        jobs.len(),
        1,
        "one cluster job:\n{}",
        displayable(plan.as_ref()).indent(true)
    );
    let job = jobs.remove(0);
    let job_id = || {
        let any: &dyn std::any::Any = job.as_ref();
        any.downcast_ref::<ClusterJobExec>().and_then(ClusterJobExec::job_id)
    };

    let mut answer = plan.execute(0, session.task_ctx()).expect("execute");
    let first = tokio::time::timeout(Duration::from_secs(3), answer.next()).await;
    assert!(first.is_err(), "the query must still be running: {first:?}");
    let id = job_id().expect("the scheduler accepted the job");
    drop(answer);

    let mut scheduler = SchedulerGrpcClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("scheduler");
    let mut last = None;
    for _ in 0..300 {
        let status = scheduler
            .get_job_status(GetJobStatusParams { job_id: id.clone() })
            .await
            .expect("job status")
            .into_inner()
            .status
            .and_then(|s| s.status);
        match status {
            Some(job_status::Status::Failed(_)) | None => return,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} was not cancelled: {last:?}");
}

/// What the scheduler plans for a landed table on the cluster: only the files of the
/// organisation asked for, and the other filters handed to the Parquet reader to prune
/// row groups (per period: files are sorted by date).
async fn pruning(root: &std::path::Path) {
    use deltalake::datafusion::datasource::TableProvider;
    use deltalake::datafusion::prelude::SessionContext;
    use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
    use poplar_engine::files::FilesTable;
    use poplar_loaders::Table;

    let store = Store::parse(&root.display().to_string()).expect("store");
    let snapshot = poplar_loaders::landing::latest_snapshot(&store)
        .await
        .expect("snapshot")
        .expect("a snapshot");
    let table = snapshot
        .open(&store, Table::ClinicalEvents)
        .await
        .expect("open")
        .expect("events");
    let state = table.snapshot().expect("state");
    // As the catalog serves it: plain strings, partition values unwrapped.
    let mut config = DeltaScanConfig::new().with_wrap_partition_values(false);
    config.schema_force_view_types = false;
    let scan = DeltaScanNext::new(state.snapshot().clone(), config).expect("delta scan");
    let files = FilesTable::from_delta(&store, "clinical_events", &table, scan.schema()).expect("files");
    let all = files.spec().files.len();
    let org = files.spec().files[0].partitions[0].clone().expect("an organisation");
    let of_org = files
        .spec()
        .files
        .iter()
        .filter(|f| f.partitions[0].as_deref() == Some(org.as_str()))
        .count();
    assert!(of_org < all, "the region has more than one organisation");
    let ctx = SessionContext::new();
    ctx.register_table("events", std::sync::Arc::new(files))
        .expect("register");
    let plan = ctx
        .sql(&format!(
            "SELECT count(*) FROM events WHERE source_org = '{org}' AND event_date >= DATE '2024-04-01'"
        ))
        .await
        .expect("sql")
        .create_physical_plan()
        .await
        .expect("plan");
    let text = displayable(plan.as_ref()).indent(true).to_string();
    let scanned = text.matches(".parquet").count();
    assert_eq!(scanned, of_org, "only {org}'s files are scanned:\n{text}");
    assert!(
        text.contains("predicate=") && text.contains("event_date"),
        "the date filter prunes row groups:\n{text}"
    );
}
