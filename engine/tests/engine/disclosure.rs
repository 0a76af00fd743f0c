//! Disclosure control on a synthetic region: the red team is refused, legitimate
//! questions keep their utility, withheld small groups stay hidden, and the rewritten
//! plans are snapshotted.

use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use poplar_engine::disclosure::Policy;
use poplar_engine::{Disclosure, Principal, QuerySession, Role, SnapshotContext};

use crate::common::{NOISE_KEY, disclosure, run_slt_with, steward, synthetic_region};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosure_control_blocks_the_red_team_and_keeps_utility() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = synthetic_region(dir.path()).await;
    let cam = Principal::new("cam", Role::Commissioner);
    run_slt_with(loaded.clone(), cam.clone(), Some(disclosure()), "red_team.slt").await;
    run_slt_with(
        loaded.clone(),
        cam.clone(),
        Some(disclosure()),
        "disclosure_explain.slt",
    )
    .await;
    utility(&loaded).await;
    withheld_small_groups(&loaded).await;
    plan_snapshots(&loaded).await;
}

/// `(group key, value)` rows of a two-column answer; NULL values as None.
async fn keyed(
    loaded: &SnapshotContext,
    who: &Principal,
    sql: &str,
) -> std::collections::BTreeMap<String, Option<f64>> {
    let session = QuerySession::new(loaded, who, Some(&disclosure())).expect("session");
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::new().with_null("NULL");
    let mut out = std::collections::BTreeMap::new();
    for b in &batches {
        let key = ArrayFormatter::try_new(b.column(0).as_ref(), &options).expect("format");
        let cast = arrow::compute::cast(b.column(1), &DataType::Float64).expect("numeric");
        let value = cast.as_any().downcast_ref::<arrow::array::Float64Array>().expect("f64");
        for r in 0..b.num_rows() {
            out.insert(
                key.value(r).to_string(),
                (!arrow::array::Array::is_null(value, r)).then(|| value.value(r)),
            );
        }
    }
    out
}

/// Legitimate questions: the same groups as the steward's true answer, each value
/// withheld or rounded exactly as the rules say (analyst: no noise), or within the noise
/// bound (commissioner: sticky noise, SD 1.5, then rounding).
async fn utility(loaded: &SnapshotContext) {
    let ann = Principal::new("ann", Role::Analyst);
    let cam = Principal::new("cam", Role::Commissioner);
    let round5 = |v: f64| (v / 5.0).round() * 5.0;
    let mut questions: Vec<String> = poplar_queries::REGISTERS
        .iter()
        .map(|r| format!("SELECT practice, count(*) FROM register_{} GROUP BY practice", r.id))
        .collect();
    questions.push("SELECT practice, count(*) FROM (SELECT person_id, practice FROM register_membership GROUP BY person_id, practice HAVING count(*) >= 2) GROUP BY practice".into());
    questions.push(
        "SELECT CAST(imd_decile AS VARCHAR), count(DISTINCT person_id) FROM registered_population GROUP BY imd_decile"
            .into(),
    );
    // Released from the release's own count of people (no second set): the same values.
    questions.push("SELECT setting, count(DISTINCT person_id) FROM encounters GROUP BY setting".into());
    let (mut cells, mut suppressed) = (0, 0);
    for sql in &questions {
        let truth = keyed(loaded, &steward(), sql).await;
        let plain = keyed(loaded, &ann, sql).await;
        let noisy = keyed(loaded, &cam, sql).await;
        assert_eq!(
            truth.keys().collect::<Vec<_>>(),
            plain.keys().collect::<Vec<_>>(),
            "same groups: {sql}"
        );
        assert_eq!(
            truth.keys().collect::<Vec<_>>(),
            noisy.keys().collect::<Vec<_>>(),
            "same groups: {sql}"
        );
        for (group, t) in &truth {
            let t = t.expect("a true count");
            cells += 1;
            if t < 8.0 {
                suppressed += 1;
                assert_eq!(plain[group], None, "{sql} [{group}] true {t} must be suppressed");
                assert_eq!(noisy[group], None, "{sql} [{group}] true {t} must be suppressed");
                continue;
            }
            assert_eq!(plain[group], Some(round5(t).max(10.0)), "{sql} [{group}] true {t}");
            let n = noisy[group].expect("released");
            assert_eq!(n % 5.0, 0.0, "{sql} [{group}] released {n} is rounded");
            assert!(
                (n - t).abs() <= 2.5 + 6.0 * 1.5,
                "{sql} [{group}] released {n} too far from {t}"
            );
        }
    }
    // The fixture must exercise both sides of the threshold.
    assert!(cells > 200 && suppressed > 0, "{cells} cells, {suppressed} suppressed");

    // Sums: rounded to 5 for analysts, withheld below k people.
    let sql = "SELECT setting, sum(cost) FROM encounters GROUP BY setting";
    let truth = keyed(loaded, &steward(), sql).await;
    let people = keyed(
        loaded,
        &steward(),
        "SELECT setting, count(DISTINCT person_id) FROM encounters GROUP BY setting",
    )
    .await;
    let plain = keyed(loaded, &ann, sql).await;
    for (group, t) in &truth {
        let expected = match (t, people[group]) {
            (Some(t), Some(p)) if p >= 8.0 && t.abs() > 7.0 => Some(round5(*t)),
            (None, _) => None,
            _ => None,
        };
        assert_eq!(plain[group], expected, "{sql} [{group}]");
    }
}

/// A deployment that withholds small groups shows only groups of k or more people: the
/// key of a small group (e.g. a rare combination of LSOA and birth month) is not disclosed.
async fn withheld_small_groups(loaded: &SnapshotContext) {
    use poplar_engine::disclosure::policy::{PolicyFile, SmallGroups};
    let strict = Policy::new(NOISE_KEY.to_vec())
        .expect("policy")
        .stricter(PolicyFile {
            small_groups: Some(SmallGroups::Withhold),
            ..Default::default()
        })
        .expect("stricter");
    let strict = Disclosure::new(strict);
    let ann = Principal::new("ann", Role::Analyst);
    let sql =
        "SELECT lsoa, count(*) FROM register_dementia d JOIN patients p ON p.person_id = d.person_id GROUP BY lsoa";
    let people = "SELECT lsoa, count(DISTINCT d.person_id) FROM register_dementia d JOIN patients p ON p.person_id = d.person_id GROUP BY lsoa";
    let truth = keyed(loaded, &steward(), people).await;
    let session = QuerySession::new(loaded, &ann, Some(&strict)).expect("session");
    let batches = session.sql(sql).await.expect("answer");
    let shown: usize = batches.iter().map(|b| b.num_rows()).sum();
    let big = truth.values().filter(|t| t.is_some_and(|t| t >= 8.0)).count();
    assert!(truth.len() > big, "the region has small LSOA groups");
    assert_eq!(shown, big, "only groups of 8+ people are shown");
    for b in &batches {
        assert_eq!(b.column(1).null_count(), 0, "no marked cells: small groups are gone");
    }
}

/// Rewritten plans, snapshotted: the release sits on the aggregate, hidden columns and
/// same-person conditions are where the rule puts them.
async fn plan_snapshots(loaded: &SnapshotContext) {
    let cam = Principal::new("cam", Role::Commissioner);
    let session = QuerySession::new(loaded, &cam, Some(&disclosure())).expect("session");
    for (name, sql) in [
        (
            "release_by_practice",
            "SELECT practice, count(*) AS people FROM register_diabetes GROUP BY practice",
        ),
        (
            "multimorbidity",
            "SELECT practice, count(*) FROM (SELECT person_id, practice FROM register_membership GROUP BY person_id, practice HAVING count(*) >= 2) GROUP BY practice",
        ),
        (
            "same_person_join",
            "SELECT p.sex, count(*) FROM patients p JOIN clinical_events e ON p.person_id = e.person_id GROUP BY p.sex",
        ),
        (
            "in_subquery",
            "SELECT count(*) FROM patients WHERE person_id IN (SELECT person_id FROM register_copd)",
        ),
    ] {
        let plan = session.plan(sql).await.expect("plan");
        let analyzed = session.analyzed(plan.logical()).expect("analyzed");
        insta::assert_snapshot!(name, analyzed.display_indent().to_string());
    }
}
