//! What every topic needs to run `poplar` like a person would: the binary with a test
//! key, a small synthetic region, and a `load` command line.

use std::path::Path;
use std::process::{Command, Stdio};

const KEY: &str = "cli-test-key-0123456789abcdef0123456789";

/// The binary with a test pseudonymisation key and only warnings logged.
pub fn poplar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poplar"));
    c.env("POPLAR_PSEUDONYM_KEY", KEY)
        .env("POPLAR_LOG", "warn,buoyant_kernel=off");
    c
}

/// A small region (30 practices) so a test's load takes seconds, not minutes.
pub fn synth(dir: &Path, patients: u64) {
    let status = poplar()
        .args([
            "synth",
            "--patients",
            &patients.to_string(),
            "--gp-practices",
            "30",
            "--acute-trusts",
            "3",
        ])
        .args([
            "--mental-health-trusts",
            "2",
            "--community-providers",
            "3",
            "--social-care",
            "5",
            "--pilot-patients",
            "2000",
        ])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run synth");
    assert!(status.success());
}

/// `poplar load` of a synthesised region into `store`; its stdout summary is not what tests check.
pub fn load_command(region: &Path, store: &Path) -> Command {
    let mut c = poplar();
    c.arg("load")
        .arg("--registry")
        .arg(region.join("sources.toml"))
        .arg("--input")
        .arg(region.join("deliveries"))
        .arg("--store")
        .arg(store)
        .stdout(Stdio::null());
    c
}
