//! Engine integration tests, one binary: registers and functions on a hand-built fixture
//! (sqllogictest files in `tests/slt/`), disclosure control on a synthetic region (red
//! team, utility, plan snapshots), every measure's SQL for stewards and commissioners, the
//! audit log's tamper evidence, the request path over gRPC from a real Flight client, and
//! the limits on what a request may be and use, and FHIR feeds as real systems send them
//! landing end to end onto the registers, a store from an older Poplar taking new rows,
//! approved studies from submission to a released, reproducible output, the SQL fuzz
//! corpus replayed through the policy entry point, and the same questions on an
//! in-process Ballista cluster.

mod audit;
mod cluster;
mod common;
mod derived;
mod disclosure;
#[path = "../../../loaders/tests/support/fhir_feed.rs"]
mod fhir_feed;
mod fhir_feeds;
mod limits;
mod measures;
mod measures_service;
mod request_path;
mod schema_evolution;
mod slt;
mod sql_corpus;
mod studies;
