//! The event loop: a virtual clock, a priority queue of deliveries and timer wake-ups, and the
//! nodes, each a sans-IO `Swim` core. Crashed nodes drop what reaches them; stalled nodes queue
//! it and process the backlog when they wake, as a process starved of CPU would.

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use swim::{Event, Instant, Output, Rng, StreamId, Swim};

use crate::protocol::Protocol;

use crate::network::{Network, NetworkConfig};
use crate::wake_queue::WakeQueue;

/// A fast, deterministic hasher for the address table (looked up once per packet; the keys
/// are our own, so flooding resistance does not matter here).
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// Index of a node in the simulation.
pub type NodeId = usize;

#[derive(Debug)]
enum Delivery {
    Packet {
        to: NodeId,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    StreamRequest {
        to: NodeId,
        from: NodeId,
        generation: u32,
        id: StreamId,
        bytes: Vec<u8>,
    },
    StreamReply {
        to: NodeId,
        generation: u32,
        id: StreamId,
        bytes: Vec<u8>,
    },
    Wake {
        node: NodeId,
    },
    StallStart {
        node: NodeId,
        until: Instant,
    },
    StallEnd {
        node: NodeId,
        until: Instant,
    },
    Crash {
        node: NodeId,
    },
}

/// A heap entry: small (a slab index), so sifting is cheap; the delivery waits in the slab.
type Scheduled = crate::due::Due<u32>;

/// One simulated host.
struct Node<P> {
    addr: SocketAddr,
    /// `None` while crashed.
    swim: Option<P>,
    /// Bumped at each restart so replies meant for the previous life are dropped.
    generation: u32,
    stalled_until: Option<Instant>,
    backlog: Vec<Delivery>,
    /// The deadline its wake-up is queued at, to skip re-queuing when it did not move.
    queued_wake: Option<Instant>,
}

/// Bytes and messages the nodes put on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub packet_bytes: u64,
    pub stream_frames: u64,
    pub stream_bytes: u64,
    pub lost: u64,
    pub blocked: u64,
}

/// A deterministic cluster under a virtual clock, of Buoy cores by default.
pub struct Simulation<P: Protocol = Swim> {
    now: Instant,
    rng: Rng,
    network: Network,
    nodes: Vec<Node<P>>,
    by_addr: HashMap<SocketAddr, NodeId, BuildHasherDefault<FastHasher>>,
    queue: BinaryHeap<Scheduled>,
    wakes: WakeQueue,
    slab: Vec<Option<Delivery>>,
    free: Vec<u32>,
    seq: u64,
    traffic: Traffic,
    events: Vec<(Instant, NodeId, Event)>,
    processed: u64,
    /// Reused between flushes to spare an allocation per event.
    out_buf: Vec<Output>,
}

impl<P: Protocol> Simulation<P> {
    /// An empty simulation; `seed` fixes the network's randomness.
    pub fn new(seed: u64, network: NetworkConfig) -> Self {
        Simulation {
            now: Instant::ZERO,
            rng: Rng::new(seed),
            network: Network::new(network, seed),
            nodes: Vec::new(),
            by_addr: HashMap::default(),
            queue: BinaryHeap::new(),
            wakes: WakeQueue::default(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
            traffic: Traffic::default(),
            events: Vec::new(),
            processed: 0,
            out_buf: Vec::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a running node; its address must be unique.
    pub fn add_node(&mut self, swim: P) -> NodeId {
        let id = self.nodes.len();
        let addr = swim.addr();
        self.by_addr.insert(addr, id);
        self.nodes.push(Node {
            addr,
            swim: Some(swim),
            generation: 0,
            stalled_until: None,
            backlog: Vec::new(),
            queued_wake: None,
        });
        self.flush(id);
        id
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The core of a running node.
    pub fn node(&self, id: NodeId) -> Option<&P> {
        self.nodes.get(id).and_then(|n| n.swim.as_ref())
    }

    /// The address of a node.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id].addr
    }

    /// True when the node is crashed.
    pub fn is_crashed(&self, id: NodeId) -> bool {
        self.nodes[id].swim.is_none()
    }

    /// True when the node is stalled now.
    pub fn is_stalled(&self, id: NodeId) -> bool {
        self.nodes[id].stalled_until.is_some()
    }

    /// Acts on a running node's core (join, leave, new metadata...) and sends what it produced.
    pub fn with_node<R>(&mut self, id: NodeId, f: impl FnOnce(&mut P, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes.get_mut(id)?.swim.as_mut()?, now);
        self.flush(id);
        Some(r)
    }

    /// Crashes a node now: it stops and loses everything in flight to it.
    pub fn crash(&mut self, id: NodeId) {
        let n = &mut self.nodes[id];
        n.swim = None;
        n.stalled_until = None;
        n.backlog.clear();
        n.queued_wake = None;
        self.wakes.set(id, None);
    }

    /// Crashes a node at a future time.
    pub fn schedule_crash(&mut self, id: NodeId, at: Instant) {
        self.schedule(at, Delivery::Crash { node: id });
    }

    /// Restarts a crashed node with a fresh core (same address).
    pub fn restart(&mut self, id: NodeId, swim: P) {
        let n = &mut self.nodes[id];
        n.generation += 1;
        n.swim = Some(swim);
        n.stalled_until = None;
        n.backlog.clear();
        self.flush(id);
    }

    /// Freezes a node from `at` for `length`: it handles nothing, then works off its backlog.
    pub fn schedule_stall(&mut self, id: NodeId, at: Instant, length: Duration) {
        self.schedule(
            at,
            Delivery::StallStart {
                node: id,
                until: at + length,
            },
        );
    }

    /// The network, to partition and heal it.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// What went over the wire so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Deliveries and wake-ups processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Membership events the nodes reported since the last call, with time and node.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, (Instant, NodeId, Event)> {
        self.events.drain(..)
    }

    /// Runs every delivery and timer due up to `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let delivery = self.queue.peek().map(|s| (s.at, s.seq));
            let wake = self.wakes.peek().map(|(at, seq, _)| (at, seq));
            let next = match (delivery, wake) {
                (Some(d), Some(w)) => d.min(w),
                (Some(d), None) => d,
                (None, Some(w)) => w,
                (None, None) => break,
            };
            if next.0 > until {
                break;
            }
            self.now = next.0;
            self.processed += 1;
            if wake == Some(next) {
                if let Some((_, _, node)) = self.wakes.pop() {
                    self.dispatch(Delivery::Wake { node });
                }
                continue;
            }
            let Some(s) = self.queue.pop() else { break };
            let what = self.slab[s.item as usize].take();
            self.free.push(s.item);
            if let Some(what) = what {
                self.dispatch(what);
            }
        }
        self.now = self.now.max(until);
    }

    fn schedule(&mut self, at: Instant, what: Delivery) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(what);
                slot
            }
            None => {
                self.slab.push(Some(what));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            item: slot,
        });
    }

    fn dispatch(&mut self, what: Delivery) {
        let now = self.now;
        let target = match &what {
            Delivery::Packet { to, .. }
            | Delivery::StreamRequest { to, .. }
            | Delivery::StreamReply { to, .. } => *to,
            Delivery::Wake { node }
            | Delivery::StallStart { node, .. }
            | Delivery::StallEnd { node, .. }
            | Delivery::Crash { node } => *node,
        };
        let node = &mut self.nodes[target];
        if node.swim.is_none() {
            return;
        }
        match what {
            Delivery::Crash { node } => self.crash(node),
            Delivery::StallStart { node, until } => {
                let n = &mut self.nodes[node];
                if n.stalled_until.is_none() {
                    n.stalled_until = Some(until);
                    self.schedule(until, Delivery::StallEnd { node, until });
                }
            }
            Delivery::StallEnd { node, until } => {
                if self.nodes[node].stalled_until != Some(until) {
                    return;
                }
                self.nodes[node].stalled_until = None;
                let backlog = std::mem::take(&mut self.nodes[node].backlog);
                for d in backlog {
                    self.deliver(d);
                }
                if let Some(s) = self.nodes[node].swim.as_mut() {
                    s.handle_timeout(now);
                }
                self.flush(node);
            }
            Delivery::Wake { node: id } => {
                node.queued_wake = None;
                if node.stalled_until.is_some() {
                    return; // The stall's end runs the timers.
                }
                if let Some(s) = node.swim.as_mut() {
                    s.handle_timeout(now);
                }
                self.flush(id);
            }
            d => {
                if node.stalled_until.is_some() {
                    node.backlog.push(d);
                } else {
                    self.deliver(d);
                }
            }
        }
    }

    /// Hands a packet or stream frame to a running, awake node.
    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Packet { to, from, bytes } => {
                if let Some(s) = self.nodes[to].swim.as_mut() {
                    s.handle_packet(now, from, &bytes);
                }
                self.flush(to);
            }
            Delivery::StreamRequest {
                to,
                from,
                generation,
                id,
                bytes,
            } => {
                let from_addr = self.nodes[from].addr;
                let reply = self.nodes[to]
                    .swim
                    .as_mut()
                    .and_then(|s| s.handle_stream_request(now, from_addr, &bytes));
                self.flush(to);
                if let Some(bytes) = reply {
                    self.traffic.stream_frames += 1;
                    self.traffic.stream_bytes += bytes.len() as u64;
                    if self.network.blocked(to, from) {
                        self.traffic.blocked += 1;
                        return;
                    }
                    let at = now + self.network.latency(&mut self.rng, to, from);
                    self.schedule(
                        at,
                        Delivery::StreamReply {
                            to: from,
                            generation,
                            id,
                            bytes,
                        },
                    );
                }
            }
            Delivery::StreamReply {
                to,
                generation,
                id,
                bytes,
            } => {
                if self.nodes[to].generation != generation {
                    return;
                }
                if let Some(s) = self.nodes[to].swim.as_mut() {
                    s.handle_stream_reply(now, id, bytes);
                }
                self.flush(to);
            }
            _ => {}
        }
    }

    /// Routes everything a node produced and schedules its next wake-up.
    fn flush(&mut self, id: NodeId) {
        let now = self.now;
        let Some(swim) = self.nodes[id].swim.as_mut() else {
            return;
        };
        let mut outputs = std::mem::take(&mut self.out_buf);
        swim.drain_outputs_into(&mut outputs);
        let deadline = swim.next_deadline();
        let generation = self.nodes[id].generation;
        for o in outputs.drain(..) {
            match o {
                Output::Event(e) => self.events.push((now, id, e)),
                Output::Packet { to, bytes } => {
                    self.traffic.packets += 1;
                    self.traffic.packet_bytes += bytes.len() as u64;
                    let Some(&dest) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.network.blocked(id, dest) {
                        self.traffic.blocked += 1;
                        continue;
                    }
                    if self.network.lost(&mut self.rng) {
                        self.traffic.lost += 1;
                        continue;
                    }
                    let at = now + self.network.latency(&mut self.rng, id, dest);
                    self.schedule(
                        at,
                        Delivery::Packet {
                            to: dest,
                            from: self.nodes[id].addr,
                            bytes,
                        },
                    );
                }
                Output::Stream { to, id: sid, bytes } => {
                    self.traffic.stream_frames += 1;
                    self.traffic.stream_bytes += bytes.len() as u64;
                    let Some(&dest) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.network.blocked(id, dest) {
                        self.traffic.blocked += 1;
                        continue; // The connection never opens: the core times it out.
                    }
                    // Connection set-up costs one round trip before the frame goes.
                    let rtt = self.network.latency(&mut self.rng, id, dest) * 3;
                    self.schedule(
                        now + rtt,
                        Delivery::StreamRequest {
                            to: dest,
                            from: id,
                            generation,
                            id: sid,
                            bytes,
                        },
                    );
                }
            }
        }
        self.out_buf = outputs;
        let wake = deadline.map(|d| d.max(now));
        if self.nodes[id].queued_wake != wake {
            self.nodes[id].queued_wake = wake;
            self.seq += 1;
            self.wakes.set(id, wake.map(|w| (w, self.seq)));
        }
    }
}
