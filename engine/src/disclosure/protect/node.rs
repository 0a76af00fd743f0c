//! The logical `Protect` node: where a release sits in a plan, and why nothing may be
//! pushed beneath it.

use deltalake::datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult, internal_err};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{ProtectSpec, protected_field};

#[derive(Debug, Clone)]
pub struct ProtectNode {
    pub input: LogicalPlan,
    pub schema: DFSchemaRef,
    pub spec: Arc<ProtectSpec>,
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
        let schema = Arc::new(DFSchema::new_with_metadata(
            fields,
            spec.metadata(in_schema.metadata()),
        )?);
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
            "Protect: min_people={}, suppress=1..{}, round={:?}/{}, noise={}, small_groups={}, cells=[{}]",
            p.min_people,
            p.suppress_up_to,
            p.rounding,
            p.round_to,
            if self.spec.noised {
                format!("sd {}", p.noise_sd)
            } else {
                "off".into()
            },
            self.spec.small_groups(),
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
