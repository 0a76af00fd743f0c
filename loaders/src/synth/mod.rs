//! `poplar synth`: a synthetic region of source organisations and the *identifiable*
//! extracts each would send, for demos, tests and benchmarks.
//!
//! Deterministic for a seed: people are generated in fixed-size chunks, each from its own
//! RNG seeded by (seed, chunk), on all cores, and appended to the files in chunk order, so
//! the output does not depend on the number of threads.

mod conditions;
mod emit;
mod person;
mod region;
mod vocab;

pub use conditions::{CONDITIONS, Condition};
pub use person::{BAD_DATE_SHARE, DUPLICATE_PATIENT_SHARE, INVALID_NHS_SHARE, UNKNOWN_SYSTEM_SHARE, nhs_number_for};
pub use region::OrgMix;

use chrono::{Duration, NaiveDate};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::LoaderError;
use crate::dates::{EARLIEST, ymd};
use crate::delivery::write_manifest;
use crate::parse::FileKind;
use crate::registry::OrgType;
use emit::{SLOTS, SourceBuffer};
use region::Region;

/// People per chunk: the unit of parallel work and of determinism.
const CHUNK: u64 = 2_000;
/// People in the calibration pilot (generated, measured, discarded) by default.
const PILOT: u64 = 24_000;
/// The extract date by default: fixed, so that output does not depend on today.
const EXTRACT_DATE: NaiveDate = ymd(2026, 9, 30);

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub patients: u64,
    pub seed: u64,
    pub mix: OrgMix,
    /// Share of GP practices that send FHIR bulk data instead of CSV.
    pub fhir_share: f64,
    /// The date every extract is taken (fixed, so output does not depend on today).
    pub extract_date: NaiveDate,
    /// People in the calibration pilot; fewer is faster and rougher (tests use a few thousand).
    pub pilot_patients: u64,
    pub progress: bool,
}

impl SynthConfig {
    pub fn new(patients: u64, seed: u64) -> Self {
        Self {
            patients,
            seed,
            mix: OrgMix::default(),
            fhir_share: 0.25,
            extract_date: EXTRACT_DATE,
            pilot_patients: PILOT,
            progress: false,
        }
    }
}

/// Where the generated files are.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    pub registry: PathBuf,
    pub deliveries: PathBuf,
    pub postcodes: PathBuf,
    pub imd: PathBuf,
    pub report: SynthReport,
}

/// Layout of a synthetic region under `dir`.
pub fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("sources.toml"),
        dir.join("deliveries"),
        dir.join("lookups").join("postcode_lsoa.csv"),
        dir.join("lookups").join("imd2019_lsoa.csv"),
    )
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SynthStats {
    pub patients: u64,
    pub deaths: u64,
    pub movers: u64,
    pub registered_valid: u64,
    pub invalid_nhs_person_sources: u64,
    pub invalid_nhs_rows: u64,
    pub duplicate_patient_rows: u64,
    pub bad_date_rows: u64,
    pub unknown_code_system_rows: u64,
    pub register_numerator: Vec<u64>,
    pub register_denominator: Vec<u64>,
}

impl SynthStats {
    fn new() -> Self {
        Self {
            register_numerator: vec![0; CONDITIONS.len()],
            register_denominator: vec![0; CONDITIONS.len()],
            ..Default::default()
        }
    }

    fn merge(&mut self, other: &SynthStats) {
        self.patients += other.patients;
        self.deaths += other.deaths;
        self.movers += other.movers;
        self.registered_valid += other.registered_valid;
        self.invalid_nhs_person_sources += other.invalid_nhs_person_sources;
        self.invalid_nhs_rows += other.invalid_nhs_rows;
        self.duplicate_patient_rows += other.duplicate_patient_rows;
        self.bad_date_rows += other.bad_date_rows;
        self.unknown_code_system_rows += other.unknown_code_system_rows;
        for (a, b) in self.register_numerator.iter_mut().zip(&other.register_numerator) {
            *a += b;
        }
        for (a, b) in self.register_denominator.iter_mut().zip(&other.register_denominator) {
            *a += b;
        }
    }
}

/// Intended register size, as the generator made it.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterTruth {
    pub cluster: String,
    pub min_age: u32,
    pub target: f64,
    pub on_register: u64,
    pub denominator: u64,
    pub prevalence: f64,
}

/// `synth-report.json`: what was generated, including the planted faults.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub seed: u64,
    pub extract_date: NaiveDate,
    pub organisations: BTreeMap<String, usize>,
    pub patients: u64,
    pub deaths: u64,
    pub movers: u64,
    pub registered_alive_valid: u64,
    pub source_rows: u64,
    pub rows_by_file: BTreeMap<String, u64>,
    pub planted: BTreeMap<String, u64>,
    pub registers: Vec<RegisterTruth>,
    pub seconds: f64,
}

struct ClusterCodes {
    diagnosis: Vec<i64>,
    resolved: Vec<i64>,
}

/// The same codes as sets, for judging register membership.
struct ClusterSets {
    diagnosis: std::collections::HashSet<i64>,
    resolved: std::collections::HashSet<i64>,
}

/// Everything shared by the chunk workers.
pub(crate) struct Generator<'a> {
    config: &'a SynthConfig,
    region: &'a Region,
    base_probability: Vec<f64>,
    codes: Vec<ClusterCodes>,
    sets: Vec<ClusterSets>,
    ckd_stage_1_2: Vec<i64>,
}

/// A cluster's SNOMED CT ids. The generator draws codes from these lists, so an empty one
/// is an error here rather than a made-up code later.
fn ids(cluster: &str) -> Result<Vec<i64>, LoaderError> {
    let ids: Vec<i64> = poplar_queries::codelist(cluster)?
        .codes
        .iter()
        .map(|c| c.id as i64)
        .collect();
    if ids.is_empty() {
        return Err(LoaderError::Synth(format!(
            "codelist {cluster} has no codes to draw from"
        )));
    }
    Ok(ids)
}

/// Generate a region into `dir` (which must not already hold one).
pub fn generate(config: &SynthConfig, dir: &Path) -> Result<SynthOutput, LoaderError> {
    let started = Instant::now();
    let (registry_path, deliveries, postcodes, imd) = layout(dir);
    if deliveries.exists() {
        return Err(LoaderError::Synth(format!(
            "{} already exists: choose an empty directory",
            deliveries.display()
        )));
    }
    let region = Region::build(config);
    let lookups = dir.join("lookups");
    std::fs::create_dir_all(&lookups).map_err(|e| LoaderError::io(&lookups, e))?;
    std::fs::write(&registry_path, region.registry.to_toml()?).map_err(|e| LoaderError::io(&registry_path, e))?;
    std::fs::write(&postcodes, region.postcode_lookup_csv()).map_err(|e| LoaderError::io(&postcodes, e))?;
    std::fs::write(&imd, region.imd_csv()).map_err(|e| LoaderError::io(&imd, e))?;

    let ckd_stage_1_2 = ids("CKD1AND2_COD")?;
    let mut codes = Vec::new();
    for condition in CONDITIONS {
        // CKD_COD holds the stage 3-5 codes; stage 1-2 codes are CKD1AND2_COD's.
        let diagnosis = ids(condition.cluster)?;
        let resolved = match condition.resolved {
            Some(r) => ids(r)?,
            None if condition.resolved_share > 0.0 => {
                return Err(LoaderError::Synth(format!(
                    "{} has a resolved share but no resolved cluster",
                    condition.cluster
                )));
            }
            None => Vec::new(),
        };
        codes.push(ClusterCodes { diagnosis, resolved });
    }
    let mut generator = Generator {
        config,
        region: &region,
        base_probability: CONDITIONS.iter().map(conditions::base_probability).collect(),
        sets: codes
            .iter()
            .map(|c| ClusterSets {
                diagnosis: c.diagnosis.iter().copied().collect(),
                resolved: c.resolved.iter().copied().collect(),
            })
            .collect(),
        codes,
        ckd_stage_1_2,
    };
    generator.calibrate();

    // One delivery directory per source, files started with their headers.
    let delivery_id = config.extract_date.format("%Y-%m-%d").to_string();
    let dirs: Vec<PathBuf> = region
        .registry
        .sources
        .iter()
        .map(|s| deliveries.join(&s.ods).join(&delivery_id))
        .collect();
    for (source, dir) in region.registry.sources.iter().zip(&dirs) {
        std::fs::create_dir_all(dir).map_err(|e| LoaderError::io(dir, e))?;
        for kind in FileKind::of(source.format) {
            let path = dir.join(kind.file_name());
            std::fs::write(&path, emit::header(*kind)).map_err(|e| LoaderError::io(&path, e))?;
        }
    }

    let bar = if config.progress {
        ProgressBar::new(config.patients)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} patients ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    let chunks = config.patients.div_ceil(CHUNK);
    let wave = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut stats = SynthStats::new();
    let mut rows = vec![[0u64; SLOTS]; region.registry.sources.len()];
    let mut first = 0;
    while first < chunks {
        let last = (first + wave).min(chunks);
        let outputs: Vec<(HashMap<usize, SourceBuffer>, SynthStats)> = (first..last)
            .into_par_iter()
            .map(|chunk| {
                let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut buffers = HashMap::new();
                let mut stats = SynthStats::new();
                let end = ((chunk + 1) * CHUNK).min(config.patients);
                for index in chunk * CHUNK..end {
                    generator.person(index, &mut rng, &mut buffers, &mut stats);
                }
                bar.inc(end - chunk * CHUNK);
                (buffers, stats)
            })
            .collect();
        // Append in chunk order, one file open per source and slot per wave.
        let mut by_source: BTreeMap<usize, Vec<&SourceBuffer>> = BTreeMap::new();
        for (buffers, chunk_stats) in &outputs {
            stats.merge(chunk_stats);
            for (source, buffer) in buffers {
                by_source.entry(*source).or_default().push(buffer);
            }
        }
        by_source
            .par_iter()
            .try_for_each(|(source, buffers)| -> Result<(), LoaderError> {
                let format = region.registry.sources[*source].format;
                for kind in FileKind::of(format) {
                    let slot = kind.slot();
                    if buffers.iter().all(|b| b.files[slot].is_empty()) {
                        continue;
                    }
                    let path = dirs[*source].join(kind.file_name());
                    let mut file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .map_err(|e| LoaderError::io(&path, e))?;
                    for b in buffers {
                        file.write_all(&b.files[slot]).map_err(|e| LoaderError::io(&path, e))?;
                    }
                }
                Ok(())
            })?;
        for (source, buffers) in by_source {
            for b in buffers {
                for (total, n) in rows[source].iter_mut().zip(&b.rows) {
                    *total += n;
                }
            }
        }
        first = last;
    }
    bar.finish_and_clear();

    // Manifests: the period each delivery covers, and each file's rows, size and hash.
    let mut rows_by_file: BTreeMap<String, u64> = BTreeMap::new();
    let today = config.extract_date;
    let secondary_start = today - Duration::days((3.0 * 365.25) as i64);
    region
        .registry
        .sources
        .par_iter()
        .enumerate()
        .try_for_each(|(i, source)| {
            let files: Vec<(&str, u64)> = FileKind::of(source.format)
                .iter()
                .map(|kind| (kind.file_name(), rows[i][kind.slot()]))
                .collect();
            // A GP extract is the full record; other settings send their last three years.
            let start = if source.org_type == OrgType::GpPractice {
                EARLIEST
            } else {
                secondary_start
            };
            write_manifest(
                &dirs[i],
                &source.ods,
                &delivery_id,
                source.format,
                today,
                (start, today),
                &files,
            )
        })?;
    for (i, source) in region.registry.sources.iter().enumerate() {
        for kind in FileKind::of(source.format) {
            *rows_by_file.entry(kind.file_name().to_string()).or_default() += rows[i][kind.slot()];
        }
    }

    let mut organisations = BTreeMap::new();
    for s in &region.registry.sources {
        *organisations.entry(s.org_type.as_str().to_string()).or_default() += 1;
    }
    let registers = CONDITIONS
        .iter()
        .enumerate()
        .map(|(i, c)| RegisterTruth {
            cluster: c.cluster.to_string(),
            min_age: c.min_age,
            target: c.target,
            on_register: stats.register_numerator[i],
            denominator: stats.register_denominator[i],
            prevalence: stats.register_numerator[i] as f64 / stats.register_denominator[i].max(1) as f64,
        })
        .collect();
    let planted = BTreeMap::from([
        ("invalid_nhs_number_rows".to_string(), stats.invalid_nhs_rows),
        (
            "invalid_nhs_number_person_sources".to_string(),
            stats.invalid_nhs_person_sources,
        ),
        ("duplicate_patient_rows".to_string(), stats.duplicate_patient_rows),
        ("invalid_date_rows".to_string(), stats.bad_date_rows),
        ("unknown_code_system_rows".to_string(), stats.unknown_code_system_rows),
    ]);
    let report = SynthReport {
        seed: config.seed,
        extract_date: config.extract_date,
        organisations,
        patients: stats.patients,
        deaths: stats.deaths,
        movers: stats.movers,
        registered_alive_valid: stats.registered_valid,
        source_rows: rows_by_file.values().sum(),
        rows_by_file,
        planted,
        registers,
        seconds: started.elapsed().as_secs_f64(),
    };
    let report_path = dir.join("synth-report.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| LoaderError::Synth(e.to_string()))?;
    std::fs::write(&report_path, json).map_err(|e| LoaderError::io(&report_path, e))?;
    Ok(SynthOutput {
        registry: registry_path,
        deliveries,
        postcodes,
        imd,
        report,
    })
}

impl Generator<'_> {
    /// The analytic base rates ignore deaths (which take the multimorbid first), people
    /// who left, capping and late onset, so registers come out low. Generate a pilot
    /// population from a seed of its own, measure each register against its target and
    /// rescale: deterministic, and it adapts to any organisation mix.
    fn calibrate(&mut self) {
        let chunks = self.config.pilot_patients.div_ceil(CHUNK);
        let stats = (0..chunks)
            .into_par_iter()
            .map(|chunk| {
                let mut rng = ChaCha8Rng::seed_from_u64(!self.config.seed ^ chunk.wrapping_mul(0xD1B5_4A32_D192_ED03));
                let (mut buffers, mut stats) = (HashMap::new(), SynthStats::new());
                for index in chunk * CHUNK..(chunk + 1) * CHUNK {
                    self.person(index, &mut rng, &mut buffers, &mut stats);
                }
                stats
            })
            .reduce(SynthStats::new, |mut a, b| {
                a.merge(&b);
                a
            });
        for (i, condition) in CONDITIONS.iter().enumerate() {
            let realised = stats.register_numerator[i] as f64 / stats.register_denominator[i].max(1) as f64;
            if realised > 0.0 {
                self.base_probability[i] *= (condition.target / realised).clamp(0.3, 6.0);
            }
        }
    }
}
