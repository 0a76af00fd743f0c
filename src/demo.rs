//! `poplar demo`: the main job on embedded defaults. Makes a synthetic 400-organisation
//! region, loads it into `./poplar-data` (a local-directory object store) and prints what
//! landed. A second run reuses the data (the load finds every delivery unchanged).

use anyhow::Context;
use clap::Args;
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::synth::{self, SynthConfig};
use poplar_loaders::{Pseudonymiser, Store};
use rand::RngCore;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct DemoArgs {
    /// People in the synthetic region.
    #[arg(long, default_value_t = 50_000)]
    patients: u64,
    /// Where the demo keeps its region, key and store.
    #[arg(long, default_value = "poplar-data", env = "POPLAR_DEMO_DIR")]
    data: PathBuf,
}

/// The demo's own pseudonymisation key: random, made once, readable only by its owner.
fn demo_key(path: &Path) -> anyhow::Result<Pseudonymiser> {
    if !path.exists() {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        std::fs::write(path, hex::encode(key)).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(Pseudonymiser::from_file_or_env(Some(path))?)
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let region = args.data.join("region");
    let (registry, deliveries, postcodes, imd) = synth::layout(&region);
    if deliveries.exists() {
        println!("reusing the synthetic region in {}", region.display());
    } else {
        println!("generating a synthetic region of {} patients in {} ...", args.patients, region.display());
        let mut config = SynthConfig::new(args.patients, 42);
        config.progress = std::io::stderr().is_terminal();
        let out = synth::generate(&config, &region)?;
        println!(
            "  {} organisations, {} source rows in {:.1}s",
            out.report.organisations.values().sum::<usize>(),
            out.report.source_rows,
            out.report.seconds
        );
    }
    let pseudonymiser = demo_key(&args.data.join("pseudonym.key"))?;
    let options = LoadOptions {
        registry,
        input: deliveries,
        store: Store::parse(&args.data.join("store").display().to_string())?,
        postcodes,
        imd,
        optout: None,
        group_rows: 4_000_000,
        progress: std::io::stderr().is_terminal(),
    };
    let report = load(&options, &pseudonymiser).await?;
    println!(
        "loaded: {} deliveries landed, {} unchanged; {} source rows in {:.1}s",
        report.landed_deliveries,
        report.skipped_unchanged,
        report.source_rows_read,
        report.elapsed.as_secs_f64()
    );
    for (table, n) in &report.rows_landed {
        println!("  {table:<16} {n:>10} rows");
    }
    for (reason, n) in &report.quarantined {
        println!("  quarantined {reason:<22} {n:>6}");
    }
    println!("store: {} (Delta tables; read with deltalake, DuckDB, Polars or Spark)", options.store.root());
    println!("demo ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
