//! One server's replica of the cluster state: opens the storage, runs openraft, and offers
//! what the API needs: write a command, read the state, report status, change the voters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};

use crate::batcher::{self, PendingWrite, WriteFailure};
use crate::data_dir::{DataDir, DataDirError};
use crate::disk_io::DiskIo;
use crate::log_store::{LogStore, open_database};
use crate::network::{self, RaftTransport, Rpc, Transport};
use crate::recent_entries::RecentEntries;
use crate::state_machine::{SharedState, StateMachineStore};
use crate::types::{NodeId, Raft, ServerNode, node_id};
use model::command::{Command, Op, Outcome};
use model::timestamp::Timestamp;

/// Snapshots travel to a lagging server in chunks of this size.
pub const SNAPSHOT_CHUNK: u64 = 4 << 20;

/// Raft timing and compaction.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub heartbeat: Duration,
    /// An election starts after a random time in this range without hearing the leader.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is taken (and the log before it purged) after this many new entries.
    pub snapshot_every: u64,
    /// Where log commits and snapshots run: off the runtime, or on it (the simulator).
    pub disk_io: DiskIo,
}

impl Default for ReplicaConfig {
    /// LAN timing: a failed leader is replaced in well under a second.
    fn default() -> Self {
        ReplicaConfig {
            heartbeat: Duration::from_millis(60),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(600)),
            snapshot_every: 5000,
            disk_io: DiskIo::Threads,
        }
    }
}

/// Why the replica could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("opening {path}: {source}")]
    Database { path: String, source: redb::Error },
    #[error("raft: {0}")]
    Raft(String),
    /// This server is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader{}", .leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader { leader: Option<ServerNode> },
}

/// Where this server's Raft stands, for `GET /v1/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RaftStatus {
    pub server: String,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub leader: Option<ServerNode>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub voters: Vec<ServerNode>,
    pub learners: Vec<ServerNode>,
    pub snapshot_index: Option<u64>,
    /// The log is kept after this index (what is older is in the snapshot only).
    pub purged_index: Option<u64>,
}

/// A running replica.
pub struct Replica {
    raft: Raft,
    recent: Arc<RecentEntries>,
    writes: tokio::sync::mpsc::Sender<PendingWrite>,
    shared: Arc<SharedState>,
    me: ServerNode,
    id: NodeId,
}

impl Replica {
    /// Opens (or creates) the replica stored in `dir` and starts its Raft node.
    pub async fn open<T: Transport>(
        dir: &DataDir,
        me: ServerNode,
        transport: T,
        config: &ReplicaConfig,
    ) -> Result<Replica, ReplicaError> {
        let path = dir.raft_db();
        let db = open_database(&path).map_err(|source| ReplicaError::Database {
            path: path.display().to_string(),
            source,
        })?;
        let log = LogStore::new(db.clone(), config.disk_io)
            .map_err(|e| ReplicaError::Raft(format!("starting the log writer thread: {e}")))?;
        let recent = log.recent();
        let sm = StateMachineStore::open(db, config.disk_io)
            .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let shared = sm.shared();
        let raft_config = Config {
            cluster_name: "buoy".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        let id = node_id(&me.name);
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            RaftTransport::new(transport, recent.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ReplicaError::Raft(e.to_string()))?;
        Ok(Replica {
            writes: batcher::spawn(raft.clone()),
            raft,
            recent,
            shared,
            me,
            id,
        })
    }

    /// This server.
    pub fn me(&self) -> &ServerNode {
        &self.me
    }

    /// The openraft node.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Answers a Raft RPC from another server (see [`network::serve_rpc`]).
    pub async fn serve_rpc(&self, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        network::serve_rpc(&self.raft, &self.recent, rpc, body).await
    }

    /// The state as applied here, and its change feed.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// True once this server belongs to a Raft group (bootstrapped or joined).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Forms a new group of `servers` (this one included). Every server of the group may call
    /// this with the same list; a server already in a group ignores it.
    pub async fn bootstrap(&self, servers: &[ServerNode]) -> Result<(), ReplicaError> {
        let members: BTreeMap<NodeId, ServerNode> = servers
            .iter()
            .map(|s| (node_id(&s.name), s.clone()))
            .collect();
        if members.len() != servers.len() {
            return Err(ReplicaError::Raft(
                "two servers share a node id: give them different names".into(),
            ));
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ReplicaError::Raft(e.to_string())),
        }
    }

    /// Proposes `op` stamped with `at`; returns its outcome once committed and applied. Only
    /// the leader accepts writes. Concurrent writes share Raft entries (see `batcher.rs`).
    pub async fn write(&self, op: Op, at: Timestamp) -> Result<Outcome, ReplicaError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = PendingWrite {
            command: Command { at, op },
            reply,
        };
        let stopped = || ReplicaError::Raft("the replica is shutting down".into());
        self.writes.send(pending).await.map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(outcome) => Ok(outcome),
            Err(WriteFailure::NotLeader(leader)) => Err(ReplicaError::NotLeader { leader }),
            Err(WriteFailure::Raft(e)) => Err(ReplicaError::Raft(e)),
        }
    }

    /// Confirms this server is still the leader with a quorum and has applied everything
    /// committed before the call, so that a read after it sees every acknowledged write.
    pub async fn read_barrier(&self) -> Result<(), ReplicaError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => {
                // openraft's barrier alone is not enough right after a full restart: a leader
                // restored from its persisted vote keeps its term, proposes no new entry, and does
                // not know the commit point yet (it is not stored), so it answered before applying
                // the log (the multi-process test read 1,217 of 1,847 segments). Everything in the
                // leader's log when the read starts includes everything committed before it, so
                // waiting until that much is applied makes the read see every acknowledged write.
                let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
                self.raft
                    .wait(Some(std::time::Duration::from_secs(5)))
                    .applied_index_at_least(Some(target), "read barrier")
                    .await
                    .map(drop)
                    .map_err(|e| ReplicaError::Raft(format!("read barrier: {e}")))
            }
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ReplicaError::NotLeader {
                    leader: f.leader_node,
                })
            }
            Err(e) => Err(ReplicaError::Raft(e.to_string())),
        }
    }

    /// Confirms with a quorum that this server is still the leader, and waits until its state
    /// machine has applied its whole log as of the check (the read barrier): what a lease grant
    /// needs, since a grant built from a partly applied state could assign a copy that has
    /// since moved to another host (issue 15, hole 10). Returns the term it leads.
    pub async fn confirm_leadership(&self) -> Result<u64, ReplicaError> {
        let term = self.raft.metrics().borrow().current_term;
        self.read_barrier().await?;
        Ok(term)
    }

    /// The leader this server knows of.
    pub fn leader(&self) -> Option<ServerNode> {
        // Called for every relayed API call: read in place, copy only the node.
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// True when this server is the leader now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let nodes: Vec<(NodeId, ServerNode)> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        RaftStatus {
            server: self.me.name.clone(),
            role: role.into(),
            leader: m
                .current_leader
                .and_then(|id| membership.get_node(&id).cloned()),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            voters: nodes
                .iter()
                .filter(|(id, _)| voter_ids.contains(id))
                .map(|(_, n)| n.clone())
                .collect(),
            learners: nodes
                .iter()
                .filter(|(id, _)| !voter_ids.contains(id))
                .map(|(_, n)| n.clone())
                .collect(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }

    /// Adds `server` as a voter: first as a learner that catches up, then into the voter set.
    pub async fn add_server(&self, server: ServerNode) -> Result<(), ReplicaError> {
        let id = node_id(&server.name);
        self.raft
            .add_learner(id, server, true)
            .await
            .map_err(|e| self.write_error(e))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Removes the server called `name` from the group.
    pub async fn remove_server(&self, name: &str) -> Result<(), ReplicaError> {
        let id = node_id(name);
        self.raft
            .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
            .await
            .map_err(|e| self.write_error(e))?;
        self.raft
            .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    fn write_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, ServerNode>>,
    ) -> ReplicaError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ReplicaError::NotLeader {
                leader: f.leader_node,
            },
            e => ReplicaError::Raft(e.to_string()),
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
