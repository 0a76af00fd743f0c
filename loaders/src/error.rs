use thiserror::Error;

/// Everything that can stop a loader operation.
///
/// No variant carries a record's content: messages name files, lines, columns and reasons,
/// never an NHS number, name, address or other identifier.
#[derive(Debug, Error)]
pub enum LoaderError {
    #[error("no pseudonymisation key: set POPLAR_PSEUDONYM_KEY or pass --key-file (load refuses to run without one)")]
    MissingKey,
    #[error("the pseudonymisation key is too short: at least {min_bytes} bytes are required")]
    WeakKey { min_bytes: usize },
    #[error("cannot read key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("source registry {path}: {reason}")]
    Registry { path: String, reason: String },
    #[error("lookup file {path}: {reason}")]
    Lookup { path: String, reason: String },
    #[error("opt-out list {path}: {reason}")]
    OptOutList { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("object store URL {url}: {reason}")]
    StoreUrl { url: String, reason: String },
    #[cfg(feature = "storage")]
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[cfg(feature = "storage")]
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        source: deltalake::DeltaTableError,
    },
    #[cfg(feature = "storage")]
    #[error("query over landed data: {0}")]
    DataFusion(#[from] deltalake::datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("landed table {table} is inconsistent: {reason}")]
    Inconsistent { table: String, reason: String },
    #[error("parsing deliveries was cancelled before it finished (the runtime is shutting down)")]
    ParseCancelled,
    #[error("synthetic generator: {0}")]
    Synth(String),
    #[cfg(feature = "storage")]
    #[error("codelists: {0}")]
    Codelists(#[from] poplar_queries::QueryError),
}

impl LoaderError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    #[cfg(feature = "storage")]
    pub(crate) fn delta(table: &str, source: deltalake::DeltaTableError) -> Self {
        Self::Delta {
            table: table.to_string(),
            source,
        }
    }
}
