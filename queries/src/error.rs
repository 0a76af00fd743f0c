use thiserror::Error;

/// Errors raised by the query knowledge base.
#[derive(Debug, Error)]
pub enum QueryError {
    /// A codelist shipped with the binary did not parse; this is a build defect.
    #[error("codelist {cluster} is malformed at line {line}: {reason}")]
    MalformedCodelist {
        cluster: &'static str,
        line: usize,
        reason: String,
    },
    /// A caller asked for a cluster Poplar does not ship.
    #[error("unknown codelist {0}")]
    UnknownCodelist(String),
}
