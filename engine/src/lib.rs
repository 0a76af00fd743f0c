//! Poplar's engine: the catalog over landed data, per-user sessions and the SQL policy,
//! and (as they land) disclosure control, audit and the gRPC services.

pub mod catalog;
mod error;
pub mod session;
pub mod udfs;

pub use catalog::{Catalog, Loaded};
pub use error::EngineError;
pub use session::{Principal, Role};
