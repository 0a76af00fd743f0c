//! `poplar users add`: the steward's way to issue a token. The token is printed once on
//! stdout (so it can be piped) and only its hash is kept.

use clap::Args;
use poplar_engine::Role;
use poplar_engine::auth::UsersFile;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct AddArgs {
    /// User name.
    name: String,
    /// commissioner, analyst, researcher or steward.
    #[arg(long)]
    role: Role,
    /// Users file (created if absent).
    #[arg(long, env = "POPLAR_USERS")]
    users: PathBuf,
}

pub fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let token = UsersFile::add(&args.users, &args.name, args.role)?;
    eprintln!(
        "added {} ({}) to {}; their token (shown once, store it safely):",
        args.name,
        args.role.as_str(),
        args.users.display()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
