//! Start and stop notifications on the leader, for an instance with `notify` (clone or
//! promotable): once copies show running, or stop running (stopped, failed, moved away, or
//! their host down), every copy still running runs the post-start or post-stop `notify`
//! action, with Pacemaker's lists naming the copies that acted
//! (`engine::notify::lifecycle` tells which). Promotion goes first in every tick and these
//! rounds wait for its rounds, so announcing a stop never holds up a failover's promotion.
//!
//! Not sent: pre-start and pre-stop. A copy's host starts or stops it as soon as its
//! placement says so (after a crash nobody could be told first anyway); holding each start
//! until the other copies ran a notification is not built. Of Debian's resource-agents only
//! `db2` acts on pre-start and none on pre-stop; the post rounds are read (pgsql's primary
//! re-checks its replicas after a start or a stop, rabbitmq-cluster forgets a stopped node).

use std::collections::BTreeMap;

use engine::notify::{Operation, When};
use model::ClusterState;
use model::instance::Instance;

use super::Recovery;
use super::promotion::{CopyNow, RoundNow, check_round, copies_now, start_round};
use crate::lease::notify_rounds::NotifyRounds;

impl Recovery {
    /// Starts the post-start or post-stop round each `notify` instance owes.
    pub(super) fn announce_starts_and_stops(&self) {
        let now = self.gossip.now();
        self.replica.shared().read(|st: &ClusterState| {
            self.grants
                .rounds
                .keep_announced(|id| st.instance(id).is_some());
            let instances: Vec<&Instance> = st
                .instances()
                .filter(|i| i.notify && i.mode.is_clone())
                .collect();
            if instances.is_empty() {
                return;
            }
            let down = self.down_hosts(st, now);
            self.grants.with_reports(|reports| {
                for inst in instances {
                    let report_of = |name: &str| reports.get(name).map(|r| &r.report);
                    let copies = copies_now(st, inst, report_of, &down);
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
                    announce(rounds, st, inst, copies);
                }
            });
        });
    }
}

/// Starts `inst`'s next post-stop round (stops first) or post-start round, if it owes one
/// and no promotion round is owed.
fn announce(rounds: &NotifyRounds, st: &ClusterState, inst: &Instance, mut copies: Vec<CopyNow>) {
    let id = inst.meta.id.as_str();
    if rounds.owed(id).is_some() {
        return;
    }
    let running: BTreeMap<u32, String> = copies
        .iter()
        .filter(|c| c.active)
        .map(|c| (c.replica, c.node.clone()))
        .collect();
    let Some(before) = rounds.announced(id) else {
        // First look (a new leader): nothing to compare with.
        rounds.set_announced(id, running);
        return;
    };
    let change = engine::notify::lifecycle(&before, &running);
    let (op, acted, after) = if !change.stopped.is_empty() {
        // The stopped copies as they were: on the node they ran on, not running (a copy that
        // moved and runs elsewhere already is announced started next).
        for (replica, node) in &change.stopped {
            copies.retain(|c| c.replica != *replica);
            copies.push(CopyNow {
                replica: *replica,
                placement: String::new(),
                host: String::new(),
                node: node.clone(),
                active: false,
                promoted: false,
                notified: None,
            });
        }
        let mut after = before;
        for (replica, _) in &change.stopped {
            after.remove(replica);
        }
        (Operation::Stop, change.stopped, after)
    } else if !change.started.is_empty() {
        (Operation::Start, change.started, running)
    } else {
        return;
    };
    let acting: Vec<u32> = acted.iter().map(|(r, _)| *r).collect();
    start_round(rounds, st, inst, &copies, When::Post, op, acting);
    rounds.set_announced(id, after);
}
