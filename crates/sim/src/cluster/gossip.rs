//! Gossip in `buoy sim cluster`: the real SWIM cores (`swim::Swim`, LAN profile), one per
//! server and one per host, on the membership simulator's network ([`crate::Simulation`]).
//! A core lives as long as its agent: it crashes with the agent or the machine, stalls while
//! the agent hangs or the machine sleeps, leaves when the agent fences itself, and a new agent
//! starts a fresh core that joins through the servers. Partitions and isolated servers cut
//! the same links here as for leases. The leader reads each host's state from its own
//! server's core, as `server::recovery` does.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use engine::member_down;
use swim::{Capacity, Config, Identity, Instant, MemberState, Metadata, Rng, Role, Swim};

use super::world::Cut;
use crate::network::NetworkConfig;
use crate::scenario::sim_addr;
use crate::simulation::Simulation;

/// Every gossip core of the cluster: servers are nodes `0..servers`, hosts follow.
pub struct Gossip {
    sim: Simulation<Swim>,
    servers: usize,
    identities: Vec<Arc<Identity>>,
    config: Arc<Config>,
    /// Per host: the agent generation its core runs for (`None` while it has none).
    cores: Vec<Option<u64>>,
    /// Where a new core joins.
    seeds: Vec<SocketAddr>,
    rng: Rng,
}

/// What the leader's core says about the hosts.
pub struct View {
    /// Dead or left.
    pub down: BTreeSet<String>,
    /// Alive (not suspect).
    pub alive: BTreeSet<String>,
}

impl Gossip {
    /// A formed cluster: every core knows every other at the start.
    pub fn new(servers: usize, host_names: &[String], seed: u64) -> Self {
        let config = Arc::new(Config::lan());
        let meta = |role: Role| Metadata {
            segment: "sim".into(),
            role,
            capacity: Capacity {
                cpus: 8,
                memory_mb: 32_768,
            },
            ..Metadata::default()
        };
        let names: Vec<(String, Role)> = (0..servers)
            .map(|s| (format!("server-{s}"), Role::Server))
            .chain(host_names.iter().map(|n| (n.clone(), Role::Client)))
            .collect();
        let identities: Vec<Arc<Identity>> = names
            .iter()
            .enumerate()
            .map(|(i, (name, role))| Arc::new(Identity::new(name, sim_addr(i), meta(*role))))
            .collect();
        let mut rng = Rng::new(seed ^ 0x6055_1900);
        let mut sim = Simulation::new(rng.next_u64(), NetworkConfig::lan());
        for id in &identities {
            let mut core = Swim::new(
                config.clone(),
                &id.name,
                id.addr,
                id.meta.clone(),
                rng.next_u64(),
                Instant::ZERO,
            )
            .expect("the LAN profile is valid");
            core.assume_members(Instant::ZERO, identities.iter().cloned());
            sim.add_node(core);
        }
        let seeds = (0..servers).map(sim_addr).collect();
        Gossip {
            sim,
            servers,
            identities,
            config,
            cores: vec![Some(1); host_names.len()],
            seeds,
            rng,
        }
    }

    /// Runs every core up to `t` (never backwards).
    pub fn advance(&mut self, t: Instant) {
        self.sim.run_until(t);
        // Nothing reads the cores' events: the leader reads member states.
        self.sim.drain_events();
    }

    /// Keeps host `h`'s core in step with its agent: `agent` is the running agent's
    /// generation, `None` when no agent runs (killed, or the machine is off).
    pub fn follow_agent(&mut self, h: usize, agent: Option<u64>) {
        if self.cores[h] == agent {
            return;
        }
        self.cores[h] = agent;
        let node = self.servers + h;
        self.sim.crash(node);
        if agent.is_some() {
            self.start(node);
        }
    }

    /// Host `h`'s agent fenced itself: its core says it leaves, then goes quiet.
    pub fn leave(&mut self, h: usize) {
        let node = self.servers + h;
        self.sim.with_node(node, |s, now| s.leave(now));
        self.sim.crash(node);
    }

    /// Host `h`'s agent (or the whole machine) is frozen for `length` from now.
    pub fn stall_host(&mut self, h: usize, length: Duration) {
        let now = self.sim.now();
        self.sim.schedule_stall(self.servers + h, now, length);
    }

    /// Server `s` crashes (`up` false) or starts again with a fresh core (`up` true).
    pub fn server(&mut self, s: usize, up: bool) {
        self.sim.crash(s);
        if up {
            self.start(s);
        }
    }

    fn start(&mut self, node: usize) {
        let id = &self.identities[node];
        let now = self.sim.now();
        let core = Swim::new(
            self.config.clone(),
            &id.name,
            id.addr,
            id.meta.clone(),
            self.rng.next_u64(),
            now,
        )
        .expect("the LAN profile is valid");
        self.sim.restart(node, core);
        let seeds = self.seeds.clone();
        self.sim.with_node(node, |s, now| s.join(now, &seeds));
    }

    /// Cuts the links the partitions in force and the isolated servers cut.
    pub fn set_cuts(&mut self, cuts: &[Cut], isolated_servers: &BTreeSet<usize>) {
        let n = self.identities.len();
        let net = self.sim.network_mut();
        net.heal();
        for c in cuts {
            let inside: Vec<usize> = c.hosts.iter().map(|h| self.servers + h).collect();
            let outside: Vec<usize> = (0..n)
                .filter(|x| *x < self.servers || !c.hosts.contains(&(x - self.servers)))
                .collect();
            // One way: only what the cut hosts send is lost.
            net.partition(&inside, &outside, c.one_way);
        }
        for &s in isolated_servers {
            let others: Vec<usize> = (0..n).filter(|&x| x != s).collect();
            net.partition(&[s], &others, false);
        }
    }

    /// What server `leader`'s core says about the hosts; `has_work(name)` says whether copies
    /// are placed on a host or leaving it (`engine::member_down`).
    pub fn view(&self, leader: usize, has_work: impl Fn(&str) -> bool) -> View {
        let mut v = View {
            down: BTreeSet::new(),
            alive: BTreeSet::new(),
        };
        let Some(core) = self.sim.node(leader) else {
            return v;
        };
        for id in &self.identities[self.servers..] {
            let state = core.member(&id.name).map(|m| m.state);
            if state == Some(MemberState::Alive) {
                v.alive.insert(id.name.to_string());
            }
            if member_down::counts_down(state, || has_work(&id.name)) {
                v.down.insert(id.name.to_string());
            }
        }
        v
    }

    /// Host `name`'s state in server `leader`'s core (for `--trace`).
    pub fn state_of(&self, leader: usize, name: &str) -> Option<MemberState> {
        self.sim.node(leader)?.member(name).map(|m| m.state)
    }

    /// Deliveries and timer wake-ups the cores took so far.
    pub fn processed(&self) -> u64 {
        self.sim.processed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i:03}")).collect()
    }

    /// Runs until `t` s and returns server 0's view.
    fn at(g: &mut Gossip, secs: u64) -> View {
        g.advance(Instant::from_nanos(secs * 1_000_000_000));
        g.view(0, |_| true)
    }

    #[test]
    fn a_host_whose_agent_dies_is_dead_in_seconds_and_alive_again_after_a_new_agent_joins() {
        let mut g = Gossip::new(3, &names(10), 7);
        assert_eq!(at(&mut g, 2).alive.len(), 10);
        g.follow_agent(4, None);
        let v = at(&mut g, 10);
        assert!(v.down.contains("host-004"), "dead 8 s after: {:?}", v.down);
        assert_eq!(v.alive.len(), 9);
        g.follow_agent(4, Some(2));
        let v = at(&mut g, 20);
        assert!(
            v.alive.contains("host-004"),
            "back after a rejoin: {:?}",
            v.down
        );
        assert!(v.down.is_empty());
    }

    #[test]
    fn a_partition_makes_hosts_dead_to_the_servers_and_healing_brings_them_back() {
        let mut g = Gossip::new(3, &names(10), 8);
        at(&mut g, 2);
        let cut = Cut {
            id: 1,
            hosts: [1, 2].into_iter().collect(),
            one_way: false,
            gossip_only: true,
        };
        g.set_cuts(&[cut], &BTreeSet::new());
        let v = at(&mut g, 12);
        assert_eq!(v.down.len(), 2, "{:?}", v.down);
        g.set_cuts(&[], &BTreeSet::new());
        // Dead members are probed again every reconnect interval (5 s).
        let v = at(&mut g, 30);
        assert!(v.down.is_empty(), "{:?}", v.down);
    }

    #[test]
    fn a_stalled_agent_is_suspected_but_one_that_leaves_is_gone_at_once() {
        let mut g = Gossip::new(3, &names(10), 9);
        at(&mut g, 2);
        g.leave(3);
        let v = at(&mut g, 3);
        assert!(v.down.contains("host-003"));
        g.stall_host(5, Duration::from_millis(500));
        let v = at(&mut g, 6);
        assert!(!v.down.contains("host-005"), "a 0.5 s stall is not a death");
    }

    #[test]
    fn a_server_that_restarts_after_a_host_left_never_lists_it_so_absence_with_work_is_down() {
        let mut g = Gossip::new(3, &names(10), 10);
        at(&mut g, 2);
        g.server(0, false);
        g.leave(3);
        at(&mut g, 4);
        g.server(0, true);
        at(&mut g, 15);
        assert_eq!(
            g.state_of(0, "host-003"),
            None,
            "a joiner learns only live members"
        );
        assert!(g.view(0, |_| true).down.contains("host-003"));
        assert!(!g.view(0, |_| false).down.contains("host-003"));
        assert_eq!(g.view(0, |_| true).alive.len(), 9);
    }
}
