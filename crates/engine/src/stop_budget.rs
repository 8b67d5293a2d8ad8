//! Which hosts may still be stopping what they ran past their lease's end (rule S1 with stops
//! that take time). At the lease's end a host kills its processes and VMs at once (SIGKILL to
//! their cgroups) but runs an OCF resource's `stop` (demote first), which may take time; the
//! cluster's stop grace bounds it: at lease end + grace whatever is left of the resource (its
//! cgroup: the agent and everything it started) is killed, by the agent or, if the agent
//! hangs, by its watchdog. So the leader waits, before a copy of such a host runs elsewhere,
//! for lease end + drift margin + the grace it granted ([`crate::lease_table`]); a host with no
//! OCF copy placed or leaving is done at lease end + drift margin. A stop that fails or
//! overruns fences the host, which then renews no more.

use model::ClusterState;

/// Whether host `host_id` has copies whose stop takes time: `slow(instance_id)` says whether
/// that instance's is (an OCF resource), among the copies placed on the host or still leaving
/// it.
pub fn has_slow_stops(st: &ClusterState, host_id: &str, slow: impl Fn(&str) -> bool) -> bool {
    st.placements()
        .filter(|p| p.host == host_id || p.handoffs.iter().any(|h| h.host == host_id))
        .any(|p| slow(&p.instance))
}
