//! The recovery planner: given the hosts, the instances, where they are placed and what failed,
//! decide where every instance that must move goes. Pure and deterministic: the same input
//! gives the same plan, so every server would plan alike and any plan can be replayed.
//!
//! Rules: an instance stays in its segment; hosts that failed or are on maintenance take
//! nothing; CPU and memory are never overcommitted; instances of one anti-affinity group, and
//! the copies of one clone, go to distinct hosts; the highest priority is placed first; each
//! destination starts at most `max_starts_per_host` instances per plan (the rest wait for the
//! next round); the segment's recovery method says whether reserved hosts are used first,
//! last, only, or never; a host must carry the instance's `host_labels`; the copies of a
//! clone with `spread` go to the zone (host label value) holding the fewest of them first.
//! Whatever cannot be placed is listed with the reason.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use model::segment::RecoveryMethod;

/// How much a host is preferred (smaller is better): the fewest copies of the instance in
/// its zone (spread instances), the recovery method's pass, then the most free memory, then
/// the most free CPU.
type Preference = (u32, u8, Reverse<u64>, Reverse<u64>);

/// CPU in millicores and memory in MB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_mb: u64,
}

impl Resources {
    fn fits_in(self, free: Resources) -> bool {
        self.cpu_millis <= free.cpu_millis && self.memory_mb <= free.memory_mb
    }
    fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_mb: self.memory_mb + o.memory_mb,
        }
    }
    pub(crate) fn minus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            memory_mb: self.memory_mb.saturating_sub(o.memory_mb),
        }
    }
}

/// A host as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostView {
    pub id: String,
    pub segment: String,
    pub capacity: Resources,
    pub reserved: bool,
    pub on_maintenance: bool,
    /// Failed or fenced: takes nothing, and what runs there must move.
    pub failed: bool,
    /// Seen down (dead in the leader's gossip view and no longer renewing) but not failed
    /// yet (its lease, with the stop grace of its OCF copies, is not over): takes nothing
    /// new, and what runs there stays until it is failed.
    pub down: bool,
    /// Copies starting there right now (they count against `max_starts_per_host`).
    pub starting: u32,
    pub labels: BTreeMap<String, String>,
}

/// An instance as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    pub segment: String,
    pub needs: Resources,
    /// 0-1000, higher first.
    pub priority: u16,
    /// 1 for single instances; N copies for a clone.
    pub copies: u32,
    pub anti_affinity: Option<String>,
    /// Only started instances are placed.
    pub wanted: bool,
    /// Runs where another instance runs (a `single` instance).
    pub colocate: Option<Colocate>,
    /// Labels a host must carry to run it.
    pub host_labels: BTreeMap<String, String>,
    /// Its copies spread over the values of a host label.
    pub spread: Option<model::spread::Spread>,
}

/// "On the host of instance `target`" (of its promoted copy, with `promoted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colocate {
    /// Instance id.
    pub target: String,
    /// Its name, for the reasons.
    pub name: String,
    pub promoted: bool,
}

/// One copy of an instance on one host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub instance: String,
    pub replica: u32,
}

/// What the planner is asked.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    pub hosts: Vec<HostView>,
    pub instances: Vec<InstanceView>,
    /// Where each copy is placed now.
    pub placements: BTreeMap<Slot, String>,
    /// Copies that failed where they run (restart budget spent): move them off that host.
    pub failed_slots: BTreeSet<Slot>,
    /// Hosts where each copy failed before (Pacemaker's migration threshold of 1): it is not
    /// placed there again until the failure expires or an operator resets it. A copy that
    /// failed on every usable host is left where it is, unplaced: blocked, never looping.
    pub failed_on: BTreeMap<Slot, BTreeSet<String>>,
    pub recovery: HashMap<String, RecoveryMethod>,
    /// Copies starting at once per destination host, counting those already starting
    /// (0: no limit).
    pub max_starts_per_host: u32,
    /// Per promotable instance, the hosts of its promoted copies (live promotion grants).
    pub promoted_on: BTreeMap<String, BTreeSet<String>>,
}

/// One decision: put `slot` on `to` (it was on `from`, if anywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub slot: Slot,
    pub from: Option<String>,
    pub to: String,
}

/// A copy left without a host, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub slot: Slot,
    pub reason: String,
}

/// The planner's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub unplaced: Vec<Unplaced>,
    /// Reserved hosts this plan puts to work (they stop being reserved).
    pub reserved_taken: BTreeSet<String>,
}

/// How an unplaced copy's reason starts when it failed on every usable host.
pub const BLOCKED: &str = "blocked";

/// Per-host bookkeeping while planning.
pub(crate) struct HostState<'a> {
    pub(crate) view: &'a HostView,
    pub(crate) free: Resources,
    pub(crate) groups: HashSet<&'a str>,
    pub(crate) instances: HashSet<&'a str>,
    pub(crate) starts: u32,
}

/// The hosts as a plan starts, with what stays where it is using its host, and the copies
/// that stay.
pub(crate) fn bookkeeping<'a>(
    input: &'a PlanInput,
    instances: &HashMap<&str, &'a InstanceView>,
) -> (BTreeMap<&'a str, HostState<'a>>, BTreeSet<&'a Slot>) {
    let mut hosts: BTreeMap<&str, HostState> = input
        .hosts
        .iter()
        .map(|h| {
            (
                h.id.as_str(),
                HostState {
                    view: h,
                    free: h.capacity,
                    groups: HashSet::new(),
                    instances: HashSet::new(),
                    starts: h.starting,
                },
            )
        })
        .collect();
    let mut staying: BTreeSet<&Slot> = BTreeSet::new();
    for (slot, host) in &input.placements {
        let Some(inst) = instances.get(slot.instance.as_str()) else {
            continue;
        };
        let usable = hosts.get(host.as_str()).is_some_and(|h| !h.view.failed);
        if usable && !input.failed_slots.contains(slot) && inst.wanted && slot.replica < inst.copies
        {
            if let Some(h) = hosts.get_mut(host.as_str()) {
                h.free = h.free.minus(inst.needs);
                h.instances.insert(&inst.id);
                if let Some(g) = &inst.anti_affinity {
                    h.groups.insert(g);
                }
            }
            staying.insert(slot);
        } else if usable && input.failed_slots.contains(slot) {
            // A failed copy holds its host until it moves: no other copy of the same clone
            // goes there meanwhile (the state would refuse the swap, and the plan would loop).
            if let Some(h) = hosts.get_mut(host.as_str()) {
                h.instances.insert(&inst.id);
            }
        }
    }
    (hosts, staying)
}

/// Plans the moves for everything that has no usable placement.
pub fn plan(input: &PlanInput) -> Plan {
    let instances: HashMap<&str, &InstanceView> =
        input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    // What stays where it is uses its host; everything else must be placed.
    let (mut hosts, staying) = bookkeeping(input, &instances);
    let mut to_place: Vec<(&InstanceView, Slot, Option<&str>)> = Vec::new();
    for inst in input
        .instances
        .iter()
        .filter(|i| i.wanted && i.colocate.is_none())
    {
        for replica in 0..inst.copies {
            let slot = Slot {
                instance: inst.id.clone(),
                replica,
            };
            if !staying.contains(&slot) {
                let from = input.placements.get(&slot).map(String::as_str);
                to_place.push((inst, slot, from));
            }
        }
    }
    // Highest priority first; ties by id and replica, so the plan is deterministic.
    to_place.sort_by(|a, b| b.0.priority.cmp(&a.0.priority).then_with(|| a.1.cmp(&b.1)));

    let mut out = Plan::default();
    for (inst, slot, from) in to_place {
        let method = input
            .recovery
            .get(&inst.segment)
            .copied()
            .unwrap_or_default();
        let mut avoid: BTreeSet<&str> = input
            .failed_on
            .get(&slot)
            .map(|hs| hs.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if let Some(f) = from.filter(|_| input.failed_slots.contains(&slot)) {
            avoid.insert(f);
        }
        match choose(
            &hosts,
            inst,
            &avoid,
            None,
            method,
            input.max_starts_per_host,
        ) {
            Ok(to) => {
                if let Some(h) = hosts.get_mut(to) {
                    h.free = h.free.minus(inst.needs);
                    h.instances.insert(&inst.id);
                    if let Some(g) = &inst.anti_affinity {
                        h.groups.insert(g);
                    }
                    h.starts += 1;
                    if h.view.reserved {
                        out.reserved_taken.insert(h.view.id.clone());
                    }
                }
                out.moves.push(Move {
                    slot,
                    from: from.map(String::from),
                    to: to.to_string(),
                });
            }
            Err(reason) => out.unplaced.push(Unplaced { slot, reason }),
        }
    }
    place_colocated(input, &instances, &mut hosts, &staying, &mut out);
    out
}

/// Places the instances that follow another, once those they follow are placed: each on the
/// host of the one it follows (of its promoted copy), in chains, the followed first. A
/// follower whose host no longer fits moves there, releasing what it held.
fn place_colocated<'a>(
    input: &'a PlanInput,
    instances: &HashMap<&str, &'a InstanceView>,
    hosts: &mut BTreeMap<&'a str, HostState<'a>>,
    staying: &BTreeSet<&Slot>,
    out: &mut Plan,
) {
    // Where each instance runs after this plan.
    let mut runs_on: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (slot, host) in &input.placements {
        if staying.contains(slot) {
            runs_on
                .entry(&slot.instance)
                .or_default()
                .insert(host.clone());
        }
    }
    for m in &out.moves {
        let hs = runs_on
            .entry(instances[m.slot.instance.as_str()].id.as_str())
            .or_default();
        if let Some(from) = &m.from {
            hs.remove(from);
        }
        hs.insert(m.to.clone());
    }
    let followers: Vec<&InstanceView> = input
        .instances
        .iter()
        .filter(|i| i.wanted && i.colocate.is_some())
        .collect();
    // Chain depth: a follower of a follower comes after it (a cycle never resolves).
    let depth = |i: &InstanceView| {
        let mut d = 0;
        let mut at = i;
        while let Some(c) = &at.colocate {
            d += 1;
            match instances.get(c.target.as_str()) {
                Some(next) if d <= followers.len() => at = next,
                _ => break,
            }
        }
        d
    };
    let mut order: Vec<(usize, &InstanceView)> = followers.iter().map(|i| (depth(i), *i)).collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| b.1.priority.cmp(&a.1.priority))
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    for (d, inst) in order {
        let c = inst.colocate.as_ref().expect("a follower");
        let slot = Slot {
            instance: inst.id.clone(),
            replica: 0,
        };
        let what = if c.promoted {
            format!("colocated with the promoted copy of `{}`", c.name)
        } else {
            format!("colocated with `{}`", c.name)
        };
        let allowed: BTreeSet<String> = if d > followers.len() {
            BTreeSet::new()
        } else if c.promoted {
            input
                .promoted_on
                .get(&c.target)
                .cloned()
                .unwrap_or_default()
        } else {
            runs_on.get(c.target.as_str()).cloned().unwrap_or_default()
        };
        let from = input.placements.get(&slot).map(String::as_str);
        if staying.contains(&slot) && from.is_some_and(|h| allowed.contains(h)) {
            continue;
        }
        if allowed.is_empty() {
            let reason = if d > followers.len() {
                format!("waiting: {what}, in a cycle of colocations")
            } else {
                format!("waiting: {what}, which runs nowhere")
            };
            out.unplaced.push(Unplaced { slot, reason });
            continue;
        }
        // It leaves its host: what it held there is free again.
        if let Some(h) = from
            .filter(|_| staying.contains(&slot))
            .and_then(|f| hosts.get_mut(f))
        {
            h.free = h.free.plus(inst.needs);
            h.instances.remove(inst.id.as_str());
        }
        let method = input
            .recovery
            .get(&inst.segment)
            .copied()
            .unwrap_or_default();
        match choose(hosts, inst, &BTreeSet::new(), Some(&allowed), method, 0) {
            Ok(to) => {
                if let Some(h) = hosts.get_mut(to) {
                    h.free = h.free.minus(inst.needs);
                    h.instances.insert(&inst.id);
                    h.starts += 1;
                }
                runs_on
                    .entry(inst.id.as_str())
                    .or_default()
                    .insert(to.to_string());
                if from != Some(to) {
                    out.moves.push(Move {
                        slot,
                        from: from.map(String::from),
                        to: to.to_string(),
                    });
                }
            }
            Err(reason) => out.unplaced.push(Unplaced {
                slot,
                reason: format!("{what}: {reason}"),
            }),
        }
    }
}

/// The best host for `inst` (among `only`, when given), or why there is none.
pub(crate) fn choose<'a>(
    hosts: &BTreeMap<&'a str, HostState<'a>>,
    inst: &InstanceView,
    avoid: &BTreeSet<&str>,
    only: Option<&BTreeSet<String>>,
    method: RecoveryMethod,
    max_starts: u32,
) -> Result<&'a str, String> {
    let mut in_segment = 0;
    let mut usable = 0;
    let mut failed_there = 0;
    let mut blocked_by_rules = 0;
    let mut unlabeled = 0;
    let mut at_start_limit = 0;
    let mut best: Option<(Preference, &'a str)> = None;
    // A spread instance: how many of its copies each zone holds (this plan's included).
    fn zone<'h>(inst: &InstanceView, v: &'h HostView) -> Option<&'h String> {
        inst.spread.as_ref().and_then(|s| v.labels.get(&s.label))
    }
    let mut per_zone: HashMap<&String, u32> = HashMap::new();
    for h in hosts.values() {
        if let Some(z) = zone(inst, h.view).filter(|_| h.instances.contains(inst.id.as_str())) {
            *per_zone.entry(z).or_default() += 1;
        }
    }
    for (id, h) in hosts {
        let v = h.view;
        if v.segment != inst.segment || only.is_some_and(|o| !o.contains(*id)) {
            continue;
        }
        in_segment += 1;
        if v.failed || v.on_maintenance || v.down {
            continue;
        }
        usable += 1;
        let labeled = inst
            .host_labels
            .iter()
            .all(|(k, want)| v.labels.get(k) == Some(want));
        let load = match (&inst.spread, zone(inst, v)) {
            (None, _) => 0,
            (Some(_), Some(z)) => per_zone.get(z).copied().unwrap_or(0),
            (Some(_), None) => {
                unlabeled += 1;
                continue;
            }
        };
        if !labeled {
            unlabeled += 1;
            continue;
        }
        if avoid.contains(id) {
            failed_there += 1;
            continue;
        }
        // Which pass may use this host under the recovery method (0 preferred, 1 fallback).
        let pass = match (method, v.reserved) {
            (RecoveryMethod::Auto, false) | (RecoveryMethod::ReservedHost, true) => 0,
            (RecoveryMethod::Auto, true) | (RecoveryMethod::ReservedHost, false) => continue,
            (RecoveryMethod::AutoPriority, r) => u8::from(r),
            (RecoveryMethod::RhPriority, r) => u8::from(!r),
        };
        if h.instances.contains(inst.id.as_str())
            || inst
                .anti_affinity
                .as_deref()
                .is_some_and(|g| h.groups.contains(g))
        {
            blocked_by_rules += 1;
            continue;
        }
        if !inst.needs.fits_in(h.free) {
            continue;
        }
        if max_starts > 0 && h.starts >= max_starts {
            at_start_limit += 1;
            continue;
        }
        let key = (
            load,
            pass,
            Reverse(h.free.memory_mb),
            Reverse(h.free.cpu_millis),
        );
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, id));
        }
    }
    if let Some((_, id)) = best {
        return Ok(id);
    }
    Err(if in_segment == 0 {
        format!("segment `{}` has no hosts", inst.segment)
    } else if failed_there > 0 && failed_there == usable {
        format!(
            "{BLOCKED}: it failed on every usable host of segment `{}` ({usable})",
            inst.segment
        )
    } else if unlabeled > 0 && unlabeled == usable {
        let mut wanted: Vec<String> = inst
            .host_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        wanted.extend(inst.spread.iter().map(|s| format!("{} (spread)", s.label)));
        format!(
            "no usable host in segment `{}` carries the label(s) {}",
            inst.segment,
            wanted.join(", ")
        )
    } else if at_start_limit > 0 {
        format!(
            "waiting: {at_start_limit} host(s) with room already start {max_starts} instance(s) in this round"
        )
    } else {
        let rules = if blocked_by_rules > 0 {
            format!(" ({blocked_by_rules} host(s) excluded by anti-affinity or clone spreading)")
        } else {
            String::new()
        };
        format!(
            "no usable host in segment `{}` has {}m CPU and {} MB free{rules}",
            inst.segment, inst.needs.cpu_millis, inst.needs.memory_mb
        )
    })
}

/// Hosts whose placements (after `plan` is applied) use more than they have: must be empty.
pub fn overcommitted(input: &PlanInput, plan: &Plan) -> Vec<String> {
    let needs: HashMap<&str, Resources> = input
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.needs))
        .collect();
    let mut placed: BTreeMap<&Slot, &str> = input
        .placements
        .iter()
        .map(|(s, h)| (s, h.as_str()))
        .collect();
    for m in &plan.moves {
        placed.insert(&m.slot, &m.to);
    }
    let mut used: HashMap<&str, Resources> = HashMap::new();
    for (slot, host) in placed {
        if let Some(n) = needs.get(slot.instance.as_str()) {
            let u = used.entry(host).or_default();
            *u = u.plus(*n);
        }
    }
    input
        .hosts
        .iter()
        .filter(|h| !h.failed)
        .filter(|h| {
            used.get(h.id.as_str())
                .is_some_and(|u| !u.fits_in(h.capacity))
        })
        .map(|h| h.id.clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // inputs are built step by step, as a reader would
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn host(id: &str, seg: &str, cpu: u64, mem: u64) -> HostView {
        HostView {
            id: id.into(),
            segment: seg.into(),
            capacity: Resources {
                cpu_millis: cpu,
                memory_mb: mem,
            },
            reserved: false,
            on_maintenance: false,
            down: false,
            failed: false,
            starting: 0,
            labels: BTreeMap::new(),
        }
    }

    fn inst(id: &str, seg: &str, cpu: u64, mem: u64, priority: u16) -> InstanceView {
        InstanceView {
            id: id.into(),
            segment: seg.into(),
            needs: Resources {
                cpu_millis: cpu,
                memory_mb: mem,
            },
            priority,
            copies: 1,
            anti_affinity: None,
            wanted: true,
            colocate: None,
            host_labels: BTreeMap::new(),
            spread: None,
        }
    }

    /// A follower goes where the instance it follows runs after the plan (its promoted copy,
    /// with `promoted`), follows it when it moves, and waits, saying why, while there is none.
    #[test]
    fn a_colocated_instance_follows_and_waits_for_what_it_follows() {
        let mut input = PlanInput::default();
        for h in ["h1", "h2", "h3"] {
            input.hosts.push(host(h, "s", 4000, 4096));
        }
        let mut db = inst("db", "s", 100, 100, 500);
        db.copies = 3;
        let mut vip = inst("vip", "s", 100, 100, 900);
        vip.colocate = Some(Colocate {
            target: "db".into(),
            name: "db".into(),
            promoted: true,
        });
        let mut app = inst("app", "s", 100, 100, 100);
        let mut web = inst("web", "s", 100, 100, 100);
        web.colocate = Some(Colocate {
            target: "app".into(),
            name: "app".into(),
            promoted: false,
        });
        app.priority = 100;
        input.instances = vec![db, vip, app, web];
        for (r, h) in ["h1", "h2", "h3"].iter().enumerate() {
            input.placements.insert(slot("db", r as u32), h.to_string());
        }
        input.placements.insert(slot("app", 0), "h3".into());
        // No promoted copy yet: the VIP waits; web follows app to h3.
        let p = plan(&input);
        let to = |p: &Plan, i: &str| {
            p.moves
                .iter()
                .find(|m| m.slot.instance == i)
                .map(|m| m.to.clone())
        };
        assert_eq!(to(&p, "web").as_deref(), Some("h3"));
        let why = &p
            .unplaced
            .iter()
            .find(|u| u.slot.instance == "vip")
            .unwrap()
            .reason;
        assert!(
            why.contains("promoted copy of `db`, which runs nowhere"),
            "{why}"
        );
        // Promoted on h2: the VIP goes there; then on h1: it moves.
        input
            .promoted_on
            .insert("db".into(), ["h2".to_string()].into());
        assert_eq!(to(&plan(&input), "vip").as_deref(), Some("h2"));
        input.placements.insert(slot("vip", 0), "h2".into());
        input.placements.insert(slot("web", 0), "h3".into());
        assert!(plan(&input).moves.is_empty(), "all where they belong");
        input
            .promoted_on
            .insert("db".into(), ["h1".to_string()].into());
        let p = plan(&input);
        assert_eq!(p.moves.len(), 1, "{p:?}");
        assert_eq!(
            (p.moves[0].from.as_deref(), p.moves[0].to.as_str()),
            (Some("h2"), "h1")
        );
        // app's host fails: app moves, and web with it, in the same plan.
        input.hosts[2].failed = true;
        let p = plan(&input);
        let app_to = to(&p, "app").expect("app moves");
        assert_eq!(to(&p, "web"), Some(app_to));
    }

    fn slot(i: &str, r: u32) -> Slot {
        Slot {
            instance: i.into(),
            replica: r,
        }
    }

    fn moved_to<'a>(p: &'a Plan, i: &str) -> Option<&'a str> {
        p.moves
            .iter()
            .find(|m| m.slot.instance == i)
            .map(|m| m.to.as_str())
    }

    /// Two hosts crash at once; the one whose lease outlasts the other's (an OCF copy's stop
    /// grace) is seen down but not failed yet when the other's copies are placed: it takes
    /// none of them, and its own copy stays until it is failed.
    #[test]
    fn a_host_seen_down_takes_nothing_new_and_keeps_its_copies_until_failed() {
        let mut input = PlanInput::default();
        input.hosts = vec![
            host("h1", "a", 64000, 65536),
            host("h2", "a", 4000, 4096),
            host("h3", "a", 4000, 4096),
        ];
        input.instances = vec![
            inst("web", "a", 1000, 1024, 100),
            inst("db", "a", 1000, 1024, 100),
        ];
        input.placements.insert(slot("web", 0), "h2".into());
        input.placements.insert(slot("db", 0), "h1".into());
        input.hosts[1].failed = true;
        // Without the mark, h1 (the emptiest) would take web.
        assert_eq!(moved_to(&plan(&input), "web"), Some("h1"));
        input.hosts[0].down = true;
        let p = plan(&input);
        assert_eq!(moved_to(&p, "web"), Some("h3"), "{p:?}");
        assert_eq!(
            moved_to(&p, "db"),
            None,
            "a down host's copy stays until it is failed"
        );
    }

    #[test]
    fn a_failed_hosts_instances_go_to_the_emptiest_hosts_highest_priority_first() {
        let mut input = PlanInput::default();
        input.hosts = vec![
            host("h1", "a", 4000, 4096),
            host("h2", "a", 4000, 4096),
            host("h3", "a", 4000, 2048),
            host("x1", "b", 64000, 65536),
        ];
        input.hosts[0].failed = true;
        input.instances = vec![
            inst("big", "a", 1000, 3072, 100),
            inst("vip", "a", 1000, 2048, 900),
            inst("low", "a", 1000, 2048, 1),
        ];
        for i in ["big", "vip", "low"] {
            input.placements.insert(slot(i, 0), "h1".into());
        }
        let p = plan(&input);
        // vip first, to the emptiest host (h2, 4 GB); big then fits nowhere but h2... which
        // vip half filled: h2 has 2 GB, h3 2 GB: big (3 GB) is left; low goes to h2 or h3.
        assert_eq!(moved_to(&p, "vip"), Some("h2"));
        assert_eq!(moved_to(&p, "low"), Some("h3"));
        assert_eq!(p.unplaced.len(), 1);
        assert_eq!(p.unplaced[0].slot, slot("big", 0));
        assert!(
            p.unplaced[0]
                .reason
                .contains("no usable host in segment `a` has 1000m CPU and 3072 MB free"),
            "{:?}",
            p.unplaced
        );
        assert!(overcommitted(&input, &p).is_empty());
        assert_eq!(plan(&input), p, "deterministic");
    }

    #[test]
    fn recovery_methods_choose_reserved_hosts_first_last_only_or_never() {
        let mut input = PlanInput::default();
        input.hosts = vec![
            host("dead", "a", 4000, 4096),
            host("free", "a", 4000, 8192),
            host("spare", "a", 4000, 4096),
        ];
        input.hosts[0].failed = true;
        input.hosts[2].reserved = true;
        input.instances = vec![inst("web", "a", 1000, 1024, 0)];
        input.placements.insert(slot("web", 0), "dead".into());
        let with_method = |input: &PlanInput, m: RecoveryMethod| {
            let mut i = input.clone();
            i.recovery.insert("a".into(), m);
            plan(&i)
        };
        let with = |m: RecoveryMethod| with_method(&input, m);
        assert_eq!(moved_to(&with(RecoveryMethod::Auto), "web"), Some("free"));
        let p = with(RecoveryMethod::ReservedHost);
        assert_eq!(moved_to(&p, "web"), Some("spare"));
        assert_eq!(p.reserved_taken, BTreeSet::from(["spare".to_string()]));
        assert_eq!(
            moved_to(&with(RecoveryMethod::RhPriority), "web"),
            Some("spare")
        );
        assert_eq!(
            moved_to(&with(RecoveryMethod::AutoPriority), "web"),
            Some("free")
        );
        // With the non-reserved host full, auto_priority falls back to the reserved one and
        // auto leaves the instance unplaced.
        let mut full = input.clone();
        full.hosts[1].capacity.memory_mb = 512;
        assert_eq!(
            moved_to(&with_method(&full, RecoveryMethod::AutoPriority), "web"),
            Some("spare")
        );
        assert_eq!(with_method(&full, RecoveryMethod::Auto).unplaced.len(), 1);
    }

    #[test]
    fn anti_affinity_clones_maintenance_start_limits_and_failed_copies() {
        let mut input = PlanInput::default();
        input.hosts = (1..=4)
            .map(|i| host(&format!("h{i}"), "a", 8000, 8192))
            .collect();
        input.hosts[3].on_maintenance = true;
        let mut web = inst("web", "a", 100, 128, 10);
        web.copies = 3;
        let mut db1 = inst("db1", "a", 100, 128, 5);
        db1.anti_affinity = Some("db".into());
        let mut db2 = db1.clone();
        db2.id = "db2".into();
        input.instances = vec![web, db1, db2];
        input.placements.insert(slot("db1", 0), "h1".into());
        let p = plan(&input);
        let web_hosts: BTreeSet<&str> = p
            .moves
            .iter()
            .filter(|m| m.slot.instance == "web")
            .map(|m| m.to.as_str())
            .collect();
        assert_eq!(web_hosts.len(), 3, "clone copies on distinct hosts: {p:?}");
        assert!(!web_hosts.contains("h4"), "h4 is on maintenance");
        assert_ne!(moved_to(&p, "db2"), Some("h1"), "anti-affinity with db1");

        // One start per host per round: the fourth copy waits.
        input.max_starts_per_host = 1;
        input.instances[0].copies = 4;
        let p = plan(&input);
        assert!(
            p.unplaced.iter().any(|u| u.reason.starts_with("waiting:")),
            "{p:?}"
        );

        // A copy that failed on its host moves elsewhere.
        let mut input = PlanInput::default();
        input.hosts = vec![host("h1", "a", 1000, 1024), host("h2", "a", 1000, 1024)];
        input.instances = vec![inst("app", "a", 100, 100, 0)];
        input.placements.insert(slot("app", 0), "h1".into());
        input.failed_slots.insert(slot("app", 0));
        let p = plan(&input);
        assert_eq!(
            p.moves,
            vec![Move {
                slot: slot("app", 0),
                from: Some("h1".into()),
                to: "h2".into()
            }]
        );
    }

    /// A random but valid cluster: initial placements respect capacity and the rules.
    fn cluster() -> impl Strategy<Value = PlanInput> {
        let hosts = prop::collection::vec(
            (
                0u8..2,
                1u64..8,
                1u64..8,
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.25),
            ),
            1..12,
        );
        let instances = prop::collection::vec(
            (
                0u8..2,
                1u64..4,
                1u64..4,
                1u32..3,
                prop::option::of(0u8..3),
                0u16..1000,
            ),
            0..40,
        );
        let methods = prop::collection::vec(0u8..4, 2);
        (hosts, instances, methods, any::<u64>()).prop_map(|(hs, is, ms, seed)| {
            let mut input = PlanInput::default();
            for (n, (seg, cpu, mem, reserved, maint, failed)) in hs.into_iter().enumerate() {
                let mut h = host(
                    &format!("h{n:02}"),
                    &format!("s{seg}"),
                    cpu * 1000,
                    mem * 1024,
                );
                h.reserved = reserved;
                h.on_maintenance = maint;
                h.failed = failed;
                input.hosts.push(h);
            }
            for (n, (seg, cpu, mem, copies, group, prio)) in is.into_iter().enumerate() {
                let mut i = inst(
                    &format!("i{n:02}"),
                    &format!("s{seg}"),
                    cpu * 500,
                    mem * 512,
                    prio,
                );
                i.copies = copies;
                i.anti_affinity = group.map(|g| format!("g{g}"));
                input.instances.push(i);
            }
            for (s, m) in ms.into_iter().enumerate() {
                let method = [
                    RecoveryMethod::Auto,
                    RecoveryMethod::ReservedHost,
                    RecoveryMethod::AutoPriority,
                    RecoveryMethod::RhPriority,
                ][m as usize];
                input.recovery.insert(format!("s{s}"), method);
            }
            // Initial placements: first fit from a seed-rotated start, obeying every rule.
            let mut free: Vec<Resources> = input.hosts.iter().map(|h| h.capacity).collect();
            let mut on: Vec<BTreeSet<String>> = vec![BTreeSet::new(); input.hosts.len()];
            for (k, i) in input.instances.iter().enumerate() {
                for r in 0..i.copies {
                    let n = input.hosts.len();
                    for step in 0..n {
                        let h = (seed as usize + k + step) % n;
                        let hv = &input.hosts[h];
                        let group_clash = i
                            .anti_affinity
                            .as_ref()
                            .is_some_and(|g| on[h].contains(&format!("group:{g}")));
                        if hv.segment == i.segment
                            && !hv.on_maintenance
                            && i.needs.fits_in(free[h])
                            && !on[h].contains(&i.id)
                            && !group_clash
                        {
                            free[h] = free[h].minus(i.needs);
                            on[h].insert(i.id.clone());
                            if let Some(g) = &i.anti_affinity {
                                on[h].insert(format!("group:{g}"));
                            }
                            input.placements.insert(slot(&i.id, r), hv.id.clone());
                            break;
                        }
                    }
                }
            }
            input
        })
    }

    /// Hosts `z{zone}h{n}` in segment `s`, labelled `zone=z{zone}`, and a clone of `copies`
    /// spread over the zones.
    pub(crate) fn zoned(zones: u32, per_zone: u32, copies: u32) -> PlanInput {
        let mut input = PlanInput::default();
        for z in 0..zones {
            for n in 0..per_zone {
                let mut h = host(&format!("z{z}h{n}"), "s", 64_000, 64_000);
                h.labels.insert("zone".into(), format!("z{z}"));
                input.hosts.push(h);
            }
        }
        let mut web = inst("web", "s", 100, 100, 500);
        web.copies = copies;
        web.spread = Some(model::spread::Spread {
            label: "zone".into(),
            max_skew: 1,
        });
        input.instances.push(web);
        input
    }

    /// Applies `moves` to `input`'s placements.
    pub(crate) fn apply(input: &mut PlanInput, moves: &[Move]) {
        for m in moves {
            input.placements.insert(m.slot.clone(), m.to.clone());
        }
    }

    /// Copies per zone among the zones with a usable host (failed hosts' copies not counted).
    pub(crate) fn zone_counts(input: &PlanInput) -> BTreeMap<String, u32> {
        let mut out: BTreeMap<String, u32> = BTreeMap::new();
        for h in input.hosts.iter().filter(|h| !h.failed) {
            out.entry(h.labels["zone"].clone()).or_default();
        }
        for host in input.placements.values() {
            let h = input.hosts.iter().find(|h| &h.id == host).unwrap();
            if !h.failed {
                *out.entry(h.labels["zone"].clone()).or_default() += 1;
            }
        }
        out
    }

    /// Six copies over three zones of three hosts go two to a zone, even though the first
    /// zone's hosts have the most room; a whole zone fails: its copies go one to each
    /// surviving zone.
    #[test]
    fn a_spread_clone_fills_the_zones_evenly_and_refills_them_when_one_fails() {
        let mut input = zoned(3, 3, 6);
        // The first zone's hosts have the most room: without spreading they would come first.
        for h in input.hosts.iter_mut().filter(|h| h.labels["zone"] == "z0") {
            h.capacity.memory_mb = 128_000;
        }
        let p = plan(&input);
        assert!(p.unplaced.is_empty(), "{:?}", p.unplaced);
        apply(&mut input, &p.moves);
        assert_eq!(
            zone_counts(&input).values().copied().collect::<Vec<_>>(),
            [2, 2, 2]
        );
        for h in input.hosts.iter_mut().filter(|h| h.labels["zone"] == "z1") {
            h.failed = true;
        }
        let p = plan(&input);
        assert_eq!(p.moves.len(), 2, "{p:?}");
        apply(&mut input, &p.moves);
        let counts = zone_counts(&input);
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [3, 3],
            "{counts:?}"
        );
        // The negative control: without spreading, zone 0's roomier hosts fill first.
        let mut plain = zoned(3, 3, 6);
        plain.instances[0].spread = None;
        for h in plain.hosts.iter_mut().filter(|h| h.labels["zone"] == "z0") {
            h.capacity.memory_mb = 128_000;
        }
        let p = plan(&plain);
        apply(&mut plain, &p.moves);
        assert_eq!(zone_counts(&plain)["z0"], 3, "{p:?}");
    }

    /// A host must carry the instance's `host_labels`, and a spread instance's label; else
    /// the copy says which labels no host has.
    #[test]
    fn host_labels_and_the_spread_label_are_required() {
        let mut input = zoned(1, 2, 1);
        input.instances[0]
            .host_labels
            .insert("disk".into(), "ssd".into());
        let p = plan(&input);
        assert!(p.moves.is_empty());
        let why = &p.unplaced[0].reason;
        assert!(
            why.contains("disk=ssd") && why.contains("zone (spread)"),
            "{why}"
        );
        input.hosts[1].labels.insert("disk".into(), "ssd".into());
        let p = plan(&input);
        assert_eq!(p.moves[0].to, "z0h1", "{p:?}");
        input.hosts[1].labels.remove("zone");
        let p = plan(&input);
        assert!(
            p.moves.is_empty(),
            "no zone label: no copy of a spread instance"
        );
    }

    proptest! {
        /// Zones fail one after another (whole zones, or single hosts): after every plan, the
        /// zones with a usable host hold counts at most one apart, as long as the surviving
        /// hosts can take every copy; no host holds two copies.
        #[test]
        fn a_spread_clone_stays_within_a_skew_of_one_through_failures(
            zones in 2u32..5,
            per_zone in 1u32..4,
            copies in 1u32..12,
            failures in proptest::collection::vec((0u32..5, proptest::option::of(0u32..4)), 0..4),
        ) {
            let mut input = zoned(zones, per_zone, copies);
            let p = plan(&input);
            apply(&mut input, &p.moves);
            for (zone, host) in failures {
                for h in input.hosts.iter_mut() {
                    let in_zone = h.labels["zone"] == format!("z{}", zone % zones);
                    if in_zone && host.is_none_or(|n| h.id.ends_with(&format!("h{}", n % per_zone))) {
                        h.failed = true;
                    }
                }
                let p = plan(&input);
                apply(&mut input, &p.moves);
                let live = input.hosts.iter().filter(|h| !h.failed).count() as u32;
                let mut seen = BTreeSet::new();
                for (s, h) in &input.placements {
                    if input.hosts.iter().any(|x| &x.id == h && !x.failed) {
                        prop_assert!(seen.insert(h.clone()), "two copies on {h}: {s:?}");
                    }
                }
                if live >= copies {
                    prop_assert!(p.unplaced.is_empty(), "{:?}", p.unplaced);
                    let counts = zone_counts(&input);
                    // Zones whose every host holds a copy cannot take more: they may lag.
                    let full: BTreeSet<String> = counts
                        .iter()
                        .filter(|(z, n)| {
                            **n == input.hosts.iter().filter(|h| !h.failed && &h.labels["zone"] == *z).count() as u32
                        })
                        .map(|(z, _)| z.clone())
                        .collect();
                    let max = counts.values().max().copied().unwrap_or(0);
                    for (z, n) in &counts {
                        prop_assert!(
                            max - n <= 1 || full.contains(z),
                            "skew over 1 in {counts:?} after {:?}", input.hosts.iter().filter(|h| h.failed).map(|h| &h.id).collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn plans_never_overcommit_never_double_place_keep_the_rules_and_respect_priority(input in cluster()) {
            let p = plan(&input);
            prop_assert_eq!(&plan(&input), &p, "deterministic");
            prop_assert!(overcommitted(&input, &p).is_empty(), "overcommitted: {:?}", overcommitted(&input, &p));
            let hosts: HashMap<&str, &HostView> = input.hosts.iter().map(|h| (h.id.as_str(), h)).collect();
            let insts: HashMap<&str, &InstanceView> = input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
            // Every slot moves at most once, never to a failed, maintenance or foreign host.
            let mut seen = BTreeSet::new();
            for m in &p.moves {
                prop_assert!(seen.insert(&m.slot), "{:?} moved twice", m.slot);
                let h = hosts[m.to.as_str()];
                let i = insts[m.slot.instance.as_str()];
                prop_assert!(!h.failed && !h.on_maintenance && h.segment == i.segment, "{m:?} to {h:?}");
            }
            // Final placement: no two copies of one instance, nor two members of one group,
            // share a host.
            let mut fin: BTreeMap<&Slot, &str> = input.placements.iter().map(|(s, h)| (s, h.as_str())).collect();
            for m in &p.moves { fin.insert(&m.slot, &m.to); }
            let moved: BTreeSet<&Slot> = p.moves.iter().map(|m| &m.slot).collect();
            let mut per_host: HashMap<&str, Vec<&InstanceView>> = HashMap::new();
            for (s, h) in &fin {
                if hosts.get(h).is_some_and(|hv| !hv.failed) {
                    per_host.entry(h).or_default().push(insts[s.instance.as_str()]);
                }
            }
            for (h, list) in &per_host {
                let ids: BTreeSet<&str> = list.iter().map(|i| i.id.as_str()).collect();
                prop_assert_eq!(ids.len(), list.len(), "two copies of one instance on {}", h);
                let groups: Vec<&str> = list.iter().filter_map(|i| i.anti_affinity.as_deref()).collect();
                let distinct: BTreeSet<&str> = groups.iter().copied().collect();
                prop_assert_eq!(distinct.len(), groups.len(), "anti-affinity broken on {}", h);
            }
            // Priority: an instance left without room did not fit, at its turn, on any host it
            // could use, even counting what lower-priority instances took there afterwards.
            let mut free: HashMap<&str, Resources> = input.hosts.iter().map(|h| (h.id.as_str(), h.capacity)).collect();
            for (s, h) in &fin {
                if let Some(f) = free.get_mut(h) { *f = f.minus(insts[s.instance.as_str()].needs); }
            }
            for u in p.unplaced.iter().filter(|u| u.reason.starts_with("no usable host")) {
                let ui = insts[u.slot.instance.as_str()];
                for h in &input.hosts {
                    if h.segment != ui.segment || h.failed || h.on_maintenance { continue; }
                    let method = input.recovery.get(&h.segment).copied().unwrap_or_default();
                    if matches!((method, h.reserved), (RecoveryMethod::Auto, true) | (RecoveryMethod::ReservedHost, false)) { continue; }
                    let later: Resources = p.moves.iter()
                        .filter(|m| m.to == h.id && insts[m.slot.instance.as_str()].priority < ui.priority)
                        .fold(Resources::default(), |acc, m| acc.plus(insts[m.slot.instance.as_str()].needs));
                    let room = free[h.id.as_str()].plus(later);
                    // Blocked at its turn by a rule: a copy of itself or a member of its group
                    // that stayed there, or was placed there before it (not lower priority).
                    let blocked = fin.iter().any(|(s, on)| {
                        let o = insts[s.instance.as_str()];
                        let placed_before = !moved.contains(s) || o.priority >= ui.priority;
                        *on == h.id && placed_before
                            && (o.id == ui.id || (o.anti_affinity.is_some() && o.anti_affinity == ui.anti_affinity))
                    });
                    let avoided = input.failed_slots.contains(&u.slot) && input.placements.get(&u.slot) == Some(&h.id);
                    prop_assert!(blocked || avoided || !ui.needs.fits_in(room),
                        "{:?} (priority {}) left unplaced although {} had {:?} before lower priorities took it", u, ui.priority, h.id, room);
                }
            }
        }
    }
}
