//! `poplar sql`: an interactive shell (and script runner) over Arrow Flight SQL. The wire
//! side is `crate::client`, shared with `demo`; this module is about people: statements,
//! history, output formats and errors on one line.

use crate::client::{Fetched, for_display, message, run_with_summary};
use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use clap::{Args, ValueEnum};
use futures::TryStreamExt;
use poplar_engine::flight::ReleaseSummary;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tonic::transport::Channel;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SqlArgs {
    /// Server address: grpc://host:port, or grpc+tls://host:port.
    #[arg(long, env = "POPLAR_URL", default_value = "grpc://127.0.0.1:50051")]
    addr: String,
    /// Sign in as this user (Basic handshake); without it the token is sent as a bearer token.
    #[arg(long, env = "POPLAR_USER")]
    user: Option<String>,
    /// Your token (from `poplar users add`).
    #[arg(long, env = "POPLAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run this SQL and exit.
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// CA certificate (PEM) to trust for grpc+tls.
    #[arg(long, env = "POPLAR_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

/// Connects as the flags say; a missing token is refused here, before any network traffic.
async fn connect(args: &SqlArgs) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let Some(token) = args.token.as_deref() else {
        bail!("no token: pass --token or set POPLAR_TOKEN (a steward gets one with `poplar users add`)");
    };
    crate::client::connect(&args.addr, args.user.as_deref(), token, args.tls_ca.as_deref()).await
}

fn print(batches: &[RecordBatch], format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(&for_display(batches)?)?
        )?,
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for b in &for_display(batches)? {
                writer.write(b)?;
            }
        }
        Format::Json => {
            // Explicit nulls: a suppressed cell is `null`, not a missing key.
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut *out);
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

/// Split a script into statements at `;`, outside quotes and `--` comments.
pub fn split_statements(script: &str) -> Vec<String> {
    let (mut out, mut current) = (Vec::new(), String::new());
    let (mut quote, mut comment) = (None::<char>, false);
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            if c == '\n' {
                comment = false;
                current.push(c);
            }
            continue;
        }
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => comment = true,
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

async fn script(client: &mut FlightSqlServiceClient<Channel>, text: &str, format: Format) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for statement in split_statements(text) {
        let Fetched { batches, summary } = run_with_summary(client, &statement).await?;
        print(&batches, format, &mut out)?;
        // On stderr, so a script's output stays the answer alone.
        if let Some(note) = summary.and_then(withheld_note) {
            eprintln!("({note})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args).await?;
    if let Some(command) = &args.command {
        return script(&mut client, command, args.format).await;
    }
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return script(&mut client, &text, args.format).await;
    }
    interactive(&mut client, &args).await
}

async fn interactive(client: &mut FlightSqlServiceClient<Channel>, args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".poplar_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "poplar sql: connected to {}. End statements with ';'. \\q quits, \\d lists tables.",
        args.addr
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "poplar> " } else { "   ...> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match trimmed {
                "\\q" => break,
                "\\d" => list_tables(client).await,
                _ => println!("\\q quit, \\d list tables"),
            }
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(buffer.trim());
        for statement in split_statements(&buffer) {
            let started = Instant::now();
            match run_with_summary(client, &statement).await {
                Ok(Fetched { batches, summary }) => {
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if let Err(e) = print(&batches, args.format, &mut std::io::stdout().lock()) {
                        eprintln!("error: {e}");
                    }
                    let withheld = summary
                        .and_then(withheld_note)
                        .map(|n| format!(", {n}"))
                        .unwrap_or_default();
                    println!("({rows} rows{withheld}, {:.3}s)", started.elapsed().as_secs_f64());
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
        buffer.clear();
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_tables(client: &mut FlightSqlServiceClient<Channel>) {
    let request = arrow_flight::sql::CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: None,
        table_name_filter_pattern: None,
        table_types: vec![],
        include_schema: false,
    };
    let result = async {
        let info = client.get_tables(request).await?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            if let Some(ticket) = endpoint.ticket {
                batches.extend(client.do_get(ticket).await?.try_collect::<Vec<_>>().await?);
            }
        }
        Ok::<_, anyhow::Error>(batches)
    }
    .await;
    match result {
        Ok(batches) => match arrow::util::pretty::pretty_format_batches(&batches) {
            Ok(table) => println!("{table}"),
            Err(e) => eprintln!("error: {e}"),
        },
        Err(e) => eprintln!("error: {}", message(&e.to_string())),
    }
}

/// What a user should know that the rows do not show: groups left out of the answer.
/// (Suppressed cells show as `*` already.)
fn withheld_note(summary: ReleaseSummary) -> Option<String> {
    // Why they were left out (a key that is not public, the deployment's policy, a
    // DISTINCT) is in the answer's schema metadata and docs/disclosure-control.md.
    match summary.groups_withheld {
        0 => None,
        1 => Some("1 group of fewer people than the minimum withheld".into()),
        n => Some(format!("{n} groups of fewer people than the minimum withheld")),
    }
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let script = "SELECT 'a;b' AS x; -- a comment; with a semicolon\nSELECT \"c;d\" FROM t;\n\n";
        assert_eq!(
            split_statements(script),
            vec!["SELECT 'a;b' AS x", "SELECT \"c;d\" FROM t"]
        );
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_statements("  ;\n").is_empty());
    }
}
