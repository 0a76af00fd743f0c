//! Which columns come from a public domain. A group of fewer than k people is shown by its
//! key (with every value `*`) only when each key column comes from a domain whose every
//! value is public anyway — organisations, age bands, sex, IMD deciles, ethnicity groups,
//! periods of an activity date — as on the dashboard. A group with any other key (an
//! LSOA, a birth month, a code, an exact date, a free expression of those) is withheld:
//! listing it would tell who, by that key, is in it.
//!
//! Lineage is decided where the values come from: each person table's columns are
//! classified at the scan (by the column of the source, never by an answer's column
//! name), and every node the rule rewrites carries the classes up through projections,
//! joins, unions and per-person aggregates, so `lsoa AS practice` stays an LSOA.

use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::common::tree_node::TreeNode;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::logical_expr::expr::ScalarFunction;

/// Where a column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lineage {
    /// A public domain (or a function of public columns and literals only).
    Public,
    /// An activity date: public only as a period (month, quarter, year, financial year).
    ActivityDate,
    /// A birth month: public only as an age band.
    BirthMonth,
    /// An age in years (from a birth month): public only as an age band.
    Age,
    /// Anything else: an LSOA, a code, a value, an exact date, a count per person.
    Fine,
}

/// Columns of person tables (and the views and functions over them) from a public
/// domain: organisations, the closed vocabularies of sex, ethnicity group, IMD decile,
/// setting and encounter type, and the register's name.
const PUBLIC_COLUMNS: &[&str] = &[
    "practice",
    "registered_practice",
    "source_org",
    "sex",
    "ethnicity_group",
    "imd_decile",
    "setting",
    "encounter_type",
    "code_system",
    "register",
];

/// Dates of activity, public as periods.
const ACTIVITY_DATES: &[&str] = &["event_date", "issue_date", "start_date", "end_date", "latest_code_date"];

/// The lineage of a person table's column, at its scan.
pub fn of_source_column(name: &str) -> Lineage {
    if PUBLIC_COLUMNS.contains(&name) {
        Lineage::Public
    } else if ACTIVITY_DATES.contains(&name) {
        Lineage::ActivityDate
    } else if name == "birth_month" {
        Lineage::BirthMonth
    } else {
        Lineage::Fine
    }
}

/// Parts of a date that are periods (of an activity date only).
const PERIOD_PARTS: &[&str] = &["year", "quarter", "month"];

/// The lineage of `expr` over a relation with `schema` whose columns have `lineage`.
pub fn of_expr(expr: &Expr, schema: &DFSchema, lineage: &[Lineage]) -> Lineage {
    let column = |e: &Expr| -> Lineage {
        match e {
            Expr::Column(c) => schema
                .maybe_index_of_column(c)
                .and_then(|i| lineage.get(i).copied())
                .unwrap_or(Lineage::Fine),
            _ => of_expr(e, schema, lineage),
        }
    };
    match expr {
        Expr::Alias(a) => of_expr(&a.expr, schema, lineage),
        Expr::Column(_) => column(expr),
        Expr::Literal(..) => Lineage::Public,
        // A cast keeps the domain (a date stays a date, public stays public).
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            let name = func.name().to_ascii_lowercase();
            let arg = |i: usize| args.get(i).map(column).unwrap_or(Lineage::Public);
            let literal_text = |i: usize| match args.get(i).map(strip_casts) {
                Some(Expr::Literal(v, _)) => Some(v.to_string().to_ascii_lowercase()),
                _ => None,
            };
            match name.as_str() {
                "age_band_5" | "nhs_age_band" => match arg(0) {
                    Lineage::Public | Lineage::Age => Lineage::Public,
                    _ => Lineage::Fine,
                },
                "age_on" => match (arg(0), arg(1)) {
                    (Lineage::Public, Lineage::Public) => Lineage::Public,
                    (Lineage::BirthMonth | Lineage::Public, Lineage::Public | Lineage::ActivityDate) => Lineage::Age,
                    _ => Lineage::Fine,
                },
                "financial_year" => period(arg(0)),
                "date_trunc" | "datetrunc" | "date_part" | "datepart" => match literal_text(0) {
                    Some(part) if PERIOD_PARTS.contains(&part.as_str()) => period(arg(1)),
                    _ => all_public(args.iter().map(column)),
                },
                // Coalescing a public column with a literal ('unknown') stays public.
                _ => all_public(args.iter().map(column)),
            }
        }
        // Any other expression is public only if everything it reads is.
        other => {
            if other.column_refs().is_empty() && !contains_subquery(other) {
                return Lineage::Public;
            }
            if contains_subquery(other) {
                return Lineage::Fine;
            }
            all_public(
                other
                    .column_refs()
                    .into_iter()
                    .map(|c| column(&Expr::Column(c.clone()))),
            )
        }
    }
}

/// The lineage of a union's column: one domain if both branches share it, public only
/// if both are.
pub fn union(a: Lineage, b: Lineage) -> Lineage {
    match (a, b) {
        (a, b) if a == b => a,
        (Lineage::Public, other) | (other, Lineage::Public) => other,
        _ => Lineage::Fine,
    }
}

fn period(l: Lineage) -> Lineage {
    match l {
        Lineage::Public | Lineage::ActivityDate => Lineage::Public,
        _ => Lineage::Fine,
    }
}

fn all_public(mut ls: impl Iterator<Item = Lineage>) -> Lineage {
    if ls.all(|l| l == Lineage::Public) {
        Lineage::Public
    } else {
        Lineage::Fine
    }
}

fn strip_casts(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_casts(&c.expr),
        Expr::TryCast(c) => strip_casts(&c.expr),
        Expr::Alias(a) => strip_casts(&a.expr),
        other => other,
    }
}

fn contains_subquery(e: &Expr) -> bool {
    e.exists(|x| {
        Ok(matches!(
            x,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_)
        ))
    })
    .unwrap_or(true)
}

/// For tests: a literal of text.
#[cfg(test)]
fn text(s: &str) -> Expr {
    deltalake::datafusion::logical_expr::lit(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::logical_expr::{col, lit};
    use std::sync::Arc;

    fn schema() -> (DFSchema, Vec<Lineage>) {
        let names = ["practice", "lsoa", "birth_month", "event_date", "sex"];
        let fields: Vec<Field> = names
            .iter()
            .map(|n| {
                Field::new(
                    *n,
                    if n.ends_with("month") || n.ends_with("date") {
                        DataType::Date32
                    } else {
                        DataType::Utf8
                    },
                    true,
                )
            })
            .collect();
        let schema = DFSchema::try_from(Schema::new(fields)).expect("schema");
        (schema, names.iter().map(|n| of_source_column(n)).collect())
    }

    fn udf(name: &str, args: Vec<Expr>) -> Expr {
        let f = crate::udfs::all().into_iter().find(|u| u.name() == name).expect("udf");
        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(f), args))
    }

    #[test]
    fn coarse_keys_are_public_and_fine_ones_are_not() {
        let (s, l) = schema();
        let on = lit(deltalake::datafusion::common::ScalarValue::Date32(Some(19_000)));
        let public = [
            col("practice"),
            col("sex").alias("practice_sex"),
            deltalake::datafusion::functions::core::expr_fn::coalesce(vec![col("sex"), text("unknown")]),
            udf("age_band_5", vec![udf("age_on", vec![col("birth_month"), on.clone()])]),
            udf("financial_year", vec![col("event_date")]),
            deltalake::datafusion::functions::datetime::expr_fn::date_trunc(text("month"), col("event_date")),
            text("ALL"),
        ];
        for e in public {
            assert_eq!(of_expr(&e, &s, &l), Lineage::Public, "{e}");
        }
        let fine = [
            col("lsoa"),
            col("lsoa").alias("practice"),
            col("birth_month"),
            col("event_date"),
            udf("age_on", vec![col("birth_month"), on]),
            udf("financial_year", vec![col("birth_month")]),
            deltalake::datafusion::functions::datetime::expr_fn::date_trunc(text("day"), col("event_date")),
            deltalake::datafusion::functions::string::expr_fn::concat(vec![col("practice"), col("lsoa")]),
            col("lsoa").eq(text("E01000001")),
        ];
        for e in fine {
            assert_ne!(of_expr(&e, &s, &l), Lineage::Public, "{e}");
        }
    }
}
