//! Disclosure control: no answer to a non-steward re-identifies anyone, whatever the SQL.
//! See docs/disclosure-control.md for each rule, the attack it stops and its anchor.
//!
//! - [`rewrite`]: the analyzer rule that refuses or rewrites every plan;
//! - [`protect`]: the release operator that suppresses, noises and rounds;
//! - [`noise`]: sticky noise; [`policy`]: the settings and their floors;
//! - [`budget`]: the per-user daily limit on answers for noised roles.

pub mod budget;
pub mod noise;
pub mod policy;
pub mod protect;
pub mod rewrite;

pub use policy::Policy;
pub use protect::{PROTECTION_KEY, PoplarQueryPlanner, ReleaseStats, SUPPRESSED_KEY};
pub use rewrite::{DisclosureControl, Refusal, refusal_in};
