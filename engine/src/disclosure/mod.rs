//! Disclosure control: no answer to a non-steward re-identifies anyone, whatever the SQL.
//! See docs/disclosure-control.md for each rule, the attack it stops and its anchor.
//!
//! - [`rule`]: the analyzer rule that refuses or rewrites every plan, with [`release`]
//!   building each release point;
//! - [`protect`]: the release operator that suppresses, noises and rounds;
//! - [`people`]: distinct people and their digest per release group, in one pass (without
//!   a set where `unique_rows` proves each person is at most one row of a group);
//! - [`noise`]: sticky noise; [`policy`]: the settings and their floors;
//! - [`budget`]: the per-user daily limit on answers for noised roles;
//! - [`error_free`]: the analyzer rule that leaves nothing in a plan that can fail on a
//!   value (errors would be a side channel);
//! - [`redundant_join_keys`]: the optimizer rule that takes back the cost of enforcing
//!   "same person" where the user's own join key already says it, with `same_values`
//!   (whether two columns provably hold the same values) shared with the analyzer rule.
//!
//! [`install`] puts all of it into a session, the one way any request gets it.

pub mod budget;
pub mod error_free;
pub mod lineage;
pub mod noise;
pub mod people;
pub mod policy;
pub mod protect;
pub mod redundant_join_keys;
mod release;
pub mod rule;
mod same_values;
mod unique_rows;

use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::context::QueryPlanner;
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

/// The query planner a session's configuration carries for disclosure control to install
/// (a cluster's front end: `distributed::ClusterPlanner`, which plans every `Protect` here
/// as this module's planner does); without one, [`PoplarQueryPlanner`].
#[derive(Debug)]
pub struct SessionPlanner(pub Arc<dyn QueryPlanner + Send + Sync>);

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
    // A cluster's front end plans releases with its own planner, which keeps them here
    // and sends the rest to the cluster; a single node plans everything itself.
    let mut builder = builder;
    let planner: Arc<dyn QueryPlanner + Send + Sync> = match builder
        .config()
        .as_ref()
        .and_then(|c| c.get_extension::<SessionPlanner>())
    {
        Some(carried) => carried.0.clone(),
        None => Arc::new(PoplarQueryPlanner),
    };
    // Error-free after disclosure control: it then also covers the hidden release columns.
    builder
        .with_analyzer_rule(Arc::new(rule))
        .with_analyzer_rule(Arc::new(error_free::ErrorFree))
        .with_optimizer_rule(Arc::new(redundant_join_keys::RedundantJoinKeys))
        .with_query_planner(planner)
}
