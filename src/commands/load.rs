//! `poplar load`: the operator's view of a load. The loaders do the work; this module turns
//! flags into `LoadOptions` and the report into the summary, JSON and exit code people act on.

use anyhow::Context;
use clap::Args;
use poplar_loaders::load::{LoadOptions, LoadReport, load as run_load};
use poplar_loaders::quarantine::printable;
use poplar_loaders::{Pseudonymiser, Store};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct LoadArgs {
    /// Source registry (sources.toml).
    #[arg(long, env = "POPLAR_REGISTRY")]
    registry: PathBuf,
    /// Directory of deliveries: <ODS>/<delivery>/manifest.toml and files.
    #[arg(long)]
    input: PathBuf,
    /// Store root: a directory, file:// or s3:// URL (AWS_* variables configure S3).
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
    /// ONS postcode to LSOA lookup [default: lookups/postcode_lsoa.csv beside the registry].
    #[arg(long)]
    postcodes: Option<PathBuf>,
    /// MHCLG IoD2019 LSOA file [default: lookups/imd2019_lsoa.csv beside the registry].
    #[arg(long)]
    imd: Option<PathBuf>,
    /// National data opt-out list (NHS numbers): excluded now and removed from landed data.
    #[arg(long)]
    optout: Option<PathBuf>,
    /// Pseudonymisation key file (else POPLAR_PSEUDONYM_KEY).
    #[arg(long, env = "POPLAR_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Most source rows parsed and committed together (the next group is parsed while
    /// one lands, so two groups may be in memory).
    #[arg(long, default_value_t = poplar_loaders::load::DEFAULT_GROUP_ROWS, env = "POPLAR_LOAD_GROUP_ROWS")]
    group_rows: u64,
    /// Largest data file a delivery may send, in bytes; a larger file (or a manifest
    /// declaring one) rejects its delivery as `file_too_large`. Files are streamed, so
    /// this bounds a hostile delivery's cost, not memory.
    #[arg(long, default_value_t = poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES, env = "POPLAR_LOAD_MAX_FILE_BYTES")]
    max_file_bytes: u64,
    /// Write the full summary as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn beside(registry: &Path, name: &str) -> PathBuf {
    registry.parent().unwrap_or(Path::new(".")).join("lookups").join(name)
}

pub async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    // Before anything is written: the store, the report and logs are private files.
    poplar_loaders::store::private_files();
    let pseudonymiser = Pseudonymiser::from_file_or_env(args.key_file.as_deref())?;
    let options = LoadOptions {
        postcodes: args
            .postcodes
            .unwrap_or_else(|| beside(&args.registry, "postcode_lsoa.csv")),
        imd: args.imd.unwrap_or_else(|| beside(&args.registry, "imd2019_lsoa.csv")),
        registry: args.registry,
        input: args.input,
        store: Store::parse(&args.store)?,
        optout: args.optout,
        group_rows: args.group_rows.max(1),
        max_file_bytes: args.max_file_bytes,
        progress: std::io::stderr().is_terminal(),
    };
    let report = run_load(&options, &pseudonymiser).await?;
    print_report(&report);
    derive_registers(&options.store).await?;
    if let Some(path) = &args.report {
        std::fs::write(path, report_json(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if report.rejected.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} deliveries were rejected (everything else landed):",
            report.rejected.len()
        );
        for r in &report.rejected {
            eprintln!("  {}", r.describe());
        }
        Ok(ExitCode::from(2))
    }
}

/// Derive the registers of what was just committed, so servers open the snapshot without
/// computing them (see `poplar_engine::derived`). Every writer of the store runs this last.
pub(crate) async fn derive_registers(store: &Store) -> anyhow::Result<()> {
    use poplar_engine::catalog::{Derived, derive_registers};
    match derive_registers(store).await.context("deriving the registers")? {
        Derived::NothingLanded => {}
        Derived::AlreadyCurrent { snapshot } => println!("registers: current in snapshot {snapshot}"),
        Derived::Committed {
            snapshot,
            rows,
            seconds,
        } => {
            println!("registers: {rows} memberships derived in {seconds:.1}s; snapshot {snapshot}")
        }
    }
    Ok(())
}

fn print_report(r: &LoadReport) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "load {}: {} deliveries landed, {} unchanged and skipped, {} rejected; {} source rows in {:.1}s ({:.0} rows/s); snapshot {}",
        r.load_id,
        r.landed_deliveries,
        r.skipped_unchanged,
        r.rejected.len(),
        r.source_rows_read,
        secs,
        r.source_rows_read as f64 / secs.max(1e-9),
        r.snapshot.map_or("none".into(), |s| s.to_string()),
    );
    for rec in &r.recovered {
        println!(
            "  recovered {} from version {} to {:?}",
            rec.table.name(),
            rec.from_version,
            rec.to_version
        );
    }
    println!("  rows landed:");
    for (table, n) in &r.rows_landed {
        println!("    {table:<16} {n:>12}");
    }
    println!("  quarantined:");
    if r.quarantined.is_empty() {
        println!("    (none)");
    }
    for (reason, n) in &r.quarantined {
        println!("    {reason:<24} {n:>8}");
    }
    println!("  excluded by opt-out: {} rows", r.optout_excluded);
    if let Some(o) = &r.retroactive_optout {
        println!(
            "  opt-out list: {} newly opted out, {} already recorded, {} invalid entries; removed {:?}",
            o.newly_opted_out, o.already_recorded, o.invalid_entries, o.rows_removed
        );
    }
    if r.unmatched_postcodes > 0 {
        println!(
            "  patients whose postcode is not in the lookup (LSOA left empty): {}",
            r.unmatched_postcodes
        );
    }
    if !r.per_source.is_empty() {
        // ODS codes come from the operator's registry; escaped all the same, as is every
        // name printed here.
        println!("  per source: ods  rows_read  patients  events  medications  encounters  quarantined  opted_out");
        for (ods, s) in &r.per_source {
            let n = |t: &str| s.landed.get(t).copied().unwrap_or(0);
            println!(
                "    {:<8} {:>9} {:>9} {:>8} {:>12} {:>11} {:>12} {:>10}",
                printable(ods),
                s.rows_read,
                n("patients"),
                n("clinical_events"),
                n("medications"),
                n("encounters"),
                s.quarantined,
                s.optout_excluded
            );
        }
        // What each source sent that Poplar could not read, so a steward can ask for a fix.
        for (ods, s) in &r.per_source {
            for (kind, codes) in &s.not_understood {
                for (code, n) in codes {
                    println!(
                        "  not understood from {}: {kind} {}: {n}",
                        printable(ods),
                        printable(code)
                    );
                }
            }
        }
    }
}

fn report_json(r: &LoadReport) -> anyhow::Result<String> {
    let value = serde_json::json!({
        "load_id": r.load_id,
        "landed_deliveries": r.landed_deliveries,
        "skipped_unchanged": r.skipped_unchanged,
        "rejected": r.rejected.iter().map(|x| serde_json::json!({
            "source_org": x.source_org, "delivery": x.delivery, "file": x.problem.file,
            "reason": x.problem.reason.code(), "detail": x.problem.detail,
        })).collect::<Vec<_>>(),
        "rows_landed": r.rows_landed,
        "quarantined": r.quarantined,
        "optout_excluded": r.optout_excluded,
        "source_rows_read": r.source_rows_read,
        "seconds": r.elapsed.as_secs_f64(),
        "snapshot": r.snapshot,
        "per_source": r.per_source.iter().map(|(k, s)| (k.clone(), serde_json::json!({
            "deliveries": s.deliveries, "rows_read": s.rows_read, "landed": s.landed,
            "quarantined": s.quarantined, "optout_excluded": s.optout_excluded,
            "not_understood": s.not_understood,
        }))).collect::<serde_json::Map<_, _>>(),
    });
    Ok(serde_json::to_string_pretty(&value)?)
}
