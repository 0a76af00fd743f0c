//! Deliveries: what one source sends in one go. Layout under the input directory:
//!
//! ```text
//! <input>/<ODS code>/<delivery id>/manifest.toml
//! <input>/<ODS code>/<delivery id>/patients.csv, events.csv, ...   (CSV feeds)
//! <input>/<ODS code>/<delivery id>/Patient.ndjson, ...             (FHIR bulk feeds)
//! ```
//!
//! The manifest is the delivery's control record: it declares the period the extract
//! covers and, for each file, its row count, byte size and SHA-256. A file that is shorter
//! than declared is truncated; one whose hash differs is corrupt; either rejects the whole
//! delivery so that a partial extract never supersedes a complete one.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use crate::LoaderError;
use crate::quarantine::{Quarantined, Reason};
use crate::registry::FeedFormat;

pub const MANIFEST: &str = "manifest.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub source: String,
    pub delivery: String,
    pub format: FeedFormat,
    pub extracted: NaiveDate,
    /// First and last dates of activity this delivery is complete for. Its event,
    /// medication and encounter rows replace the source's earlier rows in this period.
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    #[serde(rename = "file")]
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    pub fn to_toml(&self) -> Result<String, LoaderError> {
        toml::to_string_pretty(self).map_err(|e| LoaderError::Synth(e.to_string()))
    }
}

/// A delivery found on disk whose manifest parsed.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of the manifest, which itself pins every file's hash: the delivery's identity.
    pub content_sha256: String,
}

/// A delivery that cannot be loaded at all.
#[derive(Debug, Clone)]
pub struct RejectedDelivery {
    pub source_org: String,
    pub delivery: String,
    pub content_sha256: String,
    pub problem: Quarantined,
}

impl RejectedDelivery {
    /// The file that was at fault, relative to the input directory, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}: {} ({})",
            self.source_org, self.delivery, self.problem.file, self.problem.reason, self.problem.detail
        )
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Find every delivery under `input`, in (source, delivery id) order.
pub fn discover(input: &Path) -> Result<(Vec<Delivery>, Vec<RejectedDelivery>), LoaderError> {
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    for source_dir in sorted_dirs(input)? {
        let source_org = file_name(&source_dir);
        for dir in sorted_dirs(&source_dir)? {
            let delivery = file_name(&dir);
            let manifest_path = dir.join(MANIFEST);
            let reject = |reason: Reason, detail: String, sha: String| RejectedDelivery {
                source_org: source_org.clone(),
                delivery: delivery.clone(),
                content_sha256: sha,
                problem: Quarantined::file(MANIFEST, reason, detail),
            };
            let bytes = match std::fs::read(&manifest_path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    rejected.push(reject(
                        Reason::MissingManifest,
                        "delivery has no manifest.toml".into(),
                        String::new(),
                    ));
                    continue;
                }
                Err(e) => return Err(LoaderError::io(&manifest_path, e)),
            };
            let sha = sha256_hex(&bytes);
            let manifest: Manifest = match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str(t).map_err(|e| e.message().to_string()))
            {
                Ok(m) => m,
                Err(reason) => {
                    rejected.push(reject(Reason::InvalidManifest, reason, sha));
                    continue;
                }
            };
            if manifest.source != source_org || manifest.delivery != delivery {
                rejected.push(reject(
                    Reason::InvalidManifest,
                    "manifest source or delivery id does not match its directory".into(),
                    sha,
                ));
                continue;
            }
            if manifest.period_end < manifest.period_start {
                rejected.push(reject(
                    Reason::InvalidManifest,
                    "period_end is before period_start".into(),
                    sha,
                ));
                continue;
            }
            found.push(Delivery {
                dir,
                manifest,
                content_sha256: sha,
            });
        }
    }
    Ok((found, rejected))
}

impl Delivery {
    pub fn source_org(&self) -> &str {
        &self.manifest.source
    }

    pub fn id(&self) -> &str {
        &self.manifest.delivery
    }

    /// Read a declared file and verify its size and hash. Returns the bytes, or the reason
    /// the whole delivery must be rejected.
    pub fn read_verified(&self, declared: &ManifestFile) -> Result<Vec<u8>, Quarantined> {
        if declared.name.contains('/') || declared.name.contains('\\') || declared.name.starts_with('.') {
            return Err(Quarantined::file(
                &declared.name,
                Reason::InvalidManifest,
                "file names must be plain names inside the delivery",
            ));
        }
        let path = self.dir.join(&declared.name);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Quarantined::file(
                    &declared.name,
                    Reason::MissingFile,
                    "declared in the manifest but absent",
                )
            } else {
                Quarantined::file(
                    &declared.name,
                    Reason::UnreadableFile,
                    format!("cannot read: {}", e.kind()),
                )
            }
        })?;
        if (bytes.len() as u64) < declared.bytes {
            return Err(Quarantined::file(
                &declared.name,
                Reason::TruncatedFile,
                format!("{} bytes where the manifest declares {}", bytes.len(), declared.bytes),
            ));
        }
        if sha256_hex(&bytes) != declared.sha256 {
            return Err(Quarantined::file(
                &declared.name,
                Reason::ChecksumMismatch,
                "SHA-256 differs from the manifest",
            ));
        }
        Ok(bytes)
    }

    pub fn reject(&self, problem: Quarantined) -> RejectedDelivery {
        RejectedDelivery {
            source_org: self.source_org().to_string(),
            delivery: self.id().to_string(),
            content_sha256: self.content_sha256.clone(),
            problem,
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, LoaderError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LoaderError::io(dir, e))? {
        let entry = entry.map_err(|e| LoaderError::io(dir, e))?;
        let name = entry.file_name();
        if entry
            .file_type()
            .map_err(|e| LoaderError::io(entry.path(), e))?
            .is_dir()
            && !name.to_string_lossy().starts_with('.')
        {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Write a manifest for the files already in `dir` (used by the synthetic generator and by
/// tests that build deliveries by hand).
pub fn write_manifest(
    dir: &Path,
    source: &str,
    delivery: &str,
    format: FeedFormat,
    extracted: NaiveDate,
    period: (NaiveDate, NaiveDate),
    files: &[(&str, u64)],
) -> Result<(), LoaderError> {
    let mut declared = Vec::new();
    for (name, rows) in files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| LoaderError::io(&path, e))?;
        declared.push(ManifestFile {
            name: (*name).to_string(),
            rows: *rows,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
    }
    let manifest = Manifest {
        source: source.to_string(),
        delivery: delivery.to_string(),
        format,
        extracted,
        period_start: period.0,
        period_end: period.1,
        files: declared,
    };
    let path = dir.join(MANIFEST);
    std::fs::write(&path, manifest.to_toml()?).map_err(|e| LoaderError::io(&path, e))
}
