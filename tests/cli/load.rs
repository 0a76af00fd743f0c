//! `poplar load`: crash safety, the key requirement and rejected deliveries.

use crate::common::{load_command, synth};
use poplar_loaders::landing;
use poplar_loaders::{Store, Table};
use std::path::Path;
use std::time::{Duration, Instant};

/// Per table and source: row count and a sum over pseudonyms, as the latest snapshot sees it.
async fn fingerprint(store: &Path) -> Vec<String> {
    let store = Store::parse(&store.display().to_string()).expect("store");
    let snapshot = landing::latest_snapshot(&store).await.expect("read").expect("snapshot");
    let mut out = Vec::new();
    for table in Table::PERSONAL {
        let t = snapshot.open(&store, table).await.expect("open").expect("table");
        let batches = landing::query(&t, "SELECT source_org, count(*) AS n, sum(person_id % 1000003) AS s FROM t GROUP BY source_org ORDER BY source_org").await.expect("query");
        out.push(format!(
            "{}\n{}",
            table.name(),
            arrow::util::pretty::pretty_format_batches(&batches).expect("render")
        ));
    }
    let q = snapshot
        .open(&store, Table::Quarantine)
        .await
        .expect("open")
        .expect("table");
    let batches = landing::query(
        &q,
        "SELECT reason, count(*) AS n FROM t GROUP BY reason ORDER BY reason",
    )
    .await
    .expect("query");
    out.push(
        arrow::util::pretty::pretty_format_batches(&batches)
            .expect("render")
            .to_string(),
    );
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
    let mut child = load_command(&region, &crashed)
        .args(["--group-rows", "2500"])
        .spawn()
        .expect("spawn");
    let second_group = crashed.join("snapshots/_delta_log/00000000000000000002.json");
    let started = Instant::now();
    while !second_group.exists() {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the load finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no group committed in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "the load finished before it could be killed"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // What a reader sees after the crash is a consistent prefix: every delivery the ledger
    // says landed has exactly its rows, and no other source has any.
    let store = Store::parse(&crashed.display().to_string()).expect("store");
    let snapshot = landing::latest_snapshot(&store).await.expect("read").expect("snapshot");
    let ledger = snapshot
        .open(&store, Table::Deliveries)
        .await
        .expect("open")
        .expect("ledger");
    let landed = landing::query(
        &ledger,
        "SELECT sum(clinical_events_rows), count(*) FROM t WHERE status = 'landed'",
    )
    .await
    .expect("q");
    let events = snapshot
        .open(&store, Table::ClinicalEvents)
        .await
        .expect("open")
        .expect("events");
    let visible = landing::query(&events, "SELECT count(*) FROM t").await.expect("q");
    let ledger_events = landing::int64_values(&landed, 0)[0];
    assert_eq!(
        landing::int64_values(&visible, 0)[0],
        ledger_events,
        "visible rows match the ledger exactly"
    );
    assert!(landing::int64_values(&landed, 1)[0] < 70, "the crash happened mid-load");

    // Re-run completes the load; the result equals the clean load.
    let output = load_command(&region, &crashed).output().expect("rerun");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(fingerprint(&crashed).await, fingerprint(&clean).await);
}

#[test]
fn load_refuses_to_run_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = load_command(dir.path(), &dir.path().join("store"))
        .env_remove("POPLAR_PSEUDONYM_KEY")
        .output()
        .expect("run");
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
    let path = if delivery.join("patients.csv").exists() {
        delivery.join("patients.csv")
    } else {
        delivery.join("Patient.ndjson")
    };
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen("nhs_number", "nhs_no", 1)
            .replacen("resourceType", "kind", 1),
    )
    .expect("write");
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
        landing::query(&t, "SELECT count(*) FROM t WHERE status = 'landed'")
            .await
            .expect("q")
    });
    assert_eq!(
        landing::int64_values(&landed, 0)[0],
        42,
        "the other 42 deliveries landed"
    );
}

/// Issue 9: hostile deliveries beside a good region. The command refuses them (exit 2),
/// lands the rest, and nothing it prints, logs or reports carries a planted sender value
/// or a raw control character.
#[test]
fn hostile_deliveries_are_refused_without_echoing_what_they_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = dir.path().join("region");
    synth(&region, 300);
    let deliveries = region.join("deliveries");
    let mut sources: Vec<_> = std::fs::read_dir(&deliveries)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    sources.sort();
    let source = &sources[0];
    let ods = source.file_name().expect("name").to_string_lossy().to_string();
    let (name, nhs) = ("Ada Lovelace", "9434765919");
    // A manifest value serde would quote back.
    let bad = source.join("2026-10-01");
    std::fs::create_dir_all(&bad).expect("dir");
    std::fs::write(
        bad.join("manifest.toml"),
        format!(
            "source = \"{ods}\"\ndelivery = \"2026-10-01\"\nformat = \"{name} {nhs}\"\nextracted = \"2026-10-01\"\nperiod_start = \"2026-01-01\"\nperiod_end = \"2026-10-01\"\n"
        ),
    )
    .expect("write");
    // A delivery id that would clear the terminal, and one that is a directory manifest.
    std::fs::create_dir_all(source.join(format!("2026-10-02\u{1b}[2J{name}"))).expect("dir");
    std::fs::create_dir_all(source.join("2026-10-03/manifest.toml")).expect("dir");
    let report = dir.path().join("report.json");
    let output = load_command(&region, &dir.path().join("store"))
        .env(
            "POPLAR_LOG",
            "warn,buoyant_kernel=off,poplar=trace,poplar_loaders=trace",
        )
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid_manifest") && stderr.contains("invalid_name"),
        "{stderr}"
    );
    assert!(stderr.contains("unsafe_file"), "{stderr}");
    assert!(stdout.contains("deliveries landed"), "{stdout}");
    let json = std::fs::read_to_string(&report).expect("report");
    for text in [&*stdout, &*stderr, &json] {
        for value in [name, "Lovelace", nhs] {
            assert!(!text.contains(value), "output carries a planted value: {text}");
        }
        assert!(!text.contains('\u{1b}'), "output carries a raw ESC");
    }
}
