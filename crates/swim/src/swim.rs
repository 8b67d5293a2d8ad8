//! The membership state machine: its state, its public surface, and input dispatch.
//! The protocol's parts live beside it: `probe`, `merge`, `gossip`, `anti_entropy`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::awareness::Awareness;
use crate::broadcast::{BroadcastQueue, Urgency};
use crate::config::{Config, ConfigError};
use crate::event::{Counters, Event, Output, StreamId};
use crate::member::{Identity, Incarnation, Member, MemberState, NameKey};
use crate::message::{self, Alive, MAX_USER_PAYLOAD, Message, Seq, StreamMessage, UserMessage};
use crate::metadata::{MAX_METADATA_BYTES, Metadata};
use crate::probe::{Probe, Relay};
use crate::rng::Rng;
use crate::roster::Roster;
use crate::suspicion::Suspicion;
use crate::time::Instant;
use crate::wire::metadata_len;

/// Deterministic hashing: iteration order must never depend on a per-process random key.
pub(crate) type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// A request the core cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Name(String),
    #[error("metadata is {len} bytes encoded, at most {MAX_METADATA_BYTES} allowed")]
    MetadataTooLarge { len: usize },
    #[error("user broadcast is {len} bytes, at most {MAX_USER_PAYLOAD} allowed")]
    PayloadTooLarge { len: usize },
    #[error("this member has left the cluster")]
    Left,
}

/// Why a stream exchange the core asked for produced no reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamFailure {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// What a pending stream exchange is for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StreamPurpose {
    Join,
    /// Periodic anti-entropy, first step: a digest sent to `peer`.
    Pull {
        peer: SocketAddr,
    },
    /// Second step, only when the views differed: our full view pushed to the same peer.
    Push,
    Reconnect,
    FallbackPing {
        seq: Seq,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct PendingStream {
    pub id: StreamId,
    pub purpose: StreamPurpose,
    pub deadline: Instant,
}

/// Joining through seeds, retried until one answers.
#[derive(Clone, Debug)]
pub(crate) struct JoinState {
    pub seeds: Vec<SocketAddr>,
    pub attempt: u32,
    pub outstanding: usize,
    pub next_attempt_at: Option<Instant>,
}

/// A ping to a dead member, to find out whether it is reachable again.
#[derive(Clone, Debug)]
pub(crate) struct ReconnectProbe {
    pub seq: Seq,
    pub addr: SocketAddr,
    pub deadline: Instant,
}

/// Which user broadcasts from one origin were already delivered (a sliding window of 64).
#[derive(Clone, Debug, Default)]
pub(crate) struct SeenWindow {
    highest: u64,
    mask: u64,
}

impl SeenWindow {
    /// Marks `seq` seen; false when it was seen before (or is too old to tell).
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.mask = if shift >= 64 { 0 } else { self.mask << shift };
            self.mask |= 1;
            self.highest = seq;
            return true;
        }
        let back = self.highest - seq;
        if back >= 64 || self.mask & (1 << back) != 0 {
            return false;
        }
        self.mask |= 1 << back;
        true
    }
}

/// One member's SWIM + Lifeguard protocol engine. See the crate docs for how to drive it.
#[derive(Debug)]
// Field order is the memory layout (`repr(C)`): what nearly every input touches comes first,
// so handling a packet or a timer reads a few adjacent cache lines, not most of 900 bytes. In a
// simulation of 10,000 members every event lands on a cold node, and each line is a miss.
#[repr(C)]
pub struct Swim {
    // --- touched by nearly every input ---
    /// Shared when many cores run with the same settings (a simulation), so it stays in cache.
    pub(crate) config: Arc<Config>,
    pub(crate) probe: Option<Probe>,
    pub(crate) next_probe_at: Instant,
    pub(crate) next_gossip_at: Instant,
    pub(crate) next_push_pull_at: Instant,
    pub(crate) next_reconnect_at: Instant,
    pub(crate) rng: Rng,
    pub(crate) awareness: Awareness,
    /// Members alive or suspect, this one included.
    pub(crate) live: usize,
    pub(crate) next_seq: Seq,
    pub(crate) leaving: bool,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) broadcasts: BroadcastQueue,
    /// Every known member, this one included, in probe order.
    pub(crate) roster: Roster,
    pub(crate) probe_cursor: usize,
    pub(crate) relays: Vec<Relay>,
    pub(crate) streams: Vec<PendingStream>,
    pub(crate) suspicion_deadlines: BTreeSet<(Instant, String)>,
    pub(crate) reap_queue: VecDeque<(Instant, String)>,
    pub(crate) join: Option<JoinState>,
    pub(crate) counters: Counters,
    /// This member's name, inline: every ping names its target, checked against it.
    pub(crate) name_key: NameKey,
    // --- touched by some inputs only ---
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// This member's own identity: comparing pointers finds it in the roster without
    /// touching other members' names (a cache miss each in a large cluster).
    pub(crate) me_id: Arc<Identity>,
    pub(crate) suspicions: Map<String, Suspicion>,
    pub(crate) next_stream_id: u64,
    pub(crate) reconnect: Option<ReconnectProbe>,
    pub(crate) user_seen: Map<String, SeenWindow>,
    pub(crate) next_user_seq: u64,
}

impl Swim {
    /// A member called `name`, listening on `addr`, announcing `meta`, alone until it joins.
    /// `seed` fixes every random choice it will make.
    /// `config` may be a `Config` or an `Arc<Config>` shared by many cores.
    pub fn new(
        config: impl Into<Arc<Config>>,
        name: &str,
        addr: SocketAddr,
        meta: Metadata,
        seed: u64,
        now: Instant,
    ) -> Result<Swim, SwimError> {
        let config: Arc<Config> = config.into();
        config.validate()?;
        message::validate_name(name).map_err(SwimError::Name)?;
        check_metadata(&meta)?;
        let mut rng = Rng::new(seed);
        let me = Member {
            id: Arc::new(Identity::new(name, addr, meta)),
            incarnation: Incarnation(0),
            state: MemberState::Alive,
            state_changed: now,
        };
        let me_id = me.id.clone();
        let mut roster = Roster::default();
        roster.push(me);
        // Spread periodic work over the interval so members started together do not sync up.
        let first_probe = now + rng.duration_between(Default::default(), config.probe_interval);
        let first_push_pull =
            now + rng.duration_between(config.push_pull_interval / 2, config.push_pull_interval);
        let first_reconnect =
            now + rng.duration_between(Default::default(), config.reconnect_interval);
        Ok(Swim {
            broadcasts: BroadcastQueue::new(config.max_broadcast_queue),
            awareness: Awareness::new(config.awareness_max),
            next_gossip_at: now + config.gossip_interval,
            next_probe_at: first_probe,
            next_push_pull_at: first_push_pull,
            next_reconnect_at: first_reconnect,
            config,
            name_key: NameKey::of(name),
            name: name.to_string(),
            addr,
            rng,
            roster,
            me_id,
            live: 1,
            suspicions: Map::default(),
            suspicion_deadlines: BTreeSet::new(),
            reap_queue: VecDeque::new(),
            probe_cursor: 0,
            probe: None,
            relays: Vec::new(),
            next_seq: 0,
            streams: Vec::new(),
            next_stream_id: 0,
            join: None,
            reconnect: None,
            leaving: false,
            user_seen: Map::default(),
            next_user_seq: 0,
            outputs: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    // ----- inputs -----

    /// Handles one received datagram (already decrypted). Bad packets are counted and dropped.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.counters.packets_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        match message::for_each_message(bytes, |m| self.handle_message(now, from, m)) {
            Ok(unknown) => self.counters.unknown_messages += unknown as u64,
            Err(_) => self.counters.decode_errors += 1,
        }
    }

    fn handle_message(&mut self, now: Instant, from: SocketAddr, m: Message) {
        match m {
            Message::Ping(p) => self.on_ping(from, p),
            Message::IndirectPing(p) => self.on_indirect_ping(now, from, p),
            Message::Ack { seq } => self.on_ack(now, seq),
            Message::Nack { seq } => self.on_nack(seq),
            Message::Alive(a) => self.on_alive(now, a),
            Message::Refute(r) => self.on_refute(now, r),
            Message::Suspect(s) => self.on_suspect(now, s),
            Message::Dead(d) => self.on_dead(now, d),
            Message::User(u) => self.on_user(u),
            Message::Query(q) => self.on_query(from, q),
        }
    }

    /// Handles a stream frame another member sent us and returns the reply frame, if any.
    pub fn handle_stream_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Vec<u8>> {
        let _ = from;
        let msg = match StreamMessage::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.counters.decode_errors += 1;
                return None;
            }
        };
        match msg {
            StreamMessage::PushPull { members, .. } => {
                self.merge_remote(now, members);
                Some(self.push_pull_frame(false))
            }
            StreamMessage::Pull { digest } if digest == self.roster.digest() => {
                Some(StreamMessage::InSync.encode())
            }
            StreamMessage::Pull { .. } => Some(self.push_pull_frame(false)),
            StreamMessage::Ping(p) if p.target == self.name => {
                Some(StreamMessage::Ack { seq: p.seq }.encode())
            }
            StreamMessage::Ping(_) => {
                self.counters.misdirected_pings += 1;
                None
            }
            StreamMessage::Ack { .. } | StreamMessage::InSync => None,
        }
    }

    /// Hands the core the outcome of a stream exchange it asked for with [`Output::Stream`].
    pub fn handle_stream_reply(
        &mut self,
        now: Instant,
        id: StreamId,
        reply: Result<Vec<u8>, StreamFailure>,
    ) {
        let Some(pos) = self.streams.iter().position(|s| s.id == id) else {
            return; // Already timed out.
        };
        let pending = self.streams.swap_remove(pos);
        let decoded = reply.and_then(|b| {
            StreamMessage::decode(&b).map_err(|e| StreamFailure::BadReply(e.to_string()))
        });
        match decoded {
            Ok(msg) => self.on_stream_reply(now, pending.purpose, msg),
            Err(_) => {
                self.counters.stream_failures += 1;
                self.on_stream_failed(now, pending.purpose);
            }
        }
    }

    /// Runs every timer that is due at `now`. Call it at [`Swim::next_deadline`] (calling it
    /// early or often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.probe_timers(now);
        self.relay_timers(now);
        self.suspicion_timers(now);
        self.gossip_timer(now);
        self.anti_entropy_timers(now);
        self.reap(now);
    }

    /// The next moment [`Swim::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if !self.leaving {
            match &self.probe {
                Some(p) => consider(p.deadline()),
                None => consider(self.next_probe_at),
            }
            consider(self.next_push_pull_at);
            consider(self.next_reconnect_at);
        }
        if !self.broadcasts.is_empty() {
            consider(self.next_gossip_at);
        }
        self.relays.iter().for_each(|r| consider(r.deadline));
        if let Some((t, _)) = self.suspicion_deadlines.first() {
            consider(*t);
        }
        self.streams.iter().for_each(|s| consider(s.deadline));
        if let Some(t) = self.join.as_ref().and_then(|j| j.next_attempt_at) {
            consider(t);
        }
        if let Some((t, _)) = self.reap_queue.front() {
            consider(*t);
        }
        next
    }

    /// The next thing to send or report, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Everything to send or report, in order.
    pub fn drain_outputs(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.outputs.drain(..)
    }

    /// Leaves gracefully: tells the cluster this member is going (not failing) and stops probing.
    /// Keep driving the core for a few gossip intervals so the news spreads.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        self.probe = None;
        self.join = None;
        let incarnation = self.me().incarnation;
        let dead = crate::message::Dead {
            incarnation,
            name: self.name.clone(),
            from: self.name.clone(),
        };
        let frame = Message::Dead(dead).encode_frame();
        self.broadcasts
            .push(Urgency::Alive, Some(&self.name.clone()), frame.clone());
        for to in self.random_live_addrs(self.config.gossip_nodes, None) {
            self.send_frames(to, std::slice::from_ref(&frame), false);
        }
        let i = self.my_index();
        self.set_state(i, MemberState::Left, now);
    }

    /// Publishes new metadata: bumps this member's incarnation and gossips it.
    pub fn set_metadata(&mut self, meta: Metadata) -> Result<(), SwimError> {
        if self.leaving {
            return Err(SwimError::Left);
        }
        check_metadata(&meta)?;
        let i = self.my_index();
        let id = &self.roster[i].id;
        self.roster[i].id = Arc::new(id.moved(id.addr, meta));
        self.me_id = self.roster[i].id.clone();
        let inc = self.roster[i].incarnation.next();
        self.announce_self(inc, Urgency::Announce);
        Ok(())
    }

    /// Sends a broadcast to every member (epidemically, delivered once per member).
    pub fn broadcast_user(&mut self, payload: Vec<u8>) -> Result<(), SwimError> {
        if payload.len() > MAX_USER_PAYLOAD {
            return Err(SwimError::PayloadTooLarge { len: payload.len() });
        }
        self.next_user_seq += 1;
        let msg = UserMessage {
            origin: self.name.clone(),
            seq: self.next_user_seq,
            payload,
        };
        self.broadcasts
            .push(Urgency::User, None, Message::User(msg).encode_frame());
        Ok(())
    }

    // ----- views -----

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This member's own record.
    pub fn me(&self) -> &Member {
        &self.roster[self.my_index()]
    }

    /// Every known member (this one included), in no particular order.
    pub fn members(&self) -> &[Member] {
        self.roster.as_slice()
    }

    /// The member called `name`, if known.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.roster.find(name).map(|i| &self.roster[i])
    }

    /// Members alive or suspect, this one included.
    pub fn num_live(&self) -> usize {
        self.live
    }

    /// The Lifeguard local health score (0 is healthy).
    pub fn local_health(&self) -> u32 {
        self.awareness.score()
    }

    /// Totals for metrics.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Broadcasts waiting to be gossiped.
    pub fn queued_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- helpers shared by the protocol parts -----

    /// True when `m` is this member's own record.
    pub(crate) fn is_me(&self, m: &Member) -> bool {
        Arc::ptr_eq(&m.id, &self.me_id)
    }

    /// This member's position in the roster.
    pub(crate) fn my_index(&self) -> usize {
        self.roster.find(&self.name).unwrap_or(0)
    }

    pub(crate) fn emit(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    pub(crate) fn next_seq(&mut self) -> Seq {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Sends `frames` to `to`, topped up with queued broadcasts when `piggyback` is set.
    pub(crate) fn send_frames(&mut self, to: SocketAddr, frames: &[Vec<u8>], piggyback: bool) {
        let mut packet = message::packet_header();
        for f in frames {
            packet.extend_from_slice(f);
        }
        self.send_packet(to, packet, piggyback);
    }

    /// Sends a packet whose frames are already in place, topped up with broadcasts if asked.
    pub(crate) fn send_packet(&mut self, to: SocketAddr, mut packet: Vec<u8>, piggyback: bool) {
        if piggyback {
            let limit = self.config.limits(self.live);
            self.broadcasts
                .fill(&mut packet, self.config.max_packet_bytes, limit);
        }
        self.counters.packets_sent += 1;
        self.counters.bytes_sent += packet.len() as u64;
        self.outputs.push_back(Output::Packet { to, bytes: packet });
    }

    /// Sends one message, topped up with broadcasts (encoded straight into the packet).
    pub(crate) fn send(&mut self, to: SocketAddr, m: Message) {
        let mut packet = Vec::with_capacity(64);
        packet.extend_from_slice(&message::packet_header());
        m.encode_frame_into(&mut packet);
        self.send_packet(to, packet, true);
    }

    /// Asks the runtime for a stream exchange and tracks it until `deadline`.
    pub(crate) fn open_stream(
        &mut self,
        to: SocketAddr,
        msg: StreamMessage,
        purpose: StreamPurpose,
        deadline: Instant,
    ) {
        self.next_stream_id += 1;
        let id = StreamId(self.next_stream_id);
        let bytes = msg.encode();
        self.counters.streams_sent += 1;
        self.counters.stream_bytes_sent += bytes.len() as u64;
        self.streams.push(PendingStream {
            id,
            purpose,
            deadline,
        });
        self.outputs.push_back(Output::Stream { to, id, bytes });
    }

    /// Broadcasts this member as alive at `inc` (refutation or new metadata), urgently.
    pub(crate) fn announce_self(&mut self, inc: Incarnation, urgency: Urgency) -> Vec<u8> {
        let i = self.my_index();
        self.set_incarnation(i, inc);
        let me = &self.roster[i];
        let alive = Alive {
            incarnation: inc,
            name: self.name.clone(),
            addr: me.addr(),
            meta: me.meta().clone(),
        };
        let frame = Message::Alive(alive).encode_frame();
        self.broadcasts
            .push(urgency, Some(&self.name.clone()), frame.clone());
        frame
    }

    /// Up to `k` distinct random members that are alive (not suspect), other than this one and `except`.
    pub(crate) fn random_live_addrs(&mut self, k: usize, except: Option<&str>) -> Vec<SocketAddr> {
        let me = self.me_id.clone();
        self.random_members(k, |m| {
            m.state == MemberState::Alive
                && !Arc::ptr_eq(&m.id, &me)
                && except.is_none_or(|e| m.name() != e)
        })
        .into_iter()
        .map(|i| self.roster[i].addr())
        .collect()
    }

    /// Up to `k` distinct random member indices passing `eligible`. Small clusters are scanned;
    /// large ones sampled, so the cost does not grow with the cluster.
    pub(crate) fn random_members(
        &mut self,
        k: usize,
        eligible: impl Fn(&Member) -> bool,
    ) -> Vec<usize> {
        let n = self.roster.len();
        if k == 0 || n == 0 {
            return Vec::new();
        }
        if n <= 64 {
            let mut all: Vec<usize> = (0..n).filter(|&i| eligible(&self.roster[i])).collect();
            self.rng.shuffle(&mut all);
            all.truncate(k);
            return all;
        }
        let mut out = Vec::with_capacity(k);
        for _ in 0..(k * 4 + 8) {
            let i = self.rng.below(n);
            if !out.contains(&i) && eligible(&self.roster[i]) {
                out.push(i);
                if out.len() == k {
                    break;
                }
            }
        }
        out
    }

    /// Updates a member's state, keeping the live count right.
    pub(crate) fn set_state(&mut self, i: usize, state: MemberState, now: Instant) {
        let m = &self.roster[i];
        if m.state == state {
            return;
        }
        match (m.state.is_live(), state.is_live()) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        let incarnation = m.incarnation;
        self.roster.set_version(i, incarnation, state);
        self.roster[i].state_changed = now;
    }

    /// Sets a member's incarnation (state unchanged), keeping the view digest current.
    pub(crate) fn set_incarnation(&mut self, i: usize, incarnation: Incarnation) {
        let state = self.roster[i].state;
        self.roster.set_version(i, incarnation, state);
    }

    /// Forgets the suspicion about `name`, if any.
    pub(crate) fn clear_suspicion(&mut self, name: &str) -> Option<Suspicion> {
        let s = self.suspicions.remove(name)?;
        self.suspicion_deadlines
            .remove(&(s.deadline(), name.to_string()));
        Some(s)
    }

    fn reap(&mut self, now: Instant) {
        while let Some((t, _)) = self.reap_queue.front() {
            if *t > now {
                break;
            }
            let Some((_, name)) = self.reap_queue.pop_front() else {
                break;
            };
            let Some(i) = self.roster.find(&name) else {
                continue;
            };
            let m = &self.roster[i];
            if m.state.is_live()
                || *name == *self.name
                || now.saturating_since(m.state_changed) < self.config.reap_after
            {
                continue;
            }
            self.remove_member(i);
            self.emit(Event::MemberReaped { name });
        }
    }

    fn remove_member(&mut self, i: usize) {
        self.roster.swap_remove(i);
        if self.probe_cursor > self.roster.len() {
            self.probe_cursor = self.roster.len();
        }
    }

    /// Adds a member at a random place in the probe order.
    pub(crate) fn insert_member(&mut self, m: Member) {
        if m.state.is_live() {
            self.live += 1;
        }
        let last = self.roster.push(m);
        let j = self.rng.below(self.roster.len());
        self.roster.swap(j, last);
    }
}

fn check_metadata(meta: &Metadata) -> Result<(), SwimError> {
    let len = metadata_len(meta);
    if len > MAX_METADATA_BYTES || meta.addresses.len() > 16 {
        return Err(SwimError::MetadataTooLarge { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seen_window_delivers_each_sequence_once() {
        let mut w = SeenWindow::default();
        assert!(w.insert(1));
        assert!(!w.insert(1));
        assert!(w.insert(3));
        assert!(w.insert(2), "out of order but new");
        assert!(!w.insert(2));
        assert!(w.insert(100));
        assert!(!w.insert(3), "too old to tell: treated as seen");
    }
}
