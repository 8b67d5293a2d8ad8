//! The Raft log's writer. `append` queues the entries, which are readable at once from
//! the in-memory [`Tail`], and returns; one dedicated OS thread commits everything queued since
//! its last commit in a single durable redb transaction, then tells openraft (`LogFlushed`)
//! (on a runtime task instead in the simulator, see [`DiskIo`]).
//!
//! The fsync runs on that thread, never on a tokio worker, so the agent's runtime workers
//! keep serving gossip, leases and the API while the disk works. openraft 0.9 waits for each
//! flush before it goes on (its core awaits the callback in `append_to_log`, also on the
//! leader, before it replicates), so a group is usually one append; a truncation or purge
//! queued behind it shares its transaction.
//!
//! Until their transaction commits, appended entries are served from the [`Tail`]; a queued
//! truncation hides the stored entries it will delete. Writes commit in the order they were
//! queued, so what survives a crash is always a prefix of what was acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::storage::LogFlushed;
use redb::Database;
use tokio::sync::{mpsc, oneshot};

use crate::disk_io::DiskIo;
use crate::log_store::{LOG, META};
use crate::types::{LogId, TypeConfig};

/// One log entry, encoded, with its id.
#[derive(Clone)]
pub(crate) struct EncodedEntry {
    pub log_id: LogId,
    pub bytes: Arc<[u8]>,
}

/// Log writes that are queued but not yet durable, as readers must see them.
#[derive(Default)]
pub(crate) struct Tail {
    /// Appended entries whose transaction has not committed, by index.
    pub entries: BTreeMap<u64, EncodedEntry>,
    /// Queued truncations (first index deleted), in queue order: readers skip stored entries
    /// from the smallest on.
    pub truncations: Vec<u64>,
}

impl Tail {
    /// Stored entries from this index on are about to be deleted.
    pub fn hidden_from(&self) -> Option<u64> {
        self.truncations.iter().copied().min()
    }
}

/// A write for the writer task, in log order.
pub(crate) enum WriteOp {
    Append {
        entries: Vec<(u64, EncodedEntry)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// Delete entries with index >= `from`.
    Truncate { from: u64 },
    /// Delete entries up to `upto.index` and remember `upto` as the last purged id.
    Purge { upto: LogId, encoded: Vec<u8> },
    /// Answered once everything queued before it is durable.
    Barrier(oneshot::Sender<()>),
}

/// Where appends and deletions are queued.
pub(crate) type WriteQueue = mpsc::UnboundedSender<WriteOp>;

/// Starts the writer; it ends when every sender of the queue is gone.
pub(crate) fn start(
    db: Arc<Database>,
    tail: Arc<Mutex<Tail>>,
    mode: DiskIo,
) -> std::io::Result<WriteQueue> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    match mode {
        DiskIo::Threads => {
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || {
                    while let Some(first) = rx.blocking_recv() {
                        let mut ops = vec![first];
                        while ops.len() < MAX_GROUP
                            && let Ok(op) = rx.try_recv()
                        {
                            ops.push(op);
                        }
                        write_group(&db, &tail, ops);
                    }
                })?;
        }
        DiskIo::Runtime => {
            tokio::spawn(async move {
                let mut ops = Vec::new();
                while rx.recv_many(&mut ops, MAX_GROUP).await > 0 {
                    write_group(&db, &tail, std::mem::take(&mut ops));
                }
            });
        }
    }
    Ok(tx)
}

/// How many queued writes one transaction takes at most.
const MAX_GROUP: usize = 1024;

/// Commits `ops` in one transaction and answers their waiters.
fn write_group(db: &Database, tail: &Mutex<Tail>, ops: Vec<WriteOp>) {
    let result = commit(db, &ops);
    finish(tail, ops, result);
}

/// Applies `ops` in order in one write transaction.
fn commit(db: &Database, ops: &[WriteOp]) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut log = tx.open_table(LOG)?;
        let mut meta = tx.open_table(META)?;
        for op in ops {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (index, e) in entries {
                        log.insert(*index, &*e.bytes)?;
                    }
                }
                WriteOp::Truncate { from } => {
                    log.retain_in(*from.., |_, _| false)?;
                }
                WriteOp::Purge { upto, encoded } => {
                    log.retain_in(..=upto.index, |_, _| false)?;
                    meta.insert("last_purged", encoded.as_slice())?;
                }
                WriteOp::Barrier(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// After a commit: drops what is now stored from the tail and answers every waiter.
fn finish(tail: &Mutex<Tail>, ops: Vec<WriteOp>, result: Result<(), redb::Error>) {
    if result.is_ok() {
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        for op in &ops {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (index, e) in entries {
                        // A later truncation may have replaced it with another entry.
                        if t.entries.get(index).is_some_and(|c| c.log_id == e.log_id) {
                            t.entries.remove(index);
                        }
                    }
                }
                WriteOp::Truncate { from } => {
                    if let Some(i) = t.truncations.iter().position(|f| f == from) {
                        t.truncations.remove(i);
                    }
                }
                WriteOp::Purge { .. } | WriteOp::Barrier(_) => {}
            }
        }
    }
    let error = result.err().map(|e| e.to_string());
    for op in ops {
        match op {
            WriteOp::Append { callback, .. } => callback.log_io_completed(match &error {
                None => Ok(()),
                Some(e) => Err(std::io::Error::other(e.clone())),
            }),
            WriteOp::Barrier(done) => {
                let _ = done.send(());
            }
            WriteOp::Truncate { .. } | WriteOp::Purge { .. } => {}
        }
    }
    if let Some(e) = error {
        tracing::error!(error = %e, "writing the Raft log failed");
    }
}
