//! Integration tests of the loaders: synthetic region → load → what landed. One test
//! binary (one link of the heavy Delta stack) with a module per topic; `common` holds the
//! shared set-up and `../fixtures` the lookup files and FHIR fixtures hand-built deliveries
//! use; `../support` what the engine's tests share with these.

mod common;
mod crash_recovery;
mod deidentification;
#[path = "../support/fhir_feed.rs"]
mod fhir_feed;
mod fhir_shapes;
mod hostile;
mod landing;
mod optout;
mod quarantine;
mod s3;
mod synth;
mod synthea;
