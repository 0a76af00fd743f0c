//! Arrow Flight SQL, as transport only: each call's credentials and request are handed to
//! the [`Gate`] (which authenticates, applies the policy, runs, releases and audits), and
//! its answer or error is translated to Flight. A ticket is not a credential: every call
//! but the handshake carries a bearer token, checked first.
//!
//! [`handle`] is the statement handle and its parameters; [`metadata`] the server and type
//! information clients read before they query; [`release_metadata`] what disclosure
//! control did to an answer, sent with its last message.

mod handle;
mod metadata;
mod release_metadata;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

pub use handle::StatementHandle;
use handle::{decode_handle, decode_params, encode_params};
pub use release_metadata::ReleaseSummary;

use crate::EngineError;
use crate::audit::AuditRequest;
use crate::catalog::{CATALOG, SCHEMA, SnapshotContext, TableKind};
use crate::gate::Gate;
use crate::identity::Principal;

/// Go clients (ADBC) send unpadded base64 in Basic auth; accept both forms.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;
type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// Poplar's Flight SQL service.
pub struct PoplarFlightSql {
    gate: Arc<Gate>,
    sql_info: SqlInfoData,
    xdbc_info: XdbcTypeInfoData,
}

impl std::fmt::Debug for PoplarFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoplarFlightSql")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

/// The bearer token of a call, or why there is none (every gRPC service reads it so).
pub(crate) fn bearer<T>(request: &Request<T>) -> Result<&str, EngineError> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            EngineError::Unauthenticated("no authorization header: sign in (Basic) or send Bearer <token>".into())
        })?;
    header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(|| EngineError::Unauthenticated("expected authorization: Bearer <token>".into()))
}

/// The user and token of a Basic sign-in.
fn basic<T>(request: &Request<T>) -> Result<(String, String), EngineError> {
    let unauthenticated = |why: &str| EngineError::Unauthenticated(why.to_string());
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthenticated("sign in with Basic auth: user name, and your token as password"))?;
    let encoded = header
        .strip_prefix("Basic ")
        .ok_or_else(|| unauthenticated("expected Basic auth"))?;
    let decoded = BASE64
        .decode(encoded.trim())
        .map_err(|_| unauthenticated("Basic credentials are not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| unauthenticated("Basic credentials are not UTF-8"))?;
    let (user, token) = decoded
        .split_once(':')
        .ok_or_else(|| unauthenticated("expected user:token"))?;
    Ok((user.to_string(), token.to_string()))
}

fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::from(EngineError::from(e)))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// One batch as a DoGet stream.
fn one_batch(schema: SchemaRef, batch: RecordBatch) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

impl PoplarFlightSql {
    pub fn new(gate: Arc<Gate>) -> Result<Self, EngineError> {
        Ok(Self {
            gate,
            sql_info: metadata::sql_info()?,
            xdbc_info: metadata::xdbc_type_info()?,
        })
    }

    async fn principal<T>(&self, request: &Request<T>, rpc: &str) -> Result<Principal, Status> {
        Ok(self.gate.authenticate(bearer(request), rpc).await?)
    }

    /// FlightInfo for a catalog call: its schema, and the command itself as the ticket.
    async fn catalog_info(
        &self,
        request: Request<FlightDescriptor>,
        rpc: &str,
        schema: SchemaRef,
        command: impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request, rpc).await?;
        flight_info(&schema, command.as_any().encode_to_vec(), request.into_inner())
    }

    /// The answer to a catalog call, audited by the gate.
    async fn catalog_answer<F, Fut>(
        &self,
        request: Request<Ticket>,
        rpc: &str,
        schema: SchemaRef,
        build: F,
    ) -> Result<Response<DoGetStream>, Status>
    where
        F: FnOnce(Principal, Arc<SnapshotContext>) -> Fut,
        Fut: Future<Output = Result<RecordBatch, EngineError>>,
    {
        let principal = self.principal(&request, rpc).await?;
        let who = principal.clone();
        let batch = self
            .gate
            .metadata(&principal, rpc, |snapshot| build(who, snapshot))
            .await?;
        Ok(one_batch(schema, batch))
    }

    /// What a statement request records: its SQL and, once bound, its parameters.
    fn audit_request(handle: &StatementHandle, params: &[deltalake::datafusion::scalar::ScalarValue]) -> AuditRequest {
        AuditRequest::sql_with_parameters(handle.sql.clone(), params.iter().map(ToString::to_string).collect())
    }

    /// The schema of a statement, planned under the caller's policy.
    async fn describe(&self, principal: &Principal, handle: &StatementHandle) -> Result<SchemaRef, Status> {
        let params = decode_params(&handle.params);
        let request = self.gate.request(
            principal,
            Self::audit_request(handle, params.as_deref().unwrap_or_default()),
        );
        let params = match params {
            Ok(params) => params,
            Err(e) => return Err(request.fail(e).await.into()),
        };
        Ok(request.describe(&handle.sql, params).await?)
    }

    /// Run a statement through the gate and stream its answer.
    async fn answer(&self, principal: &Principal, handle: &StatementHandle) -> Result<Response<DoGetStream>, Status> {
        let params = decode_params(&handle.params);
        let request = self.gate.request(
            principal,
            Self::audit_request(handle, params.as_deref().unwrap_or_default()),
        );
        let params = match params {
            Ok(params) => params,
            Err(e) => return Err(request.fail(e).await.into()),
        };
        let answer = request.run(&handle.sql, params).await?;
        let batches = answer
            .batches
            .map_err(|e| FlightError::Tonic(Box::new(Status::from(e))));
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(answer.schema)
            .build(batches)
            .map_err(Status::from);
        let summarised = release_metadata::with_release_summary(encoded, answer.release);
        Ok(Response::new(Box::pin(summarised)))
    }

    /// A statement handle from a ticket or command, refused (and audited) if malformed.
    async fn handle(&self, principal: &Principal, bytes: &[u8]) -> Result<StatementHandle, Status> {
        match decode_handle(bytes) {
            Ok(handle) => Ok(handle),
            Err(e) => {
                let request = AuditRequest::Call {
                    rpc: "DoGet (undecodable statement handle)".into(),
                };
                Err(self.gate.request(principal, request).fail(e).await.into())
            }
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for PoplarFlightSql {
    type FlightService = PoplarFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let (user, token) = match basic(&request) {
            Ok(credentials) => credentials,
            // Not even a user name to record: audited as an anonymous call.
            Err(e) => return Err(self.gate.refuse_anonymous("Handshake", e).await.into()),
        };
        let (_, session) = self.gate.sign_in(&user, &token).await?;
        let bearer = format!("Bearer {session}");
        let output = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: session.into_bytes().into(),
        })]);
        let mut response: Response<HandshakeStream> = Response::new(Box::pin(output));
        let header = bearer
            .parse()
            .map_err(|_| Status::internal("session token is not a header value"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request, "GetFlightInfo").await?;
        let handle = StatementHandle {
            sql: query.query,
            params: Vec::new(),
        };
        let schema = self.describe(&principal, &handle).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode_to_vec().into(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request, "DoGet").await?;
        let handle = self.handle(&principal, &ticket.statement_handle).await?;
        self.answer(&principal, &handle).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request, "CreatePreparedStatement").await?;
        // Plan now so a refused or broken statement fails at prepare time.
        let handle = StatementHandle {
            sql: query.query,
            params: Vec::new(),
        };
        let schema = self
            .gate
            .request(&principal, Self::audit_request(&handle, &[]))
            .prepare(&handle.sql)
            .await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::from(EngineError::from(e)))?;
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
        let principal = self.principal(&request, "DoPut (bind parameters)").await?;
        let mut handle = self.handle(&principal, &query.prepared_statement_handle).await?;
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
        let principal = self.principal(&request, "GetFlightInfo").await?;
        let handle = self.handle(&principal, &query.prepared_statement_handle).await?;
        let schema = self.describe(&principal, &handle).await?;
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request, "DoGet").await?;
        let handle = self.handle(&principal, &query.prepared_statement_handle).await?;
        self.answer(&principal, &handle).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are stateless: nothing to free, but the caller must still be signed in.
        self.principal(&request, "ClosePreparedStatement").await?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(request, "GetCatalogs", schema, query).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_answer(request, "GetCatalogs", schema, |_, _| async move {
            let mut builder = query.into_builder();
            builder.append(CATALOG);
            Ok(builder.build()?)
        })
        .await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(request, "GetDbSchemas", schema, query).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_answer(request, "GetDbSchemas", schema, |_, _| async move {
            let mut builder = query.into_builder();
            builder.append(CATALOG, SCHEMA);
            Ok(builder.build()?)
        })
        .await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(request, "GetTables", schema, query).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_answer(request, "GetTables", schema, |principal, snapshot| async move {
            let mut builder = query.into_builder();
            for (name, kind, schema) in snapshot.tables(&principal).await? {
                builder.append(CATALOG, SCHEMA, &name, kind.as_str(), &schema)?;
            }
            Ok(builder.build()?)
        })
        .await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(request, "GetTableTypes", schema, query).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_answer(request, "GetTableTypes", schema, |_, _| async move {
            let mut builder = query.into_builder();
            for kind in [TableKind::Table, TableKind::View] {
                builder.append(kind.as_str());
            }
            Ok(builder.build()?)
        })
        .await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.catalog_info(request, "GetSqlInfo", schema, query).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        self.catalog_answer(
            request,
            "GetSqlInfo",
            schema,
            |_, _| async move { Ok(builder.build()?) },
        )
        .await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc_info).schema();
        self.catalog_info(request, "GetXdbcTypeInfo", schema, query).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.xdbc_info);
        let schema = builder.schema();
        self.catalog_answer(request, "GetXdbcTypeInfo", schema, |_, _| async move {
            Ok(builder.build()?)
        })
        .await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
