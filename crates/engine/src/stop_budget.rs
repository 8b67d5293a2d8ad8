//! How long past its lease's end a host may still be stopping what it ran (rule S1 with stops
//! that take time). At the lease's end a host kills its processes and VMs at once (SIGKILL)
//! but must run an OCF resource's `stop`, which may take up to that resource's `timeout`. So
//! the leader waits, before a copy of that host may run elsewhere, for: lease end + drift
//! margin + the largest stop timeout among the copies placed on the host or still leaving it
//! (zero when it has none). A stop that fails or overruns it fences the host, which then
//! renews no more.

use std::time::Duration;

use model::ClusterState;

/// The stop budget of host `host_id`; `stop_timeout(instance_id)` is how long that instance's
/// stop may run after the lease's end (zero for what is killed at once).
pub fn stop_budget(
    st: &ClusterState,
    host_id: &str,
    stop_timeout: impl Fn(&str) -> Duration,
) -> Duration {
    st.placements()
        .filter(|p| p.host == host_id || p.handoffs.iter().any(|h| h.host == host_id))
        .map(|p| stop_timeout(&p.instance))
        .max()
        .unwrap_or_default()
}
