//! The measure catalogue through the engine: every measure's generated SQL plans and runs
//! for a steward and, under disclosure control, for a commissioner, on a synthetic region;
//! the steward's true numbers are plausible and agree with the registers and tables they
//! are defined from.

use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::Months;
use poplar_engine::{Principal, QuerySession, Role, SnapshotContext};
use poplar_queries::measures::stats::{self, BandCount, ESP2013_BANDS};
use poplar_queries::measures::{
    AreaCode, Dimension, ESP_AGE_BAND_COLUMN, Level, Measure, Period, PeriodKind, REGION_CODE, Request, ValueType,
    catalogue, measure,
};
use std::collections::BTreeMap;

use crate::common::{disclosure, steward, synthetic_region};

/// One row of a measure query's answer.
#[derive(Debug, Clone)]
struct Row {
    area: String,
    /// Breakdown columns, then `esp_age_band` for a standardised rate.
    keys: Vec<String>,
    numerator: Option<f64>,
    denominator: Option<f64>,
}

fn numbers(batch: &RecordBatch, name: &str) -> Float64Array {
    let column = batch.column_by_name(name).unwrap_or_else(|| panic!("no {name} column"));
    let cast = arrow::compute::cast(column, &DataType::Float64).expect("numeric");
    cast.as_any().downcast_ref::<Float64Array>().expect("f64").clone()
}

/// Run `sql` as `who`, checking the answer's columns are the documented ones.
async fn rows(
    loaded: &SnapshotContext,
    who: &Principal,
    sql: &str,
    keys: &[&str],
) -> Result<Vec<Row>, poplar_engine::EngineError> {
    let session = QuerySession::new(loaded, who, Some(&disclosure())).expect("session");
    let batches = session.sql(sql).await?;
    let options = FormatOptions::new().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let names: Vec<&str> = b.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        let mut expected = vec!["area_code"];
        expected.extend(keys);
        expected.extend(["numerator", "denominator"]);
        assert_eq!(names, expected, "{sql}");
        let text = |i: usize| ArrayFormatter::try_new(b.column(i).as_ref(), &options).expect("format");
        let area = text(0);
        let key_columns: Vec<_> = (1..=keys.len()).map(text).collect();
        let (n, d) = (numbers(b, "numerator"), numbers(b, "denominator"));
        for r in 0..b.num_rows() {
            out.push(Row {
                area: area.value(r).to_string(),
                keys: key_columns.iter().map(|k| k.value(r).to_string()).collect(),
                numerator: (!n.is_null(r)).then(|| n.value(r)),
                denominator: (!d.is_null(r)).then(|| d.value(r)),
            });
        }
    }
    Ok(out)
}

/// One number from a steward's scalar query.
async fn scalar(loaded: &SnapshotContext, sql: &str) -> f64 {
    let session = QuerySession::new(loaded, &steward(), None).expect("session");
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let v = numbers(b, b.schema_ref().field(0).name());
    if v.is_null(0) { 0.0 } else { v.value(0) }
}

fn key_names(m: &Measure, request: &Request) -> Vec<&'static str> {
    let mut keys: Vec<&str> = request.breakdown.iter().map(|d| d.name()).collect();
    if m.value_type == ValueType::DirectlyStandardisedRate {
        keys.push(ESP_AGE_BAND_COLUMN);
    }
    keys
}

/// One measure of each kind of definition, run with a third request as well.
const REPRESENTATIVE: [&str; 6] = [
    "prevalence_diabetes",
    "multimorbidity_2plus",
    "ae_attendances",
    "emergency_admissions_dsr",
    "social_care_users",
    "cost_per_head_all",
];

/// The requests each measure is run with: practices of one PCN; ICBs by sex and IMD
/// decile; and, for one measure of each kind (every query recomputes the registers, so
/// all three for every measure take too long), PCNs in one quarter by age band (or
/// ethnicity where age is not allowed).
fn requests(m: &Measure, year: Period, quarter: Period, pcn: &AreaCode) -> Vec<Request> {
    let mut out = vec![Request::new(Level::Practice, year).within(Level::Pcn, pcn.clone())];
    out.push(
        Request::new(Level::Icb, year)
            .by(Dimension::Sex)
            .by(Dimension::ImdDecile),
    );
    if !REPRESENTATIVE.contains(&m.id.as_str()) {
        return out;
    }
    let third = if m.dimensions().contains(&Dimension::AgeBand) {
        Dimension::AgeBand
    } else {
        Dimension::Ethnicity
    };
    out.push(Request::new(Level::Pcn, quarter).by(third));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measure_runs_for_stewards_and_commissioners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = synthetic_region(dir.path()).await;
    let reference = loaded.reference_date.expect("the region has landed deliveries");
    // The last financial year and quarter wholly before the reference date, so every
    // source has delivered the whole period.
    let year = Period::containing(PeriodKind::FinancialYear, reference - Months::new(12)).expect("year");
    let quarter = Period::containing(PeriodKind::Quarter, reference - Months::new(3)).expect("quarter");
    let pcn = {
        let session = QuerySession::new(&loaded, &steward(), None).expect("session");
        let batches = session
            .sql("SELECT min(pcn) FROM organisations WHERE pcn IS NOT NULL")
            .await
            .expect("pcn");
        let text = ArrayFormatter::try_new(batches[0].column(0).as_ref(), &FormatOptions::new())
            .expect("format")
            .value(0)
            .to_string();
        AreaCode::new(&text).expect("a PCN code")
    };
    let cam = Principal::new("cam", Role::Commissioner);

    let mut refused = Vec::new();
    let mut released_cells = 0;
    for m in catalogue() {
        for request in requests(m, year, quarter, &pcn) {
            let sql = m.sql(&request).expect("sql");
            let keys = key_names(m, &request);
            let truth = rows(&loaded, &steward(), &sql, &keys)
                .await
                .unwrap_or_else(|e| panic!("steward, {}: {e}\n{sql}", m.id));
            assert!(!truth.is_empty(), "{} {:?}: no rows", m.id, request.level);
            for row in &truth {
                let d = row.denominator.expect("a steward sees every denominator");
                assert!(d > 0.0, "{} {row:?}", m.id);
                let n = row.numerator.unwrap_or(0.0);
                assert!(n >= 0.0, "{} {row:?}", m.id);
                if m.value_type == ValueType::Proportion {
                    assert!(n <= d, "{}: numerator above denominator {row:?}", m.id);
                }
            }
            match rows(&loaded, &cam, &sql, &keys).await {
                Err(e) => refused.push(format!("{} at {} level: {e}", m.id, request.level)),
                Ok(released) => {
                    // Same groups as the truth (small ones marked, not dropped) ...
                    let groups = |rs: &[Row]| rs.iter().map(|r| (r.area.clone(), r.keys.clone())).collect::<Vec<_>>();
                    assert_eq!(groups(&released), groups(&truth), "{}: groups", m.id);
                    // ... and every released count rounded to 5.
                    for row in &released {
                        for v in [row.denominator, row.numerator].into_iter().flatten() {
                            // Counts and sums alike are released rounded to 5.
                            assert_eq!(v % 5.0, 0.0, "{}: {row:?} is not rounded", m.id);
                            released_cells += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(
        refused.is_empty(),
        "measures refused for a commissioner:\n{}",
        refused.join("\n")
    );
    assert!(released_cells > 500, "{released_cells} cells released");

    registers_agree_with_registers_on(&loaded, year).await;
    activity_agrees_with_encounters(&loaded, year).await;
    standardised_rate_is_computable(&loaded, year).await;
}

/// The region's whole answer (one area, no breakdown), as the steward sees it.
async fn region_total(loaded: &SnapshotContext, m: &Measure, period: Period) -> (f64, f64) {
    let sql = m.sql(&Request::new(Level::Region, period)).expect("sql");
    let truth = rows(loaded, &steward(), &sql, &[]).await.expect("answer");
    assert_eq!(truth.len(), 1, "{}", m.id);
    assert_eq!(truth[0].area, REGION_CODE);
    (truth[0].numerator.unwrap_or(0.0), truth[0].denominator.unwrap_or(0.0))
}

/// Register prevalence counts exactly the people `registers_on` lists, out of exactly the
/// people `population_on` lists at the register's minimum age; practices add up to the
/// region.
async fn registers_agree_with_registers_on(loaded: &SnapshotContext, year: Period) {
    let on = year.end_sql();
    for register in poplar_queries::REGISTERS {
        let m = measure(&format!("prevalence_{}", register.id)).expect("measure");
        let (n, d) = region_total(loaded, m, year).await;
        let on_register = scalar(
            loaded,
            &format!(
                "SELECT count(DISTINCT person_id) FROM registers_on({on}) WHERE register = '{}'",
                register.id
            ),
        )
        .await;
        let population = scalar(
            loaded,
            &format!(
                "SELECT count(DISTINCT person_id) FROM population_on({on}) WHERE age_on(birth_month, {on}) >= {}",
                register.min_age
            ),
        )
        .await;
        assert_eq!(n, on_register, "{}", m.id);
        assert_eq!(d, population, "{}", m.id);
        if register.id != "hypertension" {
            continue;
        }
        assert!(n > 100.0, "the region has a hypertension register: {n}");
        let by_practice = m.sql(&Request::new(Level::Practice, year)).expect("sql");
        let practices = rows(loaded, &steward(), &by_practice, &[]).await.expect("answer");
        let sum: f64 = practices.iter().filter_map(|r| r.numerator).sum();
        assert_eq!(sum, n, "{}: practices add up to the region", m.id);
    }
    let two = measure("multimorbidity_2plus").expect("measure");
    let three = measure("multimorbidity_3plus").expect("measure");
    let (n2, _) = region_total(loaded, two, year).await;
    let (n3, _) = region_total(loaded, three, year).await;
    let expected = scalar(
        loaded,
        &format!(
            "SELECT count(*) FROM (SELECT person_id FROM registers_on({on}) GROUP BY person_id HAVING count(*) >= 2)"
        ),
    )
    .await;
    assert_eq!(n2, expected);
    assert!(n3 <= n2 && n3 > 0.0, "3+ ({n3}) within 2+ ({n2})");
}

/// Activity counts every encounter in the period of the people registered at its end,
/// once each, and costs sum theirs.
async fn activity_agrees_with_encounters(loaded: &SnapshotContext, year: Period) {
    let (start, end) = (year.start_sql(), year.end_sql());
    let registered = format!("person_id IN (SELECT person_id FROM population_on({end}))");
    for (id, condition) in [
        ("ae_attendances", "setting = 'a&e'"),
        (
            "emergency_admissions",
            "setting = 'inpatient' AND encounter_type = 'emergency'",
        ),
        ("outpatient_attendances", "setting = 'outpatient'"),
        ("gp_contacts", "setting = 'gp'"),
        ("mental_health_contacts", "setting = 'mental_health'"),
        ("community_contacts", "setting = 'community'"),
    ] {
        let (n, _) = region_total(loaded, measure(id).expect("measure"), year).await;
        let expected = scalar(
            loaded,
            &format!("SELECT count(*) FROM encounters WHERE {condition} AND start_date BETWEEN {start} AND {end} AND {registered}"),
        )
        .await;
        assert_eq!(n, expected, "{id}");
        assert!(n > 0.0, "{id}: the region has activity");
    }
    let (cost, _) = region_total(loaded, measure("cost_per_head_all").expect("measure"), year).await;
    let expected = scalar(
        loaded,
        &format!("SELECT sum(cost) FROM encounters WHERE start_date BETWEEN {start} AND {end} AND {registered}"),
    )
    .await;
    assert!(
        (cost - expected).abs() < 1e-6 * expected.max(1.0),
        "{cost} vs {expected}"
    );
    let by_setting: f64 = {
        let mut total = 0.0;
        for m in catalogue()
            .iter()
            .filter(|m| m.id.starts_with("cost_per_head_") && m.id != "cost_per_head_all")
        {
            total += region_total(loaded, m, year).await.0;
        }
        total
    };
    assert!(
        (by_setting - cost).abs() < 1e-6 * cost.max(1.0),
        "settings add up: {by_setting} vs {cost}"
    );
    let (users, adults) = region_total(loaded, measure("social_care_users").expect("measure"), year).await;
    assert!(
        users > 0.0 && users < adults,
        "{users} social care users of {adults} adults"
    );
}

/// The standardised rate's rows standardise: its bands add up to the crude counts, and the
/// region's DSR is defined and near the crude rate.
async fn standardised_rate_is_computable(loaded: &SnapshotContext, year: Period) {
    let m = measure("emergency_admissions_dsr").expect("measure");
    let sql = m.sql(&Request::new(Level::Region, year)).expect("sql");
    let truth = rows(loaded, &steward(), &sql, &[ESP_AGE_BAND_COLUMN])
        .await
        .expect("answer");
    let mut by_band: BTreeMap<&str, BandCount> = BTreeMap::new();
    for row in &truth {
        let band = ESP2013_BANDS
            .iter()
            .find(|b| **b == row.keys[0])
            .unwrap_or_else(|| panic!("unexpected band {:?}", row.keys[0]));
        by_band.insert(
            band,
            BandCount {
                observed: row.numerator.unwrap_or(0.0),
                population: row.denominator.unwrap_or(0.0),
            },
        );
    }
    let bands: [BandCount; 19] = std::array::from_fn(|i| {
        by_band.get(ESP2013_BANDS[i]).copied().unwrap_or(BandCount {
            observed: 0.0,
            population: 0.0,
        })
    });
    let observed: f64 = bands.iter().map(|b| b.observed).sum();
    let population: f64 = bands.iter().map(|b| b.population).sum();
    let (crude_n, crude_d) = region_total(loaded, measure("emergency_admissions").expect("measure"), year).await;
    assert_eq!(observed, crude_n, "bands add up to the crude numerator");
    assert_eq!(population, crude_d, "bands add up to the crude denominator");
    let dsr = stats::dsr_esp2013(&bands, m.multiplier).expect("a region-wide DSR is defined");
    let crude = crude_n / crude_d * m.multiplier;
    assert!(dsr.ci95.lower < dsr.value && dsr.value < dsr.ci95.upper, "{dsr:?}");
    assert!(
        dsr.value > crude / 3.0 && dsr.value < crude * 3.0,
        "DSR {} far from crude {crude}",
        dsr.value
    );
}
