//! `poplar audit verify`: check the audit log's hash chain and tail.

use clap::Args;
use poplar_engine::audit;
use poplar_loaders::Store;
use std::process::ExitCode;

#[derive(Args)]
pub struct VerifyArgs {
    /// Store root: a directory, file:// or s3:// URL.
    #[arg(long, env = "POPLAR_STORE")]
    store: String,
}

/// Prints what was checked and the head to record; exits 2 naming the first bad entry.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::parse(&args.store)?;
    let report = audit::verify(&store).await?;
    println!(
        "audit log {}{}/: {} entries checked",
        store.root(),
        audit::AUDIT_DIR,
        report.entries_checked
    );
    match &report.last {
        Some(last) => println!("last entry: seq {} hash {}", last.seq, last.hash),
        None => println!("last entry: none (the log is empty)"),
    }
    match &report.head {
        Some(head) => println!("HEAD:       seq {} hash {}", head.seq, head.hash),
        None => println!("HEAD:       none"),
    }
    let Some(first) = report.first_problem() else {
        println!(
            "ok: the chain is intact and matches HEAD. Record the head hash outside Poplar: a later verify must show that entry with the same hash."
        );
        return Ok(ExitCode::SUCCESS);
    };
    for problem in &report.problems {
        eprintln!("  {problem}");
    }
    eprintln!(
        "error: the audit log fails verification; first bad entry: seq {} ({} problem(s))",
        first.seq,
        report.problems.len()
    );
    Ok(ExitCode::from(2))
}
