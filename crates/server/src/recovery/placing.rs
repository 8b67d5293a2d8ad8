//! Placing and moving copies: clearing confirmed handoffs, deleting surplus copies, and
//! writing the planner's moves with the recovery records they belong to.

use std::collections::{BTreeMap, BTreeSet};

use engine::planner::{Move, Plan, plan};
use model::ClusterState;
use model::notification::{NotificationType, VMoveStatus};
use model::placement::{Epoch, Placement};
use model::{Expect, Object, Op, Timestamp};
use tracing::{info, warn};

use super::RETRY_PLAN;
use super::Recovery;
use super::records::{self, DETECTED, PLANNED};
use engine::plan_input as input;

impl Recovery {
    /// Empties the handoff lists the old hosts have confirmed.
    pub(super) async fn clear_handoffs(&self) {
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

    /// Resets blocked copies whose failures all expired (the instance's `failure_timeout`):
    /// they are tried again, as after `buoy instance reset`.
    pub(super) async fn expire_failures(&self) {
        let now = Timestamp::now();
        let ops: Vec<Op> = self.replica.shared().read(|st| {
            st.placements()
                .filter(|p| !p.failures.is_empty())
                .filter(|p| {
                    st.instance(&p.instance).is_some_and(|i| {
                        engine::failures::expired(p, i.failure_timeout, now)
                    })
                })
                .filter_map(|p| {
                    let next = engine::failures::reset(p)?;
                    info!(placement = %p.meta.id, "failures expired (failure_timeout): trying again");
                    Some(Op::Put {
                        object: Box::new(Object::Placement(next)),
                        expect: Expect::Version(p.meta.version),
                    })
                })
                .collect()
        });
        self.write_all(ops).await;
    }

    /// Deletes the placements of copies a clone no longer has (scaled down).
    pub(super) async fn prune(&self) {
        let surplus = self.replica.shared().read(input::surplus);
        let ops = surplus
            .into_iter()
            .map(|(id, version)| Op::Delete {
                kind: model::Kind::Placement,
                id,
                version: Some(version),
            })
            .collect();
        self.write_all(ops).await;
    }

    /// Marks down the planner's hosts seen dead that no longer renew and are not failed yet
    /// (an OCF copy's stop grace holds their lease longer): nothing new goes there meanwhile.
    pub(super) fn mark_down(&self, st: &ClusterState, input: &mut engine::planner::PlanInput) {
        let now = self.gossip.now();
        let down: BTreeSet<&String> = self
            .first_dead
            .keys()
            .filter(|name| !self.grants.renews(name, now))
            .collect();
        for h in &mut input.hosts {
            h.down = st.host(&h.id).is_some_and(|x| down.contains(&x.name));
        }
    }

    /// Plans when the state or the failures changed (or, while something is left unplaced,
    /// every [`RETRY_PLAN`]), and writes the moves.
    pub(super) async fn replan(&mut self) {
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
        let Some((plan_input, st_view)) = self.replica.shared().read(|st| {
            let worth = changed && (!failed.is_empty() || input::needs_plan(st))
                || retry && input::needs_plan(st);
            worth.then(|| {
                let mut input = input::plan_input(st, &failed, &starting, Timestamp::now());
                self.mark_down(st, &mut input);
                (input, PlanView::of(st))
            })
        }) else {
            self.planned = Some((index, failed));
            return;
        };
        self.last_plan = Some(tokio::time::Instant::now());
        // Planning a large cluster takes tens of milliseconds (`buoy bench planner`): off the
        // runtime, which also serves gossip and leases.
        let p = match tokio::task::spawn_blocking(move || plan(&plan_input)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the recovery planner failed");
                return;
            }
        };
        self.write_plan(&p, &st_view, &failed).await;
        let index = self.replica.shared().read(ClusterState::change_index);
        self.planned = Some((index, failed));
    }

    /// Writes a plan's moves and records them on the recoveries they belong to.
    async fn write_plan(&mut self, p: &Plan, view: &PlanView, failed: &BTreeSet<(String, Epoch)>) {
        let mut ops = Vec::new();
        // Per failed host (id): the vmoves to record; per failed copy: its record.
        let mut host_moves: BTreeMap<String, Vec<model::notification::VMove>> = BTreeMap::new();
        let mut copy_moves: Vec<(Placement, &Move)> = Vec::new();
        for m in &p.moves {
            let current = view.placement(&m.slot.instance, m.slot.replica);
            let Some(current) = current else {
                let Some(inst) = view.segment_enabled_instance(&m.slot.instance) else {
                    continue;
                };
                let placement = Placement {
                    meta: model::ObjectMeta {
                        id: crate::ids::new_id(),
                        ..Default::default()
                    },
                    instance: inst.to_string(),
                    replica: m.slot.replica,
                    host: m.to.clone(),
                    epoch: Epoch(0),
                    handoffs: Vec::new(),
                    home: None,
                    failures: Vec::new(),
                    attempt: 0,
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
            let copy_failed = failed.contains(&(current.meta.id.clone(), current.epoch));
            let mut moved = if copy_failed && !from_failed {
                // Counted where it failed: that host is avoided for it from now on.
                let reason = self.grants.failure_reason(&current.meta.id, current.epoch);
                engine::failures::record(current, &reason, Timestamp::now())
            } else {
                current.clone()
            };
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
        // Said once per reason, not at every tick while it holds.
        let said_before: Vec<bool> = p
            .unplaced
            .iter()
            .map(|u| {
                self.unplaced
                    .reason(&u.slot.instance, u.slot.replica)
                    .as_deref()
                    == Some(u.reason.as_str())
            })
            .collect();
        self.unplaced.set(
            p.unplaced
                .iter()
                .map(|u| ((u.slot.instance.clone(), u.slot.replica), u.reason.clone()))
                .collect(),
        );
        let mut blocked = Vec::new();
        for (u, said) in p.unplaced.iter().zip(said_before) {
            let current = view.placement(&u.slot.instance, u.slot.replica);
            let copy_failed =
                current.is_some_and(|c| failed.contains(&(c.meta.id.clone(), c.epoch)));
            if let Some(c) = current.filter(|_| copy_failed)
                && !view.host_failed(&c.host)
            {
                // Failed where it sits and nowhere to go: blocked. Counted once; it stays.
                if !engine::failures::counted(c) {
                    let reason = self.grants.failure_reason(&c.meta.id, c.epoch);
                    let counted = engine::failures::record(c, &reason, Timestamp::now());
                    ops.push(Op::Put {
                        object: Box::new(Object::Placement(counted.clone())),
                        expect: Expect::Version(c.meta.version),
                    });
                    blocked.push((counted, u.reason.clone()));
                }
                continue;
            }
            if !said {
                warn!(instance = %view.instance_name(&u.slot.instance), replica = u.slot.replica, reason = %u.reason, "cannot place");
            }
            if let Some(current) = current
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
            let id = match record {
                Some(id) => id,
                // Its record ended `failed` with copies it could not place (`progress`):
                // placing them now is a recovery of its own.
                None if moves.iter().any(|v| v.dest_host.is_some()) => {
                    let name = view.host_name(&host).to_string();
                    let steps = vec![model::notification::RecoveryStep {
                        name: DETECTED.into(),
                        at: now,
                        detail: format!("room for the copies failed host `{name}` left unplaced"),
                    }];
                    let opened = records::open(
                        &self.replica,
                        NotificationType::ComputeHost,
                        &name,
                        records::host_payload("capacity returned"),
                        steps,
                    )
                    .await;
                    let Some(id) = opened else { continue };
                    id
                }
                None => continue,
            };
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
            let reason = self.grants.failure_reason(&current.meta.id, current.epoch);
            if let Some(id) = self.copy_record(&current, &name, &source, &reason).await {
                records::update(&self.replica, &id, |n| {
                    n.vmoves.push(v.clone());
                    records::add_step(n, PLANNED, now, "");
                    true
                })
                .await;
                self.copy_records.insert(key.0.clone(), id);
            }
            self.external_failed.remove(&key);
        }
        for (p, why) in blocked {
            self.blocked(&p, &why, view).await;
        }
    }

    /// The open recovery record of failed copy `p` (one per streak of failures of its
    /// placement), or a new one saying it failed on `source` (a host name) and why.
    async fn copy_record(
        &self,
        p: &Placement,
        name: &str,
        source: &str,
        reason: &str,
    ) -> Option<String> {
        let open = self.copy_records.get(&p.meta.id).filter(|id| {
            self.replica
                .shared()
                .read(|st| st.notification(id).is_some_and(records::is_open))
        });
        if let Some(id) = open {
            return Some(id.clone());
        }
        let steps = vec![model::notification::RecoveryStep {
            name: DETECTED.into(),
            at: Timestamp::now(),
            detail: format!("instance `{name}` failed on `{source}`: {reason}"),
        }];
        records::open(
            &self.replica,
            NotificationType::Vm,
            source,
            records::instance_payload(&p.instance, reason),
            steps,
        )
        .await
    }

    /// A failed copy with nowhere to go: its recovery record ends `failed`, with the reason of
    /// each host, and nothing moves until an operator resets it or its failures expire.
    async fn blocked(&mut self, p: &Placement, why: &str, view: &PlanView) {
        let name = view.instance_name(&p.instance).to_string();
        let host = view.host_name(&p.host).to_string();
        let failures = engine::failures::describe(p, |h| view.host_name(h).to_string());
        let message = format!(
            "instance `{name}` is blocked ({why}): {failures}. Fix the cause, then `buoy instance reset {name}`"
        );
        warn!(instance = %name, host = %host, "{message}");
        let now = Timestamp::now();
        let last = p.failures.iter().find(|f| f.host == p.host);
        let reason = last.map_or(failures.as_str(), |f| f.reason.as_str());
        let id = self.copy_record(p, &name, &host, reason).await;
        self.copy_records.remove(&p.meta.id);
        if let Some(id) = id {
            records::update(&self.replica, &id, |n| {
                records::add_step(n, records::BLOCKED, now, message.clone());
                for v in n.vmoves.iter_mut() {
                    if matches!(v.status, VMoveStatus::Ongoing | VMoveStatus::Pending) {
                        v.status = VMoveStatus::Failed;
                        v.end_time = Some(now);
                        v.message = message.clone();
                    }
                }
                n.status = model::notification::NotificationStatus::Failed;
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
