//! `poplar demo`: the main job on embedded defaults. Makes a synthetic 400-organisation
//! region, loads it into `./poplar-data` (a local-directory object store), serves it over
//! Arrow Flight SQL, asks it a handful of real cohort questions through a Flight SQL
//! client, prints the answers, and keeps serving (the measures dashboard too) with
//! instructions to connect. A second run reuses the region, the store (every delivery is
//! found unchanged) and the users.

use anyhow::Context;
use clap::Args;
use poplar_engine::Role;
use poplar_engine::auth::UsersFile;
use poplar_engine::server::{ServeOptions, shutdown_signal, start};
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::synth::{self, SynthConfig};
use poplar_loaders::{Pseudonymiser, Store};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DemoArgs {
    /// People in the synthetic region.
    #[arg(long, default_value_t = 50_000)]
    patients: u64,
    /// Where the demo keeps its region, key, users and store.
    #[arg(long, default_value = "poplar-data", env = "POPLAR_DEMO_DIR")]
    data: PathBuf,
    #[arg(long, env = "POPLAR_ADDR", default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// Set up, answer the demo questions, and exit instead of serving.
    #[arg(long)]
    no_serve: bool,
}

/// Demo users and their tokens, kept (0600) beside the demo data so every run can print them.
#[derive(Default, Serialize, Deserialize)]
struct DemoTokens {
    tokens: BTreeMap<String, String>,
}

const QUESTIONS: &[(&str, &str)] = &[
    (
        "Long-term-condition registers by ICB (people on each register)",
        "SELECT o.icb, m.register, count(DISTINCT m.person_id) AS people \
         FROM register_membership m JOIN organisations o ON o.ods_code = m.practice \
         GROUP BY o.icb, m.register ORDER BY o.icb, people DESC",
    ),
    (
        "Diabetes prevalence (17+) by IMD decile, 1 = most deprived",
        "SELECT p.imd_decile, count(d.person_id) AS on_register, count(*) AS registered_17_plus, \
                round(100.0 * count(d.person_id) / count(*), 1) AS prevalence_pct \
         FROM registered_population p LEFT JOIN register_diabetes d USING (person_id) \
         WHERE age_on(p.birth_month, DATE '2026-09-30') >= 17 AND p.imd_decile IS NOT NULL \
         GROUP BY p.imd_decile ORDER BY p.imd_decile",
    ),
    (
        "Multimorbidity: people on 2+ registers, by PCN (top 10)",
        "SELECT o.pcn_name, count(*) AS people_2_plus FROM ( \
           SELECT person_id, practice FROM register_membership GROUP BY person_id, practice HAVING count(*) >= 2 \
         ) m JOIN organisations o ON o.ods_code = m.practice \
         GROUP BY o.pcn_name ORDER BY people_2_plus DESC LIMIT 10",
    ),
    (
        "Hypertension register by NHS age band and sex",
        "SELECT nhs_age_band(age_on(p.birth_month, DATE '2026-09-30')) AS age_band, p.sex, count(*) AS people \
         FROM register_hypertension h JOIN registered_population p USING (person_id) \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "A&E attendances by people on the COPD register, by financial year",
        "SELECT financial_year(e.start_date) AS financial_year, count(*) AS attendances, \
                count(DISTINCT e.person_id) AS people \
         FROM encounters e JOIN register_copd c USING (person_id) \
         WHERE e.setting = 'a&e' GROUP BY 1 ORDER BY 1",
    ),
];

/// Asked as the demo commissioner, to show disclosure control at work.
const COMMISSIONER_QUESTIONS: &[(&str, &str)] = &[
    (
        "People on the dementia register by practice (first ten practices)",
        "SELECT practice, count(*) AS people FROM register_dementia GROUP BY practice ORDER BY practice LIMIT 10",
    ),
    (
        "People with two or more long-term conditions, by PCN",
        "SELECT o.pcn_name, count(*) AS people FROM (SELECT person_id, practice FROM register_membership \
         GROUP BY person_id, practice HAVING count(*) >= 2) m JOIN organisations o ON o.ods_code = m.practice \
         GROUP BY o.pcn_name ORDER BY o.pcn_name LIMIT 10",
    ),
];

fn random_key_file(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        write_private(path, &hex::encode(key))?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn demo_users(data: &Path) -> anyhow::Result<(PathBuf, DemoTokens)> {
    let users = data.join("users.toml");
    let tokens_path = data.join("demo-tokens.toml");
    let mut tokens: DemoTokens = match std::fs::read_to_string(&tokens_path) {
        Ok(text) => toml::from_str(&text).context("reading demo-tokens.toml")?,
        Err(_) => DemoTokens::default(),
    };
    for (name, role) in [
        ("demo-steward", Role::Steward),
        ("demo-commissioner", Role::Commissioner),
        ("demo-researcher", Role::Researcher),
    ] {
        if !tokens.tokens.contains_key(name) {
            let token = UsersFile::add(&users, name, role)?;
            tokens.tokens.insert(name.to_string(), token);
        }
    }
    write_private(&tokens_path, &toml::to_string_pretty(&tokens)?)?;
    Ok((users, tokens))
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let region = args.data.join("region");
    let (registry, deliveries, postcodes, imd) = synth::layout(&region);
    if deliveries.exists() {
        println!("reusing the synthetic region in {}", region.display());
    } else {
        println!(
            "generating a synthetic region of {} patients in {} ...",
            args.patients,
            region.display()
        );
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
    let key = args.data.join("pseudonym.key");
    random_key_file(&key)?;
    let store = Store::parse(&args.data.join("store").display().to_string())?;
    let options = LoadOptions {
        registry,
        input: deliveries,
        store: store.clone(),
        postcodes,
        imd,
        optout: None,
        group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: std::io::stderr().is_terminal(),
    };
    let report = load(&options, &Pseudonymiser::from_file_or_env(Some(&key))?).await?;
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
    super::load::derive_registers(&store).await?;

    let (users, tokens) = demo_users(&args.data)?;
    let noise_key = args.data.join("noise.key");
    random_key_file(&noise_key)?;
    let running = start(ServeOptions {
        store,
        users,
        addr: args.addr,
        tls: None,
        refresh: Duration::from_secs(2),
        drain: Duration::from_secs(10),
        disclosure: super::serve::disclosure_policy(Some(&noise_key), None)?,
        limits: poplar_engine::limits::Limits::default(),
        studies: Default::default(),
        optout_key: None,
        cluster: None,
    })
    .await?;
    let url = format!("grpc://{}", running.addr);
    let steward = tokens.tokens.get("demo-steward").cloned().unwrap_or_default();
    let mut client = crate::client::connect(&url, Some("demo-steward"), &steward, None).await?;
    println!(
        "\nserving Arrow Flight SQL at {url}; set-up took {:.1}s\n",
        started.elapsed().as_secs_f64()
    );
    for (title, sql) in QUESTIONS {
        let asked = Instant::now();
        let batches = crate::client::run(&mut client, sql).await?;
        println!("== {title} ({:.2}s, as demo-steward)", asked.elapsed().as_secs_f64());
        println!("{}\n", arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    println!(
        "The answers above are a steward's: true, unrounded values. A commissioner asking the same goes through disclosure control:\n"
    );
    let commissioner = tokens.tokens.get("demo-commissioner").cloned().unwrap_or_default();
    let mut cam = crate::client::connect(&url, Some("demo-commissioner"), &commissioner, None).await?;
    for (title, sql) in COMMISSIONER_QUESTIONS {
        let asked = Instant::now();
        let batches = crate::client::run(&mut cam, sql).await?;
        println!(
            "== {title} ({:.2}s, as demo-commissioner)",
            asked.elapsed().as_secs_f64()
        );
        println!(
            "{}\n",
            arrow::util::pretty::pretty_format_batches(&crate::client::for_display(&batches)?)?
        );
    }
    println!(
        "* = suppressed: fewer than 8 people, or a count of 1 to 7; other counts are rounded to 5 after sticky noise. \
         Refused for a commissioner, with the rule named: person-level rows, anything derived from person_id, min/max. \
         See docs/disclosure-control.md."
    );
    if args.no_serve {
        running.stop().await?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nDashboard (measures for population health teams; sign in with a token below):");
    println!("  http://{}/", running.addr);
    println!("\nConnect:");
    println!("  poplar sql --addr {url} --user demo-steward --token {steward}");
    println!("  poplar measures get prevalence_diabetes --level pcn --addr {url} --token {commissioner}");
    println!("  Python (pip install adbc-driver-flightsql pyarrow):");
    println!("    import adbc_driver_flightsql.dbapi as fs");
    println!(
        "    conn = fs.connect(\"{url}\", db_kwargs={{\"username\": \"demo-steward\", \"password\": \"{steward}\"}}, autocommit=True)"
    );
    println!(
        "    cur = conn.cursor(); cur.execute(\"SELECT register, count(*) FROM register_membership GROUP BY register\"); print(cur.fetchall())"
    );
    println!(
        "Demo users and tokens (also in {}):",
        args.data.join("demo-tokens.toml").display()
    );
    for (name, token) in &tokens.tokens {
        println!("  {name:<18} {token}");
    }
    println!("Ctrl-C to stop.");
    shutdown_signal().await;
    running.stop().await?;
    Ok(ExitCode::SUCCESS)
}
