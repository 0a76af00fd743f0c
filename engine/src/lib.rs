//! Poplar's engine: the catalog over landed data, the request path every service shares,
//! disclosure control, the audit log, and the transports.
//!
//! Modules, leaves first (each depends only on those above it):
//! - [`identity`]: roles and the principal a request runs as;
//! - [`error`]: every error, its [`Rule`] if a refusal, and the one classification that
//!   picks both the gRPC code and the audit outcome;
//! - [`disclosure`]: the analyzer rule, the release operator, noise, policy, budgets;
//!   [`audit`]: the hash-chained log; [`auth`]: users and tokens; [`udfs`]: SQL functions;
//! - [`connections`]: accepting connections within a cap and silence timeouts;
//! - [`limits`]: how large a request's SQL may be (measured before it is planned), and
//!   the slots, memory and time a running query gets;
//! - [`catalog`]: one snapshot's tables, views and functions ([`as_of`]: registers as of
//!   any date), given extra tables (the audit log) by the server;
//! - [`session`]: one request's session with its policy installed;
//! - [`gate`]: the request path (authenticate → policy → plan → budget → execute →
//!   release → audit) that every transport calls;
//! - [`flight`]: Arrow Flight SQL over the gate; [`measures`], [`studies`] and
//!   [`governance`]: Poplar's own services over the gate;
//! - [`server`]: assembles the above and serves the transports on one port;
//! - [`files`] and [`distributed`]: landed tables as Parquet file lists, and the planner
//!   and codec that run queries on an Apache Ballista cluster while disclosure control
//!   stays in this process ([`cluster_job`]: the cluster's part, cancelled on the
//!   scheduler when its answer is dropped unfinished);
//! - [`yielding`]: the physical rule that makes joins give way to the runtime, so a query
//!   stopped at its time limit stops working.

mod as_of;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cluster_job;
pub mod connections;
mod derived;
pub mod disclosure;
pub mod distributed;
pub mod error;
mod file_stats;
pub mod files;
pub mod first_row;
pub mod flight;
pub mod gate;
pub mod governance;
pub mod identity;
pub mod limits;
pub mod measures;
mod membership;
mod page_index;
pub mod reference;
pub mod server;
pub mod session;
pub mod studies;
mod sync;
pub mod udfs;
pub mod yielding;

pub use catalog::{SnapshotCatalog, SnapshotContext};
pub use disclosure::Disclosure;
pub use error::{EngineError, Rule};
pub use gate::Gate;
pub use identity::{Principal, Role};
pub use session::{PlannedStatement, QuerySession};
