//! Hand-built deliveries: a registry, lookups and delivery directories written by a test,
//! for faults and edge cases a synthetic region does not plant.

use chrono::NaiveDate;
use poplar_loaders::delivery::write_manifest;
use poplar_loaders::load::LoadOptions;
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Registry, Source};
use poplar_loaders::{NhsNumber, Store, Table};
use std::path::PathBuf;

use super::{rows, texts};
use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;

/// One postcode (QP1 1AA) in one LSOA, in the ONS lookup layout.
const POSTCODE_LOOKUP: &str = include_str!("../../fixtures/postcode_lsoa.csv");
/// That LSOA's IMD decile, in the MHCLG File 1 layout.
const IMD_LOOKUP: &str = include_str!("../../fixtures/imd2019_lsoa.csv");

pub fn source(ods: &str, format: FeedFormat) -> Source {
    Source {
        ods: ods.into(),
        name: format!("{ods} test"),
        org_type: OrgType::GpPractice,
        format,
        identifier_system: NHS_NUMBER_SYSTEM.into(),
        pcn: Some("U1".into()),
        pcn_name: None,
        sub_icb: "9S1".into(),
        icb: "QP1".into(),
    }
}

pub fn nhs(stem: u32) -> String {
    (stem..)
        .find_map(NhsNumber::from_stem)
        .expect("valid")
        .to_digit_string()
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

pub struct HandBuilt {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl HandBuilt {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("lookups")).expect("dir");
        std::fs::write(root.join("lookups/postcode_lsoa.csv"), POSTCODE_LOOKUP).expect("write");
        std::fs::write(root.join("lookups/imd2019_lsoa.csv"), IMD_LOOKUP).expect("write");
        Self { _dir: dir, root }
    }

    pub fn registry(&self, sources: Vec<Source>) {
        let registry = Registry {
            region: "test".into(),
            sources,
        };
        std::fs::write(self.root.join("sources.toml"), registry.to_toml().expect("toml")).expect("write");
    }

    /// Write a delivery; `files` are (name, content) with the header line included for CSV.
    pub fn delivery(
        &self,
        ods: &str,
        id: &str,
        format: FeedFormat,
        period: (&str, &str),
        files: &[(&str, String)],
    ) -> PathBuf {
        let dir = self.root.join("deliveries").join(ods).join(id);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut declared = Vec::new();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write");
            let rows =
                content.lines().filter(|l| !l.trim().is_empty()).count() as u64 - u64::from(format == FeedFormat::Csv);
            declared.push((*name, rows));
        }
        write_manifest(
            &dir,
            ods,
            id,
            format,
            date(period.1),
            (date(period.0), date(period.1)),
            &declared,
        )
        .expect("manifest");
        dir
    }

    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            registry: self.root.join("sources.toml"),
            input: self.root.join("deliveries"),
            store: Store::parse(&self.root.join("store").display().to_string()).expect("store"),
            postcodes: self.root.join("lookups/postcode_lsoa.csv"),
            imd: self.root.join("lookups/imd2019_lsoa.csv"),
            optout: None,
            group_rows: 1_000_000,
            max_file_bytes: poplar_loaders::delivery::DEFAULT_MAX_FILE_BYTES,
            progress: false,
        }
    }

    pub fn store(&self) -> Store {
        Store::parse(&self.root.join("store").display().to_string()).expect("store")
    }
}

pub const PATIENTS_HEADER: &str = "nhs_number,given_name,family_name,date_of_birth,sex,ethnic_category,address_line_1,address_line_2,postcode,phone,registered_from,registered_to,date_of_death\n";
pub const EVENTS_HEADER: &str = "nhs_number,event_date,code_system,code,value,unit,free_text\n";
pub const MEDS_HEADER: &str = "nhs_number,issue_date,dmd_code,dosage_text,quantity\n";
pub const ENCOUNTERS_HEADER: &str = "nhs_number,setting,start_date,end_date,encounter_type,cost\n";

pub fn patient_line(nhs: &str, dob: &str, sex: &str) -> String {
    format!("{nhs},Ada,Lovelace,{dob},{sex},A,1 Engine Row,Town,QP1 1AA,07700 900001,2010-01-01,,\n")
}

pub async fn quarantine_rows(store: &Store) -> Vec<(String, String, Option<i64>, String)> {
    let batches = rows(
        store,
        Table::Quarantine,
        "SELECT source_org, file, line, reason FROM t ORDER BY source_org, file, line",
    )
    .await;
    let (s, f, r) = (texts(&batches, 0), texts(&batches, 1), texts(&batches, 3));
    let lines: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(2).as_primitive::<Int64Type>().clone();
            (0..a.len()).map(move |i| (!a.is_null(i)).then(|| a.value(i)))
        })
        .collect();
    (0..s.len())
        .map(|i| (s[i].clone(), f[i].clone(), lines[i], r[i].clone()))
        .collect()
}
