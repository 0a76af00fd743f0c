//! Arrow Flight SQL over Poplar's catalog. Every call but the handshake carries a bearer
//! token, checked first thing (DoGet included: a ticket is not a credential). SQL goes
//! through `session::plan_sql`, so the role policy holds for statements and prepared
//! statements alike.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    Nullable, ProstMessageExt, Searchable, SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

use crate::EngineError;
use crate::audit::{AuditLog, AuditRecord, AuditRequest, Outcome};
use crate::auth::Authenticator;
use crate::catalog::{CATALOG, Catalog, SCHEMA};
use crate::session::{Disclosure, Principal, QuerySession, Role};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Go clients (ADBC) send unpadded base64 in Basic auth; accept both forms.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

use crate::disclosure::rewrite::STEWARD_ONLY;

/// What a statement or prepared-statement handle carries: the SQL and, once bound, its
/// parameters (an Arrow IPC stream). Stateless, so a handle outlives nothing on the server;
/// it is not a credential (every call is authenticated on its own).
#[derive(Clone, PartialEq, Message)]
pub struct StatementHandle {
    #[prost(string, tag = "1")]
    pub sql: String,
    #[prost(bytes = "vec", tag = "2")]
    pub params: Vec<u8>,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

pub struct PoplarFlightSql {
    catalog: Arc<Catalog>,
    auth: Arc<Authenticator>,
    /// None: only stewards may query (no disclosure control configured).
    disclosure: Option<Arc<Disclosure>>,
    /// Every query's outcome is appended here.
    audit: Arc<AuditLog>,
    sql_info: SqlInfoData,
    xdbc_info: XdbcTypeInfoData,
}

fn xdbc(name: &str, data_type: XdbcDataType, prefix: Option<&str>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: None,
        literal_prefix: prefix.map(Into::into),
        literal_suffix: prefix.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: data_type == XdbcDataType::XdbcVarchar,
        searchable: Searchable::Full,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: None,
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

impl PoplarFlightSql {
    pub fn new(
        catalog: Arc<Catalog>,
        auth: Arc<Authenticator>,
        disclosure: Option<Arc<Disclosure>>,
        audit: Arc<AuditLog>,
    ) -> Result<Self, EngineError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Poplar");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        let sql_info = info.build().map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let mut types = XdbcTypeInfoDataBuilder::new();
        for t in [
            xdbc("BIGINT", XdbcDataType::XdbcBigint, None),
            xdbc("INTEGER", XdbcDataType::XdbcInteger, None),
            xdbc("DOUBLE", XdbcDataType::XdbcDouble, None),
            xdbc("VARCHAR", XdbcDataType::XdbcVarchar, Some("'")),
            xdbc("DATE", XdbcDataType::XdbcDate, Some("'")),
            xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some("'")),
        ] {
            types.append(t);
        }
        let xdbc_info = types.build().map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        Ok(Self {
            catalog,
            auth,
            disclosure,
            audit,
            sql_info,
            xdbc_info,
        })
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("no authorization header: sign in (Basic) or send Bearer <token>")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("expected authorization: Bearer <token>"))?;
        Ok(self.auth.check_bearer(token.trim())?)
    }

    /// Plan (under the caller's role) and build the physical plan whose schema is both the
    /// FlightInfo's and the stream's.
    fn session(&self, principal: &Principal) -> Result<QuerySession, EngineError> {
        QuerySession::new(&self.catalog.current(), principal, self.disclosure.as_deref())
    }

    async fn physical(
        &self,
        principal: &Principal,
        handle: &StatementHandle,
    ) -> Result<(Arc<dyn ExecutionPlan>, QuerySession, String), EngineError> {
        let session = self.session(principal)?;
        let mut plan = session.plan(&handle.sql).await?;
        let plan_hash = crate::audit::plan_hash(&plan);
        if !handle.params.is_empty() {
            let params =
                decode_params(&handle.params).map_err(|s| EngineError::InvalidRequest(s.message().to_string()))?;
            plan = plan.with_param_values(params)?;
        }
        let df = session.execute(plan).await?;
        let physical = df.create_physical_plan().await?;
        Ok((physical, session, plan_hash))
    }

    /// The audit record for a request about `handle`.
    fn record(principal: &Principal, handle: &StatementHandle) -> AuditRecord {
        let parameters = if handle.params.is_empty() {
            Vec::new()
        } else {
            decode_params(&handle.params)
                .map(|p| p.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        AuditRecord::new(
            principal,
            AuditRequest::Sql {
                text: handle.sql.clone(),
                parameters,
            },
        )
    }

    /// Log a request that ended before any answer (refused or failed while planning).
    async fn audit_failure(
        &self,
        principal: &Principal,
        handle: &StatementHandle,
        started: Instant,
        error: EngineError,
    ) -> Status {
        let mut record = Self::record(principal, handle);
        record.outcome = Outcome::from(&error);
        record.duration_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = self.audit.append(record).await {
            tracing::error!(error = %e, "could not append to the audit log");
            return Status::internal("the audit log could not be written; no answer is given without it");
        }
        error.into()
    }

    /// The schema a statement will answer with (planned under the caller's role).
    async fn schema_of(
        &self,
        principal: &Principal,
        handle: &StatementHandle,
    ) -> Result<arrow::datatypes::SchemaRef, Status> {
        let started = Instant::now();
        match self.physical(principal, handle).await {
            Ok((physical, _, _)) => Ok(physical.schema()),
            Err(e) => Err(self.audit_failure(principal, handle, started, e).await),
        }
    }

    async fn stream(&self, principal: &Principal, handle: &StatementHandle) -> Result<Response<DoGetStream>, Status> {
        let started = Instant::now();
        let (physical, session, plan_hash) = match self.physical(principal, handle).await {
            Ok(planned) => planned,
            Err(e) => return Err(self.audit_failure(principal, handle, started, e).await),
        };
        if let Some(disclosure) = &self.disclosure
            && principal.role != Role::Steward
            && let Err(e) = disclosure.budget.charge(&disclosure.policy, principal)
        {
            return Err(self.audit_failure(principal, handle, started, e).await);
        }
        let schema = physical.schema();
        let ctx = session.task_ctx();
        let batches = deltalake::datafusion::physical_plan::execute_stream(physical, ctx).map_err(EngineError::from)?;
        // Count what leaves, then log the request once the answer has been streamed.
        let rows = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let steward = principal.role == Role::Steward;
        let counted = {
            let (rows, failed) = (rows.clone(), failed.clone());
            batches
                .inspect_ok(move |b| {
                    rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                })
                .map_err(move |e| {
                    failed.store(true, Ordering::Relaxed);
                    // A runtime error can quote a value it choked on (a failed cast, say):
                    // only stewards see it.
                    if steward {
                        e
                    } else {
                        deltalake::datafusion::error::DataFusionError::Execution(
                            "the query failed while running; details are withheld under disclosure control".into(),
                        )
                    }
                })
        };
        let mut record = Self::record(principal, handle);
        record.plan_hash = Some(plan_hash);
        let (audit, stats) = (self.audit.clone(), session.stats.clone());
        let logged = futures::stream::once(async move {
            record.rows = rows.load(Ordering::Relaxed);
            record.cells_suppressed = stats.cells_suppressed.load(Ordering::Relaxed);
            record.duration_ms = started.elapsed().as_millis() as u64;
            if failed.load(Ordering::Relaxed) {
                record.outcome = Outcome::Failed {
                    message: "failed while streaming the answer".into(),
                };
            }
            match audit.append(record).await {
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %e, "could not append to the audit log");
                    Some(Err(deltalake::datafusion::error::DataFusionError::Execution(
                        "the audit log could not be written".into(),
                    )))
                }
            }
        })
        .filter_map(|item| async move { item });
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(
                counted
                    .chain(logged)
                    .map_err(|e| FlightError::ExternalError(Box::new(e))),
            )
            .map_err(Status::from);
        tracing::info!(user = %principal.user, role = principal.role.as_str(), "query answered");
        Ok(Response::new(Box::pin(encoded)))
    }

    fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn batch_stream(
        schema: arrow::datatypes::SchemaRef,
        batch: Result<RecordBatch, FlightError>,
    ) -> Response<DoGetStream> {
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { batch }))
            .map_err(Status::from);
        Response::new(Box::pin(stream))
    }
}

fn decode_handle(bytes: &[u8]) -> Result<StatementHandle, Status> {
    StatementHandle::decode(bytes).map_err(|_| Status::invalid_argument("not a Poplar statement handle"))
}

/// The first row of a parameter batch, as positional values for `$1`, `$2`, ….
fn decode_params(ipc: &[u8]) -> Result<Vec<ScalarValue>, Status> {
    let reader =
        StreamReader::try_new(std::io::Cursor::new(ipc), None).map_err(|e| Status::invalid_argument(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| Status::invalid_argument(e.to_string()))?;
        if batch.num_rows() == 0 {
            continue;
        }
        if batch.num_rows() > 1 {
            return Err(Status::invalid_argument("bind one row of parameters per execution"));
        }
        return batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| Status::invalid_argument(e.to_string())))
            .collect();
    }
    Ok(Vec::new())
}

fn encode_params(batches: &[RecordBatch]) -> Result<Vec<u8>, Status> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    {
        let mut writer =
            StreamWriter::try_new(&mut out, &first.schema()).map_err(|e| Status::internal(e.to_string()))?;
        for b in batches {
            writer.write(b).map_err(|e| Status::internal(e.to_string()))?;
        }
        writer.finish().map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(out)
}

#[tonic::async_trait]
impl FlightSqlService for PoplarFlightSql {
    type FlightService = PoplarFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("sign in with Basic auth: user name, and your token as password"))?;
        let encoded = header
            .strip_prefix("Basic ")
            .ok_or_else(|| Status::unauthenticated("expected Basic auth"))?;
        let decoded = BASE64
            .decode(encoded.trim())
            .map_err(|_| Status::unauthenticated("Basic credentials are not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| Status::unauthenticated("Basic credentials are not UTF-8"))?;
        let (user, token) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("expected user:token"))?;
        let (principal, session) = self.auth.sign_in(user, token)?;
        tracing::info!(user = %principal.user, role = principal.role.as_str(), "signed in");
        let bearer = format!("Bearer {session}");
        let output = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: session.into_bytes().into(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(output));
        response.metadata_mut().insert(
            "authorization",
            bearer
                .parse()
                .map_err(|_| Status::internal("session token is not a header value"))?,
        );
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let handle = StatementHandle {
            sql: query.query,
            params: Vec::new(),
        };
        let schema = self.schema_of(&principal, &handle).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode_to_vec().into(),
        };
        Self::info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        self.stream(&principal, &decode_handle(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        // Plan now so a refused or broken statement fails at prepare time.
        let started = Instant::now();
        let handle = StatementHandle {
            sql: query.query.clone(),
            params: Vec::new(),
        };
        let plan = match self.session(&principal) {
            Ok(session) => session.plan(&query.query).await,
            Err(e) => Err(e),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => return Err(self.audit_failure(&principal, &handle, started, e).await),
        };
        let schema = plan.schema().as_arrow().clone();
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        let handle = StatementHandle {
            sql: query.query,
            params: Vec::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode_to_vec().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.principal(&request)?;
        let mut handle = decode_handle(&query.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from))
                .try_collect()
                .await?;
        handle.params = encode_params(&batches)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode_to_vec().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let schema = self.schema_of(&principal, &handle).await?;
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        self.stream(&principal, &decode_handle(&query.prepared_statement_handle)?)
            .await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are stateless: nothing to free, but the caller must still be signed in.
        self.principal(&request)?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let mut builder = query.into_builder();
        for (name, kind, schema) in self.catalog.current().tables().await? {
            if principal.role != Role::Steward && STEWARD_ONLY.contains(&name.as_str()) {
                continue;
            }
            builder
                .append(CATALOG, SCHEMA, &name, kind, &schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let builder = query.into_builder(&self.sql_info);
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&self.xdbc_info).schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let builder = query.into_builder(&self.xdbc_info);
        Ok(Self::batch_stream(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
