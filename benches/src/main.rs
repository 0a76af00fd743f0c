//! `poplar-bench`: Poplar's benchmark runner, one subcommand per suite, each printing a
//! JSON result (and appending it to `--output`). Speed is shown here, never by timed tests.
//!
//! Suites so far: `synth` (generate a region) and `load` (synth, then parse, de-identify
//! and land it). Query and serve suites arrive with the engine.

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
        #[arg(long, default_value_t = 4_000_000)]
        group_rows: u64,
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

fn generate(work: &std::path::Path, patients: u64, seed: u64) -> anyhow::Result<(synth::SynthOutput, f64)> {
    let config = SynthConfig::new(patients, seed);
    let started = Instant::now();
    let out = synth::generate(&config, &work.join("region"))?;
    Ok((out, started.elapsed().as_secs_f64()))
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
        Suite::Load { patients, seed, group_rows } => {
            let (out, synth_seconds) = generate(&work, patients, seed)?;
            let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(seed as u8));
            let pseudonymiser = Pseudonymiser::new(&key)?;
            let store_dir = work.join("store");
            let options = LoadOptions {
                registry: out.registry.clone(),
                input: out.deliveries.clone(),
                store: Store::parse(&store_dir.display().to_string())?,
                postcodes: out.postcodes.clone(),
                imd: out.imd.clone(),
                optout: None,
                group_rows,
                progress: false,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let started = Instant::now();
            let report = runtime.block_on(load(&options, &pseudonymiser)).context("load")?;
            let seconds = started.elapsed().as_secs_f64();
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
                }),
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
