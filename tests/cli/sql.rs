//! `poplar serve`, `poplar users add` and `poplar sql` together: answers in each format,
//! suppression shown as `*`, and errors as one plain line.

use crate::common::{load_command, poplar, synth};
use std::path::Path;
use std::process::Stdio;

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
    // Small groups by a fine key (LSOA) are left out, and the CLI says how many (on
    // stderr, so the CSV stays the answer); the steward's answer has them all.
    let fine = "SELECT lsoa, count(DISTINCT person_id) AS people FROM patients GROUP BY lsoa";
    let (ok, out, stderr) = sql(&addr, "sam", &sam, &["--format", "csv", "-c", fine]);
    assert!(ok, "{stderr}");
    assert!(stderr.is_empty(), "nothing withheld from a steward: {stderr}");
    let small = out
        .lines()
        .skip(1)
        .filter(|l| {
            l.rsplit(',')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n < 8)
        })
        .count();
    assert!(
        small > 1,
        "a 1,000-person region has LSOAs of fewer than 8 people: {out}"
    );
    let (ok, out, stderr) = sql(&addr, "cam", &cam, &["--format", "csv", "-c", fine]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("({small} groups of fewer people than the minimum withheld)")
    );
    assert!(!out.contains('*'), "a withheld group is left out, not marked: {out}");

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
