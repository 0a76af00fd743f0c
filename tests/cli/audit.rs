//! `poplar audit verify` against a log written through the engine, then tampered with.

use crate::common::poplar;
use poplar_loaders::Store;

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
