//! A model of the control plane: the replicated state machine (the real
//! [`model::ClusterState`], one copy, as Raft keeps it), leader changes and elections, and the
//! leader's soft state: the real [`LeaseTable`], the hosts' last reports, grants built by the
//! real `engine::grant` and `engine::handoff` rules, and a recovery loop that mirrors
//! `server::recovery` around the real planner. openraft's own safety (one leader per term, no
//! lost commits) is covered by the control-plane simulation; here a leader grants only while it
//! reaches a quorum, as `confirm_leadership` makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use engine::handoff;
use engine::lease_table::LeaseTable;
use engine::plan_input;
use engine::planner::plan;
use model::placement::{Epoch, Placement};
use model::{ClusterState, Command, Expect, Object, ObjectMeta, Op, Timestamp};
use proto::{Grant, Phase, Report};
use swim::Instant;

use super::clock::Clock;
use super::host::Driver;

/// How often the leader's recovery loop runs (`server::recovery::INTERVAL`).
pub const TICK: Duration = Duration::from_millis(200);
/// Planning again without a change (`server::recovery::RETRY_PLAN`).
const RETRY_PLAN: Duration = Duration::from_secs(2);

/// A server: its clock and whether it runs.
pub struct Server {
    pub clock: Clock,
    pub up: bool,
}

/// The leader of one term and its soft state.
pub struct Leader {
    pub server: usize,
    pub term: u64,
    table: LeaseTable,
    reports: BTreeMap<String, Report>,
    planned: Option<(u64, BTreeSet<(String, Epoch)>)>,
    last_plan: Option<Instant>,
    /// Negative control only: an old state it grants from until then (true time).
    stale: Option<(ClusterState, Instant)>,
}

/// Negative-control knobs on the leader's side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderBroken {
    /// Grants ignore handoffs: a moved copy starts before its old host confirmed the stop.
    pub skip_handoffs: bool,
    /// A new leader grants from a state 20-60 s old for its first 5 s, as a server restored
    /// from its last snapshot would if grants did not wait for the read barrier (hole 10).
    pub stale_grants: bool,
}

/// Copies of the state kept for `stale_grants`: one every 10 s, the last six.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
const SNAPSHOTS: usize = 6;

/// The control plane.
pub struct Control {
    pub servers: Vec<Server>,
    pub leader: Option<Leader>,
    pub term: u64,
    pub st: ClusterState,
    /// The default TTL servers start with (`--lease-ttl`).
    pub own_ttl: Duration,
    pub broken: LeaderBroken,
    /// Moves the planner wrote, and hosts marked failed.
    pub moves: u64,
    pub failed_hosts: u64,
    next_id: u64,
    /// Only with `stale_grants`: past states, oldest first, with when each was taken.
    snapshots: std::collections::VecDeque<(Instant, ClusterState)>,
}

/// What the recovery loop wants the world to check: hosts it just marked failed.
#[derive(Debug, Default)]
pub struct TickOut {
    pub marked_failed: Vec<String>,
}

impl Control {
    pub fn new(servers: Vec<Server>, st: ClusterState, own_ttl: Duration) -> Self {
        Control {
            servers,
            leader: None,
            term: 0,
            st,
            own_ttl,
            broken: LeaderBroken::default(),
            moves: 0,
            failed_hosts: 0,
            next_id: 0,
            snapshots: std::collections::VecDeque::new(),
        }
    }

    /// Applies one committed command.
    pub fn write(&mut self, t: Instant, op: Op) -> bool {
        let cmd = Command {
            at: Timestamp::from_unix_millis(1_800_000_000_000 + t.as_nanos() / 1_000_000),
            op,
        };
        let ok = self.st.apply(&cmd).0.is_ok();
        if self.broken.stale_grants
            && self
                .snapshots
                .back()
                .is_none_or(|(at, _)| t.saturating_since(*at) >= SNAPSHOT_EVERY)
        {
            self.snapshots.push_back((t, self.st.clone()));
            if self.snapshots.len() > SNAPSHOTS {
                self.snapshots.pop_front();
            }
        }
        ok
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Elects `server` as leader of a new term at `t`: every lease counts as renewed at the
    /// election, for the longest TTL any leader may have granted.
    pub fn elect(&mut self, server: usize, t: Instant) {
        self.term += 1;
        let settings = self.settings();
        let now = self.servers[server].clock.local(t);
        let stale = self
            .snapshots
            .iter()
            .find(|(at, _)| t.saturating_since(*at) >= Duration::from_secs(20))
            .filter(|_| self.broken.stale_grants)
            .map(|(_, st)| (st.clone(), t + Duration::from_secs(5)));
        self.leader = Some(Leader {
            server,
            term: self.term,
            table: LeaseTable::new(
                settings.ttl(),
                settings.drift_margin(),
                settings.ceiling(),
                now,
            ),
            reports: BTreeMap::new(),
            planned: None,
            last_plan: None,
            stale,
        });
    }

    fn settings(&self) -> model::LeaseSettings {
        self.st
            .lease()
            .unwrap_or_else(|| model::LeaseSettings::set(None, self.own_ttl, self.own_ttl / 10))
    }

    fn leader_now(&self, t: Instant) -> Option<Instant> {
        let l = self.leader.as_ref()?;
        Some(self.servers[l.server].clock.local(t))
    }

    /// A renewal from `host` reached the leader at `t`: its grant (none without a leader).
    pub fn renew(
        &mut self,
        t: Instant,
        host: &str,
        known: Option<u64>,
        report: Report,
        drivers: &BTreeMap<String, Driver>,
    ) -> Option<Grant> {
        let now = self.leader_now(t)?;
        let settings = self.settings();
        let broken = self.broken;
        let l = self.leader.as_mut()?;
        l.table.set_timing(settings.ttl(), settings.drift_margin());
        l.table
            .set_stop_grace(settings.stop_grace(), settings.stop_grace_ceiling());
        let ttl = l.table.renew(host, now);
        let grace = l.table.stop_grace();
        l.reports.insert(host.to_string(), report);
        let l = &*l;
        let st = match &l.stale {
            Some((old, until)) if t < *until => old,
            _ => &self.st,
        };
        let index = st.change_index();
        let (index, assignments) = if known == Some(index) {
            (index, None)
        } else {
            // The simulated instances have no start conditions and no notifications.
            let (index, list) = engine::grant::assignments(
                st,
                host,
                |p| broken.skip_handoffs || handoffs_confirmed(l, st, p, now, drivers),
                |_, _| true,
            );
            (index, Some(list))
        };
        Some(Grant {
            ttl_ms: ttl.as_millis() as u64,
            term: l.term,
            index,
            assignments,
            stop_grace_ms: Some(grace.as_millis() as u64),
        })
    }

    /// One pass of the leader's recovery loop (`server::recovery::Recovery::tick`). `down`
    /// says which hosts gossip counts dead (or left); `alive`, which it counts alive.
    pub fn tick(
        &mut self,
        t: Instant,
        down: &BTreeSet<String>,
        alive: &BTreeSet<String>,
        drivers: &BTreeMap<String, Driver>,
    ) -> TickOut {
        let mut out = TickOut::default();
        let Some(now) = self.leader_now(t) else {
            return out;
        };
        if self.st.lease().is_none() {
            let own = self.settings();
            self.write(
                t,
                Op::SetLease {
                    ttl_ms: own.ttl_ms,
                    drift_margin_ms: own.drift_margin_ms,
                    stop_grace_ms: None,
                },
            );
        }
        // Failed hosts: dead in gossip and their lease (drift margin, stop budget) over.
        let failing: Vec<model::host::Host> = {
            let l = self.leader.as_ref().expect("a leader");
            self.st
                .hosts()
                .filter(|h| !h.failed && down.contains(&h.name))
                .filter(|h| lease_over(l, &self.st, &h.name, &h.meta.id, now, drivers))
                .cloned()
                .collect()
        };
        for h in failing {
            let version = h.meta.version;
            let mut marked = h.clone();
            marked.failed = true;
            let op = Op::Put {
                object: Box::new(Object::Host(marked)),
                expect: Expect::Version(version),
            };
            if self.write(t, op) {
                self.failed_hosts += 1;
                out.marked_failed.push(h.name.clone());
            }
        }
        // Returning hosts (the segment has auto_rejoin): alive in gossip and holding a lease.
        let back: Vec<model::host::Host> = {
            let l = self.leader.as_ref().expect("a leader");
            self.st
                .hosts()
                .filter(|h| h.failed && alive.contains(&h.name))
                .filter(|h| l.table.renewed(&h.name) && l.table.ends_at(&h.name) > now)
                .cloned()
                .collect()
        };
        for h in back {
            let version = h.meta.version;
            let mut enabled = h;
            enabled.failed = false;
            enabled.fenced = false;
            self.write(
                t,
                Op::Put {
                    object: Box::new(Object::Host(enabled)),
                    expect: Expect::Version(version),
                },
            );
        }
        // Confirmed handoffs are cleared.
        let done: Vec<Placement> = {
            let l = self.leader.as_ref().expect("a leader");
            self.st
                .placements()
                .filter(|p| !p.handoffs.is_empty())
                .filter(|p| handoffs_confirmed(l, &self.st, p, now, drivers))
                .cloned()
                .collect()
        };
        for p in done {
            let version = p.meta.version;
            let mut cleared = p;
            cleared.handoffs.clear();
            self.write(
                t,
                Op::Put {
                    object: Box::new(Object::Placement(cleared)),
                    expect: Expect::Version(version),
                },
            );
        }
        self.replan(t, now, down);
        out
    }

    /// Plans as the server's recovery does (`server::recovery::placing`): hosts `down` in
    /// gossip that no longer renew take nothing new.
    fn replan(&mut self, t: Instant, now: Instant, down: &BTreeSet<String>) {
        let Some(l) = self.leader.as_ref() else {
            return;
        };
        let failed: BTreeSet<(String, Epoch)> = l
            .reports
            .values()
            .flat_map(|r| r.instances.iter())
            .filter(|o| o.phase == Phase::Failed)
            .map(|o| (o.placement.clone(), o.epoch))
            .collect();
        let index = self.st.change_index();
        let changed = l
            .planned
            .as_ref()
            .is_none_or(|(i, f)| *i != index || *f != failed);
        let retry = l
            .last_plan
            .is_none_or(|p| t.saturating_since(p) >= RETRY_PLAN);
        if !changed && !retry {
            return;
        }
        let worth = changed && (!failed.is_empty() || plan_input::needs_plan(&self.st))
            || retry && plan_input::needs_plan(&self.st);
        if !worth {
            if let Some(l) = self.leader.as_mut() {
                l.planned = Some((index, failed));
            }
            return;
        }
        let starting: BTreeMap<String, u32> = l
            .reports
            .iter()
            .map(|(h, r)| {
                let n = r
                    .instances
                    .iter()
                    .filter(|o| o.phase == Phase::Starting)
                    .count();
                (h.clone(), n as u32)
            })
            .collect();
        // The model records no failures (`engine::failures`): no time is needed to expire them.
        let mut input =
            plan_input::plan_input(&self.st, &failed, &starting, model::Timestamp::default());
        for h in &mut input.hosts {
            h.down = self
                .st
                .host(&h.id)
                .is_some_and(|x| down.contains(&x.name) && !l.table.still_renews(&x.name, now));
        }
        let p = plan(&input);
        for m in &p.moves {
            let current = self
                .st
                .placements()
                .find(|x| x.instance == m.slot.instance && x.replica == m.slot.replica)
                .cloned();
            let op = match current {
                None => {
                    let id = self.new_id("p");
                    Op::Put {
                        object: Box::new(Object::Placement(Placement {
                            meta: ObjectMeta {
                                id,
                                ..Default::default()
                            },
                            instance: m.slot.instance.clone(),
                            replica: m.slot.replica,
                            host: m.to.clone(),
                            epoch: Epoch(0),
                            handoffs: Vec::new(),
                            home: None,
                            failures: Vec::new(),
                            attempt: 0,
                        })),
                        expect: Expect::Absent,
                    }
                }
                Some(c) => {
                    let version = c.meta.version;
                    let mut moved = c;
                    moved.host = m.to.clone();
                    Op::Put {
                        object: Box::new(Object::Placement(moved)),
                        expect: Expect::Version(version),
                    }
                }
            };
            if self.write(t, op) {
                self.moves += 1;
            }
        }
        let index = self.st.change_index();
        if let Some(l) = self.leader.as_mut() {
            l.planned = Some((index, failed));
            l.last_plan = Some(t);
        }
    }
}

/// Whether `host_id` has OCF copies (`engine::stop_budget`, as `server::lease::grants` asks).
fn has_slow_stops(st: &ClusterState, host_id: &str, drivers: &BTreeMap<String, Driver>) -> bool {
    engine::stop_budget::has_slow_stops(st, host_id, |instance| {
        matches!(drivers.get(instance), Some(Driver::Ocf { .. }))
    })
}

/// The host's lease, the drift margin and, for OCF copies, the stop grace are over
/// (`LeaseGrants::lease_over`).
fn lease_over(
    l: &Leader,
    st: &ClusterState,
    name: &str,
    id: &str,
    now: Instant,
    drivers: &BTreeMap<String, Driver>,
) -> bool {
    l.table
        .lease_over(name, now, || has_slow_stops(st, id, drivers))
}

/// Every handoff of `p` is confirmed (`LeaseGrants::handoffs_confirmed`).
fn handoffs_confirmed(
    l: &Leader,
    st: &ClusterState,
    p: &Placement,
    now: Instant,
    drivers: &BTreeMap<String, Driver>,
) -> bool {
    handoff::all_confirmed(
        st,
        p,
        |left| left.fenced || lease_over(l, st, &left.name, &left.meta.id, now, drivers),
        |name| l.reports.get(name),
    )
}
