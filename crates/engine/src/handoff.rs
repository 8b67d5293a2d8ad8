//! Handoffs: when a copy moves between two hosts that are both up (an operator's move, a
//! failback, a relocation after a crash loop), the new host may start it only once the old
//! host confirmed the old copy stopped, or can no longer run it (it failed, or its lease is
//! over). Without this a move would start the new copy while the old one still runs: two
//! copies of a single instance at once (rule S1).
//!
//! A host's report confirms only once it has applied assignments at least as new as the move
//! (before that it may not even know the copy moved, or may be about to start it).

use model::ClusterState;
use model::host::Host;
use model::placement::{Handoff, Placement};
use proto::Report;

/// What the leader knows about the host a copy left.
#[derive(Clone, Debug, PartialEq)]
pub enum LeftHost<'a> {
    /// Marked failed, fenced, or its lease is over: it runs nothing.
    Down,
    /// Up; its latest report, if it sent one to this leader.
    Up(Option<&'a Report>),
    /// No longer registered. The state refuses to delete a host a copy is leaving, so this
    /// cannot happen; were it to, the leader could not tell when the copy stopped there, and
    /// the copy waits (never twice, rule S1).
    Gone,
}

/// Whether the copy of `placement` that `handoff` left behind is confirmed stopped.
pub fn confirmed(placement: &str, handoff: &Handoff, left: LeftHost<'_>) -> bool {
    match left {
        LeftHost::Down => true,
        LeftHost::Gone | LeftHost::Up(None) => false,
        LeftHost::Up(Some(r)) => {
            // The old copy runs under its own placement when that one was deleted.
            let ran_as = handoff.placement.as_deref().unwrap_or(placement);
            r.applied.is_some_and(|a| a >= handoff.change) && !r.may_run(ran_as, handoff.epoch)
        }
    }
}

/// Whether every host `p` moved away from confirmed its old copy stopped. `down(host)` says
/// whether a host provably runs nothing (fenced by its device, or its lease, drift margin and
/// stop budget are over; a host merely marked failed may be alive and must report like any
/// other); `report(name)` gives a host's latest report to this leader.
pub fn all_confirmed<'r>(
    st: &ClusterState,
    p: &Placement,
    down: impl Fn(&Host) -> bool,
    report: impl Fn(&str) -> Option<&'r Report>,
) -> bool {
    p.handoffs.iter().all(|h| {
        let Some(left) = st.host(&h.host) else {
            return confirmed(&p.meta.id, h, LeftHost::Gone);
        };
        if down(left) {
            return confirmed(&p.meta.id, h, LeftHost::Down);
        }
        confirmed(&p.meta.id, h, LeftHost::Up(report(&left.name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::placement::Epoch;
    use proto::{Observed, Phase};

    fn handoff(change: u64) -> Handoff {
        Handoff {
            host: "h1".into(),
            epoch: Epoch(4),
            change,
            placement: None,
        }
    }

    /// A report with `applied` and the copies `active` (placement, epoch) still running.
    fn report(applied: Option<u64>, active: &[(&str, u64)]) -> Report {
        Report {
            applied,
            instances: active
                .iter()
                .map(|(p, e)| Observed::new(p, p, p, Epoch(*e), Phase::Running))
                .collect(),
        }
    }

    #[test]
    fn a_live_host_confirms_only_after_applying_the_move_without_the_old_copy() {
        let h = handoff(10);
        assert!(!confirmed("p1", &h, LeftHost::Up(None)));
        // Not yet applied the move: even an empty report proves nothing.
        let r = report(Some(9), &[]);
        assert!(!confirmed("p1", &h, LeftHost::Up(Some(&r))));
        let r = report(None, &[]);
        assert!(!confirmed("p1", &h, LeftHost::Up(Some(&r))));
        // Applied, but the old copy is still stopping.
        let r = report(Some(10), &[("p1", 4)]);
        assert!(!confirmed("p1", &h, LeftHost::Up(Some(&r))));
        // Applied and gone; other copies and newer epochs do not matter.
        let r = report(Some(12), &[("p2", 4), ("p1", 5)]);
        assert!(confirmed("p1", &h, LeftHost::Up(Some(&r))));
    }

    #[test]
    fn a_host_that_is_down_confirms_at_once_and_one_no_longer_known_never() {
        assert!(confirmed("p1", &handoff(10), LeftHost::Down));
        assert!(!confirmed("p1", &handoff(10), LeftHost::Gone));
    }

    #[test]
    fn a_copy_left_by_a_deleted_placement_is_looked_up_under_that_placement() {
        let h = Handoff {
            placement: Some("p-old".into()),
            ..handoff(10)
        };
        // The host still runs the old copy under its old placement id.
        let r = report(Some(11), &[("p-old", 4)]);
        assert!(!confirmed("p-new", &h, LeftHost::Up(Some(&r))));
        let r = report(Some(11), &[("p-new", 5)]);
        assert!(confirmed("p-new", &h, LeftHost::Up(Some(&r))));
    }
}
