//! Poplar's engine: the catalog over landed data, users and sessions, the SQL policy, and
//! Arrow Flight SQL serving (disclosure control, audit and Poplar's own services next).

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod disclosure;
mod error;
pub mod flight;
mod reference_date;
pub mod server;
pub mod session;
pub mod udfs;

pub use catalog::{Catalog, Loaded};
pub use error::EngineError;
pub use session::{Disclosure, Principal, QuerySession, Role};
