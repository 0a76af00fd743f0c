//! Shared set-up: a hand-built fixture whose register status is known by construction, a
//! synthetic region big enough for disclosure control, and a sqllogictest runner over
//! Poplar's own planning path.

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use poplar_engine::disclosure::Policy;
use poplar_engine::{Disclosure, EngineError, Principal, QuerySession, Role, SnapshotCatalog, SnapshotContext};
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::load::{LoadOptions, load};
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Registry, Source};
use poplar_loaders::{NhsNumber, Pseudonymiser, Store};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use std::path::Path;
use std::sync::Arc;

pub const KEY: &[u8] = b"engine-test-key-0123456789abcdef0123";

pub fn steward() -> Principal {
    Principal::new("sam", Role::Steward)
}

/// A steward's answer to `sql`, one line per row: the values separated by spaces, NULL
/// for a null.
pub async fn answer(loaded: &SnapshotContext, sql: &str) -> Vec<String> {
    let session = QuerySession::new(loaded, &steward(), None).expect("session");
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::new().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let columns: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("format"))
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| c.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    out
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
pub const F1: &str = "F00001";
pub const F2: &str = "F00002";

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

pub fn practice(ods: &str, format: FeedFormat) -> Source {
    Source {
        ods: ods.into(),
        name: format!("{ods} practice"),
        org_type: OrgType::GpPractice,
        format,
        identifier_system: NHS_NUMBER_SYSTEM.into(),
        pcn: Some("U00001".into()),
        pcn_name: Some("Fixture PCN".into()),
        sub_icb: "9S1".into(),
        icb: "QP1".into(),
    }
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// Write and load the fixture; returns the catalog and a `fixture_people(label, person_id)`
/// table for tests to name people by.
pub async fn fixture(dir: &Path) -> (Arc<SnapshotContext>, RecordBatch) {
    let registry = Registry {
        region: "fixture".into(),
        sources: vec![practice(F1, FeedFormat::Csv), practice(F2, FeedFormat::Csv)],
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
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: false,
    };
    let report = load(&options, &pseudonymiser).await.expect("load");
    assert!(
        report.quarantined.is_empty(),
        "fixture is clean: {:?}",
        report.quarantined
    );
    let catalog = SnapshotCatalog::open(store, Vec::new()).await.expect("catalog");
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
    loaded: Arc<SnapshotContext>,
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
        // The server's path: the planned statement made physical (a non-steward's plan is
        // not analyzed again) and run with the request's task context.
        let plan = session.plan(sql).await.map_err(err)?;
        let physical = session.physical(plan).await.map_err(err)?;
        let schema = physical.schema();
        let batches = deltalake::datafusion::physical_plan::collect(physical, session.task_ctx())
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

pub async fn run_slt(loaded: Arc<SnapshotContext>, principal: Principal, file: &str) {
    run_slt_with(loaded, principal, None, file).await
}

pub async fn run_slt_with(
    loaded: Arc<SnapshotContext>,
    principal: Principal,
    disclosure: Option<Arc<Disclosure>>,
    file: &str,
) {
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

pub const NOISE_KEY: &[u8] = b"red-team-noise-key-0123456789abcdef";

/// A synthetic region big enough for groups of 8+ people (6,000 patients, 20 practices),
/// landed; with synth's report of what it intended.
pub async fn synthetic_region(dir: &Path) -> (Arc<SnapshotContext>, poplar_loaders::synth::SynthOutput) {
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
        group_rows: poplar_loaders::load::DEFAULT_GROUP_ROWS,
        max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
        progress: false,
    };
    load(&options, &Pseudonymiser::new(KEY).expect("key"))
        .await
        .expect("load");
    (
        SnapshotCatalog::open(store, Vec::new())
            .await
            .expect("catalog")
            .current(),
        region,
    )
}

pub fn disclosure() -> Arc<Disclosure> {
    Arc::new(Disclosure::new(Policy::new(NOISE_KEY.to_vec()).expect("policy")))
}

/// A server over the store landed under `dir` (at `dir/store`), with a steward and a
/// commissioner: (store, server, steward's token, commissioner's token).
pub async fn serve_landed(
    dir: &Path,
    limits: poplar_engine::limits::Limits,
) -> (Store, poplar_engine::server::Running, String, String) {
    use poplar_engine::auth::UsersFile;
    let users = dir.join("users.toml");
    let steward = UsersFile::add(&users, "sam", Role::Steward).expect("steward");
    let commissioner = UsersFile::add(&users, "cam", Role::Commissioner).expect("commissioner");
    let store = Store::parse(&dir.join("store").display().to_string()).expect("store");
    let running = poplar_engine::server::start(poplar_engine::server::ServeOptions {
        store: store.clone(),
        users,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        refresh: std::time::Duration::from_secs(3600),
        drain: std::time::Duration::from_secs(5),
        disclosure: Some(Policy::new(NOISE_KEY.to_vec()).expect("policy")),
        limits,
        studies: Default::default(),
        optout_key: None,
        cluster: None,
    })
    .await
    .expect("serve");
    (store, running, steward, commissioner)
}
