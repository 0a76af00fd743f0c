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
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::LoaderError;
pub use crate::quarantine::plain_name;
use crate::quarantine::{Quarantined, Reason, printable};
use crate::registry::FeedFormat;

pub const MANIFEST: &str = "manifest.toml";

/// A manifest is a page of TOML; anything much larger is not one.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The default cap on one data file (`--max-file-bytes`): far above the largest extract a
/// source sends today, far below what would exhaust the loader's memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Why a manifest could not be read. It names the field (and the file entry), never the
/// value: serde's and toml's own messages quote what the sender wrote (``unknown variant
/// `<anything>` ``), and a manifest is sender input like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestProblem {
    NotUtf8,
    Syntax { line: usize },
    Missing { field: &'static str },
    Invalid { field: &'static str },
    FileEntry { index: usize, field: &'static str },
}

impl std::fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestProblem::NotUtf8 => write!(f, "manifest is not UTF-8 text"),
            ManifestProblem::Syntax { line } => write!(f, "manifest is not valid TOML (line {line})"),
            ManifestProblem::Missing { field } => write!(f, "manifest has no {field}"),
            ManifestProblem::Invalid { field } => write!(f, "manifest {field} is not a valid value"),
            ManifestProblem::FileEntry { index, field } => {
                write!(
                    f,
                    "manifest file entry #{index}: {field} is missing or not a valid value"
                )
            }
        }
    }
}

impl Manifest {
    pub fn to_toml(&self) -> Result<String, LoaderError> {
        toml::to_string_pretty(self).map_err(|_| LoaderError::Synth("a manifest could not be written as TOML".into()))
    }

    /// Read a manifest, field by field, so that a fault is reported by field name only.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestProblem> {
        use toml::Value;
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestProblem::NotUtf8)?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ManifestProblem::Syntax {
            line: e
                .span()
                .map_or(0, |s| text.get(..s.start).map_or(0, |t| t.lines().count().max(1))),
        })?;
        let string = |field: &'static str| match table.get(field) {
            None => Err(ManifestProblem::Missing { field }),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ManifestProblem::Invalid { field }),
        };
        let date = |field: &'static str| match table.get(field) {
            None => Err(ManifestProblem::Missing { field }),
            Some(v) => toml_date(v).ok_or(ManifestProblem::Invalid { field }),
        };
        let format = match string("format")?.as_str() {
            "csv" => FeedFormat::Csv,
            "fhir_ndjson" => FeedFormat::FhirNdjson,
            _ => return Err(ManifestProblem::Invalid { field: "format" }),
        };
        let entries = match table.get("file") {
            None => &Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(ManifestProblem::Invalid { field: "file" }),
        };
        let mut files = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let index = i + 1;
            let bad = |field: &'static str| ManifestProblem::FileEntry { index, field };
            let Value::Table(entry) = entry else {
                return Err(bad("entry"));
            };
            let text = |field: &'static str| match entry.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(bad(field)),
            };
            let count = |field: &'static str| match entry.get(field) {
                Some(Value::Integer(n)) => u64::try_from(*n).map_err(|_| bad(field)),
                _ => Err(bad(field)),
            };
            let sha256 = text("sha256")?;
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("sha256"));
            }
            files.push(ManifestFile {
                name: text("name")?,
                rows: count("rows")?,
                bytes: count("bytes")?,
                sha256: sha256.to_ascii_lowercase(),
            });
        }
        Ok(Manifest {
            source: string("source")?,
            delivery: string("delivery")?,
            format,
            extracted: date("extracted")?,
            period_start: date("period_start")?,
            period_end: date("period_end")?,
            files,
        })
    }
}

/// A manifest date: a `"YYYY-MM-DD"` string or a bare TOML date.
fn toml_date(v: &toml::Value) -> Option<NaiveDate> {
    match v {
        toml::Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => {
            let date = d.date?;
            NaiveDate::from_ymd_opt(i32::from(date.year), u32::from(date.month), u32::from(date.day))
        }
        _ => None,
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
    /// The file that was at fault, relative to the input directory, for messages. Names
    /// are plain tokens by construction ([`plain_name`]); escaped again in case.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}: {} ({})",
            printable(&self.source_org),
            printable(&self.delivery),
            printable(&self.problem.file),
            self.problem.reason,
            printable(&self.problem.detail)
        )
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a directory with an unrecordable name is recorded as: its position in the sorted
/// listing of its parent, never its name.
fn placeholder_name(position: usize) -> String {
    format!("invalid-name-{position}")
}

/// A directory entry as discovery sees it: its name (or placeholder), whether that name
/// was plain, and what it is, without following symbolic links.
struct Entry {
    path: PathBuf,
    name: String,
    plain: bool,
    kind: EntryKind,
}

#[derive(PartialEq, Eq)]
enum EntryKind {
    Dir,
    Symlink,
    Other,
}

/// The entries of a directory in name order, hidden ones (`.name`, in-progress uploads)
/// left out. File types come from the directory entry (`lstat`), so a symbolic link is
/// seen as a link, never as what it points at.
fn entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let raw = entry.file_name();
        if raw.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let file_type = entry.file_type()?;
        let kind = if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        found.push((raw, entry.path(), kind));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(i, (raw, path, kind))| {
            let text = raw.to_str().filter(|t| plain_name(t));
            Entry {
                name: text.map_or_else(|| placeholder_name(i + 1), str::to_string),
                plain: text.is_some(),
                path,
                kind,
            }
        })
        .collect())
}

/// Find every delivery under `input`, in (source, delivery id) order. Only an unreadable
/// `input` stops discovery: each delivery's own fault (a symbolic link, an unreadable or
/// odd manifest, a name that cannot be recorded) rejects that delivery alone.
pub fn discover(input: &Path) -> Result<(Vec<Delivery>, Vec<RejectedDelivery>), LoaderError> {
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    let refuse = |source: &str, delivery: &str, reason: Reason, detail: &str| RejectedDelivery {
        source_org: source.to_string(),
        delivery: delivery.to_string(),
        content_sha256: String::new(),
        problem: Quarantined::file(MANIFEST, reason, detail),
    };
    // A whole source directory that cannot be read is recorded under this delivery id.
    const ALL: &str = "-";
    for source in entries(input).map_err(|e| LoaderError::io(input, e))? {
        match source.kind {
            EntryKind::Dir => {}
            EntryKind::Symlink => {
                rejected.push(refuse(
                    &source.name,
                    ALL,
                    Reason::UnsafeFile,
                    "source directory is a symbolic link",
                ));
                continue;
            }
            // A stray file beside the source directories is not a delivery.
            EntryKind::Other => continue,
        }
        if !source.plain {
            rejected.push(refuse(
                &source.name,
                ALL,
                Reason::InvalidName,
                "source directory name is not a plain ODS code",
            ));
            continue;
        }
        let deliveries = match entries(&source.path) {
            Ok(d) => d,
            Err(e) => {
                rejected.push(refuse(
                    &source.name,
                    ALL,
                    Reason::UnreadableFile,
                    &format!("source directory cannot be listed: {}", e.kind()),
                ));
                continue;
            }
        };
        for dir in deliveries {
            match dir.kind {
                EntryKind::Dir => {}
                EntryKind::Symlink => {
                    rejected.push(refuse(
                        &source.name,
                        &dir.name,
                        Reason::UnsafeFile,
                        "delivery directory is a symbolic link",
                    ));
                    continue;
                }
                EntryKind::Other => continue,
            }
            if !dir.plain {
                rejected.push(refuse(
                    &source.name,
                    &dir.name,
                    Reason::InvalidName,
                    "delivery directory name is not a plain delivery id",
                ));
                continue;
            }
            match read_delivery(&source.name, &dir) {
                Ok(d) => found.push(d),
                Err(r) => rejected.push(*r),
            }
        }
    }
    Ok((found, rejected))
}

/// Read and check one delivery's manifest.
fn read_delivery(source_org: &str, dir: &Entry) -> Result<Delivery, Box<RejectedDelivery>> {
    let reject = |reason: Reason, detail: String, sha: &str| {
        Box::new(RejectedDelivery {
            source_org: source_org.to_string(),
            delivery: dir.name.clone(),
            content_sha256: sha.to_string(),
            problem: Quarantined::file(MANIFEST, reason, detail),
        })
    };
    let bytes = match read_regular(&dir.path.join(MANIFEST), MAX_MANIFEST_BYTES) {
        Ok(bytes) => bytes,
        Err(FileFault::Missing) => {
            return Err(reject(
                Reason::MissingManifest,
                "delivery has no manifest.toml".into(),
                "",
            ));
        }
        Err(fault) => return Err(reject(fault.reason(), fault.detail("manifest.toml"), "")),
    };
    let sha = sha256_hex(&bytes);
    let manifest = Manifest::parse(&bytes).map_err(|p| reject(Reason::InvalidManifest, p.to_string(), &sha))?;
    if manifest.source != source_org || manifest.delivery != dir.name {
        return Err(reject(
            Reason::InvalidManifest,
            "manifest source or delivery id does not match its directory".into(),
            &sha,
        ));
    }
    if manifest.period_end < manifest.period_start {
        return Err(reject(
            Reason::InvalidManifest,
            "period_end is before period_start".into(),
            &sha,
        ));
    }
    // A day's grace for clocks and time zones; a later extract date is a fault.
    if manifest.extracted > chrono::Utc::now().date_naive() + chrono::Duration::days(1) {
        return Err(reject(Reason::InvalidManifest, "extracted is after today".into(), &sha));
    }
    let mut names = HashSet::new();
    for file in &manifest.files {
        if !names.insert(file.name.as_str()) {
            return Err(Box::new(RejectedDelivery {
                source_org: source_org.to_string(),
                delivery: dir.name.clone(),
                content_sha256: sha.clone(),
                problem: Quarantined::file(
                    &file.name,
                    Reason::DuplicateFile,
                    "the manifest lists this file more than once (its rows would land twice)",
                ),
            }));
        }
    }
    Ok(Delivery {
        dir: dir.path.clone(),
        manifest,
        content_sha256: sha,
    })
}

/// Why a file in a delivery could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFault {
    Missing,
    /// A symbolic link, directory, FIFO, socket or device: never opened, so a FIFO
    /// cannot hang the load nor a link to `/dev/zero` fill memory.
    NotRegular,
    TooLarge {
        cap: u64,
    },
    Unreadable(std::io::ErrorKind),
}

impl FileFault {
    fn reason(self) -> Reason {
        match self {
            FileFault::Missing => Reason::MissingFile,
            FileFault::NotRegular => Reason::UnsafeFile,
            FileFault::TooLarge { .. } => Reason::FileTooLarge,
            FileFault::Unreadable(_) => Reason::UnreadableFile,
        }
    }

    fn detail(self, what: &str) -> String {
        match self {
            FileFault::Missing => format!("{what} is declared in the manifest but absent"),
            FileFault::NotRegular => format!("{what} is not a regular file (a link, directory, FIFO or device)"),
            FileFault::TooLarge { cap } => format!("{what} is larger than the loader's cap of {cap} bytes"),
            FileFault::Unreadable(kind) => format!("{what} cannot be read: {kind}"),
        }
    }
}

/// Open a regular file inside a delivery for reading, without following a symbolic link,
/// and only if it is at most `cap` bytes.
fn open_regular(path: &Path, cap: u64) -> Result<std::fs::File, FileFault> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileFault::Missing,
        kind => FileFault::Unreadable(kind),
    })?;
    if !meta.file_type().is_file() {
        return Err(FileFault::NotRegular);
    }
    if meta.len() > cap {
        return Err(FileFault::TooLarge { cap });
    }
    let file = std::fs::File::open(path).map_err(|e| FileFault::Unreadable(e.kind()))?;
    // The path may have been swapped for something else between the check and the open:
    // what was opened must be that same regular file.
    let opened = file.metadata().map_err(|e| FileFault::Unreadable(e.kind()))?;
    if !opened.file_type().is_file() || !same_file(&meta, &opened) {
        return Err(FileFault::NotRegular);
    }
    Ok(file)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// A whole small file (the manifest), read no further than `cap`.
fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, FileFault> {
    let file = open_regular(path, cap)?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileFault::Unreadable(e.kind()))?;
    if bytes.len() as u64 > cap {
        return Err(FileFault::TooLarge { cap });
    }
    Ok(bytes)
}

/// A declared file, read as a stream: each byte is hashed and counted as the parser pulls
/// it, and [`VerifiedReader::verify`] then checks size and hash against the manifest. The
/// parser's rows are kept only if that check passes, so a truncated or corrupt file still
/// rejects the whole delivery, without the file ever being held in memory at once.
pub struct VerifiedReader {
    file: std::fs::File,
    hasher: Sha256,
    read: u64,
    cap: u64,
    over_cap: bool,
    error: Option<std::io::ErrorKind>,
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.over_cap || self.error.is_some() || buf.is_empty() {
            return Ok(0);
        }
        // Never more than one byte past the cap: enough to know the file grew past it.
        let room = usize::try_from(self.cap.saturating_add(1).saturating_sub(self.read)).unwrap_or(usize::MAX);
        let want = buf.len().min(room.max(1));
        let n = loop {
            match self.file.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Recorded and reported by `verify`; the parser just sees the end.
                Err(e) => {
                    self.error = Some(e.kind());
                    return Ok(0);
                }
            }
        };
        self.read += n as u64;
        if self.read > self.cap {
            self.over_cap = true;
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl VerifiedReader {
    /// Read whatever the parser left, then check the file against its manifest line.
    pub fn verify(mut self, declared: &ManifestFile) -> Result<(), Quarantined> {
        let mut rest = [0u8; 64 * 1024];
        while let Ok(1..) = self.read(&mut rest) {}
        let fault = |f: FileFault| Quarantined::file(&declared.name, f.reason(), f.detail("the file"));
        if let Some(kind) = self.error {
            return Err(fault(FileFault::Unreadable(kind)));
        }
        if self.over_cap {
            return Err(fault(FileFault::TooLarge { cap: self.cap }));
        }
        if self.read < declared.bytes {
            return Err(Quarantined::file(
                &declared.name,
                Reason::TruncatedFile,
                format!("{} bytes where the manifest declares {}", self.read, declared.bytes),
            ));
        }
        if hex::encode(self.hasher.finalize()) != declared.sha256 {
            return Err(Quarantined::file(
                &declared.name,
                Reason::ChecksumMismatch,
                "SHA-256 differs from the manifest",
            ));
        }
        Ok(())
    }
}

impl Delivery {
    pub fn source_org(&self) -> &str {
        &self.manifest.source
    }

    pub fn id(&self) -> &str {
        &self.manifest.delivery
    }

    /// Open a declared file for streaming: only a regular file directly inside the
    /// delivery, at most `max_bytes`. `Err` is the reason the whole delivery is rejected.
    /// The caller reads it and then calls [`VerifiedReader::verify`].
    pub fn open_verified(&self, declared: &ManifestFile, max_bytes: u64) -> Result<VerifiedReader, Quarantined> {
        if !plain_name(&declared.name) {
            return Err(Quarantined::file(
                &declared.name,
                Reason::InvalidManifest,
                "file names must be plain names inside the delivery",
            ));
        }
        if declared.bytes > max_bytes {
            let f = FileFault::TooLarge { cap: max_bytes };
            return Err(Quarantined::file(&declared.name, f.reason(), f.detail("the file")));
        }
        let file = open_regular(&self.dir.join(&declared.name), max_bytes)
            .map_err(|f| Quarantined::file(&declared.name, f.reason(), f.detail("the file")))?;
        Ok(VerifiedReader {
            file,
            hasher: Sha256::new(),
            read: 0,
            cap: max_bytes,
            over_cap: false,
            error: None,
        })
    }

    /// Read a declared file whole and verify its size and hash (tests and small files).
    pub fn read_verified(&self, declared: &ManifestFile, max_bytes: u64) -> Result<Vec<u8>, Quarantined> {
        let mut reader = self.open_verified(declared, max_bytes)?;
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        reader.verify(declared)?;
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
