//! `poplar optout apply`: honours the national data opt-out for rows that landed before a
//! person opted out; `load --optout` covers deliveries still to come.

use clap::Args;
use poplar_loaders::optout::{self, OptOutList};
use poplar_loaders::{Pseudonymiser, Store};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ApplyArgs {
    /// File of NHS numbers, one per line.
    #[arg(long)]
    list: PathBuf,
    /// Store root: a directory, file:// or s3:// URL.
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
    /// Pseudonymisation key file (else POPLAR_PSEUDONYM_KEY).
    #[arg(long, env = "POPLAR_KEY_FILE")]
    key_file: Option<PathBuf>,
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let pseudonymiser = Pseudonymiser::from_file_or_env(args.key_file.as_deref())?;
    let store = Store::parse(&args.store)?;
    let list = OptOutList::read(&args.list, &pseudonymiser)?;
    let run_id = format!("optout-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let report = optout::apply(&store, &list, &run_id).await?;
    println!(
        "opt-out applied: {} newly opted out, {} already recorded, {} entries not valid NHS numbers",
        report.newly_opted_out, report.already_recorded, report.invalid_entries
    );
    for (table, n) in &report.rows_removed {
        println!("  removed from {table:<16} {n:>10} rows");
    }
    if let Some(s) = report.snapshot {
        println!("  snapshot {s}");
    }
    // The members derived before the opt-out are stale now (the servers compute them
    // until this commits the current ones).
    super::load::derive_registers(&store).await?;
    Ok(ExitCode::SUCCESS)
}
