//! `poplar studies …`: approved studies from the command line, over `poplar.studies.v1`.
//! A researcher submits a study file, runs the study once approved and fetches released
//! outputs; a steward reviews the queue, approves, returns or rejects, and checks outputs.
//! Everything is decided by the server; this only sends requests and lays out answers.
//! Commands that create something print its id alone on the first line of stdout, so a
//! script can capture it (`id=$(poplar studies submit study.toml | head -1)`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use poplar_proto::studies::v1 as pb;
use poplar_proto::studies::v1::studies_service_client::StudiesServiceClient;
use serde::Deserialize;
use tonic::transport::Channel;

use crate::client::{ServiceConnection, message, with_bearer};

#[derive(Subcommand)]
pub enum StudiesCommand {
    /// Submit a study file (TOML: title, purpose, outputs, sql, [[parameter]]), or resubmit
    /// a returned study with --study.
    Submit(SubmitArgs),
    /// Your studies (a steward: every study), with their state and runs.
    List(ListArgs),
    /// One study in full: its SQL, parameters, approvals, history and runs.
    Show(StudyArgs),
    /// A steward's review: without a study, the queue (studies awaiting review, outputs
    /// held for checking); with one, return it with comments or reject it.
    Review(ReviewArgs),
    /// A steward approves a study, binding its SQL, parameters and the disclosure policy,
    /// with a run quota and an expiry.
    Approve(ApproveArgs),
    /// The author withdraws their study.
    Withdraw(EndArgs),
    /// A steward revokes an approved study.
    Revoke(EndArgs),
    /// Run an approved study with parameter values (name=value); the output is held.
    Run(RunArgs),
    /// A steward releases (or, with --withhold, withholds) a held output.
    Release(ReleaseArgs),
    /// Fetch a released output (a steward: any output) as CSV or Arrow IPC.
    Fetch(FetchArgs),
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The study file (TOML).
    file: PathBuf,
    /// Resubmit this returned study instead of submitting a new one.
    #[arg(long)]
    study: Option<String>,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct StudyArgs {
    study: String,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct ReviewArgs {
    /// The study to decide on; without it, the review queue.
    study: Option<String>,
    /// Return the study to its author with these comments.
    #[arg(long = "return", conflicts_with = "reject", requires = "study")]
    return_with: Option<String>,
    /// Reject the study, with these comments.
    #[arg(long, requires = "study")]
    reject: Option<String>,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct ApproveArgs {
    study: String,
    /// How many runs the approval allows.
    #[arg(long, default_value_t = 5)]
    quota: u32,
    /// Days until the approval expires.
    #[arg(long, default_value_t = 90, conflicts_with = "expires")]
    days: u32,
    /// When the approval expires (RFC 3339, e.g. 2027-03-31T00:00:00Z).
    #[arg(long)]
    expires: Option<String>,
    #[arg(long, default_value = "")]
    comments: String,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct EndArgs {
    study: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct RunArgs {
    study: String,
    /// A parameter value, name=value (repeat for each parameter).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Run as of the snapshot this earlier run read, to reproduce it.
    #[arg(long)]
    as_of_run: Option<String>,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Args)]
pub struct ReleaseArgs {
    run: String,
    /// Withhold the output instead of releasing it.
    #[arg(long)]
    withhold: bool,
    #[arg(long, default_value = "")]
    comments: String,
    #[command(flatten)]
    connection: ServiceConnection,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Arrow,
}

#[derive(Args)]
pub struct FetchArgs {
    run: String,
    #[arg(long, value_enum, default_value_t = FormatArg::Csv)]
    format: FormatArg,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    connection: ServiceConnection,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| "a parameter is name=value".to_string())
}

/// A study file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    title: String,
    purpose: String,
    outputs: String,
    sql: String,
    #[serde(default, rename = "parameter")]
    parameters: Vec<ParameterFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterFile {
    name: String,
    /// date, integer, choice, codelist, register_list, area_list
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    min: Option<toml::Value>,
    #[serde(default)]
    max: Option<toml::Value>,
    #[serde(default)]
    options: Vec<String>,
}

fn bound(value: Option<toml::Value>) -> String {
    match value {
        None => String::new(),
        Some(toml::Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

impl StudyFile {
    fn read(path: &std::path::Path) -> anyhow::Result<pb::SubmitRequest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: StudyFile =
            toml::from_str(&text).with_context(|| format!("{} is not a study file", path.display()))?;
        let parameters = file
            .parameters
            .into_iter()
            .map(|p| {
                let kind = match p.kind.as_str() {
                    "date" => pb::ParameterType::Date,
                    "integer" => pb::ParameterType::Integer,
                    "choice" => pb::ParameterType::Choice,
                    "codelist" => pb::ParameterType::Codelist,
                    "register_list" => pb::ParameterType::RegisterList,
                    "area_list" => pb::ParameterType::AreaList,
                    other => bail!(
                        "parameter {}: unknown type {other:?} (date, integer, choice, codelist, register_list, area_list)",
                        p.name
                    ),
                };
                Ok(pb::Parameter {
                    name: p.name,
                    r#type: kind as i32,
                    min: bound(p.min),
                    max: bound(p.max),
                    options: p.options,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(pb::SubmitRequest {
            study_id: String::new(),
            title: file.title,
            purpose: file.purpose,
            outputs: file.outputs,
            sql: file.sql,
            parameters,
        })
    }
}

async fn connect(connection: &ServiceConnection) -> anyhow::Result<(StudiesServiceClient<Channel>, String)> {
    let (channel, token) = connection.open().await?;
    // Outputs can be large: accept what the server may send.
    Ok((
        StudiesServiceClient::new(channel).max_decoding_message_size(256 << 20),
        token,
    ))
}

/// A refused call's message, with the rule's id a script can match on.
fn failed(status: tonic::Status) -> anyhow::Error {
    let rule = status
        .metadata()
        .get(poplar_engine::error::RULE_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" [rule: {r}]"))
        .unwrap_or_default();
    anyhow::anyhow!("{}{rule}", message(status.message()))
}

fn state(s: i32) -> String {
    pb::StudyState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("STUDY_STATE_").to_ascii_lowercase())
        .unwrap_or_default()
}

fn output_state(s: i32) -> String {
    pb::OutputState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("OUTPUT_STATE_").to_ascii_lowercase())
        .unwrap_or_default()
}

fn print_run(run: &pb::StudyRun) {
    let mut params: Vec<String> = run.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    params.sort();
    let pin = run.pin.clone().unwrap_or_default();
    println!(
        "  run {}  {}  by {} at {}  snapshot {}{}  [{}]",
        run.run_id,
        output_state(run.state),
        run.run_by,
        run.at,
        pin.snapshot,
        if pin.later_optouts.is_empty() {
            String::new()
        } else {
            format!(" (predates opt-outs in snapshots {:?})", pin.later_optouts)
        },
        params.join(", ")
    );
    if let Some(s) = &run.summary {
        println!(
            "    rows {}, cells suppressed {}, smallest count {}, counts rounded to {}: {}{}{}",
            s.rows,
            s.cells_suppressed,
            s.smallest_count.map_or("-".to_string(), |c| c.to_string()),
            s.round_to,
            if s.counts_rounded { "yes" } else { "NO" },
            if s.unprotected_columns.is_empty() {
                String::new()
            } else {
                format!(", unprotected columns: {}", s.unprotected_columns.join(", "))
            },
            if s.same_as_released_run.is_empty() {
                String::new()
            } else {
                format!(", identical to released run {}", s.same_as_released_run)
            },
        );
        println!("    output sha256 {}", run.output_sha256);
    }
    if !run.checked_by.is_empty() {
        println!("    checked by {}: {}", run.checked_by, run.check_comments);
    } else if run.state == pb::OutputState::Held as i32 && run.checks_required > 1 {
        let by: Vec<&str> = run.checks.iter().map(|c| c.by.as_str()).collect();
        println!(
            "    checks {}/{}{}",
            run.checks.len(),
            run.checks_required,
            if by.is_empty() {
                String::new()
            } else {
                format!(" (released by {})", by.join(", "))
            }
        );
    }
}

fn print_study(s: &pb::Study, full: bool) {
    println!(
        "{}  {}  by {}  \"{}\"  approvals {}/{}  runs {}{}",
        s.study_id,
        state(s.state),
        s.author,
        s.title,
        s.approvals.len(),
        s.approvals_required,
        s.runs_used,
        s.bound
            .as_ref()
            .map(|b| format!(" of {} until {}", b.run_quota, b.expires_at))
            .unwrap_or_default()
    );
    if full {
        println!("  purpose: {}", s.purpose);
        println!("  outputs: {}", s.outputs);
        println!(
            "  sql (sha256 {}):\n    {}",
            s.sql_sha256,
            s.sql.replace('\n', "\n    ")
        );
        for (i, p) in s.parameters.iter().enumerate() {
            let kind = pb::ParameterType::try_from(p.r#type)
                .map(|t| {
                    t.as_str_name()
                        .trim_start_matches("PARAMETER_TYPE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let range = if p.options.is_empty() {
                format!("{} to {}", p.min, p.max)
            } else {
                p.options.join(" | ")
            };
            println!("  ${} {} ({kind}): {range}", i + 1, p.name);
        }
        if let Some(b) = &s.bound {
            println!(
                "  approved by {}: binds sql {}, parameters {}, policy {}",
                b.by, b.sql_sha256, b.parameters_sha256, b.policy_version
            );
        }
        for e in &s.history {
            println!("  #{} {} {} by {} {}", e.seq, e.at, e.action, e.by, e.comments);
        }
    }
    for run in &s.runs {
        print_run(run);
    }
}

/// Withdraw (the author) or revoke (a steward) a study.
async fn end(args: EndArgs, revoke: bool) -> anyhow::Result<()> {
    let (mut client, token) = connect(&args.connection).await?;
    let request = with_bearer(
        pb::EndRequest {
            study_id: args.study,
            reason: args.reason,
        },
        &token,
    )?;
    let study = if revoke {
        client.revoke(request).await
    } else {
        client.withdraw(request).await
    }
    .map_err(failed)?
    .into_inner();
    print_study(&study, false);
    Ok(())
}

pub async fn studies(command: StudiesCommand) -> anyhow::Result<ExitCode> {
    match command {
        StudiesCommand::Submit(args) => {
            let mut request = StudyFile::read(&args.file)?;
            request.study_id = args.study.unwrap_or_default();
            let (mut client, token) = connect(&args.connection).await?;
            let study = client
                .submit(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            println!("{}", study.study_id);
            print_study(&study, false);
        }
        StudiesCommand::List(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let listed = client
                .list(with_bearer(pb::ListRequest {}, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            for s in &listed.studies {
                print_study(s, false);
            }
        }
        StudiesCommand::Show(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let study = client
                .get(with_bearer(pb::GetRequest { study_id: args.study }, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            print_study(&study, true);
        }
        StudiesCommand::Review(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let Some(id) = args.study else {
                let listed = client
                    .list(with_bearer(pb::ListRequest {}, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner();
                println!("Awaiting review:");
                for s in listed
                    .studies
                    .iter()
                    .filter(|s| s.state == pb::StudyState::Submitted as i32)
                {
                    print_study(s, true);
                }
                println!("Outputs held for checking:");
                for s in &listed.studies {
                    for run in s.runs.iter().filter(|r| r.state == pb::OutputState::Held as i32) {
                        print_run(run);
                    }
                }
                return Ok(ExitCode::SUCCESS);
            };
            let (decision, comments) = match (args.return_with, args.reject) {
                (Some(c), None) => (pb::Decision::Return, c),
                (None, Some(c)) => (pb::Decision::Reject, c),
                _ => {
                    bail!("decide with --return COMMENTS or --reject COMMENTS (approve with `poplar studies approve`)")
                }
            };
            let request = pb::ReviewRequest {
                study_id: id,
                decision: decision as i32,
                comments,
                run_quota: 0,
                expires_at: String::new(),
            };
            let study = client
                .review(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            print_study(&study, false);
        }
        StudiesCommand::Approve(args) => {
            let expires_at = match args.expires {
                Some(at) => at,
                None => (chrono::Utc::now() + chrono::Duration::days(i64::from(args.days))).to_rfc3339(),
            };
            let (mut client, token) = connect(&args.connection).await?;
            let request = pb::ReviewRequest {
                study_id: args.study,
                decision: pb::Decision::Approve as i32,
                comments: args.comments,
                run_quota: args.quota,
                expires_at,
            };
            let study = client
                .review(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            print_study(&study, false);
        }
        StudiesCommand::Withdraw(args) => end(args, false).await?,
        StudiesCommand::Revoke(args) => end(args, true).await?,
        StudiesCommand::Run(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let request = pb::RunRequest {
                study_id: args.study,
                parameters: args.params.into_iter().collect::<HashMap<_, _>>(),
                as_of_run: args.as_of_run.unwrap_or_default(),
            };
            let run = client
                .run(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            println!("{}", run.run_id);
            print_run(&run);
        }
        StudiesCommand::Release(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let decision = if args.withhold {
                pb::OutputDecision::Withhold
            } else {
                pb::OutputDecision::Release
            };
            let request = pb::CheckOutputRequest {
                run_id: args.run,
                decision: decision as i32,
                comments: args.comments,
            };
            let run = client
                .check_output(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            print_run(&run);
        }
        StudiesCommand::Fetch(args) => {
            let (mut client, token) = connect(&args.connection).await?;
            let format = match args.format {
                FormatArg::Csv => pb::Format::Csv,
                FormatArg::Arrow => pb::Format::Arrow,
            };
            let request = pb::FetchRequest {
                run_id: args.run,
                format: format as i32,
            };
            let fetched = client
                .fetch(with_bearer(request, &token)?)
                .await
                .map_err(failed)?
                .into_inner();
            match args.out {
                Some(path) => {
                    std::fs::write(&path, &fetched.data).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote {} ({} bytes; output sha256 {})",
                        path.display(),
                        fetched.data.len(),
                        fetched.output_sha256
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&fetched.data)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
