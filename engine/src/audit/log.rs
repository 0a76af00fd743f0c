//! Appending to the log and reading it back. Appends are serialized within a process and
//! race-safe across processes (`PutMode::Create`: a second writer that loses a seq steps
//! over the winner's entries and takes the next).

use std::fmt;
use std::sync::Arc;

use chrono::Utc;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use poplar_loaders::Store;
use tokio::sync::Mutex;

use super::chain::{GENESIS_HASH, check, check_from, parse, seal};
use super::store::{audit_dir, entry_path, read_entries, read_head, write_head};
use super::{AuditEntry, AuditRecord, Head, VerifyReport};
use crate::EngineError;

/// Other writers' entries to step over before an append gives up.
const MAX_RACES: usize = 64;

/// The next seq and the hash it will chain from.
struct Tail {
    next_seq: u64,
    prev_hash: String,
}

/// The log, open for appending. Share it (`Arc<AuditLog>`) between tasks: appends are
/// serialized, each gets the next seq.
pub struct AuditLog {
    objects: Arc<dyn ObjectStore>,
    dir: ObjectPath,
    tail: Mutex<Tail>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log under `store`'s root (creating nothing until the first append). Checks
    /// the tail — from the entry HEAD names to the end — and refuses to continue a chain that
    /// fails, so a cut tail is never papered over by new entries.
    pub async fn open(store: &Store) -> Result<Self, EngineError> {
        let (objects, dir) = audit_dir(store)?;
        let head = read_head(objects.as_ref(), &dir).await?;
        let start = head.as_ref().map_or(0, |h| h.seq);
        let items = read_entries(objects.as_ref(), &dir, start).await?;
        let checked = check(start, items, head.as_ref());
        if !checked.problems.is_empty() {
            // The tail alone cannot say where the damage starts: check the whole log.
            let all = check(0, read_entries(objects.as_ref(), &dir, 0).await?, head.as_ref());
            let problem = all
                .problems
                .first()
                .or(checked.problems.first())
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(EngineError::Audit(format!(
                "refusing to continue a log that fails verification at {problem} (run `poplar audit verify`)"
            )));
        }
        let tail = match checked.last {
            Some(last) => Tail {
                next_seq: last.seq + 1,
                prev_hash: last.hash,
            },
            None => Tail {
                next_seq: 0,
                prev_hash: GENESIS_HASH.to_string(),
            },
        };
        Ok(Self {
            objects,
            dir,
            tail: Mutex::new(tail),
        })
    }

    /// Appends `record` as the next entry and moves HEAD to it. If another writer took the
    /// seq first, reads its entries (checking their links) and tries the next seq.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, EngineError> {
        let mut tail = self.tail.lock().await;
        for _ in 0..MAX_RACES {
            let entry = seal(&record, tail.next_seq, &tail.prev_hash, Utc::now())?;
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| EngineError::Audit(format!("cannot encode entry: {e}")))?;
            let path = entry_path(&self.dir, entry.seq);
            let put = self
                .objects
                .put_opts(&path, bytes.clone().into(), PutOptions::from(PutMode::Create))
                .await;
            // The object store's client retries a put whose reply was lost (the server
            // restarted mid-reply, say), and the retry finds the entry its first try wrote:
            // that entry is this one, not another writer's, and must not be appended twice.
            let put = match put {
                Err(object_store::Error::AlreadyExists { .. }) if self.holds(&path, &bytes).await? => Ok(()),
                other => other.map(drop),
            };
            match put {
                Ok(()) => {
                    tail.next_seq = entry.seq + 1;
                    tail.prev_hash = entry.hash.clone();
                    // HEAD may lag after a failure here; verify accepts a HEAD that names
                    // an earlier entry correctly, so the entry stands.
                    if let Err(e) = write_head(
                        self.objects.as_ref(),
                        &self.dir,
                        &Head {
                            seq: entry.seq,
                            hash: entry.hash.clone(),
                        },
                    )
                    .await
                    {
                        tracing::warn!(seq = entry.seq, "audit HEAD not updated: {e}");
                    }
                    return Ok(entry);
                }
                Err(object_store::Error::AlreadyExists { .. }) => self.catch_up(&mut tail).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Audit(format!(
            "gave up appending after {MAX_RACES} other writers took the next seq"
        )))
    }

    /// Whether the object at `path` is exactly `bytes`. Another writer's entry at the same
    /// seq would have to carry the very same record, link and seal time (to the
    /// millisecond) to match, and then it says what this one says.
    async fn holds(&self, path: &ObjectPath, bytes: &[u8]) -> Result<bool, EngineError> {
        match self.objects.get(path).await {
            Ok(got) => Ok(got.bytes().await?.as_ref() == bytes),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Steps the tail over entries other writers appended.
    async fn catch_up(&self, tail: &mut Tail) -> Result<(), EngineError> {
        loop {
            let bytes = match self.objects.get(&entry_path(&self.dir, tail.next_seq)).await {
                Ok(got) => got.bytes().await?.to_vec(),
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let checked = check_from(
                tail.next_seq,
                Some(tail.prev_hash.clone()),
                vec![(tail.next_seq, bytes)],
            );
            if let Some(problem) = checked.problems.first() {
                return Err(EngineError::Audit(format!(
                    "another writer's entry fails verification at {problem}"
                )));
            }
            if let Some(last) = checked.last {
                tail.next_seq = last.seq + 1;
                tail.prev_hash = last.hash;
            }
        }
    }
}

/// Reads and checks the whole log: every entry's hash and link, gaps, and the tail against
/// HEAD.
pub async fn verify(store: &Store) -> Result<VerifyReport, EngineError> {
    let (objects, dir) = audit_dir(store)?;
    let head = read_head(objects.as_ref(), &dir).await?;
    let items = read_entries(objects.as_ref(), &dir, 0).await?;
    let checked = check(0, items, head.as_ref());
    Ok(VerifyReport {
        entries_checked: checked.entries.len() as u64,
        last: checked.last,
        head,
        problems: checked.problems,
    })
}

/// Every entry, in seq order (read, not verified: see [`verify`]).
pub async fn entries(store: &Store) -> Result<Vec<AuditEntry>, EngineError> {
    let (objects, dir) = audit_dir(store)?;
    let items = read_entries(objects.as_ref(), &dir, 0).await?;
    items
        .into_iter()
        .map(|(seq, bytes)| {
            parse(&bytes)
                .map(|(entry, _)| entry)
                .map_err(|e| EngineError::Audit(format!("seq {seq}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sample_record as record;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().join("store").display().to_string()).expect("store");
        (dir, store)
    }

    #[tokio::test]
    async fn the_chain_continues_across_reopening() {
        let (_dir, store) = temp_store();
        let log = AuditLog::open(&store).await.expect("open");
        let first = log.append(record(1)).await.expect("append");
        assert_eq!((first.seq, first.prev_hash.as_str()), (0, GENESIS_HASH));
        let second = log.append(record(2)).await.expect("append");
        assert_eq!(second.prev_hash, first.hash);
        drop(log);

        let log = AuditLog::open(&store).await.expect("reopen");
        let third = log.append(record(3)).await.expect("append");
        assert_eq!((third.seq, &third.prev_hash), (2, &second.hash));
        let read = entries(&store).await.expect("entries");
        assert_eq!(read, vec![first, second, third.clone()]);
        let report = verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries_checked, 3);
        assert_eq!(
            report.head,
            Some(Head {
                seq: 2,
                hash: third.hash
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_distinct_contiguous_seqs() {
        let (_dir, store) = temp_store();
        let log = Arc::new(AuditLog::open(&store).await.expect("open"));
        let tasks: Vec<_> = (0..40)
            .map(|n| {
                let log = Arc::clone(&log);
                tokio::spawn(async move { log.append(record(n)).await.expect("append").seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.expect("join"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..40).collect::<Vec<_>>());
        let report = verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.entries_checked, 40);
    }

    /// A store whose first create-put lands and then reports that the object exists, as an
    /// S3 client does when the reply to its put was lost and its retry finds the object.
    #[derive(Debug)]
    struct LostReply {
        inner: Arc<dyn ObjectStore>,
        lost: std::sync::atomic::AtomicBool,
    }

    impl fmt::Display for LostReply {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "LostReply({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for LostReply {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: object_store::PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            let done = self.inner.put_opts(location, payload, opts).await?;
            match self.lost.swap(false, std::sync::atomic::Ordering::SeqCst) {
                true => Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "the retry found the object".into(),
                }),
                false => Ok(done),
            }
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn an_append_whose_reply_was_lost_is_written_once() {
        let (_dir, store) = temp_store();
        let opened = AuditLog::open(&store).await.expect("open");
        let faulty = Arc::new(LostReply {
            inner: opened.objects.clone(),
            lost: std::sync::atomic::AtomicBool::new(false),
        });
        let log = AuditLog {
            objects: faulty.clone(),
            dir: opened.dir.clone(),
            tail: Mutex::new(Tail {
                next_seq: 0,
                prev_hash: GENESIS_HASH.to_string(),
            }),
        };
        let first = log.append(record(1)).await.expect("append");
        faulty.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        let second = log.append(record(2)).await.expect("append");
        assert_eq!(second.seq, 1, "the entry its lost reply wrote is this append's");
        let third = log.append(record(3)).await.expect("append");
        assert_eq!(third.seq, 2);
        let read = entries(&store).await.expect("entries");
        assert_eq!(read, vec![first, second, third]);
        assert!(verify(&store).await.expect("verify").is_ok());
    }

    #[tokio::test]
    async fn a_second_writer_steps_over_the_first_writers_entries() {
        let (_dir, store) = temp_store();
        let a = AuditLog::open(&store).await.expect("open a");
        let b = AuditLog::open(&store).await.expect("open b");
        a.append(record(1)).await.expect("a");
        a.append(record(2)).await.expect("a");
        let from_b = b.append(record(3)).await.expect("b retries");
        assert_eq!(from_b.seq, 2);
        assert!(verify(&store).await.expect("verify").is_ok());
    }
}
