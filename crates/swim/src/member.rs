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
#[repr(C)] // Hot first: a name lookup reads only the first cache line.
pub struct Identity {
    /// The name's hash, length and first bytes, computed once and kept inline.
    pub(crate) key: NameKey,
    /// Unique name of the member in the cluster (its host name).
    pub name: Arc<str>,
    /// The gossip address it listens on.
    pub addr: SocketAddr,
    /// Segment, role, capacity and network addresses it announced.
    pub meta: Metadata,
}

/// How many bytes of a name a [`NameKey`] keeps inline.
const NAME_HEAD: usize = 20;

/// A member name's hash, length and first bytes, stored beside whatever refers to the name so
/// that comparing names (every gossip message and ping names its subject) rarely follows the
/// pointer to the name's own allocation: in a large cluster that is a cache miss each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameKey {
    /// Hash of the name: the member table and the view digest use it constantly.
    pub(crate) hash: u64,
    len: u32,
    head: [u8; NAME_HEAD],
}

impl NameKey {
    pub(crate) fn of(name: &str) -> Self {
        let mut head = [0; NAME_HEAD];
        let b = &name.as_bytes()[..name.len().min(NAME_HEAD)];
        head[..b.len()].copy_from_slice(b);
        NameKey {
            hash: hash_name(name),
            len: name.len() as u32,
            head,
        }
    }

    /// True when `name` is the name this key was made of (`full`); reads `full` only for
    /// names longer than the inline head.
    pub(crate) fn matches(&self, name: &str, full: &str) -> bool {
        let b = name.as_bytes();
        if b.len() != self.len as usize {
            return false;
        }
        if b.len() <= NAME_HEAD {
            return self.head[..b.len()] == *b;
        }
        self.head == b[..NAME_HEAD] && full == name
    }
}

impl Identity {
    /// The identity of the member `name` at `addr` announcing `meta`.
    pub fn new(name: &str, addr: SocketAddr, meta: Metadata) -> Self {
        Identity {
            key: NameKey::of(name),
            name: name.into(),
            addr,
            meta,
        }
    }

    /// True when this is the member called `name`; reads the name itself only when it is
    /// longer than the inline head.
    pub fn has_name(&self, name: &str) -> bool {
        self.key.matches(name, &self.name)
    }

    /// The same member at a new address or with new metadata.
    pub fn moved(&self, addr: SocketAddr, meta: Metadata) -> Self {
        Identity {
            name: self.name.clone(),
            addr,
            meta,
            ..*self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_match_exactly_the_name_they_were_made_of() {
        let short = "node-7";
        let long = "compute-0017.rack-03.zone-b.example";
        for name in [short, long, ""] {
            let key = NameKey::of(name);
            assert!(key.matches(name, name), "{name}");
            assert_eq!(key.hash, hash_name(name));
        }
        let key = NameKey::of(short);
        assert!(!key.matches("node-70", short));
        assert!(!key.matches("node-8", short));
        assert!(!key.matches("node-", short));
        let key = NameKey::of(long);
        // Same length and same first 20 bytes, different tail: only the full name tells.
        let twin = "compute-0017.rack-03.zone-c.example";
        assert_eq!(twin.len(), long.len());
        assert!(!key.matches(twin, long));
        assert!(key.matches(long, long));
    }

    #[test]
    fn identities_compare_names_through_their_key() {
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let id = Identity::new("web-1", addr, Metadata::default());
        assert!(id.has_name("web-1"));
        assert!(!id.has_name("web-2"));
        let moved = id.moved("127.0.0.2:7946".parse().unwrap(), Metadata::default());
        assert!(moved.has_name("web-1"));
        assert_eq!(moved.key, id.key);
    }
}
