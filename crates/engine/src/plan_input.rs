//! The planner's view of the replicated state: which hosts take work, which instances want to
//! run, where their copies are, and which copies failed where they run.

use std::collections::{BTreeMap, BTreeSet};

use crate::planner::{HostView, InstanceView, PlanInput, Resources, Slot};
use model::ClusterState;
use model::instance::{DesiredState, Mode};
use model::placement::Epoch;

/// Copies one host starts at once; more wait for the next plan.
pub const MAX_STARTS_PER_HOST: u32 = 16;

/// Builds the planner's input. Hosts marked failed take nothing and lose their copies;
/// `failed_copies` (placement id, epoch) failed where they run and move off their host;
/// `starting` counts, per host name, the copies its last report shows starting. Every
/// started instance is wanted, so instances never placed are placed too.
pub fn plan_input(
    st: &ClusterState,
    failed_copies: &BTreeSet<(String, Epoch)>,
    starting: &BTreeMap<String, u32>,
) -> PlanInput {
    let mut input = PlanInput {
        max_starts_per_host: MAX_STARTS_PER_HOST,
        ..Default::default()
    };
    for h in st.hosts() {
        input.hosts.push(HostView {
            id: h.meta.id.clone(),
            segment: h.segment.clone(),
            capacity: Resources {
                cpu_millis: u64::from(h.capacity.cpu.millicores()),
                memory_mb: h.capacity.memory_mb,
            },
            reserved: h.reserved,
            on_maintenance: h.on_maintenance,
            failed: h.failed,
            starting: starting.get(&h.name).copied().unwrap_or(0),
        });
    }
    for i in st.instances() {
        input.instances.push(InstanceView {
            id: i.meta.id.clone(),
            segment: i.segment.clone(),
            needs: Resources {
                cpu_millis: u64::from(i.cpu.millicores()),
                memory_mb: i.memory_mb,
            },
            priority: i.priority,
            copies: copies(i),
            anti_affinity: i.anti_affinity.clone(),
            wanted: i.desired_state == DesiredState::Started,
        });
    }
    let mut placements: BTreeMap<Slot, String> = BTreeMap::new();
    for p in st.placements() {
        let slot = Slot {
            instance: p.instance.clone(),
            replica: p.replica,
        };
        // Only a failure of the current epoch: after a move the old host's report is stale.
        if failed_copies.contains(&(p.meta.id.clone(), p.epoch)) {
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

/// How many copies an instance runs.
pub fn copies(i: &model::instance::Instance) -> u32 {
    match i.mode {
        Mode::Single => 1,
        Mode::Clone => i.replicas,
    }
}

/// Whether some started instance has fewer placed copies than it wants, or a copy sits on a
/// failed host: the cheap test that says a plan is needed.
pub fn needs_plan(st: &ClusterState) -> bool {
    // Usually none: checked first, so that most placements cost no host lookup.
    let failed: BTreeSet<&str> = st
        .hosts()
        .filter(|h| h.failed)
        .map(|h| h.meta.id.as_str())
        .collect();
    let mut placed: BTreeMap<&str, u32> = BTreeMap::new();
    for p in st.placements() {
        if failed.contains(p.host.as_str()) && started(st, &p.instance) {
            return true;
        }
        *placed.entry(p.instance.as_str()).or_default() += 1;
    }
    st.instances().any(|i| {
        i.desired_state == DesiredState::Started
            && placed.get(i.meta.id.as_str()).copied().unwrap_or(0) < copies(i)
    })
}

/// Whether instance `id` exists and is started.
pub fn started(st: &ClusterState, id: &str) -> bool {
    st.instance(id)
        .is_some_and(|i| i.desired_state == DesiredState::Started)
}

/// Placements of copies an instance no longer has (a clone scaled down): to delete.
pub fn surplus(st: &ClusterState) -> Vec<(String, u64)> {
    st.placements()
        .filter(|p| {
            st.instance(&p.instance)
                .is_some_and(|i| p.replica >= copies(i))
        })
        .map(|p| (p.meta.id.clone(), p.meta.version))
        .collect()
}
