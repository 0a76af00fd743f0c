//! Poplar's clinical knowledge: the QOF codelists it ships, and (as later issues land)
//! long-term-condition register definitions, measures and the approved-study registry.
//!
//! Everything here is data compiled into the binary: nothing reads `../shared` at run time.

pub mod codelists;
mod error;
pub mod measures;
pub mod registers;

pub use codelists::{CLUSTERS, Cluster, Code, Codelist, all_codelists, codelist};
pub use error::QueryError;
pub use registers::{REGISTERS, Register};
