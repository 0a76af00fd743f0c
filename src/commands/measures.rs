//! `poplar measures list|get`: the measures service from the command line, for a
//! population health analyst who wants a measure's values in a terminal or a CSV file
//! rather than the dashboard. Values, intervals and suppression marks are the server's;
//! this only lays them out.

use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use clap::{Args, Subcommand, ValueEnum};
use poplar_proto::measures::v1 as pb;
use poplar_proto::measures::v1::measures_service_client::MeasuresServiceClient;
use tonic::transport::Channel;

use crate::client::{ServiceConnection, message, with_bearer};

#[derive(Subcommand)]
pub enum MeasuresCommand {
    /// The measure catalogue: id, title, unit, polarity.
    List(ListArgs),
    /// One measure's values for every area of a level, with intervals and suppression marks.
    Get(GetArgs),
}

#[derive(Args)]
pub struct Connection {
    #[command(flatten)]
    service: ServiceConnection,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    format: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Csv,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    connection: Connection,
}

#[derive(Clone, Copy, ValueEnum)]
enum LevelArg {
    Practice,
    Pcn,
    SubIcb,
    Icb,
    Region,
}

#[derive(Clone, Copy, ValueEnum)]
enum DimensionArg {
    AgeBand,
    Sex,
    ImdDecile,
    Ethnicity,
}

#[derive(Args)]
pub struct GetArgs {
    /// The measure's id (see `poplar measures list`).
    measure: String,
    #[arg(long, value_enum, default_value_t = LevelArg::Icb)]
    level: LevelArg,
    /// Only areas within this one (a PCN, sub-ICB or ICB code).
    #[arg(long)]
    parent: Option<String>,
    /// Period label: 2024/25, 2024/25 Q4 or 2025-03. Default: the latest financial year.
    #[arg(long)]
    period: Option<String>,
    /// With --period, the last period of a trend.
    #[arg(long)]
    to: Option<String>,
    /// Break down by this (at most twice).
    #[arg(long = "by", value_enum)]
    breakdown: Vec<DimensionArg>,
    #[command(flatten)]
    connection: Connection,
}

impl LevelArg {
    fn wire(self) -> pb::AreaLevel {
        match self {
            LevelArg::Practice => pb::AreaLevel::Practice,
            LevelArg::Pcn => pb::AreaLevel::Pcn,
            LevelArg::SubIcb => pb::AreaLevel::SubIcb,
            LevelArg::Icb => pb::AreaLevel::Icb,
            LevelArg::Region => pb::AreaLevel::Region,
        }
    }
}

impl DimensionArg {
    fn wire(self) -> pb::Dimension {
        match self {
            DimensionArg::AgeBand => pb::Dimension::AgeBand,
            DimensionArg::Sex => pb::Dimension::Sex,
            DimensionArg::ImdDecile => pb::Dimension::ImdDecile,
            DimensionArg::Ethnicity => pb::Dimension::Ethnicity,
        }
    }
}

async fn connect(connection: &Connection) -> anyhow::Result<(MeasuresServiceClient<Channel>, String)> {
    let (channel, token) = connection.service.open().await?;
    Ok((MeasuresServiceClient::new(channel), token))
}

fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(message(&status.to_string()))
}

pub async fn measures(command: MeasuresCommand) -> anyhow::Result<ExitCode> {
    match command {
        MeasuresCommand::List(args) => list(args).await,
        MeasuresCommand::Get(args) => get(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (mut client, token) = connect(&args.connection).await?;
    let listed = client
        .list_measures(with_bearer(pb::ListMeasuresRequest {}, &token)?)
        .await
        .map_err(failed)?
        .into_inner();
    let polarity = |p: i32| {
        pb::Polarity::try_from(p)
            .map(|p| match p {
                pb::Polarity::HighIsGood => "high is good",
                pb::Polarity::LowIsGood => "low is good",
                pb::Polarity::NoJudgement | pb::Polarity::Unspecified => "no judgement",
            })
            .unwrap_or("no judgement")
    };
    let rows: Vec<Vec<String>> = listed
        .measures
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.title.clone(),
                m.unit.clone(),
                polarity(m.polarity).to_string(),
                m.ci_method.clone(),
            ]
        })
        .collect();
    print(
        &["id", "title", "unit", "polarity", "confidence_interval"],
        rows,
        args.connection.format,
    )?;
    if matches!(args.connection.format, Output::Table) {
        println!("Data as of {}.", listed.data_as_of);
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of a value's mark: `*` for a suppressed cell, `-` for one not published.
fn mark(value: &pb::Value) -> &'static str {
    match pb::Suppression::try_from(value.suppression) {
        Ok(pb::Suppression::None) => "",
        Ok(pb::Suppression::Primary) => "* (primary)",
        Ok(pb::Suppression::Secondary) => "* (secondary)",
        Ok(pb::Suppression::NotPublished) => "- (not published)",
        Err(_) => "?",
    }
}

fn significance(value: &pb::Value) -> &'static str {
    match pb::Significance::try_from(value.vs_comparator) {
        Ok(pb::Significance::Similar) => "similar",
        Ok(pb::Significance::Higher) => "higher",
        Ok(pb::Significance::Lower) => "lower",
        Ok(pb::Significance::Better) => "better",
        Ok(pb::Significance::Worse) => "worse",
        Ok(pb::Significance::NotCompared) | Err(_) => "",
    }
}

fn row(kind: &str, value: &pb::Value) -> Vec<String> {
    let number = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
    let count = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let categories: Vec<String> = value
        .categories
        .iter()
        .map(|c| {
            let dimension = pb::Dimension::try_from(c.dimension)
                .map(|d| d.as_str_name().trim_start_matches("DIMENSION_").to_ascii_lowercase())
                .unwrap_or_default();
            format!("{dimension}={}", c.code)
        })
        .collect();
    vec![
        kind.to_string(),
        value.area_code.clone(),
        value.area_name.clone(),
        value.period.as_ref().map(|p| p.label.clone()).unwrap_or_default(),
        categories.join("; "),
        number(value.value),
        number(value.ci95.map(|i| i.lower)),
        number(value.ci95.map(|i| i.upper)),
        number(value.ci998.map(|i| i.lower)),
        number(value.ci998.map(|i| i.upper)),
        count(value.numerator),
        count(value.denominator),
        mark(value).to_string(),
        significance(value).to_string(),
    ]
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let (mut client, token) = connect(&args.connection).await?;
    let request = pb::GetValuesRequest {
        measure_id: args.measure.clone(),
        level: args.level.wire() as i32,
        parent_code: args.parent.clone().unwrap_or_default(),
        from: args.period.clone().unwrap_or_default(),
        to: args.to.clone().unwrap_or_default(),
        breakdown: args.breakdown.iter().map(|d| d.wire() as i32).collect(),
    };
    let answer = client
        .get_values(with_bearer(request, &token)?)
        .await
        .map_err(failed)?
        .into_inner();
    let rows = answer
        .comparator
        .iter()
        .map(|v| row("comparator", v))
        .chain(answer.values.iter().map(|v| row("area", v)))
        .collect();
    print(
        &[
            "row",
            "area_code",
            "area_name",
            "period",
            "breakdown",
            "value",
            "lower_95",
            "upper_95",
            "lower_99_8",
            "upper_99_8",
            "numerator",
            "denominator",
            "note",
            "vs_comparator",
        ],
        rows,
        args.connection.format,
    )?;
    if matches!(args.connection.format, Output::Table) {
        if let Some(m) = &answer.measure {
            println!("{} ({}), data as of {}.", m.title, m.unit, answer.data_as_of);
        }
        if let Some(policy) = &answer.policy {
            println!("{}", policy.footnote);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lay out text rows as a table or CSV (through Arrow's writers, as `poplar sql` does).
fn print(header: &[&str], rows: Vec<Vec<String>>, format: Output) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|c| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[c].as_str()))) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema, columns)?;
    match format {
        Output::Table => println!("{}", arrow::util::pretty::pretty_format_batches(&[batch])?),
        Output::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            writer.write(&batch)?;
        }
    }
    Ok(())
}
