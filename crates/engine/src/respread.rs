//! Spreading again. After a zone comes back (or hosts join one), a spread instance's copies
//! may sit more than `max_skew` apart between zones: the planner only places copies that
//! need a host. Here one copy moves at a time, from the zone holding the most to the host
//! the planner would choose in the zone holding the fewest (among the zones with a host
//! that can take it), and only while the instance is settled (every copy placed, running and
//! not moving: the caller says), so at most one copy per move budget is ever in transit and
//! the others keep serving. A promoted copy is never the one moved. Pure, like the planner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::planner::{InstanceView, Move, PlanInput, Slot, bookkeeping, choose};

/// At most `budget` moves that bring spread instances back within their `max_skew`;
/// `settled` says whether an instance's copies all run and none is moving.
pub fn respread(input: &PlanInput, settled: impl Fn(&str) -> bool, budget: usize) -> Vec<Move> {
    let instances: HashMap<&str, &InstanceView> =
        input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let (mut hosts, staying) = bookkeeping(input, &instances);
    let mut order: Vec<&InstanceView> = input
        .instances
        .iter()
        .filter(|i| i.wanted && i.spread.is_some() && i.colocate.is_none())
        .collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let mut out = Vec::new();
    for inst in order {
        if out.len() >= budget {
            break;
        }
        let Some(spread) = &inst.spread else {
            continue;
        };
        let slots: Vec<Slot> = (0..inst.copies)
            .map(|replica| Slot {
                instance: inst.id.clone(),
                replica,
            })
            .collect();
        if !settled(&inst.id) || !slots.iter().all(|s| staying.contains(s)) {
            continue;
        }
        // The zones with a usable host, each with its copies (slot, host).
        let mut zones: BTreeMap<&String, Vec<(&Slot, &str)>> = BTreeMap::new();
        for h in hosts.values() {
            let v = h.view;
            if v.segment == inst.segment
                && !v.failed
                && !v.down
                && !v.on_maintenance
                && let Some(z) = v.labels.get(&spread.label)
            {
                zones.entry(z).or_default();
            }
        }
        for s in &slots {
            let host = &input.placements[s];
            if let Some(z) = hosts
                .get(host.as_str())
                .and_then(|h| h.view.labels.get(&spread.label))
                && let Some(copies) = zones.get_mut(z)
            {
                copies.push((s, host.as_str()));
            }
        }
        let Some((_, most)) = zones
            .iter()
            .max_by_key(|(z, c)| (c.len(), std::cmp::Reverse(*z)))
        else {
            continue;
        };
        let promoted = input.promoted_on.get(&inst.id);
        let Some((slot, from)) = most
            .iter()
            .filter(|(_, h)| promoted.is_none_or(|p| !p.contains(*h)))
            .max_by_key(|(s, _)| s.replica)
        else {
            continue;
        };
        let mut fewest: Vec<(&&String, usize)> = zones.iter().map(|(z, c)| (z, c.len())).collect();
        fewest.sort_by_key(|(z, n)| (*n, **z));
        let method = input
            .recovery
            .get(&inst.segment)
            .copied()
            .unwrap_or_default();
        let avoid: BTreeSet<&str> = input
            .failed_on
            .get(*slot)
            .map(|hs| hs.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for (z, n) in fewest {
            if most.len() - n <= spread.max_skew as usize {
                break;
            }
            let only: BTreeSet<String> = hosts
                .values()
                .filter(|h| h.view.labels.get(&spread.label) == Some(*z))
                .map(|h| h.view.id.clone())
                .collect();
            if let Ok(to) = choose(&hosts, inst, &avoid, Some(&only), method, 0) {
                if let Some(h) = hosts.get_mut(to) {
                    h.free = h.free.minus(inst.needs);
                    h.instances.insert(&inst.id);
                }
                out.push(Move {
                    slot: (*slot).clone(),
                    from: Some(from.to_string()),
                    to: to.to_string(),
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::planner::tests::{apply, zone_counts as counts, zoned};
    use crate::planner::{Plan, plan};

    fn place(input: &mut PlanInput) -> Plan {
        let p = plan(input);
        apply(input, &p.moves);
        p
    }

    fn fail_zone(input: &mut PlanInput, zone: &str, failed: bool) {
        for h in input.hosts.iter_mut().filter(|h| h.labels["zone"] == zone) {
            h.failed = failed;
        }
    }

    /// A zone fails and comes back: its copies went to the others, and come back one move at
    /// a time, only while the instance is settled; a promoted copy stays put.
    #[test]
    fn a_returning_zone_gets_its_copies_back_one_at_a_time() {
        let mut input = zoned(3, 3, 6);
        place(&mut input);
        fail_zone(&mut input, "z1", true);
        place(&mut input);
        fail_zone(&mut input, "z1", false);
        assert_eq!(
            counts(&input).values().copied().collect::<Vec<_>>(),
            [3, 0, 3]
        );
        assert!(
            respread(&input, |_| false, 1).is_empty(),
            "not settled: no move"
        );
        // The copy the first move would take is promoted: another one moves.
        let first = respread(&input, |_| true, 1);
        assert_eq!(first.len(), 1, "{first:?}");
        input
            .promoted_on
            .insert("web".into(), [first[0].from.clone().unwrap()].into());
        let moves = respread(&input, |_| true, 1);
        assert_eq!(moves.len(), 1);
        assert_ne!(moves[0].from, first[0].from, "the promoted copy moved");
        assert!(moves[0].to.starts_with("z1"), "{moves:?}");
        let mut steps = 0;
        loop {
            let moves = respread(&input, |_| true, 1);
            if moves.is_empty() {
                break;
            }
            assert_eq!(moves.len(), 1, "one at a time");
            apply(&mut input, &moves);
            steps += 1;
            assert!(steps <= 2, "{:?}", counts(&input));
        }
        assert_eq!(
            counts(&input).values().copied().collect::<Vec<_>>(),
            [2, 2, 2]
        );
        assert!(
            plan(&input).moves.is_empty(),
            "the planner leaves the result alone"
        );
    }

    proptest! {
        /// Zones fail and come back in any order: after the planner and then re-spreading,
        /// one move at a time, the zones hold counts at most `max_skew` apart, and no host
        /// holds two copies; every copy stays placed.
        #[test]
        fn after_any_failures_and_returns_the_zones_end_within_the_skew(
            zones in 2u32..5,
            copies in 1u32..10,
            events in proptest::collection::vec((0u32..5, any::<bool>()), 0..8),
        ) {
            // Room in every zone for all the copies.
            let mut input = zoned(zones, copies + 1, copies);
            place(&mut input);
            for (zone, failed) in events {
                fail_zone(&mut input, &format!("z{}", zone % zones), failed);
                let p = place(&mut input);
                prop_assert!(p.unplaced.is_empty() || input.hosts.iter().all(|h| h.failed));
            }
            if input.hosts.iter().all(|h| h.failed) {
                return Ok(());
            }
            let mut steps = 0;
            loop {
                let moves = respread(&input, |_| true, 1);
                prop_assert!(moves.len() <= 1);
                if moves.is_empty() {
                    break;
                }
                apply(&mut input, &moves);
                steps += 1;
                prop_assert!(steps <= copies, "not converging: {:?}", counts(&input));
                let mut seen = BTreeSet::new();
                for h in input.placements.values() {
                    prop_assert!(seen.insert(h.clone()), "two copies on {}", h);
                }
            }
            let c = counts(&input);
            let (max, min) = (c.values().max().copied().unwrap_or(0), c.values().min().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "{c:?}");
            prop_assert_eq!(c.values().sum::<u32>(), copies);
        }
    }
}
