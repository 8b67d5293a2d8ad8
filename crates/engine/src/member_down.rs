//! When the leader counts a registered host down in gossip, the first half of failure
//! detection (the second is its lease being over): dead or left in the leader's own member
//! list, or absent from it while copies are placed on the host or still leaving it. A gossip
//! core learns only of members it hears alive, so a server whose core started after a host
//! died or left (a restarted server, a new leader) never lists that host at all; before this
//! rule such a host kept its copies forever (found by `buoy sim cluster`, seed 238).

use model::ClusterState;
use swim::MemberState;

/// Whether a host whose member state is `state` (none: absent from the member list) counts as
/// down; `has_work` says whether copies are placed on it or leaving it ([`has_work`]), asked
/// only for an absent host (it walks the placements, and this runs for every host at every
/// recovery tick).
pub fn counts_down(state: Option<MemberState>, has_work: impl FnOnce() -> bool) -> bool {
    match state {
        Some(MemberState::Dead | MemberState::Left) => true,
        Some(MemberState::Alive | MemberState::Suspect) => false,
        // Never heard of: only worth failing when something must move off it (a host
        // registered before its agent ever ran has nothing to recover).
        None => has_work(),
    }
}

/// Whether some copy is placed on host `host_id` or still leaving it.
pub fn has_work(st: &ClusterState, host_id: &str) -> bool {
    st.placements()
        .any(|p| p.host == host_id || p.handoffs.iter().any(|h| h.host == host_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_or_left_is_down_alive_or_suspect_is_not_and_absent_is_down_only_with_work() {
        for work in [false, true] {
            assert!(counts_down(Some(MemberState::Dead), || work));
            assert!(counts_down(Some(MemberState::Left), || work));
            assert!(!counts_down(Some(MemberState::Alive), || work));
            assert!(!counts_down(Some(MemberState::Suspect), || work));
        }
        assert!(counts_down(None, || true));
        assert!(!counts_down(None, || false));
    }
}
