//! `poplar-bench`: Poplar's benchmark runner, one subcommand per suite, each printing a
//! JSON result (and appending it to `--output`). Speed is shown here, never by timed tests.
//!
//! Suites: `synth` (generate a region), `load` (synth, then parse, de-identify and land
//! it), `query` (synth and load once, then time opening the catalog, which computes the
//! registers, and each register question; medians over `--iterations`), `measures` (synth
//! and load once, serve, then time measures requests over gRPC from a warm server as a
//! steward and a commissioner, interleaved).

mod measures;

use anyhow::Context;
use clap::{Parser, Subcommand};
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::synth::{self, SynthConfig};
use poplar_loaders::{Pseudonymiser, Store};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "poplar-bench", about = "Poplar benchmark suites")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
    /// Append each result as one JSON line to this file.
    #[arg(long, global = true, env = "POPLAR_BENCH_OUTPUT")]
    output: Option<PathBuf>,
    /// Working directory for generated data [default: a temporary directory].
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Suite {
    /// Generate a synthetic region of N patients (400 organisations).
    Synth {
        #[arg(long, default_value_t = 100_000)]
        patients: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Generate a region, then time `load` of every delivery into a fresh local store.
    Load {
        #[arg(long, default_value_t = 100_000)]
        patients: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Source rows per commit group (as `poplar load --group-rows`).
        #[arg(long, default_value_t = poplar_loaders::load::DEFAULT_GROUP_ROWS)]
        group_rows: u64,
    },
    /// Generate and load a region (once, reused from --work-dir), then time register queries.
    Query {
        #[arg(long, default_value_t = 100_000)]
        patients: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 5)]
        iterations: usize,
    },
    /// Generate and load a region (once, reused from --work-dir), serve it, and time the
    /// measures service: one measure for every practice, and a whole dashboard page.
    Measures {
        #[arg(long, default_value_t = 100_000)]
        patients: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 7)]
        iterations: usize,
    },
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    os: &'static str,
    arch: &'static str,
}

#[derive(Serialize)]
struct Result {
    suite: &'static str,
    patients: u64,
    organisations: usize,
    source_rows: u64,
    seconds: f64,
    rows_per_second: f64,
    detail: serde_json::Value,
    machine: Machine,
    build: &'static str,
}

fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

const BUILD: &str = if cfg!(debug_assertions) { "debug" } else { "release" };

/// A fresh region in `work` (any earlier region and store there are removed first, so
/// `synth` and `load` always time a cold generation and a first load).
fn generate(work: &std::path::Path, patients: u64, seed: u64) -> anyhow::Result<(synth::SynthOutput, f64)> {
    for old in [work.join("region"), work.join("store")] {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
    }
    let config = SynthConfig::new(patients, seed);
    let started = Instant::now();
    let out = synth::generate(&config, &work.join("region"))?;
    Ok((out, started.elapsed().as_secs_f64()))
}

/// Synth and load into `work` unless a previous run left a loaded store there.
fn prepared_store(
    work: &std::path::Path,
    patients: u64,
    seed: u64,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(Store, u64, usize)> {
    let store_dir = work.join("store");
    let (out, _) = if work.join("region").join("deliveries").exists() {
        let (registry, deliveries, postcodes, imd) = synth::layout(&work.join("region"));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(work.join("region/synth-report.json"))?)?;
        let rows = report["source_rows"].as_u64().unwrap_or(0);
        let orgs = report["organisations"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(|v| v.as_u64()).sum::<u64>() as usize);
        let store = Store::parse(&store_dir.display().to_string())?;
        let options = LoadOptions {
            registry,
            input: deliveries,
            store: store.clone(),
            postcodes,
            imd,
            optout: None,
            group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
            max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
            progress: false,
        };
        runtime.block_on(load(&options, &bench_key(seed)?))?;
        runtime.block_on(poplar_engine::catalog::derive_registers(&store))?;
        return Ok((store, rows, orgs));
    } else {
        generate(work, patients, seed)?
    };
    let store = Store::parse(&store_dir.display().to_string())?;
    let options = LoadOptions {
        registry: out.registry.clone(),
        input: out.deliveries.clone(),
        store: store.clone(),
        postcodes: out.postcodes.clone(),
        imd: out.imd.clone(),
        optout: None,
        group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: false,
    };
    runtime.block_on(load(&options, &bench_key(seed)?))?;
    runtime.block_on(poplar_engine::catalog::derive_registers(&store))?;
    Ok((store, out.report.source_rows, out.report.organisations.values().sum()))
}

fn bench_key(seed: u64) -> anyhow::Result<Pseudonymiser> {
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(seed as u8));
    Ok(Pseudonymiser::new(&key)?)
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let temp = tempfile::tempdir()?;
    let work = cli.work_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let result = match cli.suite {
        Suite::Synth { patients, seed } => {
            let (out, seconds) = generate(&work, patients, seed)?;
            Result {
                suite: "synth",
                patients,
                organisations: out.report.organisations.values().sum(),
                source_rows: out.report.source_rows,
                seconds,
                rows_per_second: out.report.source_rows as f64 / seconds,
                detail: serde_json::json!({ "rows_by_file": out.report.rows_by_file, "patients_per_second": patients as f64 / seconds }),
                machine: machine(),
                build: BUILD,
            }
        }
        Suite::Load {
            patients,
            seed,
            group_rows,
        } => {
            let (out, synth_seconds) = generate(&work, patients, seed)?;
            let pseudonymiser = bench_key(seed)?;
            let store_dir = work.join("store");
            let options = LoadOptions {
                registry: out.registry.clone(),
                input: out.deliveries.clone(),
                store: Store::parse(&store_dir.display().to_string())?,
                postcodes: out.postcodes.clone(),
                imd: out.imd.clone(),
                optout: None,
                group_rows,
                max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
                progress: false,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let started = Instant::now();
            let report = runtime.block_on(load(&options, &pseudonymiser)).context("load")?;
            let seconds = started.elapsed().as_secs_f64();
            // The writer's last step: the registers, so a server opens the snapshot at once.
            let derived = runtime
                .block_on(poplar_engine::catalog::derive_registers(&options.store))
                .context("deriving registers")?;
            let with_derive = started.elapsed().as_secs_f64();
            let landed_bytes = dir_size(&store_dir);
            Result {
                suite: "load",
                patients,
                organisations: out.report.organisations.values().sum(),
                source_rows: report.source_rows_read,
                seconds,
                rows_per_second: report.source_rows_read as f64 / seconds,
                detail: serde_json::json!({
                    "rows_landed": report.rows_landed,
                    "quarantined": report.quarantined,
                    "deliveries": report.landed_deliveries,
                    "group_rows": group_rows,
                    "synth_seconds": synth_seconds,
                    "input_bytes": dir_size(&out.deliveries),
                    "landed_bytes": landed_bytes,
                    "derive_registers": format!("{derived:?}"),
                    "seconds_with_derive": with_derive,
                    // Parsing the next group overlaps landing this one, so these two sum
                    // to more than `seconds` when the overlap works.
                    "parse_seconds": report.parse_time.as_secs_f64(),
                    "land_seconds": report.land_time.as_secs_f64(),
                    "rows_per_second_with_derive": report.source_rows_read as f64 / with_derive,
                }),
                machine: machine(),
                build: BUILD,
            }
        }
        Suite::Query {
            patients,
            seed,
            iterations,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let (store, source_rows, organisations) = prepared_store(&work, patients, seed, &runtime)?;
            let steward = poplar_engine::Principal {
                user: "bench".into(),
                role: poplar_engine::Role::Steward,
            };
            let (open_seconds, timings) = runtime.block_on(async {
                let started = Instant::now();
                let catalog = poplar_engine::SnapshotCatalog::open(store, Vec::new()).await?;
                let open_seconds = started.elapsed().as_secs_f64();
                let loaded = catalog.current();
                let mut questions: Vec<(String, String)> = poplar_queries::REGISTERS
                    .iter()
                    .map(|r| (format!("register_{}", r.id), format!("SELECT practice, count(*) FROM register_{} GROUP BY practice", r.id)))
                    .collect();
                questions.push(("multimorbidity_by_practice".into(), "SELECT practice, count(*) FROM (SELECT person_id, practice FROM register_membership GROUP BY person_id, practice HAVING count(*) >= 2) GROUP BY practice".into()));
                questions.push(("diabetes_by_imd_decile".into(), "SELECT p.imd_decile, count(d.person_id), count(*) FROM registered_population p LEFT JOIN register_diabetes d USING (person_id) GROUP BY p.imd_decile".into()));
                // The same questions as a steward (no disclosure control) and as a
                // commissioner (analyzer rewrite, release, noise and rounding), interleaved in
                // one run so the difference is the cost of disclosure control.
                let commissioner = poplar_engine::Principal { user: "bench-commissioner".into(), role: poplar_engine::Role::Commissioner };
                let disclosure = poplar_engine::Disclosure::new(poplar_engine::disclosure::Policy::new(b"bench-noise-key-0123456789abcdef0123".to_vec())?);
                let mut timings = serde_json::Map::new();
                for (name, sql) in questions {
                    let (mut plain, mut controlled) = (Vec::new(), Vec::new());
                    for _ in 0..iterations.max(1) {
                        let t = Instant::now();
                        poplar_engine::QuerySession::new(&loaded, &steward, None)?.sql(&sql).await?;
                        plain.push(t.elapsed().as_secs_f64());
                        let t = Instant::now();
                        poplar_engine::QuerySession::new(&loaded, &commissioner, Some(&disclosure))?.sql(&sql).await?;
                        controlled.push(t.elapsed().as_secs_f64());
                    }
                    timings.insert(
                        name,
                        serde_json::json!({ "median_seconds": median(plain), "with_disclosure_control_median_seconds": median(controlled) }),
                    );
                }
                Ok::<_, anyhow::Error>((open_seconds, timings))
            })?;
            let slowest = timings
                .values()
                .filter_map(|v| v["median_seconds"].as_f64())
                .fold(0.0, f64::max);
            Result {
                suite: "query",
                patients,
                organisations,
                source_rows,
                seconds: slowest,
                rows_per_second: f64::NAN,
                detail: serde_json::json!({
                    "catalog_open_and_register_compute_seconds": open_seconds,
                    "iterations": iterations,
                    "queries": timings,
                    "slowest_query_median_seconds": slowest,
                }),
                machine: machine(),
                build: BUILD,
            }
        }
        Suite::Measures {
            patients,
            seed,
            iterations,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let (store, source_rows, organisations) = prepared_store(&work, patients, seed, &runtime)?;
            let detail = runtime.block_on(measures::run(&work, store, iterations))?;
            let slowest = detail["practice_prevalence"]["commissioner_median_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN);
            Result {
                suite: "measures",
                patients,
                organisations,
                source_rows,
                seconds: slowest,
                rows_per_second: f64::NAN,
                detail,
                machine: machine(),
                build: BUILD,
            }
        }
    };
    let line = serde_json::to_string(&result)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = &cli.output {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
