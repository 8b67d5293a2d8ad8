//! The recovery loop on the leader: turns failures into moves. A host counts as failed once
//! gossip says it is dead *and* its lease (plus the drift margin) has run out: by then it has
//! fenced itself (its agent or its watchdog killed its instances). A host that gossip cannot
//! reach but whose lease holds is isolated, not failed, and nothing moves (rule S3). Copies
//! reported failed past their restart budget move too. The planner (`engine::planner`) decides
//! where; each move is a placement update, which gives the copy a new epoch.
//!
//! This first version recovers what was placed; placing new instances, notifications with
//! their steps, STONITH and admission control come next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use engine::planner::{HostView, InstanceView, PlanInput, Resources, Slot, plan};
use state::instance::{DesiredState, Mode};
use state::placement::Epoch;
use state::raft::replica::Replica;
use state::{ClusterState, Expect, Object, Op, Timestamp};
use swim::MemberState;
use tracing::{info, warn};

use super::lease::LeaseGrants;
use super::runtime::Shared;
use crate::supervisor::reconciler::Phase;

/// How often the leader looks for failures.
const INTERVAL: Duration = Duration::from_millis(200);

/// Runs on every server; acts only while this server leads.
pub async fn run(replica: Arc<Replica>, grants: Arc<LeaseGrants>, gossip: Arc<Shared>) {
    let mut fenced_logged: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::time::sleep(INTERVAL).await;
        if !replica.is_leader() {
            fenced_logged.clear();
            continue;
        }
        let now = gossip.now();
        let dead: BTreeSet<String> = gossip.read(|sw| {
            sw.members()
                .iter()
                .filter(|m| m.state == MemberState::Dead)
                .map(|m| m.name().to_string())
                .collect()
        });
        let failed_reports = grants.failed_placements();
        let fenced: BTreeSet<&String> = dead
            .iter()
            .filter(|name| grants.lease_over(name, now))
            .collect();
        // Nothing failed: no plan to build (the state may hold tens of thousands of instances).
        if fenced.is_empty() && failed_reports.is_empty() {
            continue;
        }
        let (input, placements) = replica.shared().read(|st| {
            let fenced = |name: &str| fenced.iter().any(|f| f.as_str() == name);
            (
                plan_input(st, &fenced, &failed_reports),
                st.placements().cloned().collect::<Vec<_>>(),
            )
        });
        for h in input.hosts.iter().filter(|h| h.failed) {
            if fenced_logged.insert(h.id.clone()) {
                info!(host = %h.id, "host failed: dead in gossip and its lease is over");
            }
        }
        let p = plan(&input);
        if p.moves.is_empty() && p.unplaced.is_empty() {
            continue;
        }
        for u in &p.unplaced {
            warn!(instance = %u.slot.instance, replica = u.slot.replica, reason = %u.reason, "cannot place");
        }
        for m in &p.moves {
            let Some(current) = placements
                .iter()
                .find(|pl| pl.instance == m.slot.instance && pl.replica == m.slot.replica)
            else {
                continue;
            };
            let mut moved = current.clone();
            moved.host = m.to.clone();
            let op = Op::Put {
                object: Box::new(Object::Placement(moved)),
                expect: Expect::Version(current.meta.version),
            };
            match replica.write(op, Timestamp::now()).await {
                Ok(Ok(_)) => {
                    info!(instance = %m.slot.instance, replica = m.slot.replica, from = ?m.from, to = %m.to, "moved")
                }
                Ok(Err(e)) => warn!(error = %e, "move refused"),
                Err(e) => warn!(error = %e, "move not written"),
            }
        }
    }
}

/// The planner's view of the state: hosts `fenced` are failed; copies already placed are
/// kept where usable; instances never placed are left to the operator (for now).
fn plan_input(
    st: &ClusterState,
    fenced: &dyn Fn(&str) -> bool,
    failed_placements: &BTreeSet<(String, Epoch)>,
) -> PlanInput {
    let mut input = PlanInput {
        max_starts_per_host: 0,
        ..Default::default()
    };
    let mut names: HashMap<&str, &str> = HashMap::new();
    for h in st.hosts() {
        names.insert(&h.meta.id, &h.name);
        input.hosts.push(HostView {
            id: h.meta.id.clone(),
            segment: h.segment.clone(),
            capacity: Resources {
                cpu_millis: u64::from(h.capacity.cpu.millicores()),
                memory_mb: h.capacity.memory_mb,
            },
            reserved: h.reserved,
            on_maintenance: h.on_maintenance,
            failed: fenced(&h.name),
        });
    }
    let placed: BTreeSet<&str> = st.placements().map(|p| p.instance.as_str()).collect();
    for i in st.instances() {
        input.instances.push(InstanceView {
            id: i.meta.id.clone(),
            segment: i.segment.clone(),
            needs: Resources {
                cpu_millis: u64::from(i.cpu.millicores()),
                memory_mb: i.memory_mb,
            },
            priority: i.priority,
            copies: match i.mode {
                Mode::Single => 1,
                Mode::Clone => i.replicas,
            },
            anti_affinity: i.anti_affinity.clone(),
            wanted: i.desired_state == DesiredState::Started && placed.contains(i.meta.id.as_str()),
        });
    }
    let mut placements: BTreeMap<Slot, String> = BTreeMap::new();
    for p in st.placements() {
        let slot = Slot {
            instance: p.instance.clone(),
            replica: p.replica,
        };
        // Only a failure of the current epoch: after a move the old host's report is stale.
        if failed_placements.contains(&(p.meta.id.clone(), p.epoch)) {
            input.failed_slots.insert(slot.clone());
        }
        placements.insert(slot, p.host.clone());
    }
    input.placements = placements;
    for s in st.segments() {
        input.recovery.insert(s.meta.id.clone(), s.recovery_method);
    }
    input
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
