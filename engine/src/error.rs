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
    #[error("no data has been loaded into this store yet")]
    NoData,
    #[error("query failed: {0}")]
    Query(#[from] deltalake::datafusion::error::DataFusionError),
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
}
