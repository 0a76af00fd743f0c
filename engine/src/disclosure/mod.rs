//! Disclosure control: no answer to a non-steward re-identifies anyone, whatever the SQL.
//! See docs/disclosure-control.md for each rule, the attack it stops and its anchor.
//!
//! - [`rule`]: the analyzer rule that refuses or rewrites every plan, with [`release`]
//!   building each release point;
//! - [`protect`]: the release operator that suppresses, noises and rounds;
//! - [`people`]: distinct people and their digest per release group, in one pass;
//! - [`noise`]: sticky noise; [`policy`]: the settings and their floors;
//! - [`budget`]: the per-user daily limit on answers for noised roles;
//! - [`error_free`]: the analyzer rule that leaves nothing in a plan that can fail on a
//!   value (errors would be a side channel).
//!
//! [`install`] puts all of it into a session, the one way any request gets it.

pub mod budget;
pub mod error_free;
pub mod lineage;
pub mod noise;
pub mod people;
pub mod policy;
pub mod protect;
mod release;
pub mod rule;

use deltalake::datafusion::execution::SessionStateBuilder;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::identity::Principal;
pub use budget::Budget;
pub use policy::Policy;
pub use protect::{
    MAX_LISTED_CELLS, PROTECTION_KEY, PoplarQueryPlanner, ReleaseStats, SUPPRESSED_KEY, SuppressedCell, Suppression,
};
pub use rule::DisclosureControl;

/// Disclosure control as a server runs it: the policy and the users' daily budgets.
#[derive(Debug)]
pub struct Disclosure {
    pub policy: Arc<Policy>,
    pub budget: Budget,
}

impl Disclosure {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
            budget: Budget::default(),
        }
    }
}

/// Install disclosure control for `principal` into a session being built: the analyzer
/// rule (which refuses or rewrites every plan) and the planner that knows the release
/// operator. `stats` collects what the releases did, for the audit log; `steward_only`
/// names the tables the rule refuses.
pub fn install(
    builder: SessionStateBuilder,
    disclosure: &Disclosure,
    principal: &Principal,
    steward_only: Arc<BTreeSet<String>>,
    stats: Arc<ReleaseStats>,
) -> SessionStateBuilder {
    let rule = DisclosureControl {
        policy: disclosure.policy.clone(),
        noised: disclosure.policy.noised(principal.role),
        stats,
        steward_only,
    };
    // Error-free after disclosure control: it then also covers the hidden release columns.
    builder
        .with_analyzer_rule(Arc::new(rule))
        .with_analyzer_rule(Arc::new(error_free::ErrorFree))
        .with_query_planner(Arc::new(PoplarQueryPlanner))
}
