//! The `poplar` binary as people run it: synth, load, kill -9, re-run.

use poplar_loaders::landing;
use poplar_loaders::{Store, Table};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "cli-test-key-0123456789abcdef0123456789";

fn poplar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poplar"));
    c.env("POPLAR_PSEUDONYM_KEY", KEY).env("POPLAR_LOG", "warn,buoyant_kernel=off");
    c
}

fn synth(dir: &Path, patients: u64) {
    let status = poplar()
        .args(["synth", "--patients", &patients.to_string(), "--gp-practices", "30", "--acute-trusts", "3"])
        .args(["--mental-health-trusts", "2", "--community-providers", "3", "--social-care", "5", "--pilot-patients", "2000"])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run synth");
    assert!(status.success());
}

fn load_command(region: &Path, store: &Path) -> Command {
    let mut c = poplar();
    c.arg("load")
        .arg("--registry")
        .arg(region.join("sources.toml"))
        .arg("--input")
        .arg(region.join("deliveries"))
        .arg("--store")
        .arg(store)
        .stdout(Stdio::null());
    c
}

/// Per table and source: row count and a sum over pseudonyms, as the latest snapshot sees it.
async fn fingerprint(store: &Path) -> Vec<String> {
    let store = Store::parse(&store.display().to_string()).expect("store");
    let snapshot = landing::latest_snapshot(&store).await.expect("read").expect("snapshot");
    let mut out = Vec::new();
    for table in Table::PERSONAL {
        let t = snapshot.open(&store, table).await.expect("open").expect("table");
        let batches = landing::query(&t, "SELECT source_org, count(*) AS n, sum(person_id % 1000003) AS s FROM t GROUP BY source_org ORDER BY source_org").await.expect("query");
        out.push(format!("{}\n{}", table.name(), arrow::util::pretty::pretty_format_batches(&batches).expect("render")));
    }
    let q = snapshot.open(&store, Table::Quarantine).await.expect("open").expect("table");
    let batches = landing::query(&q, "SELECT reason, count(*) AS n FROM t GROUP BY reason ORDER BY reason").await.expect("query");
    out.push(arrow::util::pretty::pretty_format_batches(&batches).expect("render").to_string());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_load_then_rerun_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = dir.path().join("region");
    synth(&region, 3_000);

    // Reference: one clean load.
    let clean = dir.path().join("clean");
    assert!(load_command(&region, &clean).status().expect("load").success());

    // Crash: small groups mean many commits; kill -9 once two groups have committed.
    let crashed = dir.path().join("crashed");
    let mut child = load_command(&region, &crashed).args(["--group-rows", "2500"]).spawn().expect("spawn");
    let second_group = crashed.join("snapshots/_delta_log/00000000000000000002.json");
    let started = Instant::now();
    while !second_group.exists() {
        assert!(child.try_wait().expect("poll").is_none(), "the load finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(240), "no group committed in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    assert!(child.try_wait().expect("poll").is_none(), "the load finished before it could be killed");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // What a reader sees after the crash is a consistent prefix: every delivery the ledger
    // says landed has exactly its rows, and no other source has any.
    let store = Store::parse(&crashed.display().to_string()).expect("store");
    let snapshot = landing::latest_snapshot(&store).await.expect("read").expect("snapshot");
    let ledger = snapshot.open(&store, Table::Deliveries).await.expect("open").expect("ledger");
    let landed = landing::query(&ledger, "SELECT sum(clinical_events_rows), count(*) FROM t WHERE status = 'landed'").await.expect("q");
    let events = snapshot.open(&store, Table::ClinicalEvents).await.expect("open").expect("events");
    let visible = landing::query(&events, "SELECT count(*) FROM t").await.expect("q");
    let ledger_events = landing::int64_values(&landed, 0)[0];
    assert_eq!(landing::int64_values(&visible, 0)[0], ledger_events, "visible rows match the ledger exactly");
    assert!(landing::int64_values(&landed, 1)[0] < 70, "the crash happened mid-load");

    // Re-run completes the load; the result equals the clean load.
    let output = load_command(&region, &crashed).output().expect("rerun");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(fingerprint(&crashed).await, fingerprint(&clean).await);
}

#[test]
fn load_refuses_to_run_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = load_command(dir.path(), &dir.path().join("store")).env_remove("POPLAR_PSEUDONYM_KEY").output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("POPLAR_PSEUDONYM_KEY"), "{stderr}");
    assert!(!dir.path().join("store/patients").exists(), "nothing was written");
}

#[test]
fn a_rejected_delivery_fails_the_command_with_the_file_named_after_the_rest_lands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = dir.path().join("region");
    synth(&region, 300);
    // Corrupt one delivery's first file after its manifest was written.
    let delivery = region.join("deliveries/X90002/2026-09-30");
    let path = if delivery.join("patients.csv").exists() { delivery.join("patients.csv") } else { delivery.join("Patient.ndjson") };
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("nhs_number", "nhs_no", 1).replacen("resourceType", "kind", 1)).expect("write");
    let output = load_command(&region, &dir.path().join("store")).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let name = path.file_name().expect("name").to_string_lossy().to_string();
    assert!(stderr.contains("X90002") && stderr.contains(&name), "{stderr}");
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let landed = rt.block_on(async {
        let s = landing::latest_snapshot(&store).await.expect("read").expect("snapshot");
        let t = s.open(&store, Table::Deliveries).await.expect("open").expect("ledger");
        landing::query(&t, "SELECT count(*) FROM t WHERE status = 'landed'").await.expect("q")
    });
    assert_eq!(landing::int64_values(&landed, 0)[0], 42, "the other 42 deliveries landed");
}

#[test]
fn audit_verify_passes_a_good_log_and_fails_a_tampered_one_naming_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let log = poplar_engine::audit::AuditLog::open(&store).await.expect("open");
        let who = poplar_engine::Principal { user: "sam".into(), role: poplar_engine::Role::Steward };
        for n in 0..3 {
            let request = poplar_engine::audit::AuditRequest::sql(format!("SELECT {n}"));
            log.append(poplar_engine::audit::AuditRecord::new(&who, request)).await.expect("append");
        }
    });
    let verify = || poplar().args(["audit", "verify"]).env("POPLAR_STORE", dir.path().join("store")).output().expect("run");
    let good = verify();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{stdout}{}", String::from_utf8_lossy(&good.stderr));
    assert!(stdout.contains("3 entries checked") && stdout.contains("seq 2 hash"), "{stdout}");

    let entry = dir.path().join("store/audit/00000000000000000001.json");
    let text = std::fs::read_to_string(&entry).expect("read");
    std::fs::write(&entry, text.replace("SELECT 1", "SELECT 7")).expect("tamper");
    let bad = verify();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("first bad entry: seq 1"), "{stderr}");
}
