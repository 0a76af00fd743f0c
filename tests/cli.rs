//! The `poplar` binary as people run it: synth, load, kill -9, re-run.

use poplar_loaders::landing;
use poplar_loaders::{Store, Table};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "cli-test-key-0123456789abcdef0123456789";

fn poplar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poplar"));
    c.env("POPLAR_PSEUDONYM_KEY", KEY)
        .env("POPLAR_LOG", "warn,buoyant_kernel=off");
    c
}

fn synth(dir: &Path, patients: u64) {
    let status = poplar()
        .args([
            "synth",
            "--patients",
            &patients.to_string(),
            "--gp-practices",
            "30",
            "--acute-trusts",
            "3",
        ])
        .args([
            "--mental-health-trusts",
            "2",
            "--community-providers",
            "3",
            "--social-care",
            "5",
            "--pilot-patients",
            "2000",
        ])
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

#[test]
fn audit_verify_passes_a_good_log_and_fails_a_tampered_one_naming_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let log = poplar_engine::audit::AuditLog::open(&store).await.expect("open");
        let who = poplar_engine::Principal {
            user: "sam".into(),
            role: poplar_engine::Role::Steward,
        };
        for n in 0..3 {
            let request = poplar_engine::audit::AuditRequest::sql(format!("SELECT {n}"));
            log.append(poplar_engine::audit::AuditRecord::new(&who, request))
                .await
                .expect("append");
        }
    });
    let verify = || {
        poplar()
            .args(["audit", "verify"])
            .env("POPLAR_STORE", dir.path().join("store"))
            .output()
            .expect("run")
    };
    let good = verify();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains("3 entries checked") && stdout.contains("seq 2 hash"),
        "{stdout}"
    );

    let entry = dir.path().join("store/audit/00000000000000000001.json");
    let text = std::fs::read_to_string(&entry).expect("read");
    std::fs::write(&entry, text.replace("SELECT 1", "SELECT 7")).expect("tamper");
    let bad = verify();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("first bad entry: seq 1"), "{stderr}");
}

/// A running `poplar serve`; dropping it kills and reaps the server, so a failing assert
/// cannot leak it.
struct Server {
    child: std::process::Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `poplar users add NAME --role ROLE --users FILE`; returns the token it prints.
fn add_user(users: &Path, name: &str, role: &str) -> String {
    let output = poplar()
        .args(["users", "add", name, "--role", role, "--users"])
        .arg(users)
        .output()
        .expect("users add");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8").trim().to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "one token on stdout: {token:?}"
    );
    token
}

/// Start `poplar serve` on a free port (with a noise key, so non-stewards may query);
/// returns the guard and the grpc:// address from its first line of output.
fn serve(store: &Path, users: &Path, log: &Path) -> (Server, String) {
    use std::io::BufRead;
    let mut child = poplar()
        .arg("serve")
        .arg("--store")
        .arg(store)
        .arg("--users")
        .arg(users)
        .args(["--addr", "127.0.0.1:0"])
        .env("POPLAR_NOISE_KEY", "cli-test-noise-key-0123456789abcdef0123456789")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server { child, _stdout: None };
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read serve's first line");
    let addr = line
        .trim()
        .strip_prefix("poplar: serving Arrow Flight SQL at ")
        .unwrap_or_else(|| {
            panic!(
                "serve did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_string();
    assert!(addr.starts_with("grpc://127.0.0.1:") && !addr.ends_with(":0"), "{addr}");
    server._stdout = Some(reader);
    (server, addr)
}

/// `poplar sql --addr ADDR --user USER --token TOKEN ARGS…`: (success, stdout, stderr).
fn sql(addr: &str, user: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = poplar()
        .args(["sql", "--addr", addr, "--user", user, "--token", token])
        .args(args)
        .output()
        .expect("run sql");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    );
    (output.status.success(), stdout, stderr)
}

/// An error as a person should see it: one clear line, no backtrace, no gRPC wrapping.
fn assert_clean_error(stderr: &str) {
    for noise in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "Status {",
        "tonic",
        "Tonic",
        "transport error",
        "details:",
        "metadata:",
    ] {
        assert!(!stderr.contains(noise), "error output contains {noise:?}: {stderr}");
    }
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn sql_runs_commands_and_scripts_and_shows_refusals_and_suppression_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = dir.path().join("region");
    synth(&region, 1_000);
    let store = dir.path().join("store");
    let output = load_command(&region, &store).output().expect("load");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let users = dir.path().join("users.toml");
    let sam = add_user(&users, "sam", "steward");
    let cam = add_user(&users, "cam", "commissioner");
    assert_ne!(sam, cam);
    let (_server, addr) = serve(&store, &users, &dir.path().join("serve.log"));
    let count = "SELECT count(*) AS n FROM organisations";

    // The steward: a table, CSV and JSON.
    let (ok, table, stderr) = sql(&addr, "sam", &sam, &["-c", count]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines.len() == 5
            && [0, 2, 4]
                .iter()
                .all(|&i| lines[i].starts_with("+-") && lines[i].ends_with("-+")),
        "{table}"
    );
    let header: Vec<&str> = lines[1].split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["n"], "{table}");
    let n: u64 = lines[3]
        .trim_matches(|c: char| c == '|' || c.is_whitespace())
        .parse()
        .unwrap_or_else(|_| panic!("a count: {table}"));
    assert!(n > 0, "{table}");

    let (ok, csv, stderr) = sql(&addr, "sam", &sam, &["-c", count, "--format", "csv"]);
    assert!(ok, "{stderr}");
    assert_eq!(csv, format!("n\n{n}\n"));

    let (ok, json, stderr) = sql(&addr, "sam", &sam, &["-c", count, "--format", "json"]);
    assert!(ok, "{stderr}");
    assert_eq!(json.trim(), format!("{{\"n\":{n}}}"));

    // A script: two statements, a comment with a semicolon in it.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!("-- two answers; one file\n{count};\nSELECT count(*) AS people FROM patients -- everyone\n;\n"),
    )
    .expect("write");
    let (ok, out, stderr) = sql(&addr, "sam", &sam, &["-f", script.to_str().expect("path")]);
    assert!(ok, "{stderr}");
    // Each table is three rules (top, under the header, bottom) around one row here.
    let rules = out.lines().filter(|l| l.starts_with("+-")).count();
    assert_eq!(rules, 6, "{out}");
    assert!(out.contains("| n ") && out.contains("| people "), "{out}");
    assert!(out.starts_with(&table), "the first answer as with -c: {out}");

    // The commissioner: small cells are shown as `*`.
    let (ok, out, stderr) = sql(
        &addr,
        "cam",
        &cam,
        &[
            "-c",
            "SELECT practice, count(*) AS people FROM register_dementia GROUP BY practice",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(out.contains("| practice") && out.contains("| people"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('|') && l.trim_end_matches('|').trim_end().ends_with('*')),
        "a suppressed practice: {out}"
    );
    let (ok, out, stderr) = sql(
        &addr,
        "cam",
        &cam,
        &["-c", "SELECT count(*) AS n FROM (SELECT * FROM patients LIMIT 3)"],
    );
    assert!(ok, "{stderr}");
    assert!(
        out.lines()
            .any(|l| l.trim_matches(|c: char| c == '|' || c.is_whitespace()) == "*"),
        "3 people is suppressed: {out}"
    );
    // CSV shows the same `*`; JSON keeps the key, with null.
    let tiny = "SELECT count(*) AS n FROM (SELECT * FROM patients LIMIT 3)";
    let (ok, out, stderr) = sql(&addr, "cam", &cam, &["--format", "csv", "-c", tiny]);
    assert!(ok, "{stderr}");
    assert_eq!(out, "n\n*\n");
    let (ok, out, stderr) = sql(&addr, "cam", &cam, &["--format", "json", "-c", tiny]);
    assert!(ok, "{stderr}");
    assert_eq!(out.trim(), r#"{"n":null}"#);
    // An empty answer still has its header.
    let (ok, out, stderr) = sql(
        &addr,
        "sam",
        &sam,
        &["--format", "csv", "-c", "SELECT 1 AS a WHERE false"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(out, "a\n");

    // Refusals, bad tokens and bad SQL fail with one plain line.
    let (ok, out, stderr) = sql(&addr, "cam", &cam, &["-c", "SELECT * FROM patients"]);
    assert!(!ok, "{out}");
    assert!(stderr.contains("rule 1"), "{stderr}");
    assert_clean_error(&stderr);

    let (ok, out, stderr) = sql(&addr, "sam", "not-a-token", &["-c", count]);
    assert!(!ok, "{out}");
    assert!(stderr.to_lowercase().contains("unauthenticated"), "{stderr}");
    assert_clean_error(&stderr);

    let (ok, out, stderr) = sql(&addr, "sam", &sam, &["-c", "SELEC 1"]);
    assert!(!ok, "{out}");
    assert!(stderr.contains("SELEC"), "{stderr}");
    assert_clean_error(&stderr);
}
