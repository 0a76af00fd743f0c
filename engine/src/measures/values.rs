//! From released cells to the values a population health team reads: the complete frame
//! (every area of the level, every category of each breakdown, every total), each value
//! and its intervals computed from released counts only, and its significance against the
//! comparator. A cell with no row in the answer is a group with too few people to release
//! (possibly none): it is marked suppressed, never left out and never shown as 0.

use std::collections::BTreeMap;

use poplar_proto::measures::v1 as pb;
use poplar_queries::measures::stats::{self, BandCount, ESP2013_BANDS, Estimate, Interval};
use poplar_queries::measures::{Dimension, Measure, Period, ValueType};

use super::convert;
use super::geography::Area;
use super::released::{CellKey, Cells, Count, Counts};
use crate::disclosure::Suppression;

/// A value computed from released counts, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Computed {
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub value: Option<f64>,
    pub ci95: Option<Interval>,
    pub ci998: Option<Interval>,
    pub suppression: pb::Suppression,
}

impl Computed {
    fn withheld(reason: Suppression) -> Computed {
        Computed {
            numerator: None,
            denominator: None,
            value: None,
            ci95: None,
            ci998: None,
            suppression: wire_suppression(reason),
        }
    }
}

fn wire_suppression(reason: Suppression) -> pb::Suppression {
    match reason {
        Suppression::Primary => pb::Suppression::Primary,
        Suppression::Secondary => pb::Suppression::Secondary,
    }
}

/// The stronger of two reasons (primary: the cell itself is small).
fn first_reason(counts: &[Count]) -> Option<Suppression> {
    let reasons: Vec<Suppression> = counts
        .iter()
        .filter_map(|c| match c {
            Count::Withheld(r) => Some(*r),
            Count::Released(_) => None,
        })
        .collect();
    if reasons.contains(&Suppression::Primary) {
        Some(Suppression::Primary)
    } else {
        reasons.first().copied()
    }
}

/// Whether a cell with no row in the answer is known to be empty: in an exact (steward's)
/// answer it is; under disclosure control it may be a group too small to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    Empty,
    Withheld,
}

/// No one: a numerator and denominator of 0.
fn empty() -> BTreeMap<Option<String>, Counts> {
    let zero = Counts {
        numerator: Count::Released(0.0),
        denominator: Count::Released(0.0),
    };
    let mut bands: BTreeMap<Option<String>, Counts> =
        ESP2013_BANDS.iter().map(|b| (Some(b.to_string()), zero)).collect();
    bands.insert(None, zero);
    bands
}

/// The value of one cell of `measure` from its released counts (per ESP band for a
/// standardised rate).
pub(super) fn compute(
    measure: &Measure,
    bands: Option<&BTreeMap<Option<String>, Counts>>,
    missing: Missing,
) -> Computed {
    let nobody;
    let bands = match (bands, missing) {
        (Some(bands), _) => bands,
        (None, Missing::Empty) => {
            nobody = empty();
            &nobody
        }
        // No row at all: a group below the minimum size (or empty), withheld.
        (None, Missing::Withheld) => return Computed::withheld(Suppression::Primary),
    };
    if measure.value_type == ValueType::DirectlyStandardisedRate {
        return standardised(measure, bands);
    }
    let Some(counts) = bands.get(&None) else {
        return Computed::withheld(Suppression::Primary);
    };
    let (numerator, denominator) = (counts.numerator.value(), counts.denominator.value());
    let mut computed = Computed {
        numerator,
        denominator,
        value: None,
        ci95: None,
        ci998: None,
        suppression: pb::Suppression::None,
    };
    if let Some(reason) = first_reason(&[counts.numerator, counts.denominator]) {
        computed.suppression = wire_suppression(reason);
        return computed;
    }
    let (Some(n), Some(d)) = (numerator, denominator) else {
        return computed;
    };
    let estimate = match measure.value_type {
        // Noise can push a released numerator above its released denominator; a
        // proportion cannot exceed the whole.
        ValueType::Proportion => stats::proportion(n.min(d), d, measure.multiplier),
        ValueType::CrudeRate => stats::crude_rate(n, d, measure.multiplier),
        ValueType::Count => stats::count(n),
        ValueType::CostPerHead => {
            if d > 0.0 {
                computed.value = Some(n / d * measure.multiplier);
            } else {
                computed.suppression = pb::Suppression::NotPublished;
            }
            return computed;
        }
        ValueType::DirectlyStandardisedRate => None,
    };
    apply(&mut computed, estimate);
    computed
}

fn apply(computed: &mut Computed, estimate: Option<Estimate>) {
    match estimate {
        Some(e) => {
            computed.value = Some(e.value);
            computed.ci95 = Some(e.ci95);
            computed.ci998 = Some(e.ci998);
        }
        None => computed.suppression = pb::Suppression::NotPublished,
    }
}

/// A directly standardised rate over the 19 ESP2013 bands. Published only when every
/// band's counts were released (a suppressed band's count is unknown, so the rate would
/// be a guess) and, as Fingertips, the total count is at least 10.
fn standardised(measure: &Measure, bands: &BTreeMap<Option<String>, Counts>) -> Computed {
    let mut observed = Vec::with_capacity(ESP2013_BANDS.len());
    let mut complete = true;
    for band in ESP2013_BANDS {
        match bands.get(&Some(band.to_string())) {
            Some(Counts {
                numerator: Count::Released(n),
                denominator: Count::Released(d),
            }) => observed.push(BandCount {
                observed: *n,
                population: *d,
            }),
            _ => complete = false,
        }
    }
    let mut computed = Computed {
        numerator: complete.then(|| observed.iter().map(|b| b.observed).sum()),
        denominator: complete.then(|| observed.iter().map(|b| b.population).sum()),
        value: None,
        ci95: None,
        ci998: None,
        suppression: pb::Suppression::NotPublished,
    };
    if !complete {
        return computed;
    }
    let estimate = <[BandCount; 19]>::try_from(observed)
        .ok()
        .and_then(|bands| stats::dsr_esp2013(&bands, measure.multiplier));
    computed.suppression = pb::Suppression::None;
    apply(&mut computed, estimate);
    computed
}

/// Every combination of categories a totals answer holds for `breakdown`: each subset of
/// the breakdowns (all of them first, the total last), every category of each.
pub(super) fn combinations(breakdown: &[Dimension]) -> Vec<Vec<Option<&'static str>>> {
    let n = breakdown.len();
    let mut out = Vec::new();
    for mask in (0..(1u32 << n)).rev() {
        let mut partial: Vec<Vec<Option<&'static str>>> = vec![Vec::new()];
        for (i, d) in breakdown.iter().enumerate() {
            let included = mask & (1 << (n - 1 - i)) != 0;
            let choices: Vec<Option<&'static str>> = if included {
                d.frame().iter().map(|c| Some(c.code)).collect()
            } else {
                vec![None]
            };
            partial = partial
                .into_iter()
                .flat_map(|prefix| {
                    choices.iter().map(move |c| {
                        let mut next = prefix.clone();
                        next.push(*c);
                        next
                    })
                })
                .collect();
        }
        out.extend(partial);
    }
    out
}

fn categories(breakdown: &[Dimension], combination: &[Option<&'static str>]) -> Vec<pb::Category> {
    breakdown
        .iter()
        .zip(combination)
        .filter_map(|(d, code)| {
            let category = d.category((*code)?)?;
            Some(pb::Category {
                dimension: convert::dimension_to_wire(*d) as i32,
                code: category.code.to_string(),
                label: category.label.to_string(),
            })
        })
        .collect()
}

fn interval(i: Option<Interval>) -> Option<pb::Interval> {
    i.map(|i| pb::Interval {
        lower: i.lower,
        upper: i.upper,
    })
}

/// A wire value.
pub(super) fn value(
    area: &Area,
    period: &Period,
    categories: Vec<pb::Category>,
    computed: &Computed,
    significance: stats::Significance,
) -> pb::Value {
    pb::Value {
        area_code: area.code.clone(),
        area_name: area.name.clone(),
        period: Some(convert::period_to_wire(period)),
        categories,
        // Counts round to whole numbers on the wire; a cost is pounds.
        numerator: computed.numerator.map(|n| n.round() as i64),
        denominator: computed.denominator.map(|d| d.round() as i64),
        value: computed.value,
        ci95: interval(computed.ci95),
        ci998: interval(computed.ci998),
        suppression: computed.suppression as i32,
        vs_comparator: convert::significance_to_wire(significance) as i32,
    }
}

/// One period's values: every area × every combination, and the comparator's (the rows
/// over every area together) unless the areas are the region itself.
pub(super) struct PeriodValues {
    pub values: Vec<pb::Value>,
    pub comparator: Vec<pb::Value>,
    /// Per area code, its total's computed value (for funnels and profiles).
    pub totals: BTreeMap<String, Computed>,
    pub comparator_total: Option<Computed>,
}

pub(super) fn period_values(
    measure: &Measure,
    period: &Period,
    cells: &Cells,
    areas: &[&Area],
    comparator: Option<&Area>,
    breakdown: &[Dimension],
    missing: Missing,
) -> PeriodValues {
    let combos = combinations(breakdown);
    let key = |area: Option<&str>, combo: &[Option<&'static str>]| CellKey {
        area: area.map(str::to_string),
        categories: combo.iter().map(|c| c.map(str::to_string)).collect(),
    };
    let mut out = PeriodValues {
        values: Vec::new(),
        comparator: Vec::new(),
        totals: BTreeMap::new(),
        comparator_total: None,
    };
    let mut comparator_values: BTreeMap<Vec<Option<&'static str>>, Computed> = BTreeMap::new();
    if let Some(parent) = comparator {
        for combo in &combos {
            let computed = compute(measure, cells.get(&key(None, combo)), missing);
            out.comparator.push(value(
                parent,
                period,
                categories(breakdown, combo),
                &computed,
                stats::Significance::NotCompared,
            ));
            if combo.iter().all(Option::is_none) {
                out.comparator_total = Some(computed);
            }
            comparator_values.insert(combo.clone(), computed);
        }
    }
    for area in areas {
        for combo in &combos {
            let computed = compute(measure, cells.get(&key(Some(&area.code), combo)), missing);
            let against = comparator_values.get(combo).and_then(|c| c.value);
            let significance = stats::compare(computed.ci95, against, measure.polarity);
            out.values.push(value(
                area,
                period,
                categories(breakdown, combo),
                &computed,
                significance,
            ));
            if combo.iter().all(Option::is_none) {
                out.totals.insert(area.code.clone(), computed);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use poplar_queries::measures::measure;

    fn counts(n: Count, d: Count) -> BTreeMap<Option<String>, Counts> {
        BTreeMap::from([(
            None,
            Counts {
                numerator: n,
                denominator: d,
            },
        )])
    }

    #[test]
    fn values_and_intervals_come_from_released_counts() {
        let m = measure("prevalence_diabetes").expect("measure");
        let c = compute(
            m,
            Some(&counts(Count::Released(120.0), Count::Released(1500.0))),
            Missing::Withheld,
        );
        assert_eq!(c.suppression, pb::Suppression::None);
        let expected = stats::proportion(120.0, 1500.0, m.multiplier).expect("estimate");
        assert_eq!(c.value, Some(expected.value));
        assert_eq!(c.ci95, Some(expected.ci95));
        assert_eq!(c.ci998, Some(expected.ci998));
    }

    #[test]
    fn suppressed_and_missing_cells_are_marked_never_zero() {
        let m = measure("prevalence_diabetes").expect("measure");
        let primary = compute(
            m,
            Some(&counts(Count::Withheld(Suppression::Primary), Count::Released(900.0))),
            Missing::Withheld,
        );
        assert_eq!(primary.suppression, pb::Suppression::Primary);
        assert_eq!(primary.value, None);
        assert_eq!(
            primary.denominator,
            Some(900.0),
            "a released denominator is still shown"
        );
        let secondary = compute(
            m,
            Some(&counts(Count::Withheld(Suppression::Secondary), Count::Released(900.0))),
            Missing::Withheld,
        );
        assert_eq!(secondary.suppression, pb::Suppression::Secondary);
        let missing = compute(m, None, Missing::Withheld);
        let empty = compute(m, None, Missing::Empty);
        assert_eq!((empty.numerator, empty.denominator), (Some(0.0), Some(0.0)));
        assert_eq!(
            empty.suppression,
            pb::Suppression::NotPublished,
            "no people, no proportion"
        );
        assert_eq!(missing.suppression, pb::Suppression::Primary);
        assert_eq!((missing.value, missing.numerator), (None, None));
    }

    #[test]
    fn a_noised_numerator_above_its_denominator_is_capped_at_the_whole() {
        let m = measure("prevalence_diabetes").expect("measure");
        let c = compute(
            m,
            Some(&counts(Count::Released(25.0), Count::Released(20.0))),
            Missing::Withheld,
        );
        assert_eq!(c.value, Some(100.0));
    }

    #[test]
    fn a_standardised_rate_needs_every_band_released() {
        let m = measure("emergency_admissions_dsr").expect("measure");
        let mut bands: BTreeMap<Option<String>, Counts> = ESP2013_BANDS
            .iter()
            .map(|b| {
                (
                    Some(b.to_string()),
                    Counts {
                        numerator: Count::Released(20.0),
                        denominator: Count::Released(1000.0),
                    },
                )
            })
            .collect();
        let whole = compute(m, Some(&bands), Missing::Withheld);
        assert_eq!(whole.suppression, pb::Suppression::None);
        // Equal rates in every band standardise to that rate.
        assert!((whole.value.expect("dsr") - 20.0 / 1000.0 * m.multiplier).abs() < 1e-9);
        bands.insert(
            Some("90+".into()),
            Counts {
                numerator: Count::Withheld(Suppression::Primary),
                denominator: Count::Released(40.0),
            },
        );
        let partial = compute(m, Some(&bands), Missing::Withheld);
        assert_eq!(partial.suppression, pb::Suppression::NotPublished);
        assert_eq!(partial.value, None);
    }

    #[test]
    fn the_frame_holds_every_category_and_every_total() {
        let combos = combinations(&[Dimension::Sex, Dimension::ImdDecile]);
        // 4 × 11 cells, 4 sex totals, 11 decile totals, and the area's total.
        assert_eq!(combos.len(), 4 * 11 + 4 + 11 + 1);
        assert_eq!(combos.last(), Some(&vec![None, None]));
        assert_eq!(combinations(&[]), vec![Vec::<Option<&str>>::new()]);
    }
}
