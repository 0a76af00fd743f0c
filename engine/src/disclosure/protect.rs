//! The release point: a `Protect` node sits directly on every aggregate that turns
//! people's records into an answer. Its input is that aggregate with hidden columns the
//! rewrite added (distinct people per group, a digest of who they are, and noise scales);
//! its output is the aggregate's own columns with every value made safe (rules 2–5):
//! groups below k withheld, small counts suppressed, counts and sums rounded after sticky
//! noise, and secondary suppression where totals and their breakdowns meet.

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use deltalake::datafusion::catalog::Session;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult, internal_err};
use deltalake::datafusion::execution::context::QueryPlanner;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use deltalake::datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::noise;
use super::policy::Policy;

/// Field metadata on every protected column, so a client can show `*` for a suppressed cell.
pub const PROTECTION_KEY: &str = "poplar.protection";
pub const SUPPRESSED_KEY: &str = "poplar.suppressed";

/// What one output column of a release holds, and so how it is made safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    /// A group key: published as is (the rewrite refuses keys derived from `person_id`).
    Key,
    /// DataFusion's internal grouping-set id (for ROLLUP/CUBE/GROUPING SETS).
    GroupingId,
    /// `count(…)`: suppressed 1–7 and below k people, noised, rounded. A *conditional*
    /// count (`count(CASE …)`, `FILTER (WHERE …)`) counts a subgroup the group's size says
    /// nothing about, so its zero is suppressed too: otherwise 0 against `*` would tell
    /// whether anyone matches the condition.
    Count { conditional: bool },
    /// `sum(x)`: withheld below k people, noised in proportion to the largest value, rounded.
    /// `scale` is the input column holding `max(abs(x))` for the group.
    Sum { scale: usize },
    /// `avg(x)`: withheld below k people, noised like the sum it divides.
    Mean { scale: usize },
    /// `median(x)`: withheld below k people.
    Median,
}

impl Cell {
    fn label(&self) -> &'static str {
        match self {
            Cell::Key => "key",
            Cell::GroupingId => "grouping_id",
            Cell::Count { .. } => "count",
            Cell::Sum { .. } => "sum",
            Cell::Mean { .. } => "mean",
            Cell::Median => "median",
        }
    }
    fn is_value(&self) -> bool {
        !matches!(self, Cell::Key | Cell::GroupingId)
    }
}

/// Counts what disclosure control did to one request's answer, for the audit log.
#[derive(Debug, Default)]
pub struct ReleaseStats {
    pub cells_suppressed: AtomicU64,
    pub groups_withheld: AtomicU64,
}

/// Everything the release needs besides its input.
#[derive(Debug)]
pub struct ProtectSpec {
    pub policy: Arc<Policy>,
    pub noised: bool,
    /// One per visible output column: its kind and the aggregate's text (seeds noise).
    pub cells: Vec<(Cell, String)>,
    /// Input column with distinct people per group.
    pub people: usize,
    /// Input column with the order-free digest of the group's people.
    pub digest: usize,
    /// Canonical text of the aggregate's input plan: the question layer's seed.
    pub question: String,
    /// Small groups are dropped rather than shown: for a release with no value columns
    /// (`SELECT DISTINCT`: no cell to mark), or when the deployment withholds them.
    pub drop_small_groups: bool,
    pub stats: Arc<ReleaseStats>,
}

// ----- the logical node -----

#[derive(Debug, Clone)]
pub struct ProtectNode {
    pub input: LogicalPlan,
    pub schema: DFSchemaRef,
    pub spec: Arc<ProtectSpec>,
}

fn protected_field(field: &Field, cell: &Cell) -> Field {
    if !cell.is_value() {
        return field.clone();
    }
    let mut metadata = field.metadata().clone();
    metadata.insert(PROTECTION_KEY.into(), cell.label().into());
    metadata.insert(SUPPRESSED_KEY.into(), "null".into());
    field.clone().with_nullable(true).with_metadata(metadata)
}

impl ProtectNode {
    pub fn try_new(input: LogicalPlan, spec: Arc<ProtectSpec>) -> DfResult<Self> {
        let in_schema = input.schema();
        let visible = spec.cells.len();
        if visible > in_schema.fields().len() {
            return internal_err!("Protect has more cells than its input has columns");
        }
        let fields = (0..visible)
            .map(|i| {
                let (qualifier, field) = in_schema.qualified_field(i);
                (qualifier.cloned(), Arc::new(protected_field(field, &spec.cells[i].0)))
            })
            .collect::<Vec<_>>();
        let schema = Arc::new(DFSchema::new_with_metadata(fields, in_schema.metadata().clone())?);
        Ok(Self { input, schema, spec })
    }

    fn describe(&self) -> String {
        let p = &self.spec.policy;
        let cells: Vec<String> = self
            .spec
            .cells
            .iter()
            .filter(|(c, _)| c.is_value())
            .map(|(c, text)| format!("{text}={}", c.label()))
            .collect();
        format!(
            "Protect: min_people={}, suppress=1..{}, round={:?}/{}, noise={}, cells=[{}]",
            p.min_people,
            p.suppress_up_to,
            p.rounding,
            p.round_to,
            if self.spec.noised {
                format!("sd {}", p.noise_sd)
            } else {
                "off".into()
            },
            cells.join(", ")
        )
    }
}

impl PartialEq for ProtectNode {
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input && Arc::ptr_eq(&self.spec, &other.spec)
    }
}
impl Eq for ProtectNode {}
impl Hash for ProtectNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.spec.cells.hash(state);
    }
}
impl PartialOrd for ProtectNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.input.partial_cmp(&other.input)
    }
}

impl UserDefinedLogicalNodeCore for ProtectNode {
    fn name(&self) -> &str {
        "Protect"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.describe())
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        if inputs.len() != 1 {
            return internal_err!("Protect takes one input");
        }
        Self::try_new(inputs.swap_remove(0), self.spec.clone())
    }
    // Nothing may be pushed beneath a release: a filter on a released value must see the
    // released value, never the true one (`HAVING count(*) = 1` filters on what is shown).
    // The default (no pushdown, all input columns required) is what we need.
}

// ----- the physical operator -----

#[derive(Debug)]
pub struct ProtectExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<ProtectSpec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ProtectExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: Arc<ProtectSpec>) -> DfResult<Self> {
        let in_schema = input.schema();
        if spec.cells.len() > in_schema.fields().len() {
            return internal_err!("Protect has more cells than its input has columns");
        }
        let fields: Vec<Field> = (0..spec.cells.len())
            .map(|i| protected_field(in_schema.field(i), &spec.cells[i].0))
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, in_schema.metadata().clone()));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            spec,
            schema,
            properties,
        })
    }
}

impl DisplayAs for ProtectExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ProtectExec: min_people={}, noise={}",
            self.spec.policy.min_people, self.spec.noised
        )
    }
}

impl ExecutionPlan for ProtectExec {
    fn name(&self) -> &str {
        "ProtectExec"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        // Secondary suppression looks at the whole answer at once.
        vec![Distribution::SinglePartition]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("ProtectExec takes one input");
        }
        Ok(Arc::new(ProtectExec::new(children.swap_remove(0), self.spec.clone())?))
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(deltalake::datafusion::physical_plan::ChildrenPropertiesMode::Recompute),
        )
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ProtectExec has one partition");
        }
        let input = self.input.execute(0, context)?;
        let (spec, schema, in_schema) = (self.spec.clone(), self.schema.clone(), self.input.schema());
        let released = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let whole = concat_batches(&in_schema, &batches)?;
            Ok(release(&spec, &schema, &whole)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(released),
        )))
    }
}

// ----- making an answer safe -----

fn as_f64(array: &ArrayRef) -> Result<Float64Array, arrow::error::ArrowError> {
    let cast = cast(array, &DataType::Float64)?;
    Ok(cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .unwrap_or_else(|| Float64Array::from(vec![None; array.len()])))
}

fn as_i64(array: &ArrayRef) -> Result<Int64Array, arrow::error::ArrowError> {
    let cast = cast(array, &DataType::Int64)?;
    Ok(cast
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .unwrap_or_else(|| Int64Array::from(vec![None; array.len()])))
}

/// Which grouping-set columns each row aggregates over (bit set = column rolled up), from
/// DataFusion's `__grouping_id` (first key is the most significant of the low bits).
fn rolled_up(ids: &Int64Array, keys: usize) -> Vec<u64> {
    let mask = if keys >= 64 { u64::MAX } else { (1u64 << keys) - 1 };
    (0..ids.len()).map(|r| (ids.value(r) as u64) & mask).collect()
}

fn release(
    spec: &ProtectSpec,
    schema: &SchemaRef,
    input: &RecordBatch,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let policy = &spec.policy;
    let rows = input.num_rows();
    let people = as_i64(input.column(spec.people))?;
    let digest = as_i64(input.column(spec.digest))?;
    let small: Vec<bool> = (0..rows)
        .map(|r| people.is_null(r) || (people.value(r) as u64) < policy.min_people)
        .collect();
    let key_columns: Vec<usize> = spec
        .cells
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c == Cell::Key)
        .map(|(i, _)| i)
        .collect();
    // Each row's group key as text, per key column (secondary suppression matches
    // families on them) and joined (it seeds the question layer of the noise).
    let keys = group_keys_by_column(input, &key_columns)?;
    let group_keys: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| k.iter().flat_map(|v| v.bytes().chain([0x1f])).collect())
        .collect();
    let noise_sd = if spec.noised { policy.noise_sd } else { 0.0 };
    let noise = |r: usize, text: &str| {
        noise::sticky(
            &policy.noise_key,
            noise_sd,
            text,
            digest.value(r),
            spec.question.as_bytes(),
            &group_keys[r],
        )
    };

    // Primary suppression and release, column by column. `true_values` keeps the true
    // counts/sums (never output) to choose secondary suppressions by size.
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.cells.len());
    let mut suppressed: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
    let mut true_values: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (i, (cell, text)) in spec.cells.iter().enumerate() {
        let column = input.column(i);
        let out_type = schema.field(i).data_type().clone();
        let values: Vec<Option<f64>> = match cell {
            Cell::Key | Cell::GroupingId => {
                columns.push(column.clone());
                continue;
            }
            Cell::Count { conditional } => {
                let conditional = *conditional;
                let counts = as_i64(column)?;
                let mut hidden = vec![false; rows];
                let out = (0..rows)
                    .map(|r| {
                        let v = if counts.is_null(r) { 0 } else { counts.value(r) } as u64;
                        if v == 0 && !small[r] && !conditional {
                            return Some(0.0);
                        }
                        if small[r] || v <= policy.suppress_up_to {
                            hidden[r] = true;
                            return None;
                        }
                        let noisy = (v as f64 + noise(r, text)).max(0.0);
                        // Never publish a released count that looks like a suppressed one.
                        let floor = policy.round((policy.suppress_up_to + 1) as f64);
                        Some(policy.round(noisy).max(floor))
                    })
                    .collect();
                true_values.insert(
                    i,
                    (0..rows)
                        .map(|r| if counts.is_null(r) { 0.0 } else { counts.value(r) as f64 })
                        .collect(),
                );
                suppressed.insert(i, hidden);
                out
            }
            Cell::Sum { scale } | Cell::Mean { scale } => {
                let v = as_f64(column)?;
                let s = as_f64(input.column(*scale))?;
                let mut hidden = vec![false; rows];
                let is_sum = matches!(cell, Cell::Sum { .. });
                let out = (0..rows)
                    .map(|r| {
                        if v.is_null(r) {
                            return None;
                        }
                        if small[r] {
                            hidden[r] = true;
                            return None;
                        }
                        let magnitude = if s.is_null(r) { 0.0 } else { s.value(r) };
                        // A sum as small as a suppressed count may be one (a sum of 0/1
                        // flags); and a zero sum says "nobody matched".
                        if is_sum && v.value(r).abs() <= policy.suppress_up_to as f64 {
                            hidden[r] = true;
                            return None;
                        }
                        if is_sum {
                            Some(policy.round(v.value(r) + noise(r, text) * magnitude))
                        } else {
                            Some(v.value(r) + noise(r, text) * magnitude / people.value(r).max(1) as f64)
                        }
                    })
                    .collect();
                if is_sum {
                    true_values.insert(
                        i,
                        (0..rows)
                            .map(|r| if v.is_null(r) { 0.0 } else { v.value(r).abs() })
                            .collect(),
                    );
                }
                suppressed.insert(i, hidden);
                out
            }
            Cell::Median => {
                let v = as_f64(column)?;
                let mut hidden = vec![false; rows];
                let out = (0..rows)
                    .map(|r| {
                        if small[r] && !v.is_null(r) {
                            hidden[r] = true;
                            return None;
                        }
                        (!v.is_null(r)).then(|| v.value(r))
                    })
                    .collect();
                suppressed.insert(i, hidden);
                out
            }
        };
        columns.push(cast(&(Arc::new(Float64Array::from(values)) as ArrayRef), &out_type)?);
    }

    // Secondary suppression across grouping sets: additive columns only.
    if let Some(g) = spec.cells.iter().position(|(c, _)| *c == Cell::GroupingId) {
        let ids = as_i64(input.column(g))?;
        let masks = rolled_up(&ids, key_columns.len());
        for (col, hidden) in suppressed.iter_mut() {
            if let Some(truth) = true_values.get(col) {
                secondary(&masks, &keys, truth, hidden);
            }
        }
        for (col, hidden) in &suppressed {
            let nulls = BooleanArray::from(hidden.iter().map(|h| !h).collect::<Vec<_>>());
            let kept = arrow::compute::nullif(&columns[*col], &arrow::compute::not(&nulls)?)?;
            columns[*col] = kept;
        }
    }

    let cells_suppressed: u64 = suppressed
        .values()
        .map(|h| h.iter().filter(|x| **x).count() as u64)
        .sum();
    spec.stats
        .cells_suppressed
        .fetch_add(cells_suppressed, Ordering::Relaxed);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    if spec.drop_small_groups {
        let keep = BooleanArray::from(small.iter().map(|s| !s).collect::<Vec<_>>());
        spec.stats
            .groups_withheld
            .fetch_add(small.iter().filter(|s| **s).count() as u64, Ordering::Relaxed);
        return filter_record_batch(&batch, &keep);
    }
    Ok(batch)
}

fn group_keys_by_column(
    input: &RecordBatch,
    key_columns: &[usize],
) -> Result<Vec<Vec<String>>, arrow::error::ArrowError> {
    (0..input.num_rows())
        .map(|r| {
            key_columns
                .iter()
                .map(|&c| array_value_to_string(input.column(c), r))
                .collect()
        })
        .collect()
}

/// Suppress further cells until no additive relation (a parent total and the breakdown of
/// it by one more column) has exactly one suppressed cell: with one, subtraction would
/// recover it. The cell added is the smallest unsuppressed child, with its ties (or the
/// parent when every child is already suppressed).
fn secondary(masks: &[u64], keys: &[Vec<String>], truth: &[f64], hidden: &mut [bool]) {
    let rows = masks.len();
    // Index rows by (mask, visible key values) to find families fast.
    let key_of = |r: usize, mask: u64| -> Vec<&str> {
        let n = keys[r].len();
        (0..n)
            .filter(|c| mask & (1u64 << (n - 1 - c)) == 0)
            .map(|c| keys[r][c].as_str())
            .collect()
    };
    let mut relations: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut by_mask: HashMap<u64, Vec<usize>> = HashMap::new();
    for r in 0..rows {
        by_mask.entry(masks[r]).or_default().push(r);
    }
    for parent in 0..rows {
        let pm = masks[parent];
        for (&cm, children) in &by_mask {
            // A child set rolls up exactly one column fewer than the parent.
            if cm & pm == cm && (pm & !cm).count_ones() == 1 {
                let pk = key_of(parent, pm);
                let family: Vec<usize> = children.iter().copied().filter(|&c| key_of(c, pm) == pk).collect();
                if !family.is_empty() {
                    relations.push((parent, family));
                }
            }
        }
    }
    loop {
        let mut changed = false;
        for (parent, family) in &relations {
            let members = std::iter::once(*parent).chain(family.iter().copied());
            if members.clone().filter(|&m| hidden[m]).count() != 1 {
                continue;
            }
            let open: Vec<usize> = family.iter().copied().filter(|&c| !hidden[c]).collect();
            if open.is_empty() {
                hidden[*parent] = true;
            } else {
                let smallest = open.iter().map(|&c| truth[c]).fold(f64::INFINITY, f64::min);
                for c in open.into_iter().filter(|&c| truth[c] == smallest) {
                    hidden[c] = true;
                }
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

// ----- planning -----

struct ProtectPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for ProtectPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &deltalake::datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(protect) = node.as_any().downcast_ref::<ProtectNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("Protect takes one input");
        };
        Ok(Some(Arc::new(ProtectExec::new(input.clone(), protect.spec.clone())?)))
    }
}

/// DataFusion's planner, taught to plan `Protect`.
#[derive(Debug)]
pub struct PoplarQueryPlanner;

#[async_trait::async_trait]
impl QueryPlanner for PoplarQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ProtectPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_suppression_protects_a_lone_small_cell_in_a_rollup() {
        // ROLLUP(practice): total row (mask 1) and three practices (mask 0).
        let masks = [1, 0, 0, 0];
        let keys: Vec<Vec<String>> = vec![vec!["".into()], vec!["A".into()], vec!["B".into()], vec!["C".into()]];
        let truth = [130.0, 3.0, 60.0, 67.0];
        let mut hidden = [false, true, false, false];
        secondary(&masks, &keys, &truth, &mut hidden);
        assert_eq!(
            hidden,
            [false, true, true, false],
            "the next smallest practice is suppressed too"
        );
    }

    #[test]
    fn secondary_suppression_in_two_dimensions_leaves_no_row_or_column_with_one() {
        // CUBE(a, b) over a 2x2 table. Masks: 0 = (a,b), 1 = (a), 2 = (b), 3 = ().
        let cells = [("x", "p", 3.0), ("x", "q", 40.0), ("y", "p", 50.0), ("y", "q", 60.0)];
        let mut masks = vec![];
        let mut keys = vec![];
        let mut truth = vec![];
        for (a, b, v) in cells {
            masks.push(0);
            keys.push(vec![a.to_string(), b.to_string()]);
            truth.push(v);
        }
        for (a, v) in [("x", 43.0), ("y", 110.0)] {
            masks.push(1);
            keys.push(vec![a.to_string(), String::new()]);
            truth.push(v);
        }
        for (b, v) in [("p", 53.0), ("q", 100.0)] {
            masks.push(2);
            keys.push(vec![String::new(), b.to_string()]);
            truth.push(v);
        }
        masks.push(3);
        keys.push(vec![String::new(), String::new()]);
        truth.push(153.0);
        let mut hidden = vec![false; masks.len()];
        hidden[0] = true;
        secondary(&masks, &keys, &truth, &mut hidden);
        // Row x: (x,p) and (x,q) hidden; column p: (x,p) and (y,p) hidden; then row y and
        // column q each have one: (y,q)… the fixpoint hides all four interior cells or
        // enough margins; whatever it chose, no relation may have exactly one.
        let rel = |members: &[usize]| members.iter().filter(|&&m| hidden[m]).count();
        for family in [[4usize, 0, 1], [5, 2, 3], [6, 0, 2], [7, 1, 3], [8, 4, 5], [8, 6, 7]] {
            assert_ne!(rel(&family), 1, "relation {family:?} with hidden {hidden:?}");
        }
    }
}
