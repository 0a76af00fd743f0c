//! The SQL policy entry point: arbitrary text, sent by a commissioner and by a researcher,
//! through the pre-planning limits (`SqlLimits`) and `QuerySession::plan` (one read-only
//! statement, then disclosure control) over a tiny landed region. Any answer is fine, a
//! refusal included; a panic or a stack overflow is a finding.
//!
//! Planning runs on a worker thread with tokio's default 2 MiB stack: the limits promise
//! to hold there (the server gives its workers more, as a margin).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use poplar_engine::disclosure::Policy;
use poplar_engine::limits::SqlLimits;
use poplar_engine::{Disclosure, Principal, QuerySession, Role, SnapshotCatalog, SnapshotContext};
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::synth::{OrgMix, SynthConfig, generate};
use poplar_loaders::{Pseudonymiser, Store};

const WORKER_STACK_BYTES: usize = 2 << 20;

struct Fixed {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    snapshot: Arc<SnapshotContext>,
    disclosure: Arc<Disclosure>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_stack_size(WORKER_STACK_BYTES)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = SynthConfig::new(60, 7);
        config.mix = OrgMix {
            gp_practices: 2,
            acute_trusts: 1,
            mental_health_trusts: 1,
            community_providers: 1,
            social_care: 1,
        };
        config.pilot_patients = 200;
        let region = generate(&config, &dir.path().join("region")).expect("synth");
        let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
        let options = LoadOptions {
            registry: region.registry.clone(),
            input: region.deliveries.clone(),
            store: store.clone(),
            postcodes: region.postcodes.clone(),
            imd: region.imd.clone(),
            optout: None,
            group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
            max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
            progress: false,
        };
        let pseudonymiser = Pseudonymiser::new(b"fuzz-key-0123456789abcdef0123456789").expect("key");
        let snapshot = runtime.block_on(async {
            load(&options, &pseudonymiser).await.expect("load");
            SnapshotCatalog::open(store, Vec::new())
                .await
                .expect("catalog")
                .current()
        });
        let policy = Policy::new(b"fuzz-noise-key-0123456789abcdef0123".to_vec()).expect("policy");
        Fixed {
            _dir: dir,
            runtime,
            snapshot,
            disclosure: Arc::new(Disclosure::new(policy)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let fixed = fixed();
    // The text limit on its own, as every path calls it first.
    let _ = SqlLimits::default().check_text(sql);
    let sql = sql.to_string();
    let snapshot = fixed.snapshot.clone();
    let disclosure = fixed.disclosure.clone();
    let planned = fixed.runtime.spawn(async move {
        for who in [
            Principal::new("cam", Role::Commissioner),
            Principal::new("rui", Role::Researcher),
        ] {
            let session = QuerySession::new(&snapshot, &who, Some(&disclosure)).expect("session");
            if let Ok(plan) = session.plan(&sql).await {
                // What would run: the analyzed plan, disclosure control included.
                let _ = session.analyzed(plan.logical());
            }
        }
    });
    if let Err(e) = fixed.runtime.block_on(planned) {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
});
