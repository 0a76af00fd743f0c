//! Where the log lives in object storage: one object per entry, `audit/<seq>.json` with
//! seq as 20 digits, and `audit/HEAD` naming the newest.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use poplar_loaders::Store;

use super::Head;
use crate::EngineError;

/// The log's folder under the store root.
pub const AUDIT_DIR: &str = "audit";
pub(super) const HEAD: &str = "HEAD";
/// Entries read at once from the store.
const READ_AHEAD: usize = 16;
/// Digits of seq in an entry's object name (zero-padded, so names sort in seq order).
const SEQ_DIGITS: usize = 20;

pub(super) fn audit_dir(store: &Store) -> Result<(Arc<dyn ObjectStore>, ObjectPath), EngineError> {
    let (objects, root) = store.object_store()?;
    Ok((objects, root.join(AUDIT_DIR)))
}

pub(super) fn entry_path(dir: &ObjectPath, seq: u64) -> ObjectPath {
    dir.clone().join(format!("{seq:0width$}.json", width = SEQ_DIGITS))
}

pub(super) fn seq_of(location: &ObjectPath) -> Option<u64> {
    let name = location.filename()?.strip_suffix(".json")?;
    if name.len() == SEQ_DIGITS && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

pub(super) async fn read_head(objects: &dyn ObjectStore, dir: &ObjectPath) -> Result<Option<Head>, EngineError> {
    match objects.get(&dir.clone().join(HEAD)).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::Audit(format!("{AUDIT_DIR}/{HEAD} is unreadable: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn write_head(objects: &dyn ObjectStore, dir: &ObjectPath, head: &Head) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec(head).map_err(|e| EngineError::Audit(format!("cannot encode HEAD: {e}")))?;
    objects.put(&dir.clone().join(HEAD), bytes.into()).await?;
    Ok(())
}

/// The entries with seq `from` or later, in seq order, as stored.
pub(super) async fn read_entries(
    objects: &dyn ObjectStore,
    dir: &ObjectPath,
    from: u64,
) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
    let listing = match from.checked_sub(1) {
        Some(before) => objects.list_with_offset(Some(dir), &entry_path(dir, before)),
        None => objects.list(Some(dir)),
    };
    let mut found: Vec<(u64, ObjectPath)> = listing
        .try_filter_map(|meta| async move {
            Ok(seq_of(&meta.location)
                .filter(|seq| *seq >= from)
                .map(|seq| (seq, meta.location)))
        })
        .try_collect()
        .await?;
    // Listings are not ordered on every store.
    found.sort_unstable_by_key(|(seq, _)| *seq);
    let reads = found.into_iter().map(|(seq, path)| async move {
        let bytes = objects.get(&path).await?.bytes().await?.to_vec();
        Ok::<_, EngineError>((seq, bytes))
    });
    futures::stream::iter(reads).buffered(READ_AHEAD).try_collect().await
}
