//! The `measures` suite: a server over a landed store, timed from a gRPC client as a
//! dashboard would call it, a steward and a commissioner interleaved so the difference is
//! disclosure control. Every figure is a median over warm requests (one warm-up first).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use poplar_engine::Role;
use poplar_engine::auth::UsersFile;
use poplar_engine::server::{ServeOptions, start};
use poplar_loaders::Store;
use poplar_proto::measures::v1 as pb;
use poplar_proto::measures::v1::measures_service_client::MeasuresServiceClient;
use tonic::transport::Channel;

const MEASURE: &str = "prevalence_diabetes";

fn with_token<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// Register prevalence for every practice with its intervals: the acceptance question.
async fn practice_prevalence(
    client: &mut MeasuresServiceClient<Channel>,
    token: &str,
    measure: &str,
) -> anyhow::Result<usize> {
    let request = pb::GetValuesRequest {
        measure_id: measure.into(),
        level: pb::AreaLevel::Practice as i32,
        ..Default::default()
    };
    Ok(client
        .get_values(with_token(request, token)?)
        .await?
        .into_inner()
        .values
        .len())
}

/// What the dashboard's compare view asks when it opens: the catalogue, the areas, the
/// periods, the values and the funnel.
async fn dashboard_page(client: &mut MeasuresServiceClient<Channel>, token: &str) -> anyhow::Result<usize> {
    client
        .list_measures(with_token(pb::ListMeasuresRequest {}, token)?)
        .await?;
    client
        .list_areas(with_token(
            pb::ListAreasRequest {
                level: pb::AreaLevel::Practice as i32,
                parent_code: String::new(),
            },
            token,
        )?)
        .await?;
    client
        .list_periods(with_token(
            pb::ListPeriodsRequest {
                r#type: pb::PeriodType::FinancialYear as i32,
            },
            token,
        )?)
        .await?;
    let values = practice_prevalence(client, token, MEASURE).await?;
    let funnel = pb::GetFunnelRequest {
        measure_id: MEASURE.into(),
        level: pb::AreaLevel::Practice as i32,
        ..Default::default()
    };
    let points = client
        .get_funnel(with_token(funnel, token)?)
        .await?
        .into_inner()
        .values
        .len();
    Ok(values + points)
}

/// One warm-up, then `iterations` timed runs of `ask` for each token in turn.
async fn timed<F, Fut>(iterations: usize, tokens: &[(&str, &str)], mut ask: F) -> anyhow::Result<serde_json::Value>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); tokens.len()];
    for (_, token) in tokens {
        ask(token.to_string()).await?;
    }
    for _ in 0..iterations.max(1) {
        for (i, (_, token)) in tokens.iter().enumerate() {
            let started = Instant::now();
            ask(token.to_string()).await?;
            seconds[i].push(started.elapsed().as_secs_f64());
        }
    }
    let mut out = serde_json::Map::new();
    for ((name, _), times) in tokens.iter().zip(seconds) {
        out.insert(format!("{name}_median_seconds"), crate::median(times.clone()).into());
        out.insert(format!("{name}_seconds"), times.into());
    }
    Ok(out.into())
}

/// Every register's practice prevalence asked once by each role: every request computes
/// its answer (nothing is cached yet for that measure and role).
async fn uncached_prevalence(
    client: &MeasuresServiceClient<Channel>,
    tokens: &[(&str, &str)],
) -> anyhow::Result<serde_json::Value> {
    let measures: Vec<&str> = poplar_queries::measures::catalogue()
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| id.starts_with("prevalence_"))
        .collect();
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); tokens.len()];
    for measure in &measures {
        for (i, (_, token)) in tokens.iter().enumerate() {
            let mut client = client.clone();
            let started = Instant::now();
            practice_prevalence(&mut client, token, measure).await?;
            seconds[i].push(started.elapsed().as_secs_f64());
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("measures".into(), measures.into());
    for ((name, _), times) in tokens.iter().zip(seconds) {
        out.insert(format!("{name}_median_seconds"), crate::median(times.clone()).into());
        out.insert(format!("{name}_seconds"), times.into());
    }
    Ok(out.into())
}

pub async fn run(work: &Path, store: Store, iterations: usize) -> anyhow::Result<serde_json::Value> {
    let users = work.join("bench-users.toml");
    if users.exists() {
        std::fs::remove_file(&users)?;
    }
    let steward = UsersFile::add(&users, "bench-steward", Role::Steward)?;
    let commissioner = UsersFile::add(&users, "bench-commissioner", Role::Commissioner)?;
    let started = Instant::now();
    let running = start(ServeOptions {
        store,
        users,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        refresh: Duration::from_secs(3600),
        drain: Duration::from_secs(10),
        disclosure: Some(poplar_engine::disclosure::Policy::new(
            b"bench-noise-key-0123456789abcdef0123".to_vec(),
        )?),
        limits: Default::default(),
        studies: Default::default(),
        optout_key: None,
        cluster: None,
    })
    .await?;
    let start_seconds = started.elapsed().as_secs_f64();
    let channel = Channel::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    let client = MeasuresServiceClient::new(channel);
    let tokens = [("steward", steward.as_str()), ("commissioner", commissioner.as_str())];
    // Answers are kept per snapshot, role and SQL, so a warm request is a cache hit. The
    // figures a first visitor sees are the misses: each register's prevalence asked for
    // the first time by each role, interleaved.
    let uncached = uncached_prevalence(&client, &tokens).await?;
    let prevalence = timed(iterations, &tokens, |token| {
        let mut client = client.clone();
        async move { practice_prevalence(&mut client, &token, MEASURE).await }
    })
    .await?;
    let page = timed(iterations, &tokens, |token| {
        let mut client = client.clone();
        async move { dashboard_page(&mut client, &token).await }
    })
    .await?;
    running.stop().await?;
    Ok(serde_json::json!({
        "server_start_seconds": start_seconds,
        "iterations": iterations,
        "measure": MEASURE,
        "practice_prevalence_first_ask": uncached,
        "practice_prevalence": prevalence,
        "dashboard_page": page,
    }))
}
