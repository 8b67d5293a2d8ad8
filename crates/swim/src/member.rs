//! What the core knows about one member of the cluster.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metadata::Metadata;
use crate::time::Instant;

/// A member's own version counter. Only the member itself raises it (to refute a suspicion or
/// to publish new metadata); a higher incarnation always wins over a lower one. 32 bits, as in
/// memberlist: four billion refutations is plenty, and it keeps each member record at 24 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(pub u32);

impl Incarnation {
    /// The incarnation that follows this one.
    pub fn next(self) -> Incarnation {
        Incarnation(self.0.saturating_add(1))
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a member stands in this member's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answers probes (directly or through others).
    Alive,
    /// Missed a probe; declared dead unless it refutes before its suspicion timer ends.
    Suspect,
    /// Failed: its suspicion ran out, or someone else declared it dead.
    Dead,
    /// Said goodbye (graceful leave): gone, but not a failure.
    Left,
}

impl MemberState {
    /// The lowercase name used in the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }

    /// Alive or suspect: still counted as part of the cluster.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Dead => 2,
            MemberState::Left => 3,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            0 => MemberState::Alive,
            1 => MemberState::Suspect,
            2 => MemberState::Dead,
            3 => MemberState::Left,
            _ => return None,
        })
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a member is: its name, gossip address and metadata. Immutable and shared, so that many
/// views of one member (one per simulated node) cost one allocation; a change makes a new one.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Unique name of the member in the cluster (its host name).
    pub name: Arc<str>,
    /// The gossip address it listens on.
    pub addr: SocketAddr,
    /// Segment, role, capacity and network addresses it announced.
    pub meta: Metadata,
    /// Hash of `name`, computed once: the member table and view digest use it constantly.
    pub(crate) name_hash: u64,
}

impl Identity {
    /// The identity of the member `name` at `addr` announcing `meta`.
    pub fn new(name: &str, addr: SocketAddr, meta: Metadata) -> Self {
        Identity {
            name: name.into(),
            addr,
            meta,
            name_hash: hash_name(name),
        }
    }

    /// The same member at a new address or with new metadata.
    pub fn moved(&self, addr: SocketAddr, meta: Metadata) -> Self {
        Identity {
            name: self.name.clone(),
            addr,
            meta,
            name_hash: self.name_hash,
        }
    }
}

/// A fixed (deterministic) FNV-1a hash of a member name.
pub(crate) fn hash_name(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One member as seen from here: identity, version and state.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Name, address and metadata.
    pub id: Arc<Identity>,
    /// Version of everything it says about itself.
    pub incarnation: Incarnation,
    /// Alive, suspect, dead or left.
    pub state: MemberState,
    /// When this member last changed state here (drives reaping and gossip to the dead).
    pub state_changed: Instant,
}

impl Member {
    /// The member's unique name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// The member's gossip address.
    pub fn addr(&self) -> SocketAddr {
        self.id.addr
    }

    /// The member's announced metadata.
    pub fn meta(&self) -> &Metadata {
        &self.id.meta
    }
}
