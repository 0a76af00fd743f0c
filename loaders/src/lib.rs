//! Poplar's loaders: from what source organisations send to de-identified Delta tables in
//! object storage.
//!
//! The path of a record: [`delivery`] finds and verifies a delivery, [`parse`] reads its
//! CSV or FHIR files and de-identifies each record ([`pseudonym`], [`lookup`]) or
//! quarantines it ([`quarantine`]), [`load`] lands deliveries in groups through
//! [`landing`], whose snapshots make each group visible at once. [`optout`] applies the
//! national data opt-out; [`synth`] generates a synthetic region to load.

pub mod dates;
#[cfg(feature = "storage")]
pub mod deliveries;
pub mod delivery;
mod error;
#[cfg(feature = "storage")]
pub mod landing;
#[cfg(feature = "storage")]
pub mod load;
pub mod lookup;
pub mod nhs_number;
#[cfg(feature = "storage")]
pub mod optout;
#[cfg(feature = "storage")]
pub mod organisations;
pub mod parse;
pub mod pseudonym;
pub mod quarantine;
pub mod registry;
#[cfg(feature = "storage")]
pub mod store;
#[cfg(feature = "storage")]
pub mod synth;
pub mod tables;

pub use error::LoaderError;
pub use nhs_number::NhsNumber;
pub use pseudonym::Pseudonymiser;
#[cfg(feature = "storage")]
pub use store::Store;
pub use tables::Table;
