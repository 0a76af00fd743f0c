//! The release point: a `Protect` node sits directly on every aggregate that turns
//! people's records into an answer. Its input is that aggregate with hidden columns the
//! rewrite added (distinct people per group and a digest of who they are, from one set, and
//! noise scales);
//! its output is the aggregate's own columns with every value made safe (rules 2–5):
//! groups below k withheld, small counts suppressed, counts and sums rounded after sticky
//! noise, and secondary suppression where totals and their breakdowns meet.
//!
//! [`node`] is the logical node, [`exec`] the physical operator and its planner,
//! [`release`] the algorithm that makes one answer safe, [`secondary`] the secondary
//! suppression across grouping sets.

mod exec;
mod node;
mod release;
mod secondary;

use arrow::datatypes::Field;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::policy::Policy;

pub(crate) use exec::ProtectPlanner;
pub use exec::{PoplarQueryPlanner, ProtectExec};
pub use node::ProtectNode;

/// Field metadata on every protected column, so a client can show `*` for a suppressed cell.
pub const PROTECTION_KEY: &str = "poplar.protection";
pub const SUPPRESSED_KEY: &str = "poplar.suppressed";
/// Field metadata on every key column of a release: `public` (a small group may be shown
/// by it, marked) or `fine` (a small group with it is withheld).
pub const KEY_DOMAIN_KEY: &str = "poplar.key";
/// Schema metadata of a release: what happens to groups below k people (`marked`,
/// `withheld`, or `withheld_unless_public_keys`: withheld unless every key shown is public).
pub const SMALL_GROUPS_KEY: &str = "poplar.small_groups";

/// What one output column of a release holds, and so how it is made safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    /// A group key: published as is (the rewrite refuses keys derived from `person_id`).
    /// `public`: its values come from a public domain (see `lineage`), so a small group
    /// may be shown by it, marked; a small group with any key that is not is withheld.
    Key { public: bool },
    /// DataFusion's internal grouping-set id (for ROLLUP/CUBE/GROUPING SETS).
    GroupingId,
    /// `count(…)`: suppressed 1–7 and below k people, noised, rounded. A *conditional*
    /// count (`count(CASE …)`, `FILTER (WHERE …)`) counts a subgroup the group's size says
    /// nothing about, so its zero is suppressed too: otherwise 0 against `*` would tell
    /// whether anyone matches the condition. `of_people`: the user's own
    /// `count(DISTINCT person_id)` where that column provably is the pid; its value is the
    /// release's own count of people per group (the aggregate computes a placeholder under
    /// the column's name instead of a second set of the same people).
    Count { conditional: bool, of_people: bool },
    /// `sum(x)`: withheld below k people, noised in proportion to the largest value, rounded.
    /// `scale` is the input column holding `max(abs(x))` for the group.
    Sum { scale: usize },
    /// `avg(x)`: withheld below k people, noised like the sum it divides.
    Mean { scale: usize },
    /// `median(x)`: withheld below k people.
    Median,
}

impl Cell {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Cell::Key { .. } => "key",
            Cell::GroupingId => "grouping_id",
            Cell::Count { .. } => "count",
            Cell::Sum { .. } => "sum",
            Cell::Mean { .. } => "mean",
            Cell::Median => "median",
        }
    }
    pub(super) fn is_value(&self) -> bool {
        !matches!(self, Cell::Key { .. } | Cell::GroupingId)
    }
}

/// Counts what disclosure control did to one request's answer, for the audit log, and
/// lists which cells it suppressed and why, for services that mark each suppressed cell
/// (the measures service shows primary and secondary suppression differently).
#[derive(Debug, Default)]
pub struct ReleaseStats {
    pub cells_suppressed: AtomicU64,
    pub groups_withheld: AtomicU64,
    suppressed: Mutex<SuppressedCells>,
}

/// The most suppressed cells one request's stats list. Listing costs memory for an answer
/// of millions of groups; a service that needs the list fails loudly past this (see
/// [`ReleaseStats::suppressed_cells`]) rather than mark cells wrongly.
pub const MAX_LISTED_CELLS: usize = 1_000_000;

/// Why a cell of a release carries no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suppression {
    /// Its own group or count was too small (rule 2 or 3).
    Primary,
    /// Withheld so that a primary suppression cannot be recovered from a total.
    Secondary,
}

/// One suppressed cell: which value column of the release (0 for the first aggregate in
/// the statement, 1 for the next, …), the group's key values as text (`None` for a column
/// a grouping set rolled up) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressedCell {
    pub value_column: usize,
    pub keys: Vec<Option<String>>,
    pub reason: Suppression,
}

#[derive(Debug, Default)]
struct SuppressedCells {
    cells: Vec<SuppressedCell>,
    /// More cells were suppressed than [`MAX_LISTED_CELLS`].
    overflowed: bool,
}

impl ReleaseStats {
    pub(super) fn list_suppressed(&self, cells: impl Iterator<Item = SuppressedCell>) {
        let mut listed = self.suppressed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for cell in cells {
            if listed.cells.len() >= MAX_LISTED_CELLS {
                listed.overflowed = true;
                return;
            }
            listed.cells.push(cell);
        }
    }

    /// Every cell the request's releases suppressed, with why; `None` when there were more
    /// than [`MAX_LISTED_CELLS`], so the list is incomplete.
    pub fn suppressed_cells(&self) -> Option<Vec<SuppressedCell>> {
        let listed = self.suppressed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (!listed.overflowed).then(|| listed.cells.clone())
    }
}

/// Everything the release needs besides its input.
#[derive(Debug)]
pub struct ProtectSpec {
    pub policy: Arc<Policy>,
    pub noised: bool,
    /// One per visible output column: its kind and the aggregate's text (seeds noise).
    pub cells: Vec<(Cell, String)>,
    /// Input column with `poplar_people`'s output: distinct people per group and the
    /// order-free digest of who they are (see `disclosure::people`).
    pub people: usize,
    /// Canonical text of the aggregate's input plan: the question layer's seed.
    pub question: String,
    /// Small groups are dropped rather than shown: for a release with no value columns
    /// (`SELECT DISTINCT`: no cell to mark), or when the deployment withholds them.
    pub drop_small_groups: bool,
    pub stats: Arc<ReleaseStats>,
}

impl ProtectSpec {
    /// What this release does with a group below k people (see [`SMALL_GROUPS_KEY`]).
    pub fn small_groups(&self) -> &'static str {
        let fine_key = self.cells.iter().any(|(c, _)| *c == Cell::Key { public: false });
        match (self.drop_small_groups, fine_key) {
            (true, _) => "withheld",
            (false, true) => "withheld_unless_public_keys",
            (false, false) => "marked",
        }
    }

    /// The release's schema metadata: its input's, and what it does with small groups.
    pub(super) fn metadata(
        &self,
        input: &std::collections::HashMap<String, String>,
    ) -> std::collections::HashMap<String, String> {
        let mut metadata = input.clone();
        metadata.insert(SMALL_GROUPS_KEY.into(), self.small_groups().into());
        metadata
    }
}

pub(super) fn protected_field(field: &Field, cell: &Cell) -> Field {
    if let Cell::Key { public } = cell {
        let mut metadata = field.metadata().clone();
        metadata.insert(KEY_DOMAIN_KEY.into(), if *public { "public" } else { "fine" }.into());
        return field.clone().with_metadata(metadata);
    }
    if !cell.is_value() {
        return field.clone();
    }
    let mut metadata = field.metadata().clone();
    metadata.insert(PROTECTION_KEY.into(), cell.label().into());
    metadata.insert(SUPPRESSED_KEY.into(), "null".into());
    field.clone().with_nullable(true).with_metadata(metadata)
}
