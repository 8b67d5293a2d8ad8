//! Start and stop notifications on the leader, for an instance with `notify` (clone or
//! promotable). Before a copy starts, every running copy runs the pre-start `notify`
//! action: the new copy's host gets it only once that round is over
//! (`lease::grants`, `NotifyRounds::may_start`); with no copy running there is nobody to
//! tell and it starts at once. Once copies show running, or stop running (stopped, failed,
//! moved away, or their host down), every copy still running runs the post-start or
//! post-stop action, with Pacemaker's lists naming the copies that acted
//! (`engine::notify::lifecycle` tells which). Promotion goes first in every tick and these
//! rounds wait for its rounds, so announcing a stop never holds up a failover's promotion.
//!
//! A copy leaving a live host (moved, removed, restarted in place) runs on until every
//! active copy, itself included, ran the pre-stop action (`lease::grants` holds it in its
//! host's list). Not announced before: a copy lost with its host (nobody could tell it), one
//! whose instance is stopped or deleted as a whole, or one placed and removed between two
//! looks of the leader (it never saw its placement). Of Debian's resource-agents only `db2`
//! acts on pre-start and none on pre-stop; the post rounds are read (pgsql's primary
//! re-checks its replicas after a start or a stop, rabbitmq-cluster forgets a stopped node).

use std::collections::BTreeMap;

use engine::notify::{Operation, When};
use model::ClusterState;
use model::instance::Instance;
use model::placement::Epoch;

use super::Recovery;
use super::promotion::{CopyNow, RoundNow, check_round, copies_now, start_round};
use crate::lease::notify_rounds::NotifyRounds;

impl Recovery {
    /// Starts the post-start or post-stop round each `notify` instance owes.
    pub(super) fn announce_starts_and_stops(&self) {
        let now = self.gossip.now();
        self.replica.shared().read(|st: &ClusterState| {
            let rounds = &self.grants.rounds;
            rounds.keep_announced(|id| st.instance(id).is_some());
            let instances: Vec<&Instance> = st
                .instances()
                .filter(|i| engine::notify::announces(i))
                .collect();
            let placed: std::collections::BTreeSet<(&str, Epoch)> = st
                .placements()
                .filter(|p| instances.iter().any(|i| i.meta.id == p.instance))
                .map(|p| (p.meta.id.as_str(), p.epoch))
                .collect();
            rounds.keep_cleared(|p, e| placed.contains(&(p, e)));
            // What each host runs of them, for the copies leaving their hosts.
            let running: std::collections::BTreeSet<(String, Epoch)> =
                self.grants.with_reports(|reports| {
                    reports
                        .values()
                        .flat_map(|r| r.report.instances.iter())
                        .filter(|o| instances.iter().any(|i| i.meta.id == o.instance))
                        .map(|o| (o.placement.clone(), o.epoch))
                        .collect()
                });
            let running_ids: std::collections::BTreeSet<&str> =
                running.iter().map(|(p, _)| p.as_str()).collect();
            rounds.remember(
                st.placements()
                    .filter(|p| instances.iter().any(|i| i.meta.id == p.instance))
                    .cloned(),
                |p, e| match e {
                    Some(e) => running.contains(&(p.to_string(), e)),
                    None => running_ids.contains(p),
                },
            );
            if instances.is_empty() {
                return;
            }
            let down = self.down_hosts(st, now);
            self.grants.with_reports(|reports| {
                for inst in instances {
                    let report_of = |name: &str| reports.get(name).map(|r| &r.report);
                    let copies = copies_now(&self.grants.rounds, st, inst, report_of, &down);
                    let rounds = &self.grants.rounds;
                    match rounds.round(&inst.meta.id).map(|r| r.op) {
                        // A promotion's round is the promotion's to end (its pre round
                        // lets the step go).
                        Some(Operation::Promote | Operation::Demote) => continue,
                        Some(Operation::Start | Operation::Stop) => {
                            if let RoundNow::Running = check_round(rounds, inst, &copies, &down) {
                                continue;
                            }
                        }
                        None => {}
                    }
                    announce(rounds, st, inst, copies, &down);
                }
            });
        });
    }
}

/// Starts `inst`'s next round, if it owes one and no promotion round is owed: post-stop for
/// copies that stopped, then pre-stop for copies leaving their hosts, then pre-start for
/// copies waiting to start, then post-start.
fn announce(
    rounds: &NotifyRounds,
    st: &ClusterState,
    inst: &Instance,
    mut copies: Vec<CopyNow>,
    down: &std::collections::BTreeSet<String>,
) {
    let id = inst.meta.id.as_str();
    if rounds.owed(id).is_some() {
        return;
    }
    let running: BTreeMap<u32, String> = copies
        .iter()
        .filter(|c| c.active)
        .map(|c| (c.replica, c.node.clone()))
        .collect();
    // First look (a new leader): nothing to compare with.
    let before = rounds.announced(id).unwrap_or_else(|| {
        rounds.set_announced(id, running.clone());
        running.clone()
    });
    let change = engine::notify::lifecycle(&before, &running);
    if !change.stopped.is_empty() {
        // The stopped copies as they were: on the node they ran on, not running (a copy that
        // moved and runs elsewhere already is announced started next).
        for (replica, node) in &change.stopped {
            copies.retain(|c| c.replica != *replica);
            copies.push(CopyNow {
                replica: *replica,
                placement: String::new(),
                epoch: Epoch(0),
                host: String::new(),
                node: node.clone(),
                active: false,
                promoted: false,
                notified: None,
                unstarted: false,
                departing: None,
            });
        }
        let mut after = before;
        for (replica, _) in &change.stopped {
            after.remove(replica);
        }
        post(
            rounds,
            st,
            inst,
            &copies,
            Operation::Stop,
            &change.stopped,
            after,
        );
        return;
    }
    // Pre rounds: for copies leaving their hosts (held until told), then for copies waiting
    // to start.
    let leaving: Vec<(u32, (String, Epoch))> = copies
        .iter()
        .filter_map(|c| {
            let p = c.departing.as_ref()?;
            (!rounds.released(p, c.epoch)).then(|| (c.replica, (p.clone(), c.epoch)))
        })
        .collect();
    let waiting: Vec<(u32, (String, Epoch))> = copies
        .iter()
        .filter(|c| c.unstarted && !down.contains(&c.host))
        .filter(|c| !rounds.may_start(&c.placement, c.epoch))
        .map(|c| (c.replica, (c.placement.clone(), c.epoch)))
        .collect();
    for (op, chosen) in [(Operation::Stop, leaving), (Operation::Start, waiting)] {
        if chosen.is_empty() {
            continue;
        }
        let (acting, keys): (Vec<u32>, Vec<(String, Epoch)>) = chosen.into_iter().unzip();
        if op == Operation::Start && !copies.iter().any(|c| c.active) {
            // Nobody runs to be told.
            rounds.clear(keys);
        } else {
            start_round(rounds, st, inst, &copies, When::Pre, op, acting);
            rounds.announcing(id, keys);
        }
        return;
    }
    if !change.started.is_empty() {
        post(
            rounds,
            st,
            inst,
            &copies,
            Operation::Start,
            &change.started,
            running,
        );
    }
}

/// Starts `inst`'s post round for `op` on the copies that `acted`, and records `after` as its
/// running copies announced.
fn post(
    rounds: &NotifyRounds,
    st: &ClusterState,
    inst: &Instance,
    copies: &[CopyNow],
    op: Operation,
    acted: &[(u32, String)],
    after: BTreeMap<u32, String>,
) {
    let acting = acted.iter().map(|(r, _)| *r).collect();
    start_round(rounds, st, inst, copies, When::Post, op, acting);
    rounds.set_announced(inst.meta.id.as_str(), after);
}
