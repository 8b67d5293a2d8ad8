//! The Raft log and vote, stored in redb. The vote is written durably before `save_vote`
//! returns; log writes go through the log writer (`log_writer`, a thread of its own), and
//! openraft hears an append is done only once its transaction is durable (fsync). The file
//! grows with zeros written, not holes (`zero_filled_file`), which keeps each fsync short.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use crate::zero_filled_file::ZeroFilledFile;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::disk_io::DiskIo;
use crate::log_writer::{self, EncodedEntry, Tail, WriteOp, WriteQueue};
use crate::recent_entries::RecentEntries;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Log entries by index, as JSON.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// `vote`, `committed`, `last_purged`, and the snapshot, as JSON.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// Wraps any redb or codec failure as an openraft storage error about `subject`.
pub(crate) fn storage_err<E: std::error::Error + 'static>(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
) -> impl FnOnce(E) -> StorageError {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Opens (creating when missing) the database and its tables.
pub fn open_database(path: &std::path::Path) -> Result<Arc<Database>, redb::Error> {
    let db = Database::builder().create_with_backend(ZeroFilledFile::open(path)?)?;
    let tx = db.begin_write()?;
    tx.open_table(LOG)?;
    tx.open_table(META)?;
    tx.commit()?;
    Ok(Arc::new(db))
}

/// Reads one JSON value from the meta table.
pub(crate) fn read_meta<T: DeserializeOwned>(
    db: &Database,
    key: &str,
    subject: ErrorSubject<u64>,
) -> Result<Option<T>, StorageError> {
    let err = || storage_err::<redb::Error>(subject.clone(), ErrorVerb::Read);
    let rx = db.begin_read().map_err(|e| err()(e.into()))?;
    let t = rx.open_table(META).map_err(|e| err()(e.into()))?;
    let Some(v) = t.get(key).map_err(|e| err()(e.into()))? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(storage_err(subject.clone(), ErrorVerb::Read))
}

/// Writes one JSON value to the meta table, durably.
pub(crate) fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    subject: ErrorSubject<u64>,
) -> Result<(), StorageError> {
    let bytes =
        serde_json::to_vec(value).map_err(storage_err(subject.clone(), ErrorVerb::Write))?;
    let err = || storage_err::<redb::Error>(subject.clone(), ErrorVerb::Write);
    let tx = db.begin_write().map_err(|e| err()(e.into()))?;
    {
        let mut t = tx.open_table(META).map_err(|e| err()(e.into()))?;
        t.insert(key, bytes.as_slice())
            .map_err(|e| err()(e.into()))?;
    }
    tx.commit().map_err(|e| err()(e.into()))
}

/// The log store handed to openraft (cheap to clone: it shares the database, the queue of
/// the writer task and the not-yet-durable tail).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    tail: Arc<Mutex<Tail>>,
    writes: WriteQueue,
    recent: Arc<RecentEntries>,
}

impl LogStore {
    /// Opens the store and starts its writer (a task needs a tokio runtime).
    pub fn new(db: Arc<Database>, writer: DiskIo) -> std::io::Result<Self> {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let writes = log_writer::start(db.clone(), tail.clone(), writer)?;
        Ok(LogStore {
            db,
            tail,
            writes,
            recent: Arc::default(),
        })
    }

    /// The newest entries in memory, shared with the network (which sends their encodings).
    pub fn recent(&self) -> Arc<RecentEntries> {
        self.recent.clone()
    }

    fn queue(&self, op: WriteOp) -> Result<(), StorageError> {
        self.writes.send(op).map_err(|_| {
            storage_err(ErrorSubject::Logs, ErrorVerb::Write)(std::io::Error::other(
                "the Raft log writer has stopped",
            ))
        })
    }

    /// Waits until every write queued so far is durable.
    async fn flush(&self) -> Result<(), StorageError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue(WriteOp::Barrier(done))?;
        wait.await.map_err(|_| {
            storage_err(ErrorSubject::Logs, ErrorVerb::Write)(std::io::Error::other(
                "the Raft log writer stopped before flushing",
            ))
        })
    }

    fn logs_err(verb: ErrorVerb) -> impl FnOnce(redb::Error) -> StorageError {
        storage_err(ErrorSubject::Logs, verb)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let err = || Self::logs_err(ErrorVerb::Read);
        let rx = self.db.begin_read().map_err(|e| err()(e.into()))?;
        let t = rx.open_table(LOG).map_err(|e| err()(e.into()))?;
        let Some((_, v)) = t.last().map_err(|e| err()(e.into()))? else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(v.value())
            .map_err(storage_err(ErrorSubject::Logs, ErrorVerb::Read))?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let first = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let last = match range.end_bound() {
            Bound::Included(&e) => Some(e),
            Bound::Excluded(&e) => match e.checked_sub(1) {
                Some(e) => Some(e),
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => None,
        };
        // The newest entries come decoded from memory; only older ones are read and decoded.
        let (read_until, cached) = match last {
            Some(last) if last < first => return Ok(Vec::new()),
            Some(last) => {
                let (from, cached) = self.recent.suffix(first, last);
                (Bound::Excluded(from), cached)
            }
            None => (Bound::Unbounded, Vec::new()),
        };
        let mut out = match read_until {
            Bound::Excluded(from) if from <= first => Vec::new(),
            end => self.read_stored_or_pending(Bound::Included(first), end)?,
        };
        out.extend(cached);
        Ok(out)
    }
}

impl LogStore {
    /// Entries in `start..end` (not empty) from the not-yet-durable tail or the table.
    fn read_stored_or_pending(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        let err = || Self::logs_err(ErrorVerb::Read);
        let decode = |bytes: &[u8]| -> Result<Entry, StorageError> {
            serde_json::from_slice(bytes).map_err(storage_err(ErrorSubject::Logs, ErrorVerb::Read))
        };
        // The tail first, then the table: an entry that leaves the tail between the two reads
        // has been committed before the table is read, so it is found there.
        let (pending, hidden_from) = {
            let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            let pending: Vec<(u64, EncodedEntry)> = tail
                .entries
                .range((start, end))
                .map(|(i, e)| (*i, e.clone()))
                .collect();
            (pending, tail.hidden_from())
        };
        let rx = self.db.begin_read().map_err(|e| err()(e.into()))?;
        let t = rx.open_table(LOG).map_err(|e| err()(e.into()))?;
        let mut out = Vec::new();
        let first_pending = pending.first().map(|(i, _)| *i);
        let stored_below = match (first_pending, hidden_from) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(u64::MAX),
        };
        for item in t.range::<u64>((start, end)).map_err(|e| err()(e.into()))? {
            let (k, v) = item.map_err(|e| err()(e.into()))?;
            if k.value() >= stored_below {
                break;
            }
            out.push(decode(v.value())?);
        }
        for (_, e) in pending {
            out.push(decode(&e.bytes)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.flush().await?;
        let last_purged_log_id: Option<LogId> =
            read_meta(&self.db, "last_purged", ErrorSubject::Logs)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        write_meta(&self.db, "vote", vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_meta(&self.db, "vote", ErrorSubject::Vote)
    }

    // `save_committed`/`read_committed` keep openraft's defaults (not stored): storing the commit
    // point cost an fsync'd write per commit on every server (4,400 -> 2,600 writes/s). After a
    // restart the state machine catches up from the log once the leader knows the commit point;
    // reads wait for it (`Replica::read_barrier`).

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            // A follower stores the encoding the leader sent, a leader the one it makes here
            // (and puts on the wire later).
            let bytes = match self.recent.take_offered(&entry.log_id) {
                Some(b) => b,
                None => serde_json::to_vec(&entry)
                    .map_err(storage_err(ErrorSubject::Logs, ErrorVerb::Write))?
                    .into(),
            };
            encoded.push((
                entry.log_id.index,
                EncodedEntry {
                    log_id: entry.log_id,
                    bytes: bytes.clone(),
                },
            ));
            self.recent.insert(entry, bytes);
        }
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            for (index, e) in &encoded {
                tail.entries.insert(*index, e.clone());
            }
        }
        self.queue(WriteOp::Append {
            entries: encoded,
            callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            tail.entries.retain(|i, _| *i < log_id.index);
            tail.truncations.push(log_id.index);
        }
        self.recent.remove_from(log_id.index);
        self.queue(WriteOp::Truncate { from: log_id.index })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let encoded = serde_json::to_vec(&log_id)
            .map_err(storage_err(ErrorSubject::Logs, ErrorVerb::Write))?;
        self.recent.remove_upto(log_id.index);
        self.queue(WriteOp::Purge {
            upto: log_id,
            encoded,
        })
    }
}
