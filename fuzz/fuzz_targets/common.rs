//! Shared by the parser targets: a delivery on disk holding the fuzzer's bytes, with an
//! honest manifest (so the parser, not the checksum, sees them), parsed in full.

use poplar_loaders::delivery::{Delivery, Manifest, ManifestFile, sha256_hex};
use poplar_loaders::lookup::PostcodeLookup;
use poplar_loaders::parse::{ParseContext, parse_delivery};
use poplar_loaders::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Source};
use poplar_loaders::{Pseudonymiser, Table};
use std::collections::HashSet;
use std::sync::OnceLock;

const POSTCODES: &str = include_str!("../../loaders/tests/fixtures/postcode_lsoa.csv");
const IMD: &str = include_str!("../../loaders/tests/fixtures/imd2019_lsoa.csv");

struct Fixed {
    _dir: tempfile::TempDir,
    lookup: PostcodeLookup,
    pseudonymiser: Pseudonymiser,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.csv"), POSTCODES).expect("write");
        std::fs::write(dir.path().join("i.csv"), IMD).expect("write");
        let lookup = PostcodeLookup::from_files(&dir.path().join("p.csv"), &dir.path().join("i.csv")).expect("lookup");
        let pseudonymiser = Pseudonymiser::new(b"fuzz-key-0123456789abcdef0123456789").expect("key");
        Fixed {
            _dir: dir,
            lookup,
            pseudonymiser,
        }
    })
}

/// Write `files` as a delivery of `format`, parse it, and build its tables.
pub fn parse(format: FeedFormat, files: &[(&str, &[u8])]) {
    let fixed = fixed();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut declared = Vec::new();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write");
        declared.push(ManifestFile {
            name: (*name).to_string(),
            rows: bytes.iter().filter(|b| **b == b'\n').count() as u64,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
    }
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let delivery = Delivery {
        dir: dir.path().to_path_buf(),
        manifest: Manifest {
            source: "F00001".into(),
            delivery: "2026-01-31".into(),
            format,
            extracted: date("2026-01-31"),
            period_start: date("1900-01-01"),
            period_end: date("2026-01-31"),
            files: declared,
        },
        content_sha256: String::new(),
    };
    let source = Source {
        ods: "F00001".into(),
        name: "fuzz".into(),
        org_type: OrgType::GpPractice,
        format,
        identifier_system: NHS_NUMBER_SYSTEM.into(),
        pcn: None,
        pcn_name: None,
        sub_icb: "X".into(),
        icb: "Y".into(),
    };
    let optouts = HashSet::new();
    let ctx = ParseContext {
        pseudonymiser: &fixed.pseudonymiser,
        lookup: &fixed.lookup,
        optouts: &optouts,
        source: &source,
        max_file_bytes: 1 << 20,
    };
    if let Ok(mut parsed) = parse_delivery(&delivery, &ctx) {
        // The row buffers must always make batches of the declared schemas.
        assert!(parsed.patients.finish("F00001").is_ok(), "{:?}", Table::Patients);
        assert!(parsed.events.finish("F00001").is_ok(), "{:?}", Table::ClinicalEvents);
        assert!(parsed.medications.finish("F00001").is_ok(), "{:?}", Table::Medications);
        assert!(parsed.encounters.finish("F00001").is_ok(), "{:?}", Table::Encounters);
    }
}
