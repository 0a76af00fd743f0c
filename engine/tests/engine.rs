//! Engine integration tests: registers on a hand-built fixture (sqllogictest files in
//! `tests/slt/`), the SQL policy, and register prevalence on a synthetic region.

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use deltalake::datafusion::catalog::MemTable;
use poplar_engine::disclosure::Policy;
use poplar_engine::{Catalog, Disclosure, EngineError, Loaded, Principal, QuerySession, Role};
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Registry, Source};
use poplar_loaders::{NhsNumber, Pseudonymiser, Store};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use std::path::Path;
use std::sync::Arc;

const KEY: &[u8] = b"engine-test-key-0123456789abcdef0123";

fn steward() -> Principal {
    Principal {
        user: "sam".into(),
        role: Role::Steward,
    }
}

// ----- the fixture: two practices, people whose register status is known -----

struct Person {
    label: &'static str,
    birth: &'static str,
    /// (practice, registered_from, registered_to)
    registrations: &'static [(&'static str, &'static str, &'static str)],
    death: &'static str,
    /// (practice, date, SNOMED CT code)
    events: &'static [(&'static str, &'static str, &'static str)],
}

const DM: &str = "111552007";
const HYP: &str = "38341003";
const HYPRES: &str = "162659009";
const CKD3: &str = "129171000119106";
const CKD2: &str = "129181000119109";
const CKD4: &str = "129151000119102";
const AST: &str = "195967001";
const COPD: &str = "13645005";
const COPDRES: &str = "941201000000103";
const DEPR: &str = "35489007";
const HF: &str = "84114007";
const CHD: &str = "53741008";
const AF: &str = "49436004";
const STRK: &str = "230690007";
const DEM: &str = "52448006";
const F1: &str = "F00001";
const F2: &str = "F00002";

const PEOPLE: &[Person] = &[
    Person {
        label: "P01",
        birth: "1955-03-10",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2020-01-01", DM)],
    },
    Person {
        label: "P02",
        birth: "2010-01-15",
        registrations: &[(F1, "2010-02-01", "")],
        death: "",
        events: &[(F1, "2024-01-01", DM)],
    },
    Person {
        label: "P03",
        birth: "1980-05-05",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2015-01-01", HYP), (F1, "2018-01-01", HYPRES)],
    },
    Person {
        label: "P04",
        birth: "1970-07-07",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[
            (F1, "2015-01-01", HYP),
            (F1, "2018-01-01", HYPRES),
            (F1, "2020-01-01", HYP),
        ],
    },
    Person {
        label: "P05",
        birth: "1940-01-01",
        registrations: &[(F1, "2000-01-01", "2024-05-10")],
        death: "2024-05-10",
        events: &[(F1, "2010-01-01", DM)],
    },
    Person {
        label: "P06",
        birth: "1960-02-02",
        registrations: &[(F1, "2000-01-01", "2023-03-01")],
        death: "",
        events: &[(F1, "2015-01-01", DM)],
    },
    Person {
        label: "P07",
        birth: "1990-09-09",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2026-09-30", DM)],
    },
    Person {
        label: "P08",
        birth: "1950-01-01",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2019-01-01", CKD3), (F1, "2021-01-01", CKD2)],
    },
    Person {
        label: "P09",
        birth: "1966-06-06",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2018-01-01", CKD2), (F1, "2021-01-01", CKD4)],
    },
    Person {
        label: "P10",
        birth: "2009-01-01",
        registrations: &[(F1, "2009-02-01", "")],
        death: "",
        events: &[(F1, "2025-01-01", CKD4)],
    },
    Person {
        label: "P11",
        birth: "2021-01-01",
        registrations: &[(F1, "2021-02-01", "")],
        death: "",
        events: &[(F1, "2024-01-01", AST)],
    },
    Person {
        label: "P12",
        birth: "2020-09-01",
        registrations: &[(F1, "2020-10-01", "")],
        death: "",
        events: &[(F1, "2024-01-01", AST)],
    },
    Person {
        label: "P13",
        birth: "1950-05-05",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2010-01-01", COPD), (F1, "2012-01-01", COPDRES)],
    },
    Person {
        label: "P14",
        birth: "1952-05-05",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[(F1, "2016-01-01", COPD)],
    },
    Person {
        label: "P15",
        birth: "2009-03-01",
        registrations: &[(F1, "2009-04-01", "")],
        death: "",
        events: &[(F1, "2025-01-01", DEPR)],
    },
    Person {
        label: "P16",
        birth: "2008-03-01",
        registrations: &[(F1, "2008-04-01", "")],
        death: "",
        events: &[(F1, "2025-01-01", DEPR)],
    },
    Person {
        label: "P17",
        birth: "1945-04-04",
        registrations: &[(F2, "1990-01-01", "2019-12-31"), (F1, "2020-01-01", "")],
        death: "",
        events: &[(F2, "2019-06-01", HF)],
    },
    Person {
        label: "P18",
        birth: "1948-08-08",
        registrations: &[(F1, "2000-01-01", "")],
        death: "",
        events: &[
            (F1, "2012-01-01", CHD),
            (F1, "2015-01-01", AF),
            (F1, "2018-01-01", STRK),
            (F1, "2022-01-01", DEM),
        ],
    },
    Person {
        label: "P19",
        birth: "1955-11-11",
        registrations: &[(F2, "2001-01-01", "")],
        death: "",
        events: &[(F2, "2019-01-01", DM), (F2, "2019-02-01", HYP)],
    },
];

fn nhs(index: usize) -> String {
    (500_000_000 + index as u32 * 13..)
        .find_map(NhsNumber::from_stem)
        .expect("valid")
        .to_digit_string()
}

fn practice(ods: &str) -> Source {
    Source {
        ods: ods.into(),
        name: format!("{ods} practice"),
        org_type: OrgType::GpPractice,
        format: FeedFormat::Csv,
        identifier_system: NHS_NUMBER_SYSTEM.into(),
        pcn: Some("U00001".into()),
        pcn_name: Some("Fixture PCN".into()),
        sub_icb: "9S1".into(),
        icb: "QP1".into(),
    }
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// Write and load the fixture; returns the catalog and a `fixture_people(label, person_id)`
/// table for tests to name people by.
async fn fixture(dir: &Path) -> (Arc<Loaded>, RecordBatch) {
    let registry = Registry {
        region: "fixture".into(),
        sources: vec![practice(F1), practice(F2)],
    };
    std::fs::write(dir.join("sources.toml"), registry.to_toml().expect("toml")).expect("write");
    std::fs::create_dir_all(dir.join("lookups")).expect("dir");
    std::fs::write(dir.join("lookups/postcode_lsoa.csv"), "pcd7,pcd8,pcds,dointr,doterm,usertype,oa11cd,lsoa11cd,msoa11cd,ladcd,lsoa11nm,msoa11nm,ladnm,ladnmw\nQP1 1AA,QP1  1AA,QP1 1AA,199801,,0,E00900001,E01900001,E02900001,E08900001,A 1A,A 1,A,\n").expect("write");
    std::fs::write(dir.join("lookups/imd.csv"), "\"LSOA code (2011)\",\"LSOA name (2011)\",\"Local Authority District code (2019)\",\"Local Authority District name (2019)\",\"Index of Multiple Deprivation (IMD) Rank\",\"Index of Multiple Deprivation (IMD) Decile\"\nE01900001,A 1A,E08900001,A,100,1\n").expect("write");
    for ods in [F1, F2] {
        let mut patients = String::from(
            "nhs_number,given_name,family_name,date_of_birth,sex,ethnic_category,address_line_1,address_line_2,postcode,phone,registered_from,registered_to,date_of_death\n",
        );
        let mut events = String::from("nhs_number,event_date,code_system,code,value,unit,free_text\n");
        let (mut np, mut ne) = (0, 0);
        for (i, p) in PEOPLE.iter().enumerate() {
            for (at, from, to) in p.registrations.iter().filter(|r| r.0 == ods) {
                let _ = at;
                patients += &format!(
                    "{},Test,Person,{},2,A,1 Road,Town,QP1 1AA,,{from},{to},{}\n",
                    nhs(i),
                    p.birth,
                    p.death
                );
                np += 1;
            }
            for (_, when, code) in p.events.iter().filter(|e| e.0 == ods) {
                events += &format!("{},{when},SNOMED,{code},,,\n", nhs(i));
                ne += 1;
            }
        }
        let delivery = dir.join("deliveries").join(ods).join("2026-09-30");
        std::fs::create_dir_all(&delivery).expect("dir");
        std::fs::write(delivery.join("patients.csv"), patients).expect("write");
        std::fs::write(delivery.join("events.csv"), events).expect("write");
        write_manifest(
            &delivery,
            ods,
            "2026-09-30",
            FeedFormat::Csv,
            date("2026-09-30"),
            (date("1900-01-01"), date("2026-09-30")),
            &[("patients.csv", np), ("events.csv", ne)],
        )
        .expect("manifest");
    }
    let pseudonymiser = Pseudonymiser::new(KEY).expect("key");
    let store = Store::parse(&dir.join("store").display().to_string()).expect("store");
    let options = LoadOptions {
        registry: dir.join("sources.toml"),
        input: dir.join("deliveries"),
        store: store.clone(),
        postcodes: dir.join("lookups/postcode_lsoa.csv"),
        imd: dir.join("lookups/imd.csv"),
        optout: None,
        group_rows: 1_000_000,
        progress: false,
    };
    let report = load(&options, &pseudonymiser).await.expect("load");
    assert!(
        report.quarantined.is_empty(),
        "fixture is clean: {:?}",
        report.quarantined
    );
    let catalog = Catalog::open(store).await.expect("catalog");
    let labels: Vec<&str> = PEOPLE.iter().map(|p| p.label).collect();
    let ids: Vec<i64> = (0..PEOPLE.len())
        .map(|i| pseudonymiser.person_id(&NhsNumber::parse(&nhs(i)).expect("valid")))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("person_id", DataType::Int64, false),
    ]));
    let people = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(labels)) as ArrayRef,
            Arc::new(Int64Array::from(ids)),
        ],
    )
    .expect("batch");
    (catalog.current(), people)
}

// ----- sqllogictest over Poplar's own planning path -----

#[derive(Debug)]
struct SltError(String);
impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

struct PoplarDb {
    loaded: Arc<Loaded>,
    principal: Principal,
    disclosure: Option<Arc<Disclosure>>,
}

#[async_trait::async_trait]
impl AsyncDB for PoplarDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let err = |e: EngineError| SltError(e.to_string());
        let session = QuerySession::new(&self.loaded, &self.principal, self.disclosure.as_deref()).map_err(err)?;
        let plan = session.plan(sql).await.map_err(err)?;
        let df = session.execute(plan).await.map_err(err)?;
        let schema = df.schema().inner().clone();
        let batches = df
            .collect()
            .await
            .map_err(|e| SltError(EngineError::from(e).to_string()))?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() => DefaultColumnType::FloatingPoint,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        let options = FormatOptions::new().with_null("NULL");
        let mut rows = Vec::new();
        for b in &batches {
            let formatters = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for r in 0..b.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| redact_file_paths(&f.value(r).to_string()))
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

/// EXPLAIN prints data files' paths, which differ on every run: keep the table and
/// partition directories and call the file `<file>`.
fn redact_file_paths(text: &str) -> String {
    const EXT: &str = ".parquet";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(end) = rest.find(EXT) {
        let (head, tail) = rest.split_at(end);
        let start = head.rfind(['[', ' ']).map_or(0, |i| i + 1);
        let path = &head[start..];
        out.push_str(&head[..start]);
        match path.rsplitn(4, '/').collect::<Vec<_>>().as_slice() {
            [_file, partition, table, ..] => out.push_str(&format!("{table}/{partition}/<file>")),
            _ => out.push_str(path),
        }
        out.push_str(EXT);
        rest = &tail[EXT.len()..];
    }
    out.push_str(rest);
    out
}

async fn run_slt(loaded: Arc<Loaded>, principal: Principal, file: &str) {
    run_slt_with(loaded, principal, None, file).await
}

async fn run_slt_with(loaded: Arc<Loaded>, principal: Principal, disclosure: Option<Arc<Disclosure>>, file: &str) {
    let mut runner = sqllogictest::Runner::new(move || {
        let db = PoplarDb {
            loaded: loaded.clone(),
            principal: principal.clone(),
            disclosure: disclosure.clone(),
        };
        async move { Ok::<_, SltError>(db) }
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt").join(file);
    if let Err(e) = runner.run_file_async(&path).await {
        panic!("{}", e.display(false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_match_the_fixture_by_construction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, people) = fixture(dir.path()).await;
    assert_eq!(loaded.reference_date, Some(date("2026-09-30")));
    loaded
        .context
        .register_table(
            "fixture_people",
            Arc::new(MemTable::try_new(people.schema(), vec![vec![people]]).expect("table")),
        )
        .expect("register");
    run_slt(loaded.clone(), steward(), "registers.slt").await;
    run_slt(loaded, steward(), "registers_on.slt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_lockdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = fixture(dir.path()).await;
    run_slt(loaded.clone(), steward(), "functions.slt").await;
    run_slt(loaded.clone(), steward(), "lockdown.slt").await;
    // A server without disclosure control configured answers no other role at all.
    for role in [Role::Commissioner, Role::Analyst, Role::Researcher] {
        let who = Principal {
            user: "cam".into(),
            role,
        };
        let err = QuerySession::new(&loaded, &who, None).err().expect("refused");
        assert!(matches!(err, EngineError::PermissionDenied(_)), "{err}");
        assert!(err.to_string().contains("disclosure control"), "{err}");
    }
}

/// Per-organisation and per-period filters prune: EXPLAIN shows them reaching the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_reach_the_delta_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = fixture(dir.path()).await;
    run_slt(loaded, steward(), "pruning.slt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_prevalence_on_a_synthetic_region_matches_what_synth_intended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, region) = synthetic_region(dir.path()).await;
    for register in poplar_queries::REGISTERS {
        let truth = region
            .report
            .registers
            .iter()
            .find(|r| r.cluster == register.diagnosis)
            .expect("synth made it");
        let sql = format!(
            "SELECT (SELECT count(DISTINCT person_id) FROM register_{}), \
                    (SELECT count(DISTINCT person_id) FROM registered_population WHERE age_on(birth_month, DATE '2026-09-30') >= {})",
            register.id, register.min_age
        );
        let session = QuerySession::new(&loaded, &steward(), None).expect("steward");
        let batches = session.sql(&sql).await.expect("run");
        let on = poplar_loaders::landing::int64_values(&batches, 0)[0] as f64;
        let denominator = poplar_loaders::landing::int64_values(&batches, 1)[0] as f64;
        let got = on / denominator;
        // Poplar counts from birth month (synth from the day) and synth's truth leaves out
        // people with any mistyped NHS number: allow 10% relative, or 0.3 points for rare ones.
        let tolerance = (truth.prevalence * 0.10).max(0.003);
        assert!(
            (got - truth.prevalence).abs() <= tolerance,
            "{}: Poplar {:.4} vs synth {:.4} (±{tolerance:.4})",
            register.id,
            got,
            truth.prevalence
        );
    }
}

// ----- disclosure control: red team, utility, EXPLAIN -----

const NOISE_KEY: &[u8] = b"red-team-noise-key-0123456789abcdef";

/// A synthetic region big enough for groups of 8+ people (6,000 patients, 20 practices),
/// landed; with synth's report of what it intended.
async fn synthetic_region(dir: &Path) -> (Arc<Loaded>, poplar_loaders::synth::SynthOutput) {
    let mut config = poplar_loaders::synth::SynthConfig::new(6_000, 17);
    config.mix = poplar_loaders::synth::OrgMix {
        gp_practices: 20,
        acute_trusts: 2,
        mental_health_trusts: 1,
        community_providers: 2,
        social_care: 3,
    };
    config.pilot_patients = 6_000;
    let region = poplar_loaders::synth::generate(&config, &dir.join("region")).expect("synth");
    let store = Store::parse(&dir.join("store").display().to_string()).expect("store");
    let options = LoadOptions {
        registry: region.registry.clone(),
        input: region.deliveries.clone(),
        store: store.clone(),
        postcodes: region.postcodes.clone(),
        imd: region.imd.clone(),
        optout: None,
        group_rows: 4_000_000,
        progress: false,
    };
    load(&options, &Pseudonymiser::new(KEY).expect("key"))
        .await
        .expect("load");
    (Catalog::open(store).await.expect("catalog").current(), region)
}

fn disclosure() -> Arc<Disclosure> {
    Arc::new(Disclosure::new(Policy::new(NOISE_KEY.to_vec()).expect("policy")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosure_control_blocks_the_red_team_and_keeps_utility() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loaded, _) = synthetic_region(dir.path()).await;
    let cam = Principal {
        user: "cam".into(),
        role: Role::Commissioner,
    };
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
async fn keyed(loaded: &Loaded, who: &Principal, sql: &str) -> std::collections::BTreeMap<String, Option<f64>> {
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
async fn utility(loaded: &Loaded) {
    let ann = Principal {
        user: "ann".into(),
        role: Role::Analyst,
    };
    let cam = Principal {
        user: "cam".into(),
        role: Role::Commissioner,
    };
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
async fn withheld_small_groups(loaded: &Loaded) {
    use poplar_engine::disclosure::policy::{PolicyFile, SmallGroups};
    let strict = Policy::new(NOISE_KEY.to_vec())
        .expect("policy")
        .stricter(PolicyFile {
            small_groups: Some(SmallGroups::Withhold),
            ..Default::default()
        })
        .expect("stricter");
    let strict = Disclosure::new(strict);
    let ann = Principal {
        user: "ann".into(),
        role: Role::Analyst,
    };
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
async fn plan_snapshots(loaded: &Loaded) {
    let cam = Principal {
        user: "cam".into(),
        role: Role::Commissioner,
    };
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
        let analyzed = session.analyzed(&plan).expect("analyzed");
        insta::assert_snapshot!(name, analyzed.display_indent().to_string());
    }
}

// ----- the audit log: tampering is found and named -----

mod audit_log {
    use super::steward;
    use deltalake::datafusion::prelude::SessionContext;
    use object_store::{PutMode, PutOptions};
    use poplar_engine::audit::{self, AuditLog, AuditRecord, AuditRequest, AuditTable, Outcome, ProblemKind};
    use poplar_loaders::Store;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// A store whose log holds entries 0 to 4.
    async fn log_of_five() -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
        let log = AuditLog::open(&store).await.expect("open");
        for n in 0..5u64 {
            let mut record = AuditRecord::new(
                &steward(),
                AuditRequest::sql(format!("SELECT count(*) FROM patients -- {n}")),
            );
            record.rows = n;
            if n == 3 {
                record.outcome = Outcome::Refused {
                    rule: "sql_policy".into(),
                    message: "refused: DML".into(),
                };
            }
            log.append(record).await.expect("append");
        }
        let entries = dir.path().join("store").join(audit::AUDIT_DIR);
        (dir, store, entries)
    }

    fn entry_file(dir: &std::path::Path, seq: u64) -> PathBuf {
        dir.join(format!("{seq:020}.json"))
    }

    async fn first_problem(store: &Store) -> (u64, ProblemKind, String) {
        let report = audit::verify(store).await.expect("verify");
        let p = report.first_problem().expect("a problem");
        (p.seq, p.kind, p.detail.clone())
    }

    #[tokio::test]
    async fn an_intact_log_verifies_and_reads_as_a_table() {
        let (_dir, store, _) = log_of_five().await;
        let report = audit::verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(
            (report.entries_checked, report.head.as_ref().map(|h| h.seq)),
            (5, Some(4))
        );
        let ctx = SessionContext::new();
        ctx.register_table("audit_log", Arc::new(AuditTable::new(store.clone())))
            .expect("register");
        let sql = "SELECT count(*), sum(rows), count(*) FILTER (WHERE outcome = 'refused') FROM audit_log";
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        let row = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("render")
            .to_string();
        assert!(
            row.contains("| 5 ") && row.contains("| 10 ") && row.contains("| 1 "),
            "{row}"
        );
        // Read afresh on each scan.
        AuditLog::open(&store)
            .await
            .expect("open")
            .append(AuditRecord::new(&steward(), AuditRequest::sql("SELECT 1")))
            .await
            .expect("append");
        let batches = ctx
            .sql("SELECT count(*) FROM audit_log")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(
            batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("count")
                .value(0),
            6
        );
    }

    #[tokio::test]
    async fn an_edited_entry_is_named_by_seq() {
        let (_dir, store, entries) = log_of_five().await;
        let path = entry_file(&entries, 2);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(r#""rows":2"#), "{text}");
        std::fs::write(&path, text.replace(r#""rows":2"#, r#""rows":0"#)).expect("write");
        let (seq, kind, detail) = first_problem(&store).await;
        assert_eq!((seq, kind), (2, ProblemKind::Edited), "{detail}");
    }

    #[tokio::test]
    async fn swapped_entries_are_reported_as_misplaced() {
        let (_dir, store, entries) = log_of_five().await;
        // Swap entries 1 and 2: each object now holds the other's seq.
        let (one, two) = (entry_file(&entries, 1), entry_file(&entries, 2));
        let (a, b) = (std::fs::read(&one).expect("read"), std::fs::read(&two).expect("read"));
        std::fs::write(&one, b).expect("write");
        std::fs::write(&two, a).expect("write");
        let (seq, kind, detail) = first_problem(&store).await;
        assert_eq!((seq, kind), (1, ProblemKind::Misplaced), "{detail}");
    }

    #[tokio::test]
    async fn a_deleted_middle_entry_is_reported_as_a_gap() {
        let (_dir, store, entries) = log_of_five().await;
        std::fs::remove_file(entry_file(&entries, 2)).expect("delete");
        let (seq, kind, detail) = first_problem(&store).await;
        assert_eq!((seq, kind), (2, ProblemKind::Missing), "{detail}");
    }

    #[tokio::test]
    async fn deleting_the_newest_entries_is_caught_by_head_and_the_log_will_not_reopen() {
        let (_dir, store, entries) = log_of_five().await;
        std::fs::remove_file(entry_file(&entries, 4)).expect("delete");
        std::fs::remove_file(entry_file(&entries, 3)).expect("delete");
        let (seq, kind, detail) = first_problem(&store).await;
        assert_eq!((seq, kind), (3, ProblemKind::Truncated), "{detail}");
        let refused = AuditLog::open(&store).await.expect_err("a cut tail is not continued");
        assert!(refused.to_string().contains("seq 3"), "{refused}");
    }

    #[tokio::test]
    async fn an_entry_cannot_be_overwritten() {
        let (_dir, store, entries) = log_of_five().await;
        let before = std::fs::read(entry_file(&entries, 1)).expect("read");
        let (objects, root) = store.object_store().expect("object store");
        let path = root.join(audit::AUDIT_DIR).join(format!("{:020}.json", 1));
        let put = objects
            .put_opts(&path, b"{}".to_vec().into(), PutOptions::from(PutMode::Create))
            .await;
        assert!(matches!(put, Err(object_store::Error::AlreadyExists { .. })), "{put:?}");
        assert_eq!(std::fs::read(entry_file(&entries, 1)).expect("read"), before);
        assert!(audit::verify(&store).await.expect("verify").is_ok());
    }
}
