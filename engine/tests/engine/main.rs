//! Engine integration tests, one binary: registers and functions on a hand-built fixture
//! (sqllogictest files in `tests/slt/`), disclosure control on a synthetic region (red
//! team, utility, plan snapshots), every measure's SQL for stewards and commissioners, the
//! audit log's tamper evidence, the request path over gRPC from a real Flight client, and
//! the limits on what a request may be and use.

mod audit;
mod common;
mod derived;
mod disclosure;
mod limits;
mod measures;
mod measures_service;
mod request_path;
mod slt;
