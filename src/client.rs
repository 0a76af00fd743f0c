//! The client side shared by `poplar sql`, `poplar measures`, `poplar studies` and `poplar demo`: connecting (plain or
//! TLS), signing in, running one statement to completion, and showing disclosure control's
//! suppressed cells as `*`. Kept apart so every command talks to the server the same way.

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow_flight::decode::DecodedPayload;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
// The engine marks released columns with this key; sharing its constant keeps the two in step.
use poplar_engine::disclosure::SUPPRESSED_KEY;
use poplar_engine::flight::ReleaseSummary;
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where and as whom a command reaches one of Poplar's own gRPC services (measures, studies):
/// the flags every such command shares.
#[derive(clap::Args)]
pub struct ServiceConnection {
    /// Server address: grpc://host:port, or grpc+tls://host:port.
    #[arg(long, env = "POPLAR_URL", default_value = "grpc://127.0.0.1:50051")]
    addr: String,
    /// Your token (from `poplar users add`), sent as a bearer token.
    #[arg(long, env = "POPLAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for grpc+tls.
    #[arg(long, env = "POPLAR_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

impl ServiceConnection {
    /// A channel to the server and the token to sign each call with.
    pub async fn open(&self) -> anyhow::Result<(Channel, String)> {
        let Some(token) = self.token.clone() else {
            bail!("no token: pass --token or set POPLAR_TOKEN (a steward gets one with `poplar users add`)");
        };
        Ok((channel(&self.addr, self.tls_ca.as_deref()).await?, token))
    }
}

/// `message` as a request signed with a bearer token, as Poplar's services expect.
pub fn with_bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let header = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("the token has characters a header cannot carry"))?;
    request.metadata_mut().insert("authorization", header);
    Ok(request)
}

/// A signed-in Flight SQL client: Basic handshake when `user` is given, else bearer token.
pub async fn connect(
    addr: &str,
    user: Option<&str>,
    token: &str,
    tls_ca: Option<&Path>,
) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let channel = channel(addr, tls_ca).await?;
    let mut client = FlightSqlServiceClient::new(channel);
    match user {
        Some(user) => {
            client
                .handshake(user, token)
                .await
                .map_err(|e| anyhow::anyhow!("sign-in failed: {}", message(&e.to_string())))?;
        }
        None => client.set_token(token.to_string()),
    }
    Ok(client)
}

/// A gRPC channel to `addr` (`grpc://host:port` or `grpc+tls://host:port`), for any of the
/// server's services.
pub async fn channel(addr: &str, tls_ca: Option<&Path>) -> anyhow::Result<Channel> {
    let (url, tls) = if let Some(rest) = addr.strip_prefix("grpc+tls://") {
        (format!("https://{rest}"), true)
    } else if let Some(rest) = addr
        .strip_prefix("grpc://")
        .or_else(|| addr.strip_prefix("grpc+tcp://"))
    {
        (format!("http://{rest}"), false)
    } else {
        bail!("--addr must start with grpc:// or grpc+tls://");
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).with_context(|| format!("bad address {addr}"))?;
    if tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = tls_ca {
            config = config.ca_certificate(Certificate::from_pem(
                std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            ));
        }
        endpoint = endpoint.tls_config(config)?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))
}

/// The server's words, without the transport's wrapping.
pub fn message(error: &str) -> String {
    let Some(start) = error.find("message: \"") else {
        return error.to_string();
    };
    let rest = &error[start + 10..];
    let end = rest
        .find("\", details")
        .or_else(|| rest.rfind('"'))
        .unwrap_or(rest.len());
    rest[..end].replace("\\\"", "\"")
}

/// Runs one statement to the end, every endpoint in turn; errors carry the server's words only,
/// so a refusal reads as the rule it broke.
pub async fn run(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(run_with_summary(client, sql).await?.batches)
}

/// An answer and what disclosure control did to it.
pub struct Fetched {
    pub batches: Vec<RecordBatch>,
    /// From the answer's last message (absent from servers that do not send it).
    pub summary: Option<ReleaseSummary>,
}

/// Run `sql` to completion, keeping the release summary the server sends with the last
/// message of each answer.
pub async fn run_with_summary(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> anyhow::Result<Fetched> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| anyhow::anyhow!(message(&e.to_string())))?;
    let schema = info.clone().try_decode_schema().ok();
    let mut batches = Vec::new();
    let mut summary: Option<ReleaseSummary> = None;
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else { continue };
        let mut stream = client
            .do_get(ticket)
            .await
            .map_err(|e| anyhow::anyhow!(message(&e.to_string())))?
            .into_inner();
        while let Some(data) = stream
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!(message(&e.to_string())))?
        {
            if !data.inner.app_metadata.is_empty() {
                let part: ReleaseSummary = serde_json::from_slice(&data.inner.app_metadata)
                    .context("the server sent a release summary this client cannot read")?;
                let total = summary.get_or_insert_default();
                total.cells_suppressed += part.cells_suppressed;
                total.groups_withheld += part.groups_withheld;
            }
            if let DecodedPayload::RecordBatch(batch) = data.payload {
                batches.push(batch);
            }
        }
    }
    // No rows: keep the columns, so an empty answer still prints its header.
    if batches.is_empty()
        && let Some(schema) = schema
    {
        batches.push(RecordBatch::new_empty(std::sync::Arc::new(schema)));
    }
    Ok(Fetched { batches, summary })
}

/// The batches for display: in columns disclosure control released, a suppressed (NULL)
/// cell is shown as `*`.
pub fn for_display(batches: &[RecordBatch]) -> anyhow::Result<Vec<RecordBatch>> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let schema = batch.schema();
        if !schema
            .fields()
            .iter()
            .any(|f| f.metadata().contains_key(SUPPRESSED_KEY))
        {
            out.push(batch.clone());
            continue;
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if !field.metadata().contains_key(SUPPRESSED_KEY) {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
                continue;
            }
            let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
            let shown: StringArray = (0..column.len())
                .map(|r| {
                    Some(if column.is_null(r) {
                        "*".to_string()
                    } else {
                        formatter.value(r).to_string()
                    })
                })
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, false));
            columns.push(std::sync::Arc::new(shown));
        }
        out.push(RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{RecordBatch, SUPPRESSED_KEY, for_display, message};

    #[test]
    fn suppressed_cells_show_as_a_star_and_other_nulls_stay_null() {
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let marked = Field::new("people", DataType::Int64, true)
            .with_metadata([(SUPPRESSED_KEY.to_string(), "null".to_string())].into());
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new("practice", DataType::Utf8, true), marked]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                std::sync::Arc::new(StringArray::from(vec![Some("A"), None])) as ArrayRef,
                std::sync::Arc::new(Int64Array::from(vec![None, Some(120)])),
            ],
        )
        .expect("batch");
        let shown = arrow::util::pretty::pretty_format_batches(&for_display(&[batch]).expect("display"))
            .expect("format")
            .to_string();
        assert!(shown.contains("| A        | *      |"), "{shown}");
        assert!(shown.contains("|          | 120    |"), "{shown}");
    }

    #[test]
    fn server_messages_are_shown_without_transport_wrapping() {
        let raw = "Tonic error: code: 'Permission denied', message: \"permission denied: role x\"";
        assert_eq!(message(raw), "permission denied: role x");
        assert_eq!(message("plain"), "plain");
    }
}
