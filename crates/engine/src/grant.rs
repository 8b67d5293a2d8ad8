//! What a lease grant assigns to a host (rule S1): the copies placed on it, except those still
//! waiting for their old host to confirm the stop (`handoff`), and nothing at all while the
//! host is marked failed; a promotable copy with its promotion grant. The leader's grants and the simulator both build assignments here.

use model::ClusterState;
use model::placement::Placement;
use proto::Assignment;

/// The assignments of host `host` (by name) in `st`, and the change index they reflect: one
/// less than the state's when a copy was held back, so the host asks again until it comes.
/// `confirmed` says whether a placement's handoffs are all confirmed; `may_start` whether
/// a copy may run now: its instance's start conditions hold on this host (`constraints`),
/// and, for a clone with `notify`, the running copies were told of its start first. A copy
/// it refuses is left out (its host stops it, or does not start it), at the full index.
pub fn assignments(
    st: &ClusterState,
    host: &str,
    mut confirmed: impl FnMut(&Placement) -> bool,
    mut may_start: impl FnMut(&model::instance::Instance, &Placement) -> bool,
) -> (u64, Vec<Assignment>) {
    let index = st.change_index();
    let mut withheld = false;
    // A host marked failed takes no work until it is enabled again, even when it is back and
    // renewing: it is assigned nothing, so it stops whatever it still runs.
    let list = st
        .host_by_name(host)
        .filter(|h| !h.failed)
        .map(|h| {
            st.placements()
                .filter(|p| p.host == h.meta.id)
                .filter(|p| {
                    let ok = confirmed(p);
                    // A copy restarting in place (`engine::failures::reset`) waits for this
                    // very host: the list without it, at the full index, is what lets the host
                    // confirm its old epoch stopped (the leader's clearing write then moves
                    // the index again, and the copy comes with the next grant).
                    withheld |= !ok && p.handoffs.iter().any(|o| o.host != h.meta.id);
                    ok
                })
                .filter_map(|p| {
                    st.instance(&p.instance)
                        .filter(|i| may_start(i, p))
                        .map(|i| Assignment {
                            placement: p.clone(),
                            instance: i.clone(),
                            promotion: promotion_of(st, p),
                            // The leader adds its notify rounds (soft state).
                            notify: Vec::new(),
                            // And a load balancer's backends (they follow the reports).
                            backends: Vec::new(),
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    (if withheld { index - 1 } else { index }, list)
}

/// The epoch of copy `p`'s live promotion grant (its replica, on its host), if it has one.
pub fn promotion_of(st: &ClusterState, p: &Placement) -> Option<u64> {
    st.promotion_grants(&p.instance)
        .iter()
        .find(|g| g.replica == p.replica && g.host == p.host && !g.revoked)
        .map(|g| g.epoch)
}
