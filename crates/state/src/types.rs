//! The openraft type configuration for Buoy's control plane.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use model::command::{Command, Outcome};

pub use model::server::ServerNode;

/// Raft node ids are derived from server names (FNV-1a, 64 bits), so every server computes
/// the same id for a name without coordination.
pub type NodeId = u64;

/// The node id of the server called `name`.
pub fn node_id(name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One Raft log entry: the commands that arrived together, applied in order. Batching
/// concurrent writes into one entry is what lets one fsync'd append serve many clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// What a committed proposal returns: one outcome per command, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied(pub Vec<Outcome>);

openraft::declare_raft_types!(
    /// Buoy's Raft types: batches of cluster-state commands in, their outcomes out.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = ServerNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Shorthands for openraft's generic types.
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ServerNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, ServerNode>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, ServerNode>;
