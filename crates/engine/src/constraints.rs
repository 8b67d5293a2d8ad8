//! Colocation and ordering between instances (`model::constraint`), evaluated on the
//! replicated state and the hosts' reports: where a colocated instance may run, and whether
//! an instance's start conditions hold on a host. The planner places by the first; the
//! leader's grants withhold a copy whose start conditions do not hold (its host stops it, or
//! never starts it), by the second.

use std::collections::BTreeSet;

use model::ClusterState;
use model::Kind;
use model::constraint::{Colocation, StartAfter};
use model::instance::Instance;
use model::placement::Placement;
use proto::{Phase, Report, Role};

/// The instance named `name`.
fn named<'a>(st: &'a ClusterState, name: &str) -> Option<&'a Instance> {
    st.resolve(Kind::Instance, name)
        .and_then(|id| st.instance(&id))
}

/// The members of group `name`, in start order (by `order`, then name).
pub fn group_members<'a>(st: &'a ClusterState, name: &str) -> Vec<&'a Instance> {
    let mut members: Vec<&Instance> = st
        .instances()
        .filter(|i| i.group.as_ref().is_some_and(|g| g.name == name))
        .collect();
    members.sort_by_key(|i| (i.group.as_ref().map_or(0, |g| g.order), i.name.as_str()));
    members
}

/// `inst`'s colocation, its group's included: a member after the first follows the first.
pub fn colocation_of(st: &ClusterState, inst: &Instance) -> Option<Colocation> {
    if let Some(g) = &inst.group {
        let members = group_members(st, &g.name);
        let first = members.first()?;
        return (first.meta.id != inst.meta.id).then(|| Colocation {
            instance: first.name.clone(),
            promoted: false,
        });
    }
    inst.colocated_with.clone()
}

/// `inst`'s start conditions, its group's included: a member after the first starts after
/// the one before it.
pub fn start_after_of(st: &ClusterState, inst: &Instance) -> Vec<StartAfter> {
    let mut all = inst.start_after.clone();
    if let Some(g) = &inst.group {
        let members = group_members(st, &g.name);
        if let Some(pos) = members.iter().position(|m| m.meta.id == inst.meta.id)
            && pos > 0
        {
            all.push(StartAfter {
                instance: members[pos - 1].name.clone(),
                promoted: false,
                optional: false,
            });
        }
    }
    all
}

/// Whether `inst` has start conditions (its own or its group's).
pub fn has_start_conditions(inst: &Instance) -> bool {
    !inst.start_after.is_empty() || inst.group.is_some()
}

/// The hosts (ids) where `inst` may run under its colocation: `None` when it has none; an
/// empty set while the instance it follows runs nowhere (or, with `promoted`, has no
/// promoted copy: a live, unrevoked promotion grant on the host of its placement).
pub fn colocation_hosts(st: &ClusterState, inst: &Instance) -> Option<BTreeSet<String>> {
    let c = colocation_of(st, inst)?;
    let Some(target) = named(st, &c.instance) else {
        return Some(BTreeSet::new());
    };
    let placed = st.placements().filter(|p| p.instance == target.meta.id);
    Some(if c.promoted {
        let grants = st.promotion_grants(&target.meta.id);
        placed
            .filter(|p| {
                grants
                    .iter()
                    .any(|g| g.replica == p.replica && g.host == p.host && !g.revoked)
            })
            .map(|p| p.host.clone())
            .collect()
    } else {
        placed.map(|p| p.host.clone()).collect()
    })
}

/// Whether some started instance with a colocation sits on a host its colocation no longer
/// allows (the instance it follows moved, or its promoted copy changed).
pub fn colocation_broken(st: &ClusterState) -> bool {
    st.instances()
        .filter(|i| i.colocated_with.is_some() || i.group.is_some())
        .filter(|i| i.desired_state == model::instance::DesiredState::Started)
        .any(|i| {
            let Some(allowed) = colocation_hosts(st, i) else {
                return false;
            };
            st.placements()
                .filter(|p| p.instance == i.meta.id)
                .any(|p| !allowed.contains(&p.host))
        })
}

/// How copy `p` of `target` stands in its host's report.
fn stands(report: Option<&Report>, p: &Placement) -> Option<(Phase, Option<Role>)> {
    report?
        .instances
        .iter()
        .find(|o| o.placement == p.meta.id && o.epoch == p.epoch)
        .map(|o| (o.phase, o.role))
}

/// Whether `inst`'s start conditions (`start_after`) hold for its copy on host `host` (id),
/// given the hosts' reports (`report_of`, by host name). A mandatory condition holds once a
/// copy of the other instance runs (is promoted, with `promoted`); with a colocation on that
/// instance, its copy on the same host must. An optional one holds unless a copy of the
/// other is starting.
pub fn start_conditions_hold<'a>(
    st: &ClusterState,
    inst: &Instance,
    host: &str,
    report_of: impl Fn(&str) -> Option<&'a Report>,
) -> bool {
    let colocation = colocation_of(st, inst);
    // A group member after the second follows the first yet starts after the one before:
    // on the same host too.
    let group = inst.group.as_ref().map(|g| group_members(st, &g.name));
    start_after_of(st, inst).iter().all(|o: &StartAfter| {
        let Some(target) = named(st, &o.instance) else {
            return o.optional;
        };
        let same_host = colocation
            .as_ref()
            .is_some_and(|c| c.instance == o.instance)
            || group
                .as_ref()
                .is_some_and(|m| m.iter().any(|i| i.name == o.instance));
        let copies: Vec<(Phase, Option<Role>)> = st
            .placements()
            .filter(|p| p.instance == target.meta.id)
            .filter(|p| !same_host || p.host == host)
            .map(|p| {
                let report = st.host(&p.host).and_then(|h| report_of(&h.name));
                stands(report, p).unwrap_or((Phase::Starting, None))
            })
            .collect();
        if o.optional {
            return !copies
                .iter()
                .any(|(phase, _)| matches!(phase, Phase::Starting | Phase::Restarting));
        }
        copies.iter().any(|(phase, role)| {
            *phase == Phase::Running && (!o.promoted || *role == Some(Role::Promoted))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_state::{meta, put, segment_with_hosts};
    use model::Object;
    use model::instance::InstanceSpec;
    use model::placement::{Epoch, PlacementSpec};
    use proto::Observed;

    /// Hosts h1, h2; `db` (a process here) placed on h1; `vip` on h2, colocated with db and
    /// started after it.
    fn cluster(optional: bool) -> (ClusterState, Placement) {
        let mut st = ClusterState::default();
        segment_with_hosts(&mut st, &["h1", "h2"]);
        for (id, extra) in [
            ("db", serde_json::json!({})),
            (
                "vip",
                serde_json::json!({"colocated_with": {"instance": "db"},
                                   "start_after": [{"instance": "db", "optional": optional}]}),
            ),
        ] {
            let mut spec = serde_json::json!({"name": id, "driver": "process",
                                              "params": {"command": "sleep"}});
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let spec: InstanceSpec = serde_json::from_value(spec).unwrap();
            put(
                &mut st,
                Object::Instance(Instance::create(meta(id), &spec, "s1".into()).unwrap()),
            );
        }
        let place = |instance: &str, host: &str| {
            let spec = PlacementSpec::default();
            Object::Placement(
                Placement::create(
                    meta(&format!("p-{instance}")),
                    &spec,
                    instance.into(),
                    host.into(),
                )
                .unwrap(),
            )
        };
        let Object::Placement(db) = put(&mut st, place("db", "h1")) else {
            unreachable!()
        };
        (st, db)
    }

    fn report(p: &Placement, phase: Phase) -> Report {
        Report {
            applied: Some(1),
            instances: vec![Observed::new(
                &p.meta.id,
                &p.instance,
                &p.instance,
                p.epoch,
                phase,
            )],
        }
    }

    #[test]
    fn a_follower_runs_only_where_and_once_what_it_follows_runs() {
        let (st, db) = cluster(false);
        let vip = st.instance("vip").unwrap();
        assert_eq!(colocation_hosts(&st, vip), Some(["h1".to_string()].into()));
        let running = report(&db, Phase::Running);
        let starting = report(&db, Phase::Starting);
        let on_h1 =
            |r: &Report| start_conditions_hold(&st, vip, "h1", |h| (h == "h1").then_some(r));
        assert!(on_h1(&running));
        assert!(!on_h1(&starting));
        assert!(
            !start_conditions_hold(&st, vip, "h1", |_| None),
            "no report yet"
        );
        // Colocated with db: only db's copy on the same host counts.
        assert!(!start_conditions_hold(&st, vip, "h2", |h| (h == "h1").then_some(&running)));
        // A stale epoch does not count.
        let mut old = db.clone();
        old.epoch = Epoch(db.epoch.0 + 1);
        assert!(!on_h1(&report(&old, Phase::Running)));
        // Optional: waits only while db is starting.
        let (st, db) = cluster(true);
        let vip = st.instance("vip").unwrap();
        let hold = |r: &Report| start_conditions_hold(&st, vip, "h1", |_| Some(r));
        assert!(hold(&report(&db, Phase::Stopped)));
        assert!(!hold(&report(&db, Phase::Starting)));
    }

    /// A group: the second and third members follow the first, and each starts after the
    /// one before it (by order, then name), on the same host.
    #[test]
    fn a_group_is_a_chain_of_start_conditions_behind_its_first_member() {
        let (mut st, _) = cluster(false);
        for (id, order) in [("c", 2), ("a", 0), ("b", 1)] {
            let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
                "name": id, "driver": "process", "params": {"command": "sleep"},
                "group": {"name": "g", "order": order}
            }))
            .unwrap();
            put(
                &mut st,
                Object::Instance(Instance::create(meta(id), &spec, "s1".into()).unwrap()),
            );
        }
        let names: Vec<&str> = group_members(&st, "g")
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let (a, c) = (st.instance("a").unwrap(), st.instance("c").unwrap());
        assert_eq!(colocation_of(&st, a), None);
        assert_eq!(
            colocation_of(&st, c).map(|x| x.instance),
            Some("a".to_string())
        );
        let after: Vec<String> = start_after_of(&st, c)
            .into_iter()
            .map(|o| o.instance)
            .collect();
        assert_eq!(after, ["b"]);
        assert!(
            has_start_conditions(a),
            "a member's conditions come from its group"
        );
    }
}
