//! The pure foundation of the measures service (`poplar.measures.v1`): the measure
//! catalogue, reporting periods, the SQL that answers a measure request, and the
//! statistics that turn released counts into values, intervals and comparisons.
//!
//! Nothing here touches data: the service plans [`Measure::sql`] through the engine's one
//! request path (so disclosure control releases the counts), then computes values with
//! [`stats`] from the released numerator and denominator.
//!
//! ```
//! use poplar_queries::measures::{self, Dimension, Level, Period, Request};
//! let m = measures::measure("prevalence_diabetes")?;
//! let period: Period = "2023/24".parse()?;
//! let sql = m.sql(&Request::new(Level::Pcn, period).by(Dimension::Sex))?;
//! assert!(sql.contains("registers_on(DATE '2024-03-31')"));
//! let value = measures::stats::proportion(120.0, 1_500.0, m.multiplier);
//! assert!(value.is_some_and(|v| v.ci95.lower < 8.0 && 8.0 < v.ci95.upper));
//! # Ok::<(), poplar_queries::QueryError>(())
//! ```

pub mod areas;
pub mod catalogue;
pub mod dimensions;
pub mod periods;
pub mod sql;
pub mod stats;

pub use areas::{AreaCode, Level, REGION_CODE};
pub use catalogue::{CiMethod, Measure, ValueType, catalogue, measure};
pub use dimensions::{Category, Dimension, UNKNOWN};
pub use periods::{Period, PeriodKind};
pub use sql::{ESP_AGE_BAND_COLUMN, MAX_BREAKDOWNS, Request};
pub use stats::{Interval, Polarity, Significance};
