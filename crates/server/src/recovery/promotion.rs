//! Promotion on the leader: for every promotable instance, the steps `engine::promotion`
//! decides from the hosts' reports and leases (grant, revoke, release), written one by one.
//! With `notify`, a promotion or demotion waits for its pre round of `notify` actions on
//! every active copy, and is followed by its post round (`lease::notify_rounds`).
//! The state machine refuses a grant beyond `promoted_max`, so a step planned on a stale view
//! is refused, never applied twice.

use std::collections::BTreeSet;

use engine::notify::{Copy as NotifyCopy, Operation, When};
use model::instance::{Instance, Mode};
use model::promotion::PromotionStep;
use model::{ClusterState, Op, Timestamp};
use proto::{Phase, Report, Role};
use tracing::{info, warn};

use super::Recovery;
use crate::lease::grants::has_slow_stops;
use crate::lease::notify_rounds::{NotifyRounds, ROUND_TIMEOUT, Round, departing_key};

impl Recovery {
    /// The hosts (ids) that provably run nothing: fenced, or their lease (with the drift
    /// margin, and the stop grace where OCF copies may still be stopping) is over.
    pub(super) fn down_hosts(&self, st: &ClusterState, now: swim::Instant) -> BTreeSet<String> {
        st.hosts()
            .filter(|h| {
                h.fenced
                    || self
                        .grants
                        .lease_over(&h.name, now, || has_slow_stops(st, &h.meta.id))
            })
            .map(|h| h.meta.id.clone())
            .collect()
    }

    pub(super) async fn promote(&self) {
        let now = self.gossip.now();
        let wall = Timestamp::now();
        let ops: Vec<(String, Op)> = self.replica.shared().read(|st| {
            let promotable: Vec<&model::instance::Instance> = st
                .instances()
                .filter(|i| i.mode == Mode::Promotable)
                .collect();
            if promotable.is_empty() {
                return Vec::new();
            }
            // Which hosts provably run nothing, decided before the reports' lock is taken
            // (the lease table's lock is never taken under it).
            let down = self.down_hosts(st, now);
            self.grants.with_reports(|reports| {
                promotable
                    .iter()
                    .flat_map(|inst| {
                        let report_of = |name: &str| reports.get(name).map(|r| &r.report);
                        let steps = engine::promotion::plan(st, inst, wall, report_of, |h| {
                            down.contains(&h.meta.id)
                        });
                        let steps = if inst.notify {
                            gate(&self.grants.rounds, st, inst, steps, report_of, &down)
                        } else {
                            steps
                        };
                        steps.into_iter().map(|step| {
                            (
                                inst.name.clone(),
                                Op::Promotion {
                                    instance: inst.meta.id.clone(),
                                    step,
                                },
                            )
                        })
                    })
                    .collect()
            })
        });
        for (name, op) in ops {
            let what = format!("{op:?}");
            match self.replica.write(op, Timestamp::now()).await {
                Ok(Ok(_)) => info!(instance = %name, step = %what, "promotion"),
                Ok(Err(e)) => {
                    warn!(instance = %name, step = %what, error = %e, "promotion step refused")
                }
                Err(e) => warn!(instance = %name, error = %e, "promotion step not committed"),
            }
        }
    }
}

/// One copy as a notification round sees it.
pub(super) struct CopyNow {
    pub replica: u32,
    pub placement: String,
    pub epoch: model::placement::Epoch,
    pub host: String,
    pub node: String,
    pub active: bool,
    pub promoted: bool,
    pub notified: Option<u64>,
    /// Its host reports and does not list it: not started there yet.
    pub unstarted: bool,
    /// Leaving its host (`engine::notify::departing`): its placement's id, `placement`
    /// being the round's key for it (`lease::grants::departing_key`).
    pub departing: Option<String>,
}

/// The copies of `inst` from their hosts' reports (none active on a host that is down: its
/// last report is history), and the copies leaving their hosts that still run there.
pub(super) fn copies_now<'a>(
    rounds: &NotifyRounds,
    st: &ClusterState,
    inst: &Instance,
    report_of: impl Fn(&str) -> Option<&'a Report>,
    down: &BTreeSet<String>,
) -> Vec<CopyNow> {
    let mut copies: Vec<CopyNow> = st
        .placements()
        .filter(|p| p.instance == inst.meta.id)
        .map(|p| {
            let node = st.host(&p.host).map_or(p.host.clone(), |h| h.name.clone());
            let report = report_of(&node);
            let o = report.and_then(|r| {
                r.instances
                    .iter()
                    .find(|o| o.placement == p.meta.id && o.epoch == p.epoch)
            });
            CopyNow {
                replica: p.replica,
                placement: p.meta.id.clone(),
                epoch: p.epoch,
                unstarted: report.is_some() && o.is_none(),
                departing: None,
                host: p.host.clone(),
                node,
                active: o.is_some_and(|o| o.phase == Phase::Running) && !down.contains(&p.host),
                promoted: o.is_some_and(|o| o.role == Some(Role::Promoted)),
                notified: o.and_then(|o| o.notified),
            }
        })
        .collect();
    for h in st.hosts().filter(|h| !down.contains(&h.meta.id)) {
        let Some(report) = report_of(&h.name) else {
            continue;
        };
        for o in engine::notify::departing(st, &h.meta.id, report) {
            let Some(placed) = rounds.placement(&o.placement) else {
                continue;
            };
            if o.instance != inst.meta.id {
                continue;
            }
            copies.push(CopyNow {
                replica: placed.replica,
                placement: departing_key(&o.placement, o.epoch),
                epoch: o.epoch,
                host: h.meta.id.clone(),
                node: h.name.clone(),
                active: true,
                promoted: o.role == Some(Role::Promoted),
                notified: o.notified,
                unstarted: false,
                departing: Some(o.placement.clone()),
            });
        }
    }
    copies
}

/// Starts a round of `inst` for `op` on `acting`, run by every active copy.
pub(super) fn start_round(
    rounds: &NotifyRounds,
    st: &ClusterState,
    inst: &Instance,
    copies: &[CopyNow],
    when: When,
    op: Operation,
    acting: Vec<u32>,
) {
    let view: Vec<NotifyCopy> = copies
        .iter()
        .map(|c| NotifyCopy {
            replica: c.replica,
            node: c.node.clone(),
            active: c.active,
            promoted: c.promoted,
        })
        .collect();
    let nodes: Vec<String> = st
        .hosts()
        .filter(|h| h.segment == inst.segment)
        .map(|h| h.name.clone())
        .collect();
    let env = engine::notify::variables(&inst.name, when, op, &view, &acting, &nodes);
    let targets = copies
        .iter()
        .filter(|c| c.active)
        .map(|c| c.placement.clone())
        .collect();
    let id = rounds.start(&inst.meta.id, when, op, acting, env, targets);
    info!(instance = %inst.name, id, ?when, ?op, "notify round");
}

/// Where `inst`'s notification round stands.
pub(super) enum RoundNow {
    /// None in progress.
    None,
    /// Some copy has still to run it.
    Running,
    /// Every copy ran it (or stopped, or its host is down, or the round timed out): it is
    /// over, and removed.
    Finished(Round),
}

/// Checks `inst`'s round against its copies' reports, ending it when it is over.
pub(super) fn check_round(
    rounds: &NotifyRounds,
    inst: &Instance,
    copies: &[CopyNow],
    down: &BTreeSet<String>,
) -> RoundNow {
    let Some(r) = rounds.round(&inst.meta.id) else {
        return RoundNow::None;
    };
    let ran = |placement: &String| {
        copies
            .iter()
            .find(|c| &c.placement == placement)
            .is_none_or(|c| {
                !c.active || down.contains(&c.host) || c.notified.is_some_and(|n| n >= r.id)
            })
    };
    let timed_out = r.started.elapsed() > ROUND_TIMEOUT;
    if !r.targets.iter().all(ran) && !timed_out {
        return RoundNow::Running;
    }
    if timed_out {
        warn!(instance = %inst.name, id = r.id, "notify round timed out: going on");
    }
    rounds.finish(&inst.meta.id);
    RoundNow::Finished(r)
}

/// The steps of a `notify` instance that may be written now. A promotion or demotion first
/// gets its pre round on every active copy; once each ran it (or stopped, or its host is
/// down, or the round timed out) the step goes, and its post round follows once the new
/// role shows. Releases never wait.
fn gate<'a>(
    rounds: &NotifyRounds,
    st: &ClusterState,
    inst: &Instance,
    steps: Vec<PromotionStep>,
    report_of: impl Fn(&str) -> Option<&'a Report>,
    down: &BTreeSet<String>,
) -> Vec<PromotionStep> {
    let id = inst.meta.id.as_str();
    let copies = copies_now(rounds, st, inst, report_of, down);
    let (releases, acts): (Vec<PromotionStep>, Vec<PromotionStep>) = steps
        .into_iter()
        .partition(|s| matches!(s, PromotionStep::Release { .. }));
    let mut out = releases;
    let op_of = |s: &PromotionStep| match s {
        PromotionStep::Grant { replica, .. } => Some((Operation::Promote, *replica)),
        PromotionStep::Revoke { replica } => Some((Operation::Demote, *replica)),
        PromotionStep::Release { .. } => None,
    };
    match check_round(rounds, inst, &copies, down) {
        RoundNow::Running => return out,
        RoundNow::Finished(r) if r.when == When::Pre => {
            // The operation it announced, if still wanted.
            if let Some(step) = acts
                .into_iter()
                .find(|s| op_of(s) == Some((r.op, r.acting[0])))
            {
                rounds.owe(id, r.op, r.acting[0]);
                out.push(step);
            }
            return out;
        }
        RoundNow::Finished(_) | RoundNow::None => {}
    }
    if let Some((op, replica)) = rounds.owed(id) {
        let copy = copies.iter().find(|c| c.replica == replica);
        let shown = copy.is_none_or(|c| !c.active || (c.promoted == (op == Operation::Promote)));
        if shown {
            rounds.settle(id);
            start_round(rounds, st, inst, &copies, When::Post, op, vec![replica]);
        }
        return out;
    }
    if let Some((op, replica)) = acts.first().and_then(op_of) {
        start_round(rounds, st, inst, &copies, When::Pre, op, vec![replica]);
    }
    out
}
