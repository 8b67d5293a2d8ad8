//! The foca crate (a sans-IO SWIM without the Lifeguard extensions) as a simulated node, so
//! `buoy sim membership --impl foca` runs the same scenario on the same virtual network.
//! Benchmarks only: built with the `foca` feature.

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use foca::{
    AccumulatingRuntime, Foca, Identity, Member, NoCustomBroadcast, OwnedNotification,
    PostcardCodec, Timer,
};
use serde::{Deserialize, Serialize};
use swim::{Config, Event, Incarnation, Instant, Output, StreamId};

use crate::protocol::Protocol;
use crate::scenario::{Implementation, ScenarioNode, sim_addr, sim_name};

/// A simulated member as foca knows it: the node's index and a generation that foca renews
/// when it learns it was declared down (its refutation mechanism).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimId {
    node: u32,
    generation: u32,
}

impl Identity for SimId {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(SimId {
            node: self.node,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> u32 {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Our seeded generator, lent to foca.
pub struct SeededRng(swim::Rng);

impl rand::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A timer foca asked for.
struct Pending {
    at: Instant,
    seq: u64,
    timer: Timer<SimId>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One foca member plus the runtime that collects what it asks for.
pub struct FocaNode {
    foca: Foca<SimId, PostcardCodec, SeededRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<SimId>,
    timers: BinaryHeap<Pending>,
    seq: u64,
    now: Instant,
    addr: SocketAddr,
    outputs: Vec<Output>,
}

/// foca's own LAN settings, or Buoy's timings transplanted (to see what the same aggressive
/// timing does without Lifeguard).
fn foca_config(n: usize, config: &Config, buoy_timing: bool) -> foca::Config {
    let size = NonZeroU32::new(n.max(1) as u32).unwrap_or(NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(size);
    if buoy_timing {
        c.probe_period = config.probe_interval;
        c.probe_rtt = config.probe_timeout;
        c.suspect_to_down_after = config.suspicion_min_for(n);
        if let Some(g) = c.periodic_gossip.as_mut() {
            g.frequency = config.gossip_interval;
        }
    }
    c
}

impl FocaNode {
    fn drain(&mut self) {
        while let Some((to, bytes)) = self.runtime.to_send() {
            self.outputs.push(Output::Packet {
                to: sim_addr(to.node as usize),
                bytes: bytes.to_vec(),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.seq += 1;
            self.timers.push(Pending {
                at: self.now + after,
                seq: self.seq,
                timer,
            });
        }
        while let Some(n) = self.runtime.to_notify() {
            let event = match n {
                OwnedNotification::MemberUp(id) | OwnedNotification::Rejoin(id) => {
                    Event::MemberJoined {
                        name: sim_name(id.node as usize),
                        addr: sim_addr(id.node as usize),
                        incarnation: Incarnation(id.generation),
                    }
                }
                OwnedNotification::MemberDown(id) => Event::MemberDied {
                    name: sim_name(id.node as usize),
                    incarnation: Incarnation(id.generation),
                    by: String::new(),
                },
                _ => continue,
            };
            self.outputs.push(Output::Event(event));
        }
    }
}

impl Protocol for FocaNode {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn handle_packet(&mut self, now: Instant, _from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        let _ = self.foca.handle_data(bytes, &mut self.runtime);
        self.drain();
    }

    fn handle_stream_request(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _bytes: &[u8],
    ) -> Option<Vec<u8>> {
        None
    }

    fn handle_stream_reply(&mut self, _now: Instant, _id: StreamId, _bytes: Vec<u8>) {}

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while self.timers.peek().is_some_and(|p| p.at <= now) {
            if let Some(p) = self.timers.pop() {
                let _ = self.foca.handle_timer(p.timer, &mut self.runtime);
                self.drain();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|p| p.at)
    }

    fn drain_outputs_into(&mut self, out: &mut Vec<Output>) {
        out.append(&mut self.outputs);
    }
}

impl ScenarioNode for FocaNode {
    fn formed(
        n: usize,
        config: &Config,
        seeds: &[u64],
        implementation: Implementation,
    ) -> Vec<Self> {
        let buoy_timing = matches!(implementation, Implementation::Foca { buoy_timing: true });
        (0..n)
            .map(|i| {
                let me = SimId {
                    node: i as u32,
                    generation: 0,
                };
                let foca = Foca::new(
                    me,
                    foca_config(n, config, buoy_timing),
                    SeededRng(swim::Rng::new(seeds[i])),
                    PostcardCodec,
                );
                let mut node = FocaNode {
                    foca,
                    runtime: AccumulatingRuntime::new(),
                    timers: BinaryHeap::new(),
                    seq: 0,
                    now: Instant::ZERO,
                    addr: sim_addr(i),
                    outputs: Vec::new(),
                };
                let others = (0..n).filter(|&j| j != i).map(|j| {
                    Member::alive(SimId {
                        node: j as u32,
                        generation: 0,
                    })
                });
                let _ = node.foca.apply_many(others, false, &mut node.runtime);
                node.drain();
                // A formed cluster reports no joins.
                node.outputs
                    .retain(|o| !matches!(o, Output::Event(Event::MemberJoined { .. })));
                node
            })
            .collect()
    }

    fn publish_update(&mut self, _memory_mb: u64) -> Option<Incarnation> {
        None // foca identities carry no separate metadata updates.
    }
}
