//! Where the last snapshot is kept: its metadata as JSON and the serialized state as raw
//! bytes, two keys of the meta table written in one durable transaction.
//!
//! Earlier builds stored both under one `snapshot` key as a JSON document, which spelled the
//! state's bytes as a JSON array of numbers (3-4 bytes per byte: a 15 MB state became a
//! 55 MB commit). Such a snapshot is still read; the next one replaces it.

use openraft::{ErrorSubject, ErrorVerb};
use redb::{Database, ReadableDatabase};
use serde::Deserialize;

use crate::log_store::{META, storage_err};
use crate::types::{SnapshotMeta, StorageError};

const META_KEY: &str = "snapshot_meta";
const DATA_KEY: &str = "snapshot_data";
/// The single JSON document of earlier builds.
const LEGACY_KEY: &str = "snapshot";

/// The earlier builds' layout, read only.
#[derive(Deserialize)]
struct LegacySnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Stores `data` as the snapshot described by `meta`, durably, replacing any earlier one.
pub(crate) fn save(db: &Database, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
    let subject = ErrorSubject::Snapshot(Some(meta.signature()));
    let meta_json =
        serde_json::to_vec(meta).map_err(storage_err(subject.clone(), ErrorVerb::Write))?;
    let err = || storage_err::<redb::Error>(subject.clone(), ErrorVerb::Write);
    let tx = db.begin_write().map_err(|e| err()(e.into()))?;
    {
        let mut t = tx.open_table(META).map_err(|e| err()(e.into()))?;
        t.insert(META_KEY, meta_json.as_slice())
            .map_err(|e| err()(e.into()))?;
        t.insert(DATA_KEY, data).map_err(|e| err()(e.into()))?;
        t.remove(LEGACY_KEY).map_err(|e| err()(e.into()))?;
    }
    tx.commit().map_err(|e| err()(e.into()))
}

/// The stored snapshot, if there is one.
pub(crate) fn load(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    let subject = ErrorSubject::Snapshot(None);
    let err = || storage_err::<redb::Error>(subject.clone(), ErrorVerb::Read);
    let rx = db.begin_read().map_err(|e| err()(e.into()))?;
    let t = rx.open_table(META).map_err(|e| err()(e.into()))?;
    let decode_err = || storage_err::<serde_json::Error>(subject.clone(), ErrorVerb::Read);
    if let Some(meta) = t.get(META_KEY).map_err(|e| err()(e.into()))? {
        let meta: SnapshotMeta = serde_json::from_slice(meta.value()).map_err(decode_err())?;
        let data = t
            .get(DATA_KEY)
            .map_err(|e| err()(e.into()))?
            .map(|d| d.value().to_vec())
            .ok_or_else(|| {
                err()(redb::Error::Corrupted(format!(
                    "snapshot {} has its metadata stored but not its data",
                    meta.snapshot_id
                )))
            })?;
        return Ok(Some((meta, data)));
    }
    match t.get(LEGACY_KEY).map_err(|e| err()(e.into()))? {
        Some(v) => {
            let s: LegacySnapshot = serde_json::from_slice(v.value()).map_err(decode_err())?;
            Ok(Some((s.meta, s.data)))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::open_database;
    use crate::types::{LogId, StoredMembership};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 7), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-7-{index}"),
        }
    }

    fn temp_db(name: &str) -> (std::path::PathBuf, std::sync::Arc<Database>) {
        let dir = std::env::temp_dir().join(format!("buoy-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = open_database(&dir.join("raft.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn a_snapshot_is_stored_as_raw_bytes_and_read_back() {
        let (dir, db) = temp_db("raw");
        assert!(load(&db).unwrap().is_none());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        save(&db, &meta(10), &data).unwrap();
        let (m, d) = load(&db).unwrap().unwrap();
        assert_eq!(m, meta(10));
        assert_eq!(d, data);
        // Raw: the file holds about the data's size, not a JSON array of numbers (3-4x).
        let rx = db.begin_read().unwrap();
        let t = rx.open_table(META).unwrap();
        assert_eq!(t.get(DATA_KEY).unwrap().unwrap().value().len(), data.len());
        drop((t, rx, db));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_of_the_earlier_layout_is_read_and_then_replaced() {
        let (dir, db) = temp_db("legacy");
        let legacy = serde_json::json!({"meta": meta(5), "data": [1, 2, 3]});
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert(LEGACY_KEY, serde_json::to_vec(&legacy).unwrap().as_slice())
            .unwrap();
        tx.commit().unwrap();
        let (m, d) = load(&db).unwrap().unwrap();
        assert_eq!((m, d), (meta(5), vec![1, 2, 3]));

        save(&db, &meta(9), b"newer").unwrap();
        let (m, d) = load(&db).unwrap().unwrap();
        assert_eq!((m, d), (meta(9), b"newer".to_vec()));
        let rx = db.begin_read().unwrap();
        let t = rx.open_table(META).unwrap();
        assert!(t.get(LEGACY_KEY).unwrap().is_none(), "the old key is gone");
        drop((t, rx, db));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
