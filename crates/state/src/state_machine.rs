//! Applies committed commands to the in-memory [`ClusterState`], publishes each change, and
//! keeps snapshots in redb. On restart the state comes back from the last snapshot plus the
//! committed log after it (openraft replays it).

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use redb::Database;
use tokio::sync::broadcast;

use crate::disk_io::DiskIo;
use crate::log_store::storage_err;
use crate::snapshot_store;
use crate::types::{
    Applied, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use model::cluster_state::ClusterState;
use model::command::Change;

/// How many recent changes are kept for `GET /v1/events?since=`.
pub const RECENT_CHANGES: usize = 10_000;

/// The state and its change feed, shared with the API (which reads them).
pub struct SharedState {
    state: RwLock<ClusterState>,
    recent: Mutex<Recent>,
    changes: broadcast::Sender<Change>,
}

/// The last changes, and the log index up to which history is no longer complete (changes
/// dropped for room, or folded into a snapshot this server loaded).
#[derive(Default)]
struct Recent {
    floor: u64,
    items: VecDeque<Change>,
}

impl SharedState {
    fn new() -> Self {
        SharedState {
            state: RwLock::new(ClusterState::default()),
            recent: Mutex::new(Recent::default()),
            changes: broadcast::channel(4096).0,
        }
    }

    /// Runs `f` on the current state (as applied on this server).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        match self.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Changes after log index `since` that are still kept, oldest first; `None` when some
    /// of them have already been dropped (the caller must re-read the full state).
    pub fn changes_since(&self, since: u64) -> Option<Vec<Change>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if since < recent.floor {
            return None;
        }
        Some(
            recent
                .items
                .iter()
                .filter(|c| c.index > since)
                .cloned()
                .collect(),
        )
    }

    /// Live changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn publish(&self, change: Change) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.items.len() == RECENT_CHANGES
            && let Some(old) = recent.items.pop_front()
        {
            recent.floor = old.index;
        }
        recent.items.push_back(change.clone());
        drop(recent);
        let _ = self.changes.send(change);
    }
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SharedState>,
    applied: Arc<Mutex<(Option<LogId>, StoredMembership)>>,
    db: Arc<Database>,
    disk_io: DiskIo,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot if there is one.
    pub fn open(db: Arc<Database>, disk_io: DiskIo) -> Result<Self, StorageError> {
        let sm = StateMachineStore {
            shared: Arc::new(SharedState::new()),
            applied: Arc::new(Mutex::new((None, StoredMembership::default()))),
            db,
            disk_io,
        };
        if let Some((meta, data)) = snapshot_store::load(&sm.db)? {
            sm.restore(&meta, &data)?;
        }
        Ok(sm)
    }

    /// The state and change feed, for readers.
    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn restore(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let state = ClusterState::from_bytes(data).map_err(storage_err(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Read,
        ))?;
        let floor = state.change_index();
        *self.shared.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        let mut recent = self.shared.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.items.clear();
        recent.floor = floor;
        drop(recent);
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) =
            (meta.last_log_id, meta.last_membership.clone());
        Ok(())
    }

    /// Runs `f` (decoding or storing a whole snapshot: up to seconds for a large state) on the
    /// blocking pool, so that it never holds a runtime worker; inline in the simulator.
    async fn off_runtime<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Self) -> Result<R, StorageError> + Send + 'static,
    ) -> Result<R, StorageError> {
        if self.disk_io == DiskIo::Runtime {
            return f(self);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| {
                storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write)(std::io::Error::other(
                    format!("the thread {what} failed: {e}"),
                ))
            })?
    }
}

impl StateMachineStore {
    /// Copies the state (holding its lock only for the copy, so applying goes on), serializes
    /// the copy and stores it. Blocking: run off the runtime.
    fn build_snapshot_blocking(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Hold the state lock while reading `applied`, so both describe the same point.
        let (state, last_log_id, membership) = {
            let state = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
            let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            (state.clone(), applied.0, applied.1.clone())
        };
        let data = state
            .to_bytes()
            .map_err(storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        drop(state);
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        snapshot_store::save(&self.db, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Runs on a blocking thread (see [`DiskIo`]): serializing a large state and its durable
    /// write would otherwise hold up the agent's runtime (gossip, leases, the API) for as long.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.off_runtime("building a snapshot", Self::build_snapshot_blocking)
            .await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut changes = Vec::new();
        {
            let mut state = self.shared.state.write().unwrap_or_else(|p| p.into_inner());
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                applied.0 = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Applied(Vec::new())),
                    EntryPayload::Normal(proposal) => {
                        let mut outcomes = Vec::with_capacity(proposal.0.len());
                        for cmd in &proposal.0 {
                            let (outcome, change) = state.apply(cmd);
                            changes.extend(change);
                            outcomes.push(outcome);
                        }
                        replies.push(Applied(outcomes));
                    }
                    EntryPayload::Membership(m) => {
                        applied.1 = StoredMembership::new(Some(entry.log_id), m);
                        replies.push(Applied(Vec::new()));
                    }
                }
            }
        }
        for c in changes {
            self.shared.publish(c);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let meta = meta.clone();
        let data = snapshot.into_inner();
        self.off_runtime("installing a snapshot", move |sm| {
            sm.restore(&meta, &data)?;
            snapshot_store::save(&sm.db, &meta, &data)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = self
            .off_runtime("reading the snapshot", |sm| snapshot_store::load(&sm.db))
            .await?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
