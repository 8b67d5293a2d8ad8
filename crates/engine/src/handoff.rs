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
use model::instance::{DesiredState, DriverKind, Instance, Mode};
use model::placement::{Handoff, Placement};
use proto::{Phase, Report};

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

/// Whether moves of `i`'s copies make before they break (a surge): a `clone` whose copies
/// carry no identity to guard (not promotable, not an OCF resource, whose agents keep state
/// per clone number) starts its copy on the new host at once, and the old copy runs until the
/// new one does ([`surge_holds`]), so a move never leaves fewer copies serving.
pub fn surges(i: &Instance) -> bool {
    i.mode == Mode::Clone && i.driver != DriverKind::Ocf
}

/// The handoffs `p` waits for before it starts: all of them, or for an instance that surges
/// only those from its own host (a restart in place).
pub fn blocking(i: &Instance, p: &Placement) -> Vec<Handoff> {
    p.handoffs
        .iter()
        .filter(|h| !surges(i) || h.host == p.host)
        .cloned()
        .collect()
}

/// The copies host `host_id` keeps running past a surging move away from it: those its
/// `report` shows running at the epoch they left with, while the new copy does not run yet
/// (`running(p)`: its host reports it running at its epoch) and its new host still renews
/// (`renews(host id)`). Each comes as the placement on this host at its old epoch.
pub fn surge_holds(
    st: &ClusterState,
    host_id: &str,
    report: &Report,
    running: impl Fn(&Placement) -> bool,
    renews: impl Fn(&str) -> bool,
) -> Vec<(Instance, Placement)> {
    st.placements()
        .filter(|p| p.host != host_id && !p.handoffs.is_empty())
        .filter_map(|p| {
            let left = p.handoffs.iter().rev().find(|h| h.host == host_id)?;
            let i = st.instance(&p.instance)?;
            let still = report.instances.iter().any(|o| {
                o.placement == p.meta.id && o.epoch == left.epoch && o.phase == Phase::Running
            });
            if !surges(i)
                || i.desired_state != DesiredState::Started
                || !still
                || running(p)
                || !renews(&p.host)
            {
                return None;
            }
            let mut held = p.clone();
            held.host = host_id.to_string();
            held.epoch = left.epoch;
            held.handoffs.clear();
            Some((i.clone(), held))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::placement::Epoch;
    use proto::Observed;

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

    /// A clone `web` (driver as given) with replica 0 placed on h1, then moved to h2.
    fn moved(driver: &str) -> (ClusterState, Placement, Epoch) {
        use crate::test_state::{meta, put, segment_with_hosts};
        use model::{Command, Expect, Object, Op, Timestamp};
        let mut st = ClusterState::default();
        segment_with_hosts(&mut st, &["h1", "h2"]);
        let params = if driver == "ocf" {
            serde_json::json!({"agent": "ocf:heartbeat:Dummy"})
        } else {
            serde_json::json!({"command": "sleep"})
        };
        let spec: model::instance::InstanceSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "driver": driver, "mode": "clone", "replicas": 2, "params": params}))
        .unwrap();
        put(
            &mut st,
            Object::Instance(Instance::create(meta("web"), &spec, "s1".into()).unwrap()),
        );
        let p =
            Placement::create(meta("p0"), &Default::default(), "web".into(), "h1".into()).unwrap();
        let Object::Placement(p) = put(&mut st, Object::Placement(p)) else {
            unreachable!()
        };
        let old = p.epoch;
        let mut next = p.clone();
        next.host = "h2".into();
        let cmd = Command {
            at: Timestamp::from_unix_millis(1_800_000_000_001),
            op: Op::Put {
                expect: Expect::Version(p.meta.version),
                object: Box::new(Object::Placement(next)),
            },
        };
        let Some(Object::Placement(p)) = st.apply(&cmd).0.unwrap() else {
            unreachable!()
        };
        (st, p, old)
    }

    #[test]
    fn a_process_clone_surges_and_its_old_copy_is_held_until_the_new_one_runs() {
        let (st, p, old) = moved("process");
        let i = st.instance("web").unwrap();
        assert!(surges(i));
        assert_eq!(p.handoffs.len(), 1, "the move left a handoff on h1");
        assert!(blocking(i, &p).is_empty(), "the new copy starts at once");
        let report = Report {
            applied: Some(1),
            instances: vec![Observed::new("p0", "web", "web", old, Phase::Running)],
        };
        let held = surge_holds(&st, "h1", &report, |_| false, |_| true);
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].1.host.as_str(), held[0].1.epoch), ("h1", old));
        assert!(held[0].1.handoffs.is_empty());
        // Released once the new copy runs, when its host stops renewing, or once h1 no
        // longer runs the old copy.
        assert!(surge_holds(&st, "h1", &report, |_| true, |_| true).is_empty());
        assert!(surge_holds(&st, "h1", &report, |_| false, |_| false).is_empty());
        assert!(surge_holds(&st, "h1", &Report::default(), |_| false, |_| true).is_empty());
        assert!(surge_holds(&st, "h2", &report, |_| false, |_| true).is_empty());
    }

    #[test]
    fn no_copy_is_planned_onto_a_host_a_surging_copy_is_still_leaving() {
        let (st, _, _) = moved("process");
        let input = crate::plan_input::plan_input(
            &st,
            &Default::default(),
            &Default::default(),
            model::Timestamp::from_unix_millis(1_800_000_000_002),
        );
        let slot = |replica| crate::planner::Slot {
            instance: "web".into(),
            replica,
        };
        assert!(input.failed_on[&slot(0)].contains("h1"));
        let (st, _, _) = moved("ocf");
        let input = crate::plan_input::plan_input(
            &st,
            &Default::default(),
            &Default::default(),
            model::Timestamp::from_unix_millis(1_800_000_000_002),
        );
        assert!(
            !input.failed_on.contains_key(&slot(0)),
            "an OCF clone waits anyway"
        );
    }

    #[test]
    fn an_ocf_clone_stops_before_it_starts() {
        let (st, p, old) = moved("ocf");
        let i = st.instance("web").unwrap();
        assert!(!surges(i));
        assert_eq!(
            blocking(i, &p).len(),
            1,
            "the new copy waits for the old one's stop"
        );
        let report = Report {
            applied: Some(1),
            instances: vec![Observed::new("p0", "web", "web", old, Phase::Running)],
        };
        assert!(surge_holds(&st, "h1", &report, |_| false, |_| true).is_empty());
    }
}
