//! Where studies live in object storage, beside the tables and the audit log:
//!
//! - `studies/log/<study>/<seq, 8 digits>.json`: one object per event, written with
//!   `PutMode::Create`. An event is never overwritten, and two writers racing for the same
//!   seq cannot both win: the loser is told the study changed and reads it again. A crash
//!   leaves a study at its last whole event.
//! - `studies/outputs/<sha256>.arrows`: each held output, an Arrow IPC stream named by its
//!   own SHA-256 (so the name proves the bytes, and the same output is stored once).
//!
//! A server reads every study at start; the `studies` and `study_runs` tables read them
//! afresh on every scan.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use poplar_loaders::Store;
use sha2::{Digest, Sha256};

use super::model::{Recorded, Study};
use crate::EngineError;

/// The studies' folder under the store root.
pub const STUDIES_DIR: &str = "studies";
const LOG: &str = "log";
const OUTPUTS: &str = "outputs";
const SEQ_DIGITS: usize = 8;

#[derive(Clone)]
pub struct StudyStore {
    objects: Arc<dyn ObjectStore>,
    root: ObjectPath,
}

impl std::fmt::Debug for StudyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudyStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: &ObjectPath, e: impl std::fmt::Display) -> EngineError {
    EngineError::Server(format!("studies: {what} is unreadable: {e}"))
}

impl StudyStore {
    pub fn new(store: &Store) -> Result<Self, EngineError> {
        let (objects, root) = store.object_store()?;
        Ok(Self {
            objects,
            root: root.join(STUDIES_DIR),
        })
    }

    fn event_path(&self, study: &str, seq: u64) -> ObjectPath {
        self.root
            .clone()
            .join(LOG)
            .join(study)
            .join(format!("{seq:0width$}.json", width = SEQ_DIGITS))
    }

    fn output_path(&self, sha256: &str) -> ObjectPath {
        self.root.clone().join(OUTPUTS).join(format!("{sha256}.arrows"))
    }

    /// Record an event. Refused (and nothing written) if its seq is already taken: the
    /// study changed since it was read.
    pub async fn append(&self, recorded: &Recorded) -> Result<(), EngineError> {
        let bytes = serde_json::to_vec(recorded).map_err(|e| EngineError::Server(format!("encoding an event: {e}")))?;
        let put = self
            .objects
            .put_opts(
                &self.event_path(&recorded.study_id, recorded.seq),
                bytes.into(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(EngineError::InvalidRequest(
                "the study changed while this request was decided (another server?); try again".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every study, each its events folded in seq order.
    pub async fn load_all(&self) -> Result<Vec<Study>, EngineError> {
        let prefix = self.root.clone().join(LOG);
        let mut paths: Vec<ObjectPath> = self
            .objects
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        // Listings are not ordered on every store; zero-padded names sort by seq.
        paths.sort();
        let mut studies: Vec<Study> = Vec::new();
        for path in paths {
            let bytes = self.objects.get(&path).await?.bytes().await?;
            let recorded: Recorded = serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?;
            match studies.last_mut() {
                Some(study) if study.id == recorded.study_id => {
                    let expected = study.history.len() as u64;
                    if recorded.seq != expected {
                        return Err(corrupt(
                            &path,
                            format!("seq {} where {expected} was expected", recorded.seq),
                        ));
                    }
                    study.apply(&recorded);
                }
                _ => {
                    if recorded.seq != 0 {
                        return Err(corrupt(&path, "a study's first event is missing"));
                    }
                    studies.push(Study::start(&recorded)?);
                }
            }
        }
        Ok(studies)
    }

    /// Keep an output; returns its SHA-256 (hex).
    pub async fn put_output(&self, bytes: Vec<u8>) -> Result<String, EngineError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        self.objects.put(&self.output_path(&sha256), bytes.into()).await?;
        Ok(sha256)
    }

    /// An output's bytes, checked against the SHA-256 that names them.
    pub async fn get_output(&self, sha256: &str) -> Result<Vec<u8>, EngineError> {
        let path = self.output_path(sha256);
        let bytes = self.objects.get(&path).await?.bytes().await?.to_vec();
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(corrupt(&path, "its content does not match its SHA-256"));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studies::model::{Event, Submission};
    use chrono::Utc;

    fn submitted(study: &str) -> Recorded {
        Recorded {
            study_id: study.into(),
            seq: 0,
            at: Utc::now(),
            by: "rae".into(),
            event: Event::Submitted(Submission {
                title: "t".into(),
                purpose: "p".into(),
                outputs: "o".into(),
                sql: "SELECT 1".into(),
                parameters: vec![],
                approvals_required: 1,
            }),
        }
    }

    #[tokio::test]
    async fn events_persist_once_per_seq_and_outputs_by_their_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::parse(&dir.path().display().to_string()).expect("store");
        let studies = StudyStore::new(&store).expect("studies");
        studies.append(&submitted("s2")).await.expect("s2");
        studies.append(&submitted("s1")).await.expect("s1");
        let again = studies.append(&submitted("s1")).await.expect_err("seq taken");
        assert!(matches!(again, EngineError::InvalidRequest(_)), "{again}");
        let mut withdrawn = submitted("s1");
        withdrawn.seq = 1;
        withdrawn.event = Event::Withdrawn { reason: "done".into() };
        studies.append(&withdrawn).await.expect("withdraw");
        // Reopened: both studies, in id order, with their histories.
        let loaded = StudyStore::new(&store).expect("again").load_all().await.expect("load");
        let ids: Vec<&str> = loaded.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2"]);
        assert_eq!(loaded[0].history.len(), 2);
        assert_eq!(loaded[0].phase, crate::studies::model::Phase::Withdrawn);

        let sha = studies.put_output(b"arrow bytes".to_vec()).await.expect("put");
        assert_eq!(studies.get_output(&sha).await.expect("get"), b"arrow bytes");
        let (objects, root) = store.object_store().expect("objects");
        let path = root.join(STUDIES_DIR).join(OUTPUTS).join(format!("{sha}.arrows"));
        objects.put(&path, b"tampered".to_vec().into()).await.expect("tamper");
        assert!(studies.get_output(&sha).await.is_err(), "a changed output is refused");
    }
}
