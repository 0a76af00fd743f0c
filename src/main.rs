//! `poplar`: the command line for Poplar, a de-identified population health warehouse.

mod client;
mod commands;

use clap::{Parser, Subcommand};
use commands::{audit, cluster, demo, load, measures, optout, serve, sql, studies, synth, users};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "poplar", version, about = "De-identified population health warehouse")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a synthetic region, load it into ./poplar-data and show what landed.
    Demo(demo::DemoArgs),
    /// Generate a synthetic region: source registry, lookups and identifiable extracts.
    Synth(synth::SynthArgs),
    /// Parse, validate, de-identify and land deliveries into the store.
    Load(load::LoadArgs),
    /// Serve Arrow Flight SQL over the landed data.
    Serve(serve::ServeArgs),
    /// Run an Apache Ballista scheduler for `serve --cluster` (with Poplar's codecs).
    Scheduler(cluster::SchedulerArgs),
    /// Run an Apache Ballista executor for `serve --cluster` (reads the store).
    Executor(cluster::ExecutorArgs),
    /// An interactive SQL shell (or script runner) over Arrow Flight SQL.
    Sql(sql::SqlArgs),
    /// Read the measures service: the catalogue, and a measure's values by area.
    Measures {
        #[command(subcommand)]
        command: measures::MeasuresCommand,
    },
    /// Approved studies: submit, review, approve, run, check and fetch outputs.
    Studies {
        #[command(subcommand)]
        command: studies::StudiesCommand,
    },
    /// Manage users of `poplar serve`.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// National data opt-out.
    Optout {
        #[command(subcommand)]
        command: OptoutCommand,
    },
    /// The audit log of requests.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the tail against audit/HEAD; exits 2 naming the first bad entry.
    Verify(audit::VerifyArgs),
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user with a role; prints their new token once.
    Add(users::AddArgs),
}

#[derive(Subcommand)]
enum OptoutCommand {
    /// Remove already-landed rows of people on an opt-out list (NHS numbers, one a line).
    Apply(optout::ApplyArgs),
}

/// Logs go to stderr so stdout stays the command's answer (a token, a table, CSV) for pipes.
/// Colour only on a terminal: escape codes in a captured log or CI output are noise.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("POPLAR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,buoyant_kernel=off,poplar=info,poplar_loaders=info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Stack of each async worker thread.
const WORKER_STACK_BYTES: usize = 8 << 20;

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    // Query planning walks expression trees recursively. The engine bounds their size
    // (`poplar_engine::limits`) for tokio's default 2 MiB stacks; bigger stacks are a
    // margin on top, not the protection.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(WORKER_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::demo(args).await,
            Command::Synth(args) => synth::synth(args),
            Command::Serve(args) => serve::serve(args).await,
            Command::Scheduler(args) => cluster::scheduler(args).await,
            Command::Executor(args) => cluster::executor(args).await,
            Command::Sql(args) => sql::sql(args).await,
            Command::Measures { command } => measures::measures(command).await,
            Command::Studies { command } => studies::studies(command).await,
            Command::Users {
                command: UsersCommand::Add(args),
            } => users::add(args),
            Command::Load(args) => load::load(args).await,
            Command::Optout {
                command: OptoutCommand::Apply(args),
            } => optout::apply(args).await,
            Command::Audit {
                command: AuditCommand::Verify(args),
            } => audit::verify(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
