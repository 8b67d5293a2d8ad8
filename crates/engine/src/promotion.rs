//! Promotion of a promotable instance's copies: which copies to promote and to demote, and
//! when a promotion may be granted (rule S1 for the promoted role).
//!
//! A host promotes a copy only under a promotion grant that the leader records in the
//! replicated state, numbered by a promotion epoch that only grows. A grant ends only when its
//! host reports the copy not promoted (unpromoted or stopped) after the grant was revoked, or
//! when that host provably runs nothing (its lease, drift margin and stop budget are over, or
//! its fence device confirmed it off). At most `promoted_max` grants exist at once, so at most
//! `promoted_max` copies can act as promoted, whatever the network does.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long a copy placed on a live host that has not reported it yet counts as starting.
pub const UNREPORTED_START: Duration = Duration::from_secs(10);

/// A copy's role, as its host last reported it (from the monitor's exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Stopped,
    /// Starting, or running but not healthy yet.
    Starting,
    Unpromoted,
    Promoted,
    /// The monitor said "failed promoted" (OCF 9).
    FailedPromoted,
}

/// One copy of the instance as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyView {
    pub replica: u32,
    pub host: String,
    /// The role its host reported after the latest grant or revocation the host applied;
    /// `None` when the host has not reported since (the leader cannot tell).
    pub role: Option<Role>,
    /// The host provably runs nothing (lease over, or fenced).
    pub host_down: bool,
    /// Its host reports it starting: no copy is promoted until every start under way ended
    /// (Pacemaker promotes a clone's copies only after its starts).
    pub starting: bool,
}

/// A promotion grant held in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub replica: u32,
    pub host: String,
    pub epoch: u64,
    /// The leader asked the copy to demote; the grant still counts until that is confirmed.
    pub revoked: bool,
}

/// What the leader should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Record a new grant for this copy (a new promotion epoch).
    Promote { replica: u32, host: String },
    /// Revoke this copy's grant: its host demotes it.
    Demote { replica: u32 },
    /// Drop this grant: its copy is confirmed not promoted, or its host is down.
    Release { replica: u32 },
}

/// The steps that bring the promoted copies towards the `promoted_max` best-scored ones.
/// `scores` are the promotion scores by host (`master-RESOURCE`); a copy is promoted only
/// where its score is set and above 0. A copy that holds a grant keeps it while its score stays
/// above 0 (no flapping between equal primaries), unless the operator prefers the copy on
/// host `preferred` and that copy is ready (unpromoted, scored): then one other grant is
/// revoked to make room, and once released the preferred copy is promoted first (a clean
/// switchover).
pub fn decide(
    promoted_max: u32,
    copies: &[CopyView],
    grants: &[Grant],
    scores: &BTreeMap<String, i64>,
    preferred: Option<&str>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let copy = |g: &Grant| {
        copies
            .iter()
            .find(|c| c.replica == g.replica && c.host == g.host)
    };
    let score = |host: &str| scores.get(host).copied().filter(|s| *s > 0);
    let mut live: Vec<&Grant> = Vec::new();
    for g in grants {
        let released = match copy(g) {
            // The copy moved away or was removed: its old host must be down or confirm it.
            None => false,
            Some(c) if c.host_down => true,
            Some(c) => g.revoked && matches!(c.role, Some(Role::Unpromoted | Role::Stopped)),
        };
        if released {
            steps.push(Step::Release { replica: g.replica });
        } else {
            live.push(g);
        }
    }
    // Grants to give up: the copy failed promoted, lost its score, or is gone.
    for g in &live {
        if g.revoked {
            continue;
        }
        let keep = copy(g).is_some_and(|c| {
            !c.host_down
                && !matches!(c.role, Some(Role::FailedPromoted | Role::Stopped))
                && score(&c.host).is_some()
        });
        if !keep {
            steps.push(Step::Demote { replica: g.replica });
        }
    }
    // More kept grants than `promoted_max` (lowered by the operator): the lowest-scored give
    // theirs up (the grants stay counted until released, so nothing new is promoted
    // meanwhile).
    let mut kept: Vec<&&Grant> = live
        .iter()
        .filter(|g| !g.revoked && !steps.contains(&Step::Demote { replica: g.replica }))
        .collect();
    if kept.len() > promoted_max as usize {
        kept.sort_by_key(|g| (scores.get(&g.host).copied().unwrap_or(i64::MIN), g.replica));
        for g in &kept[..kept.len() - promoted_max as usize] {
            steps.push(Step::Demote { replica: g.replica });
        }
    }
    // A switchover: the preferred copy is ready and no room is left or being made.
    let ready = |c: &&CopyView| {
        !c.host_down
            && c.role == Some(Role::Unpromoted)
            && score(&c.host).is_some()
            && !live.iter().any(|g| g.replica == c.replica)
    };
    let preferred_ready = preferred.and_then(|h| copies.iter().filter(ready).find(|c| c.host == h));
    let demoting =
        live.iter().any(|g| g.revoked) || steps.iter().any(|s| matches!(s, Step::Demote { .. }));
    if preferred_ready.is_some() && live.len() >= promoted_max as usize && !demoting {
        let other = live
            .iter()
            .filter(|g| Some(g.host.as_str()) != preferred)
            .min_by_key(|g| (scores.get(&g.host).copied().unwrap_or(i64::MIN), g.replica));
        if let Some(g) = other {
            steps.push(Step::Demote { replica: g.replica });
        }
    }
    // New grants, only while fewer than promoted_max are live (revoked ones included), and
    // once no start is under way.
    let starts = copies.iter().any(|c| c.starting && !c.host_down);
    let room = if starts {
        0
    } else {
        (promoted_max as usize).saturating_sub(live.len())
    };
    let mut candidates: Vec<&CopyView> = copies.iter().filter(ready).collect();
    candidates.sort_by(|a, b| {
        let first = |c: &CopyView| Some(c.host.as_str()) == preferred;
        first(b)
            .cmp(&first(a))
            .then_with(|| score(&b.host).cmp(&score(&a.host)))
            .then_with(|| a.host.cmp(&b.host))
    });
    for c in candidates.into_iter().take(room) {
        steps.push(Step::Promote {
            replica: c.replica,
            host: c.host.clone(),
        });
    }
    steps
}

/// A copy's role as `report` (its host's) shows it, counting only a report made after the
/// host applied change `since`. `placement` and `epoch` name the copy; with no epoch, any
/// copy of `instance` on that host counts (a grant whose copy moved away: the host may
/// report it under an older placement), and the most cautious role wins.
pub fn reported_role(
    report: Option<&proto::Report>,
    since: u64,
    instance: &str,
    placement: &str,
    epoch: Option<model::placement::Epoch>,
) -> Option<Role> {
    use proto::Phase;
    let r = report?;
    if r.applied.unwrap_or(0) < since {
        return None;
    }
    let roles: Vec<Role> = r
        .instances
        .iter()
        .filter(|o| match epoch {
            Some(e) => o.placement == placement && o.epoch == e,
            None => o.instance == instance,
        })
        .map(|o| match (o.phase, o.role) {
            (_, Some(proto::Role::Promoted)) => Role::Promoted,
            (Phase::Running, Some(proto::Role::Unpromoted)) => Role::Unpromoted,
            (Phase::Stopped | Phase::Failed, _) => Role::Stopped,
            // Starting, restarting, or stopping with its role unknown.
            _ => Role::Starting,
        })
        .collect();
    let rank = |r: &Role| match r {
        Role::Promoted | Role::FailedPromoted => 0,
        Role::Starting => 1,
        Role::Unpromoted => 2,
        Role::Stopped => 3,
    };
    Some(roles.into_iter().min_by_key(rank).unwrap_or(Role::Stopped))
}

/// The leader's promotion steps for promotable instance `inst` in `st`: its copies and
/// grants as the hosts' reports (`report_of`, by host name) show them, with `down` saying
/// which hosts provably run nothing, given to [`decide`]. `now` (the leader's wall clock)
/// tells a copy placed a moment ago, not yet reported by its host, from one held back.
pub fn plan<'a>(
    st: &model::ClusterState,
    inst: &model::instance::Instance,
    now: model::Timestamp,
    report_of: impl Fn(&str) -> Option<&'a proto::Report>,
    down: impl Fn(&model::host::Host) -> bool,
) -> Vec<model::promotion::PromotionStep> {
    use model::promotion::PromotionStep;
    let id = inst.meta.id.as_str();
    let stored = st.promotion_grants(id);
    let host_down = |host: &str| st.host(host).is_none_or(&down);
    let report = |host: &str| st.host(host).and_then(|h| report_of(&h.name));
    let mut copies: Vec<CopyView> = st
        .placements()
        .filter(|p| p.instance == id)
        .map(|p| {
            let since = stored
                .iter()
                .find(|g| g.replica == p.replica && g.host == p.host)
                .map_or(0, |g| g.change);
            CopyView {
                replica: p.replica,
                host: p.host.clone(),
                role: reported_role(report(&p.host), since, id, &p.meta.id, Some(p.epoch)),
                host_down: host_down(&p.host),
                starting: {
                    let seen = report(&p.host).and_then(|r| {
                        r.instances
                            .iter()
                            .find(|o| o.placement == p.meta.id && o.epoch == p.epoch)
                    });
                    match seen {
                        Some(o) => o.phase == proto::Phase::Starting,
                        // Not reported yet: its host is about to start it, unless it was
                        // placed long ago (then something holds its start back).
                        None => now.since(p.meta.updated_at) < UNREPORTED_START,
                    }
                },
            }
        })
        .collect();
    // A grant whose copy moved away still holds until its old host confirms or is down.
    for g in stored {
        if !copies
            .iter()
            .any(|c| c.replica == g.replica && c.host == g.host)
        {
            copies.push(CopyView {
                replica: g.replica,
                host: g.host.clone(),
                role: reported_role(report(&g.host), g.change, id, "", None),
                host_down: host_down(&g.host),
                starting: false,
            });
        }
    }
    let grants: Vec<Grant> = stored
        .iter()
        .map(|g| Grant {
            replica: g.replica,
            host: g.host.clone(),
            epoch: g.epoch,
            revoked: g.revoked,
        })
        .collect();
    let by_name = st.promotion_scores(&inst.name);
    let scores: BTreeMap<String, i64> = copies
        .iter()
        .filter_map(|c| {
            let name = &st.host(&c.host)?.name;
            Some((c.host.clone(), *by_name.get(name)?))
        })
        .collect();
    let preferred = inst
        .preferred_promoted
        .as_deref()
        .and_then(|name| st.host_by_name(name))
        .map(|h| h.meta.id.as_str());
    decide(inst.promoted_max, &copies, &grants, &scores, preferred)
        .into_iter()
        .map(|s| match s {
            Step::Promote { replica, host } => PromotionStep::Grant { replica, host },
            Step::Demote { replica } => PromotionStep::Revoke { replica },
            Step::Release { replica } => PromotionStep::Release { replica },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn copy(replica: u32, host: &str, role: Option<Role>, down: bool) -> CopyView {
        CopyView {
            replica,
            host: host.into(),
            role,
            host_down: down,
            starting: false,
        }
    }

    fn scores(s: &[(&str, i64)]) -> BTreeMap<String, i64> {
        s.iter().map(|(h, v)| (h.to_string(), *v)).collect()
    }

    fn grant(replica: u32, host: &str, revoked: bool) -> Grant {
        Grant {
            replica,
            host: host.into(),
            epoch: 1,
            revoked,
        }
    }

    #[test]
    fn no_copy_is_promoted_while_another_is_starting_on_a_live_host() {
        let s = scores(&[("h1", 10), ("h2", 5)]);
        let mut copies = vec![
            copy(0, "h1", Some(Role::Unpromoted), false),
            copy(1, "h2", Some(Role::Starting), false),
        ];
        copies[1].starting = true;
        assert!(decide(1, &copies, &[], &s, None).is_empty());
        // A start on a host that is down holds nothing.
        copies[1].host_down = true;
        assert_eq!(
            decide(1, &copies, &[], &s, None),
            [Step::Promote {
                replica: 0,
                host: "h1".into()
            }]
        );
    }

    #[test]
    fn the_best_scored_unpromoted_copy_is_promoted_and_unset_scores_promote_nothing() {
        let copies = [
            copy(0, "h1", Some(Role::Unpromoted), false),
            copy(1, "h2", Some(Role::Unpromoted), false),
            copy(2, "h3", Some(Role::Unpromoted), false),
        ];
        let steps = decide(
            1,
            &copies,
            &[],
            &scores(&[("h1", 5), ("h2", 1000), ("h3", -1)]),
            None,
        );
        assert_eq!(
            steps,
            [Step::Promote {
                replica: 1,
                host: "h2".into()
            }]
        );
        assert!(decide(1, &copies, &[], &scores(&[]), None).is_empty());
    }

    #[test]
    fn no_new_promotion_until_the_old_one_is_confirmed_demoted_or_its_host_is_down() {
        let s = scores(&[("h1", 10), ("h2", 1000)]);
        // h1 holds the grant; h2 scores higher, but h1 keeps its grant (no flapping).
        let mut copies = vec![
            copy(0, "h1", Some(Role::Promoted), false),
            copy(1, "h2", Some(Role::Unpromoted), false),
        ];
        assert!(decide(1, &copies, &[grant(0, "h1", false)], &s, None).is_empty());
        // h1's score goes: demote, and nothing else until h1 confirms.
        let lost = scores(&[("h2", 1000)]);
        let steps = decide(1, &copies, &[grant(0, "h1", false)], &lost, None);
        assert_eq!(steps, [Step::Demote { replica: 0 }]);
        // Revoked, h1 silent (partitioned): still nothing.
        copies[0].role = None;
        assert!(decide(1, &copies, &[grant(0, "h1", true)], &lost, None).is_empty());
        // h1's lease is over: released, and h2 promoted in the same round.
        copies[0].host_down = true;
        let steps = decide(1, &copies, &[grant(0, "h1", true)], &lost, None);
        assert_eq!(
            steps,
            [
                Step::Release { replica: 0 },
                Step::Promote {
                    replica: 1,
                    host: "h2".into()
                }
            ]
        );
    }

    /// `promoted_max` lowered below the grants held: the lowest-scored promoted copies are
    /// demoted until it holds, and nothing is promoted meanwhile.
    #[test]
    fn a_lowered_promoted_max_demotes_the_surplus() {
        let s = scores(&[("h1", 10), ("h2", 30), ("h3", 20)]);
        let copies = [
            copy(0, "h1", Some(Role::Promoted), false),
            copy(1, "h2", Some(Role::Promoted), false),
            copy(2, "h3", Some(Role::Promoted), false),
        ];
        let held = [
            grant(0, "h1", false),
            grant(1, "h2", false),
            grant(2, "h3", false),
        ];
        assert!(decide(3, &copies, &held, &s, None).is_empty());
        assert_eq!(
            decide(1, &copies, &held, &s, None),
            [Step::Demote { replica: 0 }, Step::Demote { replica: 2 }]
        );
        // Revoked, not yet confirmed: no more steps, and the kept one stays.
        let revoking = [
            grant(0, "h1", true),
            grant(1, "h2", false),
            grant(2, "h3", true),
        ];
        assert!(decide(1, &copies, &revoking, &s, None).is_empty());
    }

    /// A switchover: the preferred copy, once ready, gets the grant, after the old one is
    /// revoked and released (never both at once); one not ready or unscored waits.
    #[test]
    fn a_preferred_copy_takes_over_cleanly() {
        let s = scores(&[("h1", 10), ("h2", 5)]);
        let both = |r1: Role, r2: Role| {
            vec![
                copy(0, "h1", Some(r1), false),
                copy(1, "h2", Some(r2), false),
            ]
        };
        let copies = both(Role::Promoted, Role::Unpromoted);
        let held = [grant(0, "h1", false)];
        assert_eq!(
            decide(1, &copies, &held, &s, Some("h2")),
            [Step::Demote { replica: 0 }]
        );
        // Revoked, not yet demoted: nothing more.
        let revoked = [grant(0, "h1", true)];
        assert!(decide(1, &copies, &revoked, &s, Some("h2")).is_empty());
        // Demoted: released, and the preferred copy promoted though h1 scores higher.
        let copies = both(Role::Unpromoted, Role::Unpromoted);
        assert_eq!(
            decide(1, &copies, &revoked, &s, Some("h2")),
            [
                Step::Release { replica: 0 },
                Step::Promote {
                    replica: 1,
                    host: "h2".into()
                }
            ]
        );
        // A preferred copy that is not ready, or has no score, takes nothing.
        let starting = both(Role::Promoted, Role::Starting);
        assert!(decide(1, &starting, &held, &s, Some("h2")).is_empty());
        let unscored = scores(&[("h1", 10)]);
        assert!(
            decide(
                1,
                &both(Role::Promoted, Role::Unpromoted),
                &held,
                &unscored,
                Some("h2")
            )
            .is_empty()
        );
    }

    proptest! {
        /// Whatever the roles, scores, reports and grants, the steps never leave more than
        /// promoted_max grants, and never release a grant whose copy may still be promoted.
        #[test]
        fn grants_never_exceed_promoted_max_nor_end_early(
            max in 1u32..3,
            roles in proptest::collection::vec((0u8..6, any::<bool>(), -5i64..5), 1..5),
            granted in proptest::collection::vec((0usize..5, any::<bool>()), 0..3),
            preferred in proptest::option::of(0usize..5),
        ) {
            let role = |r: u8| match r {
                0 => None,
                1 => Some(Role::Stopped),
                2 => Some(Role::Starting),
                3 => Some(Role::Unpromoted),
                4 => Some(Role::Promoted),
                _ => Some(Role::FailedPromoted),
            };
            let copies: Vec<CopyView> = roles
                .iter()
                .enumerate()
                .map(|(i, (r, down, _))| copy(i as u32, &format!("h{i}"), role(*r), *down))
                .collect();
            let s: BTreeMap<String, i64> = roles
                .iter()
                .enumerate()
                .map(|(i, (_, _, v))| (format!("h{i}"), *v))
                .collect();
            let mut grants: Vec<Grant> = Vec::new();
            for (i, revoked) in granted {
                if i < copies.len() && grants.len() < max as usize && !grants.iter().any(|g| g.replica == i as u32) {
                    grants.push(grant(i as u32, &format!("h{i}"), revoked));
                }
            }
            let preferred = preferred.map(|i| format!("h{i}"));
            let steps = decide(max, &copies, &grants, &s, preferred.as_deref());
            let mut live = grants.len();
            for step in &steps {
                match step {
                    Step::Release { replica } => {
                        let g = grants.iter().find(|g| g.replica == *replica).unwrap();
                        let c = &copies[*replica as usize];
                        prop_assert!(
                            c.host_down || (g.revoked && matches!(c.role, Some(Role::Unpromoted | Role::Stopped))),
                            "released a grant whose copy may be promoted: {g:?} {c:?}"
                        );
                        live -= 1;
                    }
                    Step::Promote { replica, .. } => {
                        live += 1;
                        let host = format!("h{replica}");
                        prop_assert!(s[&host] > 0);
                    }
                    Step::Demote { .. } => {}
                }
                prop_assert!(live <= max as usize, "{steps:?}");
            }
        }
    }

    fn observed(
        placement: &str,
        epoch: u64,
        phase: proto::Phase,
        role: Option<proto::Role>,
    ) -> proto::Observed {
        let mut o =
            proto::Observed::new(placement, "i1", "db", model::placement::Epoch(epoch), phase);
        o.role = role;
        o
    }

    /// A report counts only once its host applied the grant's change; a copy absent from a
    /// fresh report is stopped; one still stopping keeps the role it last had, and any copy
    /// of the instance counts for a grant whose copy moved (the most cautious role wins).
    #[test]
    fn a_reported_role_is_fresh_and_cautious() {
        use proto::{Phase, Report, Role as R};
        let e = Some(model::placement::Epoch(3));
        let report = |applied: u64, instances: Vec<proto::Observed>| Report {
            applied: Some(applied),
            instances,
        };
        let running = report(
            10,
            vec![observed("p1", 3, Phase::Running, Some(R::Unpromoted))],
        );
        assert_eq!(
            reported_role(Some(&running), 11, "i1", "p1", e),
            None,
            "stale"
        );
        assert_eq!(
            reported_role(Some(&running), 10, "i1", "p1", e),
            Some(Role::Unpromoted)
        );
        assert_eq!(reported_role(None, 0, "i1", "p1", e), None);
        let gone = report(10, vec![]);
        assert_eq!(
            reported_role(Some(&gone), 10, "i1", "p1", e),
            Some(Role::Stopped)
        );
        let stopping = report(
            10,
            vec![observed("p1", 3, Phase::Stopping, Some(R::Promoted))],
        );
        assert_eq!(
            reported_role(Some(&stopping), 10, "i1", "p1", e),
            Some(Role::Promoted)
        );
        let unknown = report(10, vec![observed("p1", 3, Phase::Stopping, None)]);
        assert_eq!(
            reported_role(Some(&unknown), 10, "i1", "p1", e),
            Some(Role::Starting)
        );
        // Moved away: any copy of the instance there, under any placement, counts.
        let two = report(
            10,
            vec![
                observed("p9", 1, Phase::Running, Some(R::Unpromoted)),
                observed("p1", 2, Phase::Stopping, Some(R::Promoted)),
            ],
        );
        assert_eq!(
            reported_role(Some(&two), 10, "i1", "", None),
            Some(Role::Promoted)
        );
    }
}
