//! What the core hands back to its caller: packets and streams to send, and events to act on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::member::Incarnation;

/// Identifies a stream exchange the core asked for, so the runtime can report its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// One thing the runtime must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send this datagram (plaintext; the runtime encrypts).
    Packet { to: SocketAddr, bytes: Vec<u8> },
    /// Open a stream to `to`, send `bytes` as one frame, read one reply frame, and hand it to
    /// `Swim::handle_stream_reply` with this `id` (or report the failure there).
    Stream {
        to: SocketAddr,
        id: StreamId,
        bytes: Vec<u8>,
    },
    /// Something happened that the layers above (or the logs) care about.
    Event(Event),
}

/// A change in membership as seen by this member.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A member appeared, or came back after being dead or gone.
    MemberJoined {
        name: String,
        addr: SocketAddr,
        incarnation: Incarnation,
    },
    /// A live member published a newer incarnation (new metadata or a refutation).
    MemberUpdated {
        name: String,
        incarnation: Incarnation,
    },
    /// A member is suspected; it is declared dead unless it refutes in time.
    MemberSuspected {
        name: String,
        incarnation: Incarnation,
        by: String,
    },
    /// A suspected member refuted: it is alive.
    MemberRecovered {
        name: String,
        incarnation: Incarnation,
    },
    /// A member is declared dead (`by` says who declared it).
    MemberDied {
        name: String,
        incarnation: Incarnation,
        by: String,
    },
    /// A member left gracefully.
    MemberLeft { name: String },
    /// A dead or left member was forgotten after `reap_after`.
    MemberReaped { name: String },
    /// This member was suspected or declared dead and answered with a higher incarnation.
    Refuted {
        incarnation: Incarnation,
        accuser: Option<String>,
    },
    /// Two hosts claim one name. `about_self` means another host claims this member's name.
    /// The member already in the cluster keeps the name: `refused` is set only on the newcomer
    /// (a member still joining when it learns its name is taken), which must give up.
    NameConflict {
        name: String,
        known: SocketAddr,
        claimed: SocketAddr,
        about_self: bool,
        refused: bool,
    },
    /// Joined the cluster (`via` the seed that answered; `None` when others joined us first).
    JoinSucceeded {
        via: Option<SocketAddr>,
        members: usize,
    },
    /// No seed answered; another round follows after `retry_in`.
    JoinAttemptFailed { attempt: u32, retry_in: Duration },
    /// A user broadcast from `origin`, delivered once.
    User { origin: String, payload: Vec<u8> },
}

/// Running totals of what the core did, for metrics. The counters bumped by every packet come
/// first, sharing one cache line (`repr(C)` keeps the order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counters {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub probes: u64,
    pub probe_failures: u64,
    pub indirect_probes: u64,
    pub fallback_probes: u64,
    pub fallback_acks: u64,
    /// Pings sent to a member's other announced addresses (storage, tenant...) after its
    /// main address missed the probe timeout.
    pub alternate_probes: u64,
    pub suspicions: u64,
    pub refutations: u64,
    pub deaths_declared: u64,
    pub streams_sent: u64,
    pub stream_bytes_sent: u64,
    pub stream_failures: u64,
    pub push_pulls: u64,
    /// Packets or frames that did not decode.
    pub decode_errors: u64,
    /// Frames of a kind this build does not know (skipped).
    pub unknown_messages: u64,
    /// Pings addressed to another name (a stale address).
    pub misdirected_pings: u64,
    pub name_conflicts: u64,
    /// New members refused because the table holds `Config::max_members`.
    pub members_refused: u64,
}
