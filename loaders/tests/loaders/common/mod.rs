//! Set-up shared by the loaders' integration tests: a small synthetic region, load
//! options, and reading what landed as the latest snapshot sees it.

mod hand_built;
mod identifiers;

pub use hand_built::*;
pub use identifiers::*;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use poplar_loaders::landing::{self, Snapshot};
use poplar_loaders::load::LoadOptions;
use poplar_loaders::synth::{self, OrgMix, SynthConfig, SynthOutput};
use poplar_loaders::{Pseudonymiser, Store, Table};
use std::collections::HashSet;
use std::path::Path;

pub const KEY: &[u8] = b"integration-test-key-0123456789abcdef";

pub fn pseudonymiser() -> Pseudonymiser {
    Pseudonymiser::new(KEY).expect("key")
}

pub fn small_mix() -> OrgMix {
    OrgMix {
        gp_practices: 12,
        acute_trusts: 2,
        mental_health_trusts: 1,
        community_providers: 2,
        social_care: 3,
    }
}

pub fn region(dir: &Path, patients: u64, seed: u64) -> SynthOutput {
    let mut config = SynthConfig::new(patients, seed);
    config.mix = small_mix();
    config.fhir_share = 0.3;
    config.pilot_patients = 2_000;
    synth::generate(&config, dir).expect("synth")
}

pub fn options(region: &SynthOutput, store: &Path) -> LoadOptions {
    LoadOptions {
        registry: region.registry.clone(),
        input: region.deliveries.clone(),
        store: Store::parse(&store.display().to_string()).expect("store"),
        postcodes: region.postcodes.clone(),
        imd: region.imd.clone(),
        optout: None,
        group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: false,
    }
}

pub async fn snapshot(store: &Store) -> Snapshot {
    landing::latest_snapshot(store)
        .await
        .expect("snapshot")
        .expect("a snapshot exists")
}

/// All rows of a table as the latest snapshot sees them.
pub async fn rows(store: &Store, table: Table, sql: &str) -> Vec<RecordBatch> {
    let snap = snapshot(store).await;
    match snap.open(store, table).await.expect("open") {
        Some(t) => landing::query(&t, sql).await.expect("query"),
        None => Vec::new(),
    }
}

pub async fn count(store: &Store, table: Table) -> u64 {
    let batches = rows(store, table, "SELECT count(*) FROM t").await;
    batches
        .first()
        .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0) as u64)
}

pub async fn person_ids(store: &Store, table: Table, filter: &str) -> HashSet<i64> {
    let batches = rows(store, table, &format!("SELECT person_id FROM t {filter}")).await;
    landing::int64_values(&batches, 0).into_iter().collect()
}

pub fn texts(batches: &[RecordBatch], column: usize) -> Vec<String> {
    landing::string_values(batches, column)
        .expect("text")
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}
