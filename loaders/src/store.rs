//! Where Poplar's tables live: a root URL in object storage (`file://` by default,
//! `s3://bucket/prefix` with the usual `AWS_*` variables), one Delta table per directory.
//!
//! Every byte goes through `object_store`: Delta's own local-file support for `file://`,
//! and for `s3://` an `AmazonS3` store built here from the environment, so that Poplar does
//! not need the AWS SDK (deltalake's `s3` feature) just to talk S3.

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;
use url::Url;

use crate::LoaderError;
use crate::tables::Table;

/// Make every file and directory this process creates from now on private to its user
/// (0600 and 0700) on unix: landed tables, the ledger and logs hold pseudonymised health
/// records, and the default umask would leave them readable by every local account.
/// Process-wide by nature; the loader's commands call it before writing anything.
pub fn private_files() {
    #[cfg(unix)]
    {
        use nix::sys::stat::{Mode, umask};
        umask(Mode::from_bits_truncate(0o077));
    }
}

/// Create a local directory (and its parents) private to this user, and tighten it if it
/// already exists, so that nothing under a local store root is reachable by others.
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(path)
}

/// The root of Poplar's landed data.
#[derive(Debug, Clone)]
pub struct Store {
    root: Url,
}

impl Store {
    /// Parse `--store`: a `file://` or `s3://` URL, or a plain directory path (made absolute
    /// and created). Registers the S3 handlers on first use.
    pub fn parse(raw: &str) -> Result<Self, LoaderError> {
        register_s3_handlers();
        let bad = |reason: String| LoaderError::StoreUrl {
            url: raw.to_string(),
            reason,
        };
        let url = match Url::parse(raw) {
            Ok(url) if url.scheme() == "file" || url.scheme() == "s3" => url,
            Ok(url) if url.scheme().len() > 1 => {
                return Err(bad(format!(
                    "scheme {}:// is not supported (use file:// or s3://)",
                    url.scheme()
                )));
            }
            // A bare path (or a Windows drive letter parsed as a scheme).
            _ => {
                let path = std::path::Path::new(raw);
                create_private_dir(path).map_err(|e| LoaderError::io(path, e))?;
                let absolute = path.canonicalize().map_err(|e| LoaderError::io(path, e))?;
                Url::from_directory_path(&absolute).map_err(|()| bad("not an absolute directory".into()))?
            }
        };
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| bad("not a local path".into()))?;
            create_private_dir(&path).map_err(|e| LoaderError::io(&path, e))?;
        }
        if url.scheme() == "s3" && url.host_str().unwrap_or_default().is_empty() {
            return Err(bad("an s3:// URL needs a bucket".into()));
        }
        let mut root = url;
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn table_url(&self, table: Table) -> Result<Url, LoaderError> {
        self.root
            .join(&format!("{}/", table.name()))
            .map_err(|e| LoaderError::StoreUrl {
                url: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// The object store holding the root, and the root's path inside it, for Poplar's own
    /// objects beside the tables (the audit log). Built by the same factories Delta uses:
    /// `object_store`'s local files for `file://`, [`S3StoreFactory`] for `s3://`.
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath), LoaderError> {
        let bad = |reason: String| LoaderError::StoreUrl {
            url: self.root.to_string(),
            reason,
        };
        let scheme = Url::parse(&format!("{}://", self.root.scheme())).map_err(|e| bad(e.to_string()))?;
        let factory = object_store_factories()
            .get(&scheme)
            .map(|entry| Arc::clone(entry.value()))
            .ok_or_else(|| bad(format!("no object store for {}://", self.root.scheme())))?;
        factory
            .parse_url_opts(&self.root, &StorageConfig::default())
            .map_err(|e| bad(e.to_string()))
    }

    fn builder(&self, table: Table) -> Result<DeltaTableBuilder, LoaderError> {
        let url = self.table_url(table)?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            create_private_dir(&path).map_err(|e| LoaderError::io(&path, e))?;
        }
        DeltaTableBuilder::from_url(url).map_err(|e| LoaderError::delta(table.name(), e))
    }

    /// The table at its newest version, or `None` if it has never been written.
    pub async fn open(&self, table: Table) -> Result<Option<DeltaTable>, LoaderError> {
        let mut t = self
            .builder(table)?
            .build()
            .map_err(|e| LoaderError::delta(table.name(), e))?;
        match t.load().await {
            Ok(()) => Ok(Some(t)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(LoaderError::delta(table.name(), e)),
        }
    }

    /// The table as of `version`.
    pub async fn open_at(&self, table: Table, version: u64) -> Result<DeltaTable, LoaderError> {
        self.builder(table)?
            .with_version(version)
            .load()
            .await
            .map_err(|e| LoaderError::delta(table.name(), e))
    }

    /// An unloaded handle, for creating the table on first write.
    pub fn handle(&self, table: Table) -> Result<DeltaTable, LoaderError> {
        self.builder(table)?
            .build()
            .map_err(|e| LoaderError::delta(table.name(), e))
    }
}

struct S3StoreFactory;

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, ObjectPath)> {
        // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP…
        let mut builder = AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .with_retry(retry_policy());
        for (key, value) in &config.raw {
            if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder.build()?;
        let path = ObjectPath::from_url_path(url.path())?;
        Ok((Arc::new(store), path))
    }
}

/// How long an S3 request keeps trying. object_store's default (10 retries, jittered
/// backoff from 100 ms growing by at most 2×) gave up after about 2.4 s when the server
/// refused connections — shorter than an S3 server takes to restart, so a load failed
/// that a few more seconds would have saved. Poplar's rides out about a minute (each wait
/// drawn from 0.5 s to 3× the last, at most 15 s) and stops at two minutes whatever
/// happens; a query's own time limit still cancels it sooner.
fn retry_policy() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            base: 3.0,
        },
        max_retries: 12,
        retry_timeout: Duration::from_secs(120),
    }
}

struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // Commits use put-if-absent (`PutMode::Create`, S3's `If-None-Match: *`). Poplar has
        // one loader writing at a time, so a store that ignores the header is still safe.
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_s3_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            object_store_factories().insert(scheme.clone(), Arc::new(S3StoreFactory));
            logstore_factories().insert(scheme, Arc::new(S3LogStoreFactory));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls_and_other_schemes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("data").display().to_string()).expect("path");
        assert_eq!(store.root().scheme(), "file");
        assert!(store.root().path().ends_with("/data/"));
        let t = store.table_url(Table::ClinicalEvents).expect("url");
        assert!(t.path().ends_with("/data/clinical_events/"));
        assert!(Store::parse("gs://bucket/x").is_err());
        assert!(Store::parse("s3://bucket/prefix").is_ok());
    }

    #[tokio::test]
    async fn object_store_reaches_the_root() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("data").display().to_string()).expect("path");
        let (objects, root) = store.object_store().expect("object store");
        objects.put(&root.clone().join("probe"), "x".into()).await.expect("put");
        assert!(dir.path().join("data/probe").exists());
    }
}
