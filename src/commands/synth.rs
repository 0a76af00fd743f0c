//! `poplar synth`: writes a synthetic region's identifiable extracts, the input every
//! other command (and every test) starts from when no real deliveries are at hand.

use clap::Args;
use poplar_loaders::synth::{self, OrgMix, SynthConfig};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SynthArgs {
    /// Number of people in the region.
    #[arg(long, default_value_t = 10_000)]
    patients: u64,
    /// Output directory (must not already hold a region).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 320)]
    gp_practices: usize,
    #[arg(long, default_value_t = 12)]
    acute_trusts: usize,
    #[arg(long, default_value_t = 6)]
    mental_health_trusts: usize,
    #[arg(long, default_value_t = 12)]
    community_providers: usize,
    #[arg(long, default_value_t = 50)]
    social_care: usize,
    /// Share of GP practices that send FHIR R4 bulk NDJSON instead of CSV.
    #[arg(long, default_value_t = 0.25)]
    fhir_share: f64,
    /// Date of the extracts (YYYY-MM-DD); fixed so output is reproducible.
    #[arg(long, default_value = "2026-09-30")]
    extract_date: chrono::NaiveDate,
    /// People in the prevalence-calibration pilot (tests use fewer).
    #[arg(long, default_value_t = 24_000, hide = true)]
    pilot_patients: u64,
}

pub fn synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.gp_practices > 0, "a region needs at least one GP practice");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fhir_share),
        "--fhir-share is a share between 0 and 1"
    );
    let mut config = SynthConfig::new(args.patients, args.seed);
    config.mix = OrgMix {
        gp_practices: args.gp_practices,
        acute_trusts: args.acute_trusts,
        mental_health_trusts: args.mental_health_trusts,
        community_providers: args.community_providers,
        social_care: args.social_care,
    };
    config.fhir_share = args.fhir_share;
    config.extract_date = args.extract_date;
    config.pilot_patients = args.pilot_patients;
    config.progress = std::io::stderr().is_terminal();
    let out = synth::generate(&config, &args.out)?;
    let r = &out.report;
    println!(
        "synthetic region: {} organisations, {} patients, {} source rows in {:.1}s ({:.0} rows/s, {:.0} patients/s)",
        r.organisations.values().sum::<usize>(),
        r.patients,
        r.source_rows,
        r.seconds,
        r.source_rows as f64 / r.seconds.max(1e-9),
        r.patients as f64 / r.seconds.max(1e-9),
    );
    println!("  registry   {}", out.registry.display());
    println!("  deliveries {}", out.deliveries.display());
    println!("  lookups    {} , {}", out.postcodes.display(), out.imd.display());
    println!("  report     {}", args.out.join("synth-report.json").display());
    Ok(ExitCode::SUCCESS)
}
