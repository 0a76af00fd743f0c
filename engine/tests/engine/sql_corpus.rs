//! The SQL fuzz target's corpus (`fuzz/corpus/sql/`: red-team statements and what
//! `ci/fuzz sql` found worth keeping), replayed through the same entry point on every
//! `ci/test`: the text limit, then planning and disclosure control's analysis as a
//! commissioner and as a researcher, on a worker with tokio's default 2 MiB stack. Any
//! answer is fine, a refusal included; a panic is a finding (a stack overflow aborts the
//! test binary, which fails too). `cargo fuzz` itself needs an instrumented build of
//! DataFusion, too slow for every CI run; this keeps what it found from coming back.

use std::path::PathBuf;

use poplar_engine::limits::SqlLimits;
use poplar_engine::{Principal, QuerySession, Role};

use crate::common::{disclosure, fixture};

const WORKER_STACK_BYTES: usize = 2 << 20;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sql");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().to_string();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_sql_corpus_input_is_answered_or_refused_without_a_panic() {
    let inputs = corpus();
    assert!(inputs.len() >= 100, "the committed corpus: {} inputs", inputs.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (snapshot, _) = runtime.block_on(fixture(dir.path()));
    let disclosure = disclosure();
    let mut planned = 0;
    for (name, bytes) in inputs {
        let Ok(sql) = String::from_utf8(bytes) else { continue };
        let _ = SqlLimits::default().check_text(&sql);
        let (snapshot, disclosure) = (snapshot.clone(), disclosure.clone());
        let task = runtime.spawn(async move {
            let mut planned = 0;
            for who in [
                Principal::new("cam", Role::Commissioner),
                Principal::new("rui", Role::Researcher),
            ] {
                let session = QuerySession::new(&snapshot, &who, Some(&disclosure)).expect("session");
                if let Ok(plan) = session.plan(&sql).await
                    && session.analyzed(plan.logical()).is_ok()
                {
                    planned += 1;
                }
            }
            planned
        });
        match runtime.block_on(task) {
            Ok(n) => planned += n,
            Err(e) => panic!("corpus input {name} panicked: {e}"),
        }
    }
    // The corpus holds questions a commissioner may ask, not only refusals: if none
    // planned, the replay tested nothing.
    assert!(planned > 0, "no corpus input planned for anyone");
}
