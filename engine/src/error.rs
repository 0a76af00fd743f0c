use thiserror::Error;

/// Everything the engine can refuse or fail at. Messages name the rule or the fault, never
/// a value from the data.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("query failed: {0}")]
    Query(deltalake::datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("landed data: {0}")]
    Store(#[from] poplar_loaders::LoaderError),
    #[error("delta table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("users file {path}: {reason}")]
    Users { path: String, reason: String },
    #[error("codelists: {0}")]
    Codelists(#[from] poplar_queries::QueryError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The audit log cannot be read, or fails verification (names the first bad entry).
    #[error("audit log: {0}")]
    Audit(String),
}

/// A disclosure-control refusal travels through DataFusion as an external error; surface
/// it as a refusal (permission denied, naming the rule), never as a query failure.
impl From<deltalake::datafusion::error::DataFusionError> for EngineError {
    fn from(e: deltalake::datafusion::error::DataFusionError) -> Self {
        match crate::disclosure::refusal_in(&e) {
            Some(refusal) => EngineError::Refused(refusal.to_string()),
            None => EngineError::Query(e),
        }
    }
}

/// The one mapping from engine errors to gRPC status codes. No catch-all arm: a new error
/// kind must decide its code here.
impl From<EngineError> for tonic::Status {
    fn from(e: EngineError) -> Self {
        use deltalake::datafusion::error::DataFusionError as D;
        let message = e.to_string();
        match e {
            EngineError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            EngineError::PermissionDenied(_) | EngineError::Refused(_) => tonic::Status::permission_denied(message),
            EngineError::InvalidRequest(_) => tonic::Status::invalid_argument(message),
            // The caller's SQL was wrong (unknown table, bad syntax, type error): their fault.
            EngineError::Query(D::Plan(_) | D::SQL(..) | D::SchemaError(..) | D::NotImplemented(_)) => {
                tonic::Status::invalid_argument(message)
            }
            EngineError::Query(_) => tonic::Status::internal(message),
            EngineError::Arrow(_)
            | EngineError::Store(_)
            | EngineError::Delta(_)
            | EngineError::Users { .. }
            | EngineError::Codelists(_)
            | EngineError::Config(_)
            | EngineError::ObjectStore(_)
            | EngineError::Audit(_) => tonic::Status::internal(message),
        }
    }
}
