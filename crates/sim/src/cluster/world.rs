//! The event loop of `buoy sim cluster`: hosts, servers, the network between them and the
//! faults, on one virtual clock, with the checks run as it goes.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use engine::host_lease::{LeaseTiming, RenewalId};
use model::{ClusterState, Expect, Kind, Object, Op};
use proto::Grant;
use swim::{Instant, Rng};

use super::ClusterScenario;
use super::clock::Clock;
use super::control::{Control, Server, TICK};
use super::faults::{self, Fault};
use super::gossip::Gossip;
use super::host::{Driver, Host, HostOut, Renewal};
use super::setup;
use crate::run_log::RunLog;

/// Something due at a time.
#[derive(Debug)]
enum Ev {
    HostWake(usize),
    /// A renewal reaches the leader (if there still is one).
    Renewal {
        host: usize,
        generation: u64,
        renewal: Renewal,
    },
    /// A grant reaches its host.
    Grant {
        host: usize,
        generation: u64,
        id: RenewalId,
        grant: Grant,
    },
    Tick,
    Fault(Fault),
    HealPartition(u64),
    ServerUp(usize),
    ServerRejoins(usize),
    Election,
    /// An operator restarts a fenced host's agent (after cleaning up what failed to stop).
    RestartFenced(usize),
}

type Scheduled = crate::due::Due<Ev>;

/// A partition in force.
#[derive(Clone, Debug)]
pub struct Cut {
    pub id: u64,
    pub hosts: BTreeSet<usize>,
    pub one_way: bool,
    pub gossip_only: bool,
}

/// The whole simulated cluster.
pub struct World {
    pub now: Instant,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    pub rng: Rng,
    pub hosts: Vec<Host>,
    /// The wake-up each host has in the queue.
    host_wake: Vec<Option<Instant>>,
    pub control: Control,
    pub drivers: BTreeMap<String, Driver>,
    pub log: RunLog,
    pub cuts: Vec<Cut>,
    next_cut: u64,
    /// Servers cut off from everything.
    pub isolated_servers: BTreeSet<usize>,
    /// The real SWIM cores of servers and hosts.
    pub gossip: Gossip,
    pub faults: BTreeMap<&'static str, u64>,
    pub leader_changes: u64,
    pub events: u64,
    /// Hosts marked failed while they held their lease (rule S3).
    pub s3: Vec<String>,
    /// Per instance: since when no copy runs.
    down_since: BTreeMap<String, Instant>,
    /// Finished periods with no copy running, in ms, with the instance.
    pub down_periods: Vec<(u64, String)>,
    election_pending: bool,
    /// At the end: instances running nowhere, and for how long.
    stuck: Vec<(Duration, String)>,
    /// Every instance's id (instances are never added or removed during a run).
    instance_ids: Vec<String>,
    /// The instance (id) `--trace` follows.
    pub trace: Option<String>,
}

impl World {
    pub fn new(sc: &ClusterScenario) -> Self {
        let mut rng = Rng::new(sc.seed);
        let timing = LeaseTiming {
            ttl: sc.ttl,
            renew_every: sc.ttl / 6,
        };
        let max_ppm = sc.max_drift_ppm;
        let clock = |rng: &mut Rng| {
            let origin = rng.next_u64() % 1_000_000_000_000 + 1_000_000_000;
            let ppm = if max_ppm == 0 {
                0
            } else {
                (rng.next_u64() % (2 * max_ppm + 1)) as i64 - max_ppm as i64
            };
            Clock::new(origin, ppm)
        };
        let hosts: Vec<Host> = (0..sc.hosts)
            .map(|i| {
                let c = clock(&mut rng);
                Host::new(
                    setup::host_name(i),
                    c,
                    timing,
                    rng.next_u64(),
                    sc.broken_host,
                    sc.sleep_hook,
                )
            })
            .collect();
        let servers: Vec<Server> = (0..sc.servers)
            .map(|_| Server {
                clock: clock(&mut rng),
                up: true,
            })
            .collect();
        let (st, drivers) = setup::cluster_state(sc, &mut rng);
        let mut control = Control::new(servers, st, sc.ttl);
        control.broken = sc.broken_leader;
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let gossip = Gossip::new(sc.servers, &names, sc.seed);
        let mut w = World {
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            rng,
            host_wake: vec![None; sc.hosts],
            hosts,
            control,
            drivers,
            log: RunLog::default(),
            cuts: Vec::new(),
            next_cut: 0,
            isolated_servers: BTreeSet::new(),
            gossip,
            faults: BTreeMap::new(),
            leader_changes: 0,
            events: 0,
            s3: Vec::new(),
            down_since: BTreeMap::new(),
            down_periods: Vec::new(),
            election_pending: false,
            trace: None,
            instance_ids: Vec::new(),
            stuck: Vec::new(),
        };
        let first = w.rng.below(sc.servers);
        w.control.elect(first, Instant::ZERO);
        w.schedule(Instant::ZERO, Ev::Tick);
        let plan = faults::plan(&mut w.rng, &sc.faults, sc.hosts, sc.servers, sc.duration);
        for (at, f) in plan {
            w.schedule(at, Ev::Fault(f));
        }
        for h in 0..w.hosts.len() {
            w.host_wake[h] = Some(Instant::ZERO);
            w.schedule(Instant::ZERO, Ev::HostWake(h));
        }
        w
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            item: ev,
        });
    }

    fn reschedule_host(&mut self, h: usize) {
        let next = self.hosts[h].next_wake(self.now).map(|n| n.max(self.now));
        if next.is_some() && next != self.host_wake[h] {
            self.host_wake[h] = next;
            self.schedule(next.unwrap_or(self.now), Ev::HostWake(h));
        }
    }

    /// Runs until `end`.
    pub fn run(&mut self, end: Instant) {
        while let Some(s) = self.queue.pop() {
            if s.at > end {
                self.now = end;
                break;
            }
            self.now = s.at;
            self.events += 1;
            self.handle(s.at, s.item);
        }
        self.finish_periods();
    }

    fn handle(&mut self, t: Instant, ev: Ev) {
        self.gossip.advance(t);
        match ev {
            Ev::HostWake(h) => {
                if self.host_wake[h] != Some(t) {
                    return;
                }
                self.host_wake[h] = None;
                self.step_host(h);
            }
            Ev::Renewal {
                host,
                generation,
                renewal,
            } => {
                if !self.leader_can_grant() {
                    return;
                }
                let Some(server) = self.control.leader.as_ref().map(|l| l.server) else {
                    return;
                };
                let name = self.hosts[host].name.clone();
                let grant =
                    self.control
                        .renew(t, &name, renewal.known, renewal.report, &self.drivers);
                if let Some(grant) = grant
                    && let Some(delay) = self.link(server_node(server), host_node(host))
                {
                    self.schedule(
                        t + delay,
                        Ev::Grant {
                            host,
                            generation,
                            id: renewal.id,
                            grant,
                        },
                    );
                }
            }
            Ev::Grant {
                host,
                generation,
                id,
                grant,
            } => {
                self.hosts[host].on_grant(generation, id, grant);
                self.step_host(host);
            }
            Ev::Tick => {
                self.tick(t);
                self.schedule(t + TICK, Ev::Tick);
            }
            Ev::Fault(f) => self.fault(t, f),
            Ev::HealPartition(id) => {
                self.cuts.retain(|c| c.id != id);
                self.gossip.set_cuts(&self.cuts, &self.isolated_servers);
                self.check_leader(t);
            }
            Ev::ServerUp(s) => {
                self.control.servers[s].up = true;
                self.gossip.server(s, true);
                self.check_leader(t);
            }
            Ev::ServerRejoins(s) => {
                self.isolated_servers.remove(&s);
                self.gossip.set_cuts(&self.cuts, &self.isolated_servers);
                self.check_leader(t);
            }
            Ev::Election => {
                self.election_pending = false;
                self.elect(t);
            }
            Ev::RestartFenced(h) => {
                if self.hosts[h].fenced {
                    self.hosts[h].kill_agent(t);
                    *self.faults.entry("operator_restart").or_default() += 1;
                    self.step_host(h);
                }
            }
        }
    }

    fn step_host(&mut self, h: usize) {
        let t = self.now;
        let mut out = HostOut::default();
        self.hosts[h].step(t, &self.drivers, &mut self.log, &mut out);
        self.gossip.follow_agent(h, self.hosts[h].agent_running());
        if out.left_gossip {
            self.gossip.leave(h);
            let delay = self
                .rng
                .duration_between(Duration::from_secs(20), Duration::from_secs(60));
            self.schedule(t + delay, Ev::RestartFenced(h));
        }
        let generation = self.hosts[h].agent_gen;
        for renewal in out.renewals {
            let Some(server) = self.control.leader.as_ref().map(|l| l.server) else {
                continue;
            };
            if let Some(delay) = self.link(host_node(h), server_node(server)) {
                self.schedule(
                    t + delay,
                    Ev::Renewal {
                        host: h,
                        generation,
                        renewal,
                    },
                );
            }
        }
        self.reschedule_host(h);
    }

    /// The delay of a message from `from` to `to`, or none when it is lost or cut.
    fn link(&mut self, from: Node, to: Node) -> Option<Duration> {
        if self.blocked(from, to, false) || self.rng.chance(0.005) {
            return None;
        }
        let mut d = self
            .rng
            .duration_between(Duration::from_micros(200), Duration::from_millis(3));
        if self.rng.chance(0.02) {
            d += self
                .rng
                .duration_between(Duration::from_millis(10), Duration::from_millis(500));
        }
        Some(d)
    }

    /// True when a partition or an isolated server cuts `from` -> `to` (for gossip between
    /// hosts when `gossip` is set).
    pub fn blocked(&self, from: Node, to: Node, gossip: bool) -> bool {
        let server_cut =
            |n: Node| matches!(n, Node::Server(s) if self.isolated_servers.contains(&s));
        if server_cut(from) || server_cut(to) {
            return true;
        }
        self.cuts.iter().any(|c| {
            if c.gossip_only && !gossip {
                return false;
            }
            let inside = |n: Node| matches!(n, Node::Host(h) if c.hosts.contains(&h));
            let (a, b) = (inside(from), inside(to));
            if a == b {
                return false;
            }
            // One way: only what the cut hosts send is lost.
            !c.one_way || a
        })
    }

    fn leader_can_grant(&self) -> bool {
        let Some(l) = self.control.leader.as_ref() else {
            return false;
        };
        self.has_quorum(l.server)
    }

    fn has_quorum(&self, s: usize) -> bool {
        let reachable =
            |x: usize| self.control.servers[x].up && !self.isolated_servers.contains(&x);
        if !reachable(s) {
            return false;
        }
        let n = self.control.servers.len();
        (0..n).filter(|&x| reachable(x)).count() * 2 > n
    }

    /// A leader that lost its quorum stops leading; an election follows.
    fn check_leader(&mut self, t: Instant) {
        if self.control.leader.is_some() && !self.leader_can_grant() {
            self.control.leader = None;
        }
        if self.control.leader.is_none() && !self.election_pending {
            self.election_pending = true;
            let delay = self
                .rng
                .duration_between(Duration::from_millis(1_000), Duration::from_millis(3_000));
            self.schedule(t + delay, Ev::Election);
        }
    }

    fn elect(&mut self, t: Instant) {
        if self.control.leader.is_some() {
            return;
        }
        let candidates: Vec<usize> = (0..self.control.servers.len())
            .filter(|&s| self.has_quorum(s))
            .collect();
        if candidates.is_empty() {
            self.check_leader(t);
            return;
        }
        let s = candidates[self.rng.below(candidates.len())];
        self.control.elect(s, t);
        self.leader_changes += 1;
    }

    fn tick(&mut self, t: Instant) {
        self.check_leader(t);
        if self.leader_can_grant()
            && let Some(server) = self.control.leader.as_ref().map(|l| l.server)
        {
            // What gossip says about each host, as the leader's own core sees it.
            let st = &self.control.st;
            let view = self.gossip.view(server, |name| {
                st.host_by_name(name)
                    .is_some_and(|h| engine::member_down::has_work(st, &h.meta.id))
            });
            let out = self.control.tick(t, &view.down, &view.alive, &self.drivers);
            for name in out.marked_failed {
                if let Some(h) = self.hosts.iter().find(|h| h.name == name)
                    && h.holds_lease(t)
                {
                    self.s3.push(format!(
                        "host {name} was marked failed at {} ms while it held its lease",
                        t.as_nanos() / 1_000_000
                    ));
                }
            }
        }
        self.sample_running(t);
    }

    fn sample_running(&mut self, t: Instant) {
        if self.instance_ids.is_empty() {
            self.instance_ids = self
                .control
                .st
                .instances()
                .map(|i| i.meta.id.clone())
                .collect();
        }
        for k in 0..self.instance_ids.len() {
            let id = &self.instance_ids[k];
            let running = self.log.running(id) > 0;
            match (running, self.down_since.get(id).copied()) {
                (true, Some(since)) => {
                    self.down_since.remove(id);
                    self.down_periods
                        .push((t.saturating_since(since).as_millis() as u64, id.clone()));
                }
                (false, None) => {
                    self.down_since.insert(id.clone(), t);
                }
                (false, Some(since))
                    if self.trace.as_deref() == Some(id.as_str())
                        && t.saturating_since(since).as_millis().is_multiple_of(5_000) =>
                {
                    eprintln!("{}", self.describe(t, id));
                }
                _ => {}
            }
        }
    }

    fn finish_periods(&mut self) {
        let t = self.now;
        for (id, since) in &self.down_since {
            if let Some(i) = self.control.st.instance(id) {
                self.stuck
                    .push((t.saturating_since(*since), i.name.clone()));
            }
        }
        for (id, since) in std::mem::take(&mut self.down_since) {
            self.down_periods
                .push((t.saturating_since(since).as_millis() as u64, id));
        }
    }

    /// Where instance `id` stands, for `--trace`.
    fn describe(&self, t: Instant, id: &str) -> String {
        let st = &self.control.st;
        let p = st.placements().find(|p| p.instance == id);
        let host = p.and_then(|p| st.host(&p.host));
        let h = host.and_then(|x| self.hosts.iter().find(|h| h.name == x.name));
        let leader = self.control.leader.as_ref().map(|l| l.server);
        let gossip = leader
            .zip(host)
            .and_then(|(l, h)| self.gossip.state_of(l, &h.name));
        format!(
            "{} ms: {id} runs nowhere; placement {:?} on {:?} (failed {:?}, leader {leader:?} sees {gossip:?}); host: {}",
            t.as_nanos() / 1_000_000,
            p.map(|p| (&p.meta.id, p.epoch, &p.handoffs)),
            host.map(|h| &h.name),
            host.map(|h| h.failed),
            h.map(|h| h.describe(t)).unwrap_or_default()
        )
    }

    /// Instances running nowhere at the end for more than `grace` (a copy that crashed by
    /// itself a moment ago is restarting, not lost).
    pub fn stuck_at_end(&self, grace: Duration) -> Vec<String> {
        self.stuck
            .iter()
            .filter(|(d, _)| *d > grace)
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn fault(&mut self, t: Instant, f: Fault) {
        let kind = f.kind();
        if self.trace.is_some() {
            // The faults give the outages of the traced instance their context.
            eprintln!("{} ms: fault {f:?}", t.as_nanos() / 1_000_000);
        }
        let applied = match f {
            Fault::Crash { host, down } => {
                self.hosts[host].crash(t, t + down, &mut self.log);
                self.step_host(host);
                true
            }
            Fault::AgentKill { host, down } => {
                self.hosts[host].kill_agent(t + down);
                self.step_host(host);
                true
            }
            Fault::Hang { host, length } => {
                if self.hosts[host].agent_running().is_some() {
                    self.gossip.stall_host(host, length);
                }
                self.hosts[host].hang_agent(t + length);
                self.step_host(host);
                true
            }
            Fault::Suspend { host, length } => {
                if self.hosts[host].awake() {
                    self.gossip.stall_host(host, length);
                }
                self.hosts[host].suspend(t, t + length, &mut self.log);
                self.step_host(host);
                true
            }
            Fault::Partition {
                hosts,
                one_way,
                gossip_only,
                length,
            } => {
                self.next_cut += 1;
                let id = self.next_cut;
                self.cuts.push(Cut {
                    id,
                    hosts: hosts.into_iter().collect(),
                    one_way,
                    gossip_only,
                });
                self.gossip.set_cuts(&self.cuts, &self.isolated_servers);
                self.schedule(t + length, Ev::HealPartition(id));
                true
            }
            Fault::ServerCrash { server, down } => {
                let others_down = self
                    .control
                    .servers
                    .iter()
                    .enumerate()
                    .any(|(i, s)| i != server && !s.up)
                    || !self.isolated_servers.is_empty();
                // One server fault at a time: the control plane keeps its quorum.
                if !others_down && self.control.servers[server].up {
                    self.control.servers[server].up = false;
                    self.gossip.server(server, false);
                    self.schedule(t + down, Ev::ServerUp(server));
                    self.check_leader(t);
                    true
                } else {
                    false
                }
            }
            Fault::ServerIsolate { server, length } => {
                let others =
                    self.control.servers.iter().any(|s| !s.up) || !self.isolated_servers.is_empty();
                if !others {
                    self.isolated_servers.insert(server);
                    self.gossip.set_cuts(&self.cuts, &self.isolated_servers);
                    self.schedule(t + length, Ev::ServerRejoins(server));
                    self.check_leader(t);
                    true
                } else {
                    false
                }
            }
            Fault::Move => self.operator_move(t),
            Fault::Unplace => self.operator_unplace(t),
            Fault::LeaseTtl { ttl } => self.control.write(
                t,
                Op::SetLease {
                    ttl_ms: ttl.as_millis() as u64,
                    drift_margin_ms: (ttl / 10).as_millis() as u64,
                    stop_grace_ms: None,
                },
            ),
        };
        if applied {
            *self.faults.entry(kind).or_default() += 1;
        }
    }

    /// Moves a random copy to another host that takes work (a handoff between live hosts).
    fn operator_move(&mut self, t: Instant) -> bool {
        let st = &self.control.st;
        let placements: Vec<_> = st.placements().cloned().collect();
        let targets: Vec<String> = st
            .hosts()
            .filter(|h| !h.failed)
            .map(|h| h.meta.id.clone())
            .collect();
        if placements.is_empty() || targets.is_empty() {
            return false;
        }
        let p = placements[self.rng.below(placements.len())].clone();
        let to = targets[self.rng.below(targets.len())].clone();
        if to == p.host {
            return false;
        }
        let version = p.meta.version;
        let mut moved = p;
        moved.host = to;
        self.control.write(
            t,
            Op::Put {
                object: Box::new(Object::Placement(moved)),
                expect: Expect::Version(version),
            },
        )
    }

    /// Deletes a random placement; the recovery loop places the replica again.
    fn operator_unplace(&mut self, t: Instant) -> bool {
        let placements: Vec<_> = self.control.st.placements().cloned().collect();
        if placements.is_empty() {
            return false;
        }
        let p = &placements[self.rng.below(placements.len())];
        self.control.write(
            t,
            Op::Delete {
                kind: Kind::Placement,
                id: p.meta.id.clone(),
                version: Some(p.meta.version),
            },
        )
    }

    pub fn state(&self) -> &ClusterState {
        &self.control.st
    }
}

/// A machine on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Host(usize),
    Server(usize),
}

fn host_node(h: usize) -> Node {
    Node::Host(h)
}

fn server_node(s: usize) -> Node {
    Node::Server(s)
}
