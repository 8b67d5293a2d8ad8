//! The recovery loop on the leader: turns failures into moves, and records each recovery as a
//! notification with its steps and vmoves.
//!
//! - A host is failed once gossip says it is dead (or it left) *and* its lease (plus the drift
//!   margin) has run out, or a fence agent confirmed it off: by then it runs nothing. A host
//!   that gossip cannot reach but whose lease holds is isolated, not failed, and nothing moves
//!   (rule S3). A failed host is marked so in the state and takes no work until it is back and
//!   enabled again (`buoy host enable`, or its segment's `auto_rejoin`).
//! - Copies reported failed past their restart budget, and copies named by a VM notification,
//!   move off their host.
//! - The planner (`engine::planner`) decides where, and also places started instances that
//!   have no placement yet. Each move is a placement update, which gives the copy a new epoch;
//!   a copy leaving a live host starts on the new one only after the old one stopped it
//!   (`engine::handoff`), and the loop clears those handoffs once confirmed.
//! - With the segment's `failback`, copies return to the host a recovery moved them from once
//!   it takes work again.

mod external;
pub mod fence;
pub mod input;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use engine::planner::{Move, Plan, plan};
use state::ClusterState;
use state::host::Host;
use state::notification::{Notification, NotificationStatus, NotificationType, VMoveStatus};
use state::placement::{Epoch, Placement};
use state::raft::replica::Replica;
use state::{Expect, Object, Op, Timestamp};
use swim::MemberState;
use tracing::{info, warn};

use super::lease::LeaseGrants;
use super::runtime::Shared;
use crate::supervisor::reconciler::Phase;
use fence::Fencer;
use records::{DETECTED, FENCED, HEALTHY, LEASE_EXPIRED, PLANNED, STARTED};

/// How often the leader looks for failures.
const INTERVAL: Duration = Duration::from_millis(200);

/// How often a plan is retried while something could not be placed and nothing changed.
const RETRY_PLAN: Duration = Duration::from_secs(2);

/// Writes issued at once when a plan moves many copies (the Raft log commits them in groups).
const PARALLEL_WRITES: usize = 64;

/// The leader's recovery engine and its soft state (rebuilt by the next leader).
pub struct Recovery {
    replica: Arc<Replica>,
    grants: Arc<LeaseGrants>,
    gossip: Arc<Shared>,
    fencer: Arc<Fencer>,
    /// When this leader first saw each host dead in gossip (the `detected` step).
    first_dead: BTreeMap<String, Timestamp>,
    /// Hosts logged as isolated (dead in gossip, renewing their lease).
    isolated: BTreeSet<String>,
    /// Hosts already logged as back but waiting for `buoy host enable`.
    waiting_enable: BTreeSet<String>,
    /// What the last plan was made from: the change index and the failed copies.
    planned: Option<(u64, BTreeSet<(String, Epoch)>)>,
    last_plan: Option<tokio::time::Instant>,
    /// Copies named failed by VM notifications (placement id, epoch).
    external_failed: BTreeSet<(String, Epoch)>,
    /// The notification recording each failed copy's move.
    copy_records: BTreeMap<(String, Epoch), String>,
}

/// Runs on every server; acts only while this server leads.
pub async fn run(
    replica: Arc<Replica>,
    grants: Arc<LeaseGrants>,
    gossip: Arc<Shared>,
    fencer: Arc<Fencer>,
) {
    let mut r = Recovery {
        replica,
        grants,
        gossip,
        fencer,
        first_dead: BTreeMap::new(),
        isolated: BTreeSet::new(),
        waiting_enable: BTreeSet::new(),
        planned: None,
        last_plan: None,
        external_failed: BTreeSet::new(),
        copy_records: BTreeMap::new(),
    };
    loop {
        tokio::time::sleep(INTERVAL).await;
        if !r.replica.is_leader() {
            r.forget();
            continue;
        }
        r.tick().await;
    }
}

impl Recovery {
    /// Drops the soft state when leadership is lost.
    fn forget(&mut self) {
        self.first_dead.clear();
        self.waiting_enable.clear();
        self.planned = None;
        self.external_failed.clear();
        self.copy_records.clear();
    }

    async fn tick(&mut self) {
        let states: BTreeMap<String, MemberState> = self.gossip.read(|sw| {
            sw.members()
                .iter()
                .map(|m| (m.name().to_string(), m.state))
                .collect()
        });
        self.detect(&states).await;
        self.rejoin(&states).await;
        external::process(self, &states).await;
        self.clear_handoffs().await;
        self.prune().await;
        self.replan().await;
        self.failback(&states).await;
        self.progress().await;
    }

    /// Marks failed every host that is dead (or left) in gossip and whose lease is over, or
    /// that a fence agent confirmed off.
    async fn detect(&mut self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let hosts: Vec<Host> = self
            .replica
            .shared()
            .read(|st| st.hosts().filter(|h| !h.failed).cloned().collect());
        for h in hosts {
            let down = matches!(
                states.get(&h.name),
                Some(MemberState::Dead | MemberState::Left)
            );
            let fenced = self.fencer.confirmed_off(&h.name);
            if !down && fenced.is_none() {
                self.first_dead.remove(&h.name);
                self.isolated.remove(&h.name);
                continue;
            }
            let detected = *self
                .first_dead
                .entry(h.name.clone())
                .or_insert_with(Timestamp::now);
            // Fence only what no longer renews: a host cut from gossip alone is isolated.
            if down && fenced.is_none() && !self.grants.renews(&h.name, now) {
                self.fencer.host_down(&h);
            }
            let how = match fenced {
                Some(at) => (FENCED, at, "the fence agent confirmed it off".to_string()),
                None if self.grants.lease_over(&h.name, now) => (
                    LEASE_EXPIRED,
                    Timestamp::now(),
                    "its lease and the drift margin are over: it has fenced itself".to_string(),
                ),
                None => {
                    if states.get(&h.name) == Some(&MemberState::Dead)
                        && self.grants.renews(&h.name, now)
                        && self.isolated.insert(h.name.clone())
                    {
                        warn!(host = %h.name, "host isolated: gossip cannot reach it, but it renews its lease; nothing moves");
                    }
                    continue;
                }
            };
            self.fail_host(h, detected, how).await;
        }
    }

    /// Writes the host's failed mark and opens (or adopts) its recovery record.
    async fn fail_host(&mut self, h: Host, detected: Timestamp, how: (&str, Timestamp, String)) {
        let (step, at, detail) = how;
        info!(host = %h.name, %detail, "host failed");
        let version = h.meta.version;
        let mut marked = h.clone();
        marked.failed = true;
        marked.failed_at = Some(at);
        marked.fenced = step == FENCED;
        let op = Op::Put {
            object: Box::new(Object::Host(marked)),
            expect: Expect::Version(version),
        };
        if records::write(&self.replica, op).await.is_none() {
            return;
        }
        self.first_dead.remove(&h.name);
        self.fencer.forget(&h.name);
        let open = self.replica.shared().read(|st| {
            st.notifications()
                .filter(|n| {
                    n.notification_type == NotificationType::ComputeHost
                        && n.source_host.as_deref() == Some(h.meta.id.as_str())
                        && records::is_open(n)
                })
                .map(|n| n.meta.id.clone())
                .next()
        });
        let detected_detail = "gossip: dead (or left)".to_string();
        match open {
            Some(id) => {
                records::update(&self.replica, &id, |n| {
                    n.status = NotificationStatus::Running;
                    records::add_step(n, DETECTED, detected, detected_detail.clone());
                    records::add_step(n, step, at, detail.clone());
                    true
                })
                .await;
            }
            None => {
                let steps = vec![
                    state::notification::RecoveryStep {
                        name: DETECTED.into(),
                        at: detected,
                        detail: detected_detail,
                    },
                    state::notification::RecoveryStep {
                        name: step.into(),
                        at,
                        detail,
                    },
                ];
                records::open(
                    &self.replica,
                    NotificationType::ComputeHost,
                    &h.name,
                    records::host_payload(step),
                    steps,
                )
                .await;
            }
        }
    }

    /// A failed host that is back (alive in gossip and renewing its lease with this leader)
    /// takes work again when its segment says `auto_rejoin`; otherwise it waits for an
    /// operator's `buoy host enable`.
    async fn rejoin(&mut self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let back: Vec<(Host, bool)> = self.replica.shared().read(|st| {
            st.hosts()
                .filter(|h| h.failed)
                .filter(|h| states.get(&h.name) == Some(&MemberState::Alive))
                .filter(|h| self.grants.holds_lease(&h.name, now))
                .map(|h| {
                    let auto = st.segment(&h.segment).is_some_and(|s| s.auto_rejoin);
                    (h.clone(), auto)
                })
                .collect()
        });
        for (h, auto) in back {
            if !auto {
                if self.waiting_enable.insert(h.name.clone()) {
                    info!(host = %h.name, "failed host is back: it takes work again after `buoy host enable`");
                }
                continue;
            }
            let version = h.meta.version;
            let mut enabled = h.clone();
            enabled.failed = false;
            enabled.failed_at = None;
            enabled.fenced = false;
            let op = Op::Put {
                object: Box::new(Object::Host(enabled)),
                expect: Expect::Version(version),
            };
            if records::write(&self.replica, op).await.is_some() {
                info!(host = %h.name, "failed host is back and rejoined (auto_rejoin)");
                self.waiting_enable.remove(&h.name);
            }
        }
    }

    /// Empties the handoff lists the old hosts have confirmed.
    async fn clear_handoffs(&self) {
        let now = self.gossip.now();
        let done: Vec<Placement> = self.replica.shared().read(|st| {
            st.placements()
                .filter(|p| !p.handoffs.is_empty())
                .filter(|p| self.grants.handoffs_confirmed(st, p, now))
                .cloned()
                .collect()
        });
        let writes = done.into_iter().map(|p| {
            let version = p.meta.version;
            let mut cleared = p;
            cleared.handoffs.clear();
            Op::Put {
                object: Box::new(Object::Placement(cleared)),
                expect: Expect::Version(version),
            }
        });
        self.write_all(writes.collect()).await;
    }

    /// Deletes the placements of copies a clone no longer has (scaled down).
    async fn prune(&self) {
        let surplus = self.replica.shared().read(input::surplus);
        let ops = surplus
            .into_iter()
            .map(|(id, version)| Op::Delete {
                kind: state::Kind::Placement,
                id,
                version: Some(version),
            })
            .collect();
        self.write_all(ops).await;
    }

    /// Writes `ops` with up to [`PARALLEL_WRITES`] in flight.
    async fn write_all(&self, ops: Vec<Op>) -> usize {
        use futures_util::StreamExt;
        futures_util::stream::iter(ops)
            .map(|op| records::write(&self.replica, op))
            .buffer_unordered(PARALLEL_WRITES)
            .filter(|r| std::future::ready(r.is_some()))
            .count()
            .await
    }

    /// Plans when the state or the failures changed (or, while something is left unplaced,
    /// every [`RETRY_PLAN`]), and writes the moves.
    async fn replan(&mut self) {
        let mut failed = self.grants.failed_placements();
        failed.extend(self.external_failed.iter().cloned());
        let index = self.replica.shared().read(ClusterState::change_index);
        let changed = self
            .planned
            .as_ref()
            .is_none_or(|(i, f)| *i != index || *f != failed);
        let retry = self.last_plan.is_none_or(|t| t.elapsed() >= RETRY_PLAN);
        if !changed && !retry {
            return;
        }
        let starting = self.grants.starting();
        let Some((p, st_view)) = self.replica.shared().read(|st| {
            let worth = changed && (!failed.is_empty() || input::needs_plan(st))
                || retry && input::needs_plan(st);
            worth.then(|| {
                (
                    plan(&input::plan_input(st, &failed, &starting)),
                    PlanView::of(st),
                )
            })
        }) else {
            self.planned = Some((index, failed));
            return;
        };
        self.last_plan = Some(tokio::time::Instant::now());
        self.write_plan(&p, &st_view, &failed).await;
        let index = self.replica.shared().read(ClusterState::change_index);
        self.planned = Some((index, failed));
    }

    /// Writes a plan's moves and records them on the recoveries they belong to.
    async fn write_plan(&mut self, p: &Plan, view: &PlanView, failed: &BTreeSet<(String, Epoch)>) {
        let mut ops = Vec::new();
        // Per failed host (id): the vmoves to record; per failed copy: its record.
        let mut host_moves: BTreeMap<String, Vec<state::notification::VMove>> = BTreeMap::new();
        let mut copy_moves: Vec<(Placement, &Move)> = Vec::new();
        for m in &p.moves {
            let current = view.placement(&m.slot.instance, m.slot.replica);
            let Some(current) = current else {
                let Some(inst) = view.segment_enabled_instance(&m.slot.instance) else {
                    continue;
                };
                let placement = Placement {
                    meta: state::ObjectMeta {
                        id: crate::agent::state_api::new_id(),
                        ..Default::default()
                    },
                    instance: inst.to_string(),
                    replica: m.slot.replica,
                    host: m.to.clone(),
                    epoch: Epoch(0),
                    handoffs: Vec::new(),
                    home: None,
                };
                ops.push(Op::Put {
                    object: Box::new(Object::Placement(placement)),
                    expect: Expect::Absent,
                });
                continue;
            };
            if view.segment_enabled_instance(&m.slot.instance).is_none() {
                continue;
            }
            let from_failed = view.host_failed(&current.host);
            let mut moved = current.clone();
            moved.host = m.to.clone();
            if from_failed && moved.home.is_none() {
                moved.home = Some(current.host.clone());
            }
            ops.push(Op::Put {
                object: Box::new(Object::Placement(moved)),
                expect: Expect::Version(current.meta.version),
            });
            let (name, dest) = (view.instance_name(&current.instance), view.host_name(&m.to));
            info!(instance = %name, replica = m.slot.replica, from = %view.host_name(&current.host), to = %dest, "moving");
            if from_failed {
                host_moves
                    .entry(current.host.clone())
                    .or_default()
                    .push(records::vmove(
                        &current.instance,
                        name,
                        view.host_name(&current.host),
                        Some(dest),
                        String::new(),
                    ));
            } else if failed.contains(&(current.meta.id.clone(), current.epoch)) {
                copy_moves.push((current.clone(), m));
            }
        }
        for u in &p.unplaced {
            warn!(instance = %view.instance_name(&u.slot.instance), replica = u.slot.replica, reason = %u.reason, "cannot place");
            if let Some(current) = view.placement(&u.slot.instance, u.slot.replica)
                && view.host_failed(&current.host)
            {
                host_moves
                    .entry(current.host.clone())
                    .or_default()
                    .push(records::vmove(
                        &current.instance,
                        view.instance_name(&current.instance),
                        view.host_name(&current.host),
                        None,
                        u.reason.clone(),
                    ));
            }
        }
        self.write_all(ops).await;
        // A reserved host taken into service stops being reserved.
        let taken: Vec<Op> = self.replica.shared().read(|st| {
            p.reserved_taken
                .iter()
                .filter_map(|id| st.host(id))
                .filter(|h| h.reserved)
                .map(|h| {
                    info!(host = %h.name, "reserved host taken into service: no longer reserved");
                    let mut taken = h.clone();
                    taken.reserved = false;
                    Op::Put {
                        object: Box::new(Object::Host(taken)),
                        expect: Expect::Version(h.meta.version),
                    }
                })
                .collect()
        });
        self.write_all(taken).await;
        let now = Timestamp::now();
        for (host, moves) in host_moves {
            let record = self.replica.shared().read(|st| host_record(st, &host));
            let Some(id) = record else { continue };
            records::update(&self.replica, &id, |n| {
                for v in &moves {
                    // A copy left pending by an earlier plan is now placed: update its vmove.
                    match n.vmoves.iter_mut().find(|o| {
                        o.instance == v.instance
                            && o.status == VMoveStatus::Pending
                            && o.source_host == v.source_host
                    }) {
                        Some(o) if v.dest_host.is_some() => {
                            o.dest_host = v.dest_host.clone();
                            o.status = VMoveStatus::Ongoing;
                            o.start_time = v.start_time;
                            o.message.clear();
                        }
                        Some(_) => {}
                        None => n.vmoves.push(v.clone()),
                    }
                }
                records::add_step(n, PLANNED, now, "");
                true
            })
            .await;
        }
        for (current, m) in copy_moves {
            let key = (current.meta.id.clone(), current.epoch);
            let name = view.instance_name(&current.instance).to_string();
            let source = view.host_name(&current.host).to_string();
            let v = records::vmove(
                &current.instance,
                &name,
                &source,
                Some(view.host_name(&m.to)),
                String::new(),
            );
            let reason = "failed past its restart budget, or reported failed";
            let id = match self.copy_records.get(&key) {
                Some(id) => Some(id.clone()),
                None => {
                    let steps = vec![state::notification::RecoveryStep {
                        name: DETECTED.into(),
                        at: now,
                        detail: format!("instance `{name}` {reason} on `{source}`"),
                    }];
                    records::open(
                        &self.replica,
                        NotificationType::Vm,
                        &source,
                        records::instance_payload(&current.instance, reason),
                        steps,
                    )
                    .await
                }
            };
            if let Some(id) = id {
                records::update(&self.replica, &id, |n| {
                    n.vmoves.push(v.clone());
                    records::add_step(n, PLANNED, now, "");
                    true
                })
                .await;
                self.copy_records.insert(key.clone(), id);
            }
            self.external_failed.remove(&key);
        }
    }

    /// With the segment's `failback`, moves copies back to the host a recovery took them from
    /// once that host takes work again and has room.
    async fn failback(&self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let ops: Vec<Op> = self.replica.shared().read(|st| {
            let mut used: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for p in st.placements() {
                if let Some(i) = st.instance(&p.instance) {
                    let u = used.entry(p.host.as_str()).or_default();
                    u.0 += u64::from(i.cpu.millicores());
                    u.1 += i.memory_mb;
                }
            }
            let mut ops = Vec::new();
            for p in st.placements().filter(|p| p.handoffs.is_empty()) {
                let Some(home) = p.home.as_deref().and_then(|h| st.host(h)) else {
                    continue;
                };
                let (Some(i), Some(seg)) = (st.instance(&p.instance), st.segment(&home.segment))
                else {
                    continue;
                };
                let usable = seg.failback
                    && seg.enabled
                    && !home.failed
                    && !home.on_maintenance
                    && states.get(&home.name) == Some(&MemberState::Alive)
                    && self.grants.holds_lease(&home.name, now);
                if !usable
                    || st
                        .placements()
                        .any(|o| o.instance == p.instance && o.host == home.meta.id)
                {
                    continue;
                }
                let u = used.entry(home.meta.id.as_str()).or_default();
                let (cpu, mem) = (u64::from(i.cpu.millicores()), i.memory_mb);
                if u.0 + cpu > u64::from(home.capacity.cpu.millicores())
                    || u.1 + mem > home.capacity.memory_mb
                {
                    continue;
                }
                u.0 += cpu;
                u.1 += mem;
                info!(instance = %i.name, to = %home.name, "failback");
                let mut back = p.clone();
                back.host = home.meta.id.clone();
                back.home = None;
                ops.push(Op::Put {
                    object: Box::new(Object::Placement(back)),
                    expect: Expect::Version(p.meta.version),
                });
            }
            ops
        });
        self.write_all(ops).await;
    }

    /// Moves the open records forward from what the destination hosts report: a vmove
    /// succeeds when its copy runs at its new epoch; the record finishes when every vmove has.
    async fn progress(&self) {
        // Running records, with whether copies still sit on their failed host (a host
        // recovery ends only when none is left there).
        let open: Vec<(Notification, bool)> = self.replica.shared().read(|st| {
            st.notifications()
                .filter(|n| n.status == NotificationStatus::Running)
                .filter_map(|n| {
                    let failed_host =
                        n.source_host
                            .as_deref()
                            .and_then(|h| st.host(h))
                            .filter(|h| {
                                h.failed && n.notification_type == NotificationType::ComputeHost
                            });
                    let left = failed_host.is_some_and(|h| {
                        st.placements()
                            .any(|p| p.host == h.meta.id && input::started(st, &p.instance))
                    });
                    let planned = n.steps.iter().any(|s| s.name == PLANNED);
                    (planned || failed_host.is_some()).then(|| (n.clone(), left))
                })
                .collect()
        });
        for (n, left) in open {
            let phases: Vec<Option<Phase>> = self.replica.shared().read(|st| {
                n.vmoves
                    .iter()
                    .map(|v| {
                        let dest = v.dest_host.as_deref()?;
                        let host = st.host_by_name(dest)?;
                        let p = st
                            .placements()
                            .find(|p| p.instance == v.instance && p.host == host.meta.id)?;
                        self.grants.phase_of(dest, &p.meta.id, p.epoch)
                    })
                    .collect()
            });
            let now = Timestamp::now();
            let all_started = n.vmoves.iter().zip(&phases).all(|(v, ph)| {
                v.status == VMoveStatus::Succeeded
                    || matches!(ph, Some(Phase::Starting | Phase::Running))
            });
            let all_done = !left
                && n.vmoves.iter().zip(&phases).all(|(v, ph)| {
                    v.status == VMoveStatus::Succeeded || *ph == Some(Phase::Running)
                });
            let newly_done = n
                .vmoves
                .iter()
                .zip(&phases)
                .any(|(v, ph)| v.status == VMoveStatus::Ongoing && *ph == Some(Phase::Running));
            let need_started = all_started && !n.steps.iter().any(|s| s.name == STARTED);
            if !newly_done && !need_started && !all_done {
                continue;
            }
            records::update(&self.replica, &n.meta.id, |rec| {
                for (v, ph) in rec.vmoves.iter_mut().zip(&phases) {
                    if v.status == VMoveStatus::Ongoing && *ph == Some(Phase::Running) {
                        v.status = VMoveStatus::Succeeded;
                        v.end_time = Some(now);
                    }
                }
                if all_started && !rec.vmoves.is_empty() {
                    records::add_step(rec, STARTED, now, "every copy started on its destination");
                }
                if all_done {
                    if rec.vmoves.is_empty() {
                        records::add_step(rec, PLANNED, now, "nothing to move");
                    }
                    records::add_step(rec, HEALTHY, now, "every copy runs on its destination");
                    rec.status = NotificationStatus::Finished;
                    info!(notification = %rec.meta.id, host = %rec.hostname, moved = rec.vmoves.len(), "recovery finished");
                }
                true
            })
            .await;
        }
    }
}

/// The open recovery record of failed host `host` (an id).
fn host_record(st: &ClusterState, host: &str) -> Option<String> {
    st.notifications()
        .filter(|n| {
            n.notification_type == NotificationType::ComputeHost
                && n.source_host.as_deref() == Some(host)
                && records::is_open(n)
        })
        .map(|n| n.meta.id.clone())
        .next()
}

/// What writing a plan needs from the state, copied out of it.
struct PlanView {
    placements: BTreeMap<(String, u32), Placement>,
    host_names: BTreeMap<String, (String, bool)>,
    instances: BTreeMap<String, (String, bool)>,
}

impl PlanView {
    fn of(st: &ClusterState) -> PlanView {
        PlanView {
            placements: st
                .placements()
                .map(|p| ((p.instance.clone(), p.replica), p.clone()))
                .collect(),
            host_names: st
                .hosts()
                .map(|h| (h.meta.id.clone(), (h.name.clone(), h.failed)))
                .collect(),
            instances: st
                .instances()
                .map(|i| {
                    let enabled = st.segment(&i.segment).is_some_and(|s| s.enabled);
                    (i.meta.id.clone(), (i.name.clone(), enabled))
                })
                .collect(),
        }
    }
    fn placement(&self, instance: &str, replica: u32) -> Option<&Placement> {
        self.placements.get(&(instance.to_string(), replica))
    }
    fn host_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.host_names.get(id).map_or(id, |(n, _)| n.as_str())
    }
    fn host_failed(&self, id: &str) -> bool {
        self.host_names.get(id).is_some_and(|(_, f)| *f)
    }
    fn instance_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.instances.get(id).map_or(id, |(n, _)| n.as_str())
    }
    /// The instance id, when its segment takes automatic recovery.
    fn segment_enabled_instance<'a>(&self, id: &'a str) -> Option<&'a str> {
        self.instances
            .get(id)
            .is_some_and(|(_, enabled)| *enabled)
            .then_some(id)
    }
}

/// The placements (by id and epoch) of copies their hosts report failed.
pub fn failed_from_reports<'a>(
    reports: impl Iterator<Item = &'a crate::supervisor::reconciler::Observed>,
) -> BTreeSet<(String, Epoch)> {
    reports
        .filter(|o| o.phase == Phase::Failed)
        .map(|o| (o.placement.clone(), o.epoch))
        .collect()
}
