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
    /// A caller asked for a measure the catalogue does not hold.
    #[error("unknown measure {0}")]
    UnknownMeasure(String),
    /// A period label or range that is not a month, quarter or financial year Poplar serves.
    #[error("invalid period: {0}")]
    InvalidPeriod(String),
    /// An area code that is not 1-16 ASCII letters or digits.
    #[error("invalid area code {0:?}: codes are 1-16 letters or digits")]
    InvalidAreaCode(String),
    #[error("unknown geography level {0:?}; use practice, pcn, sub_icb, icb or region")]
    UnknownLevel(String),
    #[error("unknown breakdown {0:?}; use age_band, sex, imd_decile or ethnicity")]
    UnknownDimension(String),
    /// Too many, repeated or (for the measure) meaningless breakdowns.
    #[error("invalid breakdown: {0}")]
    InvalidBreakdown(String),
    /// A parent area filter at or below the level asked for.
    #[error("areas at {level} level cannot be filtered by a {parent}: the parent must be a larger area")]
    InvalidParent { level: &'static str, parent: &'static str },
}
