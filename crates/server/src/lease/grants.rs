//! The leader's side of leases (rule S1): grants renewals from its soft-state
//! [`LeaseTable`], only after confirming with a quorum that it still leads (one check serves
//! every renewal that arrived before it started), keeps what each host last reported, and
//! withholds a moved copy from its new host until the old host confirmed it stopped
//! (`engine::handoff`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Instant;
use engine::handoff;
use engine::lease_table::LeaseTable;
use model::Timestamp;
use model::placement::Placement;
use node::gossip::runtime::Shared;
use proto::{Grant, Phase, Report};
use state::replica::Replica;
use tokio::sync::{Notify, oneshot};
use tracing::info;

/// Hosts not registered in the state that may hold a lease at once.
pub const MAX_UNREGISTERED: usize = 1024;

/// Leader side: grants renewals after confirming leadership.
pub struct LeaseGrants {
    pub(super) replica: Arc<Replica>,
    pub(super) gossip: Arc<Shared>,
    /// This server's configured TTL: written as the cluster's lease timing by the first
    /// leader, used until then.
    ttl: Duration,
    /// The table of the term this server leads (replaced when the term changes).
    pub(super) table: Mutex<Option<(u64, LeaseTable)>>,
    /// What each host last reported about its instances (soft state, like leases).
    pub(super) reports: Mutex<BTreeMap<String, HostReport>>,
    /// The notification rounds in progress (their calls travel with the assignments).
    pub rounds: super::notify_rounds::NotifyRounds,
    /// The hosts with copies that have start conditions, at a change index.
    start_conditions: Mutex<Option<(u64, BTreeSet<String>)>>,
    /// Renewals waiting for the next leadership check.
    waiting: Mutex<Vec<oneshot::Sender<Result<u64, String>>>>,
    wake: Notify,
}

impl LeaseGrants {
    pub fn start(replica: Arc<Replica>, gossip: Arc<Shared>, ttl: Duration) -> Arc<Self> {
        let g = Arc::new(LeaseGrants {
            replica,
            gossip,
            ttl,
            table: Mutex::new(None),
            reports: Mutex::new(BTreeMap::new()),
            start_conditions: Mutex::new(None),
            rounds: Default::default(),
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
        });
        tokio::spawn(g.clone().check_leadership());
        g
    }

    /// One quorum check at a time; every renewal that was waiting when it started shares it.
    async fn check_leadership(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            let batch =
                std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                continue;
            }
            let result = self
                .replica
                .confirm_leadership()
                .await
                .map_err(|e| e.to_string());
            for tx in batch {
                let _ = tx.send(result.clone());
            }
        }
    }

    /// Whether `host`'s lease, the drift margin and, where `slow_stops` says it has OCF copies
    /// (see [`has_slow_stops`]), the stop grace are over as this leader sees it; false until
    /// this leader has started its lease table for the current term. `slow_stops` is asked
    /// only when it decides (it walks the placements, and this runs for every withheld copy
    /// at every grant). It runs under the lease table's lock, so it must not take the state's
    /// lock: pass the state a caller already reads (the order is state, then table).
    pub fn lease_over(&self, host: &str, now: Instant, slow_stops: impl FnOnce() -> bool) -> bool {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.as_ref() {
            Some((t, lt)) if *t == term => lt.lease_over(host, now, slow_stops),
            _ => false,
        }
    }

    /// How long ago (at `now`) `host`'s last renewal reached this leader, if one did.
    pub fn last_renewal_ago(&self, host: &str, now: Instant) -> Option<Duration> {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (t, lt) = table.as_ref()?;
        (*t == term)
            .then(|| lt.last_renewal(host))
            .flatten()
            .map(|at| now.saturating_since(at))
    }

    /// Whether `host` renewed with this leader and its lease runs at `now`.
    pub fn holds_lease(&self, host: &str, now: Instant) -> bool {
        self.with_table(|t| t.renewed(host) && t.ends_at(host) > now)
    }

    /// Whether `host` still renews: it renewed with this leader within the last third of a
    /// lease (two renewals at the default pace). A host gossip calls dead that still renews
    /// is isolated, not failed, and is not fenced.
    pub fn renews(&self, host: &str, now: Instant) -> bool {
        self.with_table(|t| t.still_renews(host, now))
    }

    /// The hosts that still renew ([`Self::renews`]), under one lock: for the code that reads
    /// the reports (the table's lock is never taken under the reports').
    fn renewing(&self, now: Instant) -> BTreeSet<String> {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.as_ref() {
            Some((t, lt)) if *t == term => lt
                .hosts()
                .filter(|h| lt.still_renews(h, now))
                .map(String::from)
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    fn with_table(&self, f: impl FnOnce(&LeaseTable) -> bool) -> bool {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.as_ref().is_some_and(|(t, lt)| *t == term && f(lt))
    }

    /// Whether host `host` (by name) has a copy placed whose instance has start conditions,
    /// announces its starts (`notify`) or balances others (its backends): its list follows
    /// the reports and the rounds, not only the index. The hosts that do are found once per
    /// change index: this runs at
    /// every renewal.
    fn has_start_conditions(&self, st: &model::ClusterState, host: &str) -> bool {
        let mut cache = self
            .start_conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let index = st.change_index();
        if cache.as_ref().is_none_or(|(i, _)| *i != index) {
            let balancers: BTreeSet<&str> = st
                .instances()
                .filter_map(|i| i.balancer.as_ref().map(|b| b.instance.as_str()))
                .collect();
            let hosts: BTreeSet<String> = st
                .placements()
                .filter(|p| {
                    st.instance(&p.instance).is_some_and(|i| {
                        engine::constraints::has_start_conditions(i)
                            || engine::notify::announces(i)
                            || (i.load_balancer.is_some() && balancers.contains(i.name.as_str()))
                    })
                })
                .filter_map(|p| st.host(&p.host).map(|h| h.name.clone()))
                .chain(
                    // A host a surging copy left keeps it until the new one runs.
                    st.placements()
                        .filter(|p| !p.handoffs.is_empty())
                        .filter(|p| {
                            st.instance(&p.instance)
                                .is_some_and(engine::handoff::surges)
                        })
                        .flat_map(|p| p.handoffs.iter())
                        .filter_map(|h| st.host(&h.host).map(|h| h.name.clone())),
                )
                .collect();
            *cache = Some((index, hosts));
        }
        cache
            .as_ref()
            .is_some_and(|(_, hosts)| hosts.contains(host))
    }

    /// Runs `f` on every host's last report, under the reports' lock (never take the lease
    /// table's lock in `f`).
    pub fn with_reports<R>(&self, f: impl FnOnce(&BTreeMap<String, HostReport>) -> R) -> R {
        f(&self.reports.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Per host, the copies its last report shows starting.
    pub fn starting(&self) -> BTreeMap<String, u32> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .iter()
            .map(|(h, r)| {
                let n = r
                    .report
                    .instances
                    .iter()
                    .filter(|o| o.phase == Phase::Starting)
                    .count();
                (h.clone(), n as u32)
            })
            .collect()
    }

    /// The phase `host` last reported for the copy of `placement` at `epoch`.
    pub fn phase_of(
        &self,
        host: &str,
        placement: &str,
        epoch: model::placement::Epoch,
    ) -> Option<Phase> {
        self.observed(host, placement, epoch).map(|o| o.phase)
    }

    /// What `host` last reported about the copy of `placement` at `epoch`.
    pub fn observed(
        &self,
        host: &str,
        placement: &str,
        epoch: model::placement::Epoch,
    ) -> Option<proto::Observed> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .get(host)?
            .report
            .instances
            .iter()
            .find(|o| o.placement == placement && o.epoch == epoch)
            .cloned()
    }

    /// Placements (id, epoch) whose hosts report them failed past their restart budget.
    pub fn failed_placements(&self) -> BTreeSet<(String, model::placement::Epoch)> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        failed_from_reports(reports.values().flat_map(|r| r.report.instances.iter()))
    }

    /// Why the copy of `placement` at `epoch` failed, as its host last reported it.
    pub fn failure_reason(&self, placement: &str, epoch: model::placement::Epoch) -> String {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .values()
            .flat_map(|r| r.report.instances.iter())
            .find(|o| o.placement == placement && o.epoch == epoch && o.phase == Phase::Failed)
            .and_then(|o| o.reason.clone())
            .unwrap_or_else(|| "reported failed (no reason given)".to_string())
    }

    /// Whether `host` may take a lease: a host registered in the state, a server, or one that
    /// holds a lease already are; others only while fewer than [`MAX_UNREGISTERED`] of them
    /// hold one, so invented names cannot grow the lease and report tables without end.
    pub fn admits(&self, host: &str) -> Result<(), String> {
        let holders: Vec<String> = {
            let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            match table.as_ref() {
                Some((_, t)) if t.renewed(host) => return Ok(()),
                Some((_, t)) => t.hosts().map(str::to_string).collect(),
                None => Vec::new(),
            }
        };
        let status = self.replica.status();
        let servers: std::collections::BTreeSet<String> = status
            .voters
            .iter()
            .chain(status.learners.iter())
            .map(|s| s.name.clone())
            .collect();
        let (registered, unregistered) = self.replica.shared().read(|st| {
            let known = |h: &str| st.host_by_name(h).is_some() || servers.contains(h);
            (
                known(host),
                holders.iter().filter(|h| !known(h.as_str())).count(),
            )
        });
        if registered || unregistered < MAX_UNREGISTERED {
            return Ok(());
        }
        Err(format!(
            "{unregistered} hosts that are not registered already hold leases (at most {MAX_UNREGISTERED}): register `{host}` first (`buoy host create {host} --segment SEGMENT`)"
        ))
    }

    /// Grants `host` a renewal received at `received_at`, with its assignments when the state
    /// moved past `known` (the change index of the host's last answer).
    pub async fn grant(
        &self,
        host: &str,
        received_at: Instant,
        known: Option<u64>,
        report: Option<Report>,
    ) -> Result<Grant, String> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        self.wake.notify_one();
        let term = rx
            .await
            .map_err(|_| "the leadership check stopped".to_string())??;
        let settings = self.settings();
        let (ttl, grace) = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            let t = self.table_for(&mut table, term, settings);
            t.set_timing(settings.ttl(), settings.drift_margin());
            t.set_stop_grace(settings.stop_grace(), settings.stop_grace_ceiling());
            (t.renew(host, received_at), t.stop_grace())
        };
        if let Some(report) = report {
            self.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    host.to_string(),
                    HostReport {
                        reported_at: Timestamp::now(),
                        report,
                    },
                );
        }
        let now = self.gossip.now();
        let (index, assignments) = self.replica.shared().read(|st| {
            let index = st.change_index();
            // A copy with start conditions comes and goes with the reports, not the index:
            // its host gets its list at every renewal.
            // So does a copy leaving its host, held until its stop was announced.
            if known == Some(index)
                && !self.rounds.any()
                && !self.has_start_conditions(st, host)
                && !self.runs_announced_copies(st, host)
            {
                return (index, None);
            }
            // A copy waiting for its old host to confirm it stopped is held back, and the
            // grant says it reflects an older index: the host asks again until it comes.
            let (index, list) = engine::grant::assignments(
                st,
                host,
                |p| self.start_confirmed(st, p, now),
                |i, p| self.may_start(st, host, i, p),
            );
            let mut list = list;
            for a in &mut list {
                a.notify = self.rounds.calls_for(&a.placement.meta.id);
            }
            list.extend(self.held(st, host));
            list.extend(self.surge_held(st, host, now));
            // Every copy of a load balancer, a held one too, carries all its backends: the
            // host empties a backend of its HAProxy that the list no longer names.
            for a in &mut list {
                if a.instance.load_balancer.is_some() {
                    a.backends = self.backends(st, &a.instance, now);
                }
            }
            (index, Some(list))
        });
        Ok(Grant {
            ttl_ms: ttl.as_millis() as u64,
            term,
            index,
            assignments,
            stop_grace_ms: Some(grace.as_millis() as u64),
        })
    }

    /// The backends of load balancer `lb` now, as its copies' next grants carry them.
    pub fn backends_now(
        &self,
        st: &model::ClusterState,
        lb: &model::instance::Instance,
    ) -> Vec<proto::Backend> {
        self.backends(st, lb, self.gossip.now())
    }

    /// The backends of load balancer `lb` (`engine::balance`): the copies their hosts report
    /// running at their epoch, at the hosts' gossip addresses, on hosts that still renew
    /// their leases (a crashed host's last report still says running; its copy leaves the
    /// backend once two renewals were missed, not when the copy moves, which it may never do
    /// when no other host can take it).
    fn backends(
        &self,
        st: &model::ClusterState,
        lb: &model::instance::Instance,
        now: Instant,
    ) -> Vec<proto::Backend> {
        let renewing = self.renewing(now);
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        engine::balance::backends(
            st,
            lb,
            |p| {
                st.host(&p.host)
                    .filter(|h| renewing.contains(&h.name))
                    .and_then(|h| reports.get(&h.name))
                    .is_some_and(|r| {
                        r.report.instances.iter().any(|o| {
                            o.placement == p.meta.id
                                && o.epoch == p.epoch
                                && o.phase == proto::Phase::Running
                        })
                    })
            },
            |host| {
                let name = &st.host(host)?.name;
                self.gossip
                    .read(|sw| sw.member(name).map(|m| m.addr().ip().to_string()))
            },
        )
    }

    /// Whether host `host`'s copy `p` of `i` may run now: its start conditions hold
    /// (`engine::constraints`), and, for a clone with `notify`, its start was announced to
    /// the running copies (the pre-start round), or it started already (its host reports it:
    /// a running copy is never withheld for a notification, nor is any copy of a host this
    /// leader has no report from yet).
    fn may_start(
        &self,
        st: &model::ClusterState,
        host: &str,
        i: &model::instance::Instance,
        p: &Placement,
    ) -> bool {
        let announce = engine::notify::announces(i);
        if !announce && !engine::constraints::has_start_conditions(i) {
            return true;
        }
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let host_id = st.host_by_name(host).map_or("", |h| h.meta.id.as_str());
        if !engine::constraints::start_conditions_hold(st, i, host_id, |name| {
            reports.get(name).map(|r| &r.report)
        }) {
            return false;
        }
        !announce
            || reports.get(host).is_none_or(|r| {
                r.report
                    .instances
                    .iter()
                    .any(|o| o.placement == p.meta.id && o.epoch == p.epoch)
            })
            || self.rounds.may_start(&p.meta.id, p.epoch)
    }

    /// Whether `host`'s last report lists a copy of an instance that announces its starts and
    /// stops (its list then follows the rounds: a copy leaving it is held, then released).
    fn runs_announced_copies(&self, st: &model::ClusterState, host: &str) -> bool {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.get(host).is_some_and(|r| {
            r.report.instances.iter().any(|o| {
                st.instance(&o.instance)
                    .is_some_and(engine::notify::announces)
            })
        })
    }

    /// The copies `host` runs that are leaving it (`engine::notify::departing`) and whose
    /// stop was not announced yet: its list keeps them (at their old epoch, with the notify
    /// calls of the pre-stop round) until the round is over. A moved copy's new host waits
    /// for the old one's stop anyway (its handoff).
    fn held(&self, st: &model::ClusterState, host: &str) -> Vec<proto::Assignment> {
        let Some(h) = st.host_by_name(host) else {
            return Vec::new();
        };
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let Some(report) = reports.get(host) else {
            return Vec::new();
        };
        engine::notify::departing(st, &h.meta.id, &report.report)
            .filter(|o| !self.rounds.released(&o.placement, o.epoch))
            .filter_map(|o| {
                let instance = st.instance(&o.instance)?.clone();
                let mut placement = self.rounds.placement(&o.placement)?;
                placement.host = h.meta.id.clone();
                placement.epoch = o.epoch;
                placement.handoffs.clear();
                let promotion = engine::grant::promotion_of(st, &placement);
                Some(proto::Assignment {
                    notify: self
                        .rounds
                        .calls_for(&super::notify_rounds::departing_key(&o.placement, o.epoch)),
                    placement,
                    instance,
                    promotion,
                    backends: Vec::new(),
                })
            })
            .collect()
    }

    /// Whether copy `p` may start on its host by its handoffs (`engine::handoff::blocking`:
    /// a surging clone's copy waits only for a restart in place on its own host).
    fn start_confirmed(&self, st: &model::ClusterState, p: &Placement, now: Instant) -> bool {
        match st.instance(&p.instance) {
            Some(i) if engine::handoff::surges(i) && !p.handoffs.is_empty() => {
                let mut own = p.clone();
                own.handoffs = engine::handoff::blocking(i, p);
                own.handoffs.is_empty() || self.handoffs_confirmed(st, &own, now)
            }
            _ => self.handoffs_confirmed(st, p, now),
        }
    }

    /// The copies `host` keeps running past a surging move away from it, until their new
    /// copies run (`engine::handoff::surge_holds`): at their old epoch, in its list.
    fn surge_held(
        &self,
        st: &model::ClusterState,
        host: &str,
        now: Instant,
    ) -> Vec<proto::Assignment> {
        let Some(h) = st.host_by_name(host) else {
            return Vec::new();
        };
        if !st
            .placements()
            .any(|p| p.handoffs.iter().any(|x| x.host == h.meta.id))
        {
            return Vec::new();
        }
        let renewing = self.renewing(now);
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let Some(report) = reports.get(host) else {
            return Vec::new();
        };
        let name = |id: &str| st.host(id).map(|h| h.name.as_str());
        engine::handoff::surge_holds(
            st,
            &h.meta.id,
            &report.report,
            |p| {
                name(&p.host).and_then(|n| reports.get(n)).is_some_and(|r| {
                    r.report.instances.iter().any(|o| {
                        o.placement == p.meta.id
                            && o.epoch == p.epoch
                            && o.phase == proto::Phase::Running
                    })
                })
            },
            |id| name(id).is_some_and(|n| renewing.contains(n)),
        )
        .into_iter()
        .map(|(instance, placement)| proto::Assignment {
            placement,
            instance,
            promotion: None,
            notify: Vec::new(),
            backends: Vec::new(),
        })
        .collect()
    }

    /// Whether every host `p` moved away from has confirmed its old copy stopped (or is down).
    pub fn handoffs_confirmed(
        &self,
        st: &model::ClusterState,
        p: &Placement,
        now: Instant,
    ) -> bool {
        // Down only when it provably runs nothing: fenced by its device, or its lease (drift
        // margin, stop budget) is over. Decided before the reports' lock is taken (the lease
        // table's lock is never taken under it).
        let down: Vec<&str> = p
            .handoffs
            .iter()
            .filter_map(|h| st.host(&h.host))
            .filter(|left| {
                left.fenced
                    || self.lease_over(&left.name, now, || has_slow_stops(st, &left.meta.id))
            })
            .map(|left| left.meta.id.as_str())
            .collect();
        // Read in place under the lock: this runs for every withheld copy at every grant.
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        handoff::all_confirmed(
            st,
            p,
            |left| down.contains(&left.meta.id.as_str()),
            |name| reports.get(name).map(|r| &r.report),
        )
    }

    /// The cluster's lease timing from the replicated state (read after the leadership check,
    /// so it holds every setting any earlier leader granted by); this server's own TTL until
    /// the first leader has written it.
    pub fn settings(&self) -> model::LeaseSettings {
        self.replica
            .shared()
            .read(|st| st.lease())
            .unwrap_or_else(|| self.own_settings())
    }

    /// This server's configured timing, as the first leader writes it.
    pub fn own_settings(&self) -> model::LeaseSettings {
        model::LeaseSettings::set(None, self.ttl, self.ttl / 10)
    }

    /// The table of `term`, started now when this is the term's first use: a leader that
    /// starts its table later than its election only waits longer before declaring a lease
    /// over (the safe side). Its floor is the cluster's ceiling: the longest TTL any leader
    /// may have granted (rule S1 with mixed settings).
    fn table_for<'a>(
        &self,
        table: &'a mut Option<(u64, LeaseTable)>,
        term: u64,
        settings: model::LeaseSettings,
    ) -> &'a mut LeaseTable {
        if table.as_ref().is_some_and(|(t, _)| *t != term) {
            *table = None;
            // Reports of an earlier term may be stale: hosts send theirs again.
            self.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        let (_, t) = table.get_or_insert_with(|| {
            info!(
                term,
                ttl_ms = settings.ttl_ms,
                ceiling_ms = settings.ceiling_ms,
                "lease table started: every host has a lease of the ceiling from now"
            );
            (
                term,
                LeaseTable::new(
                    settings.ttl(),
                    settings.drift_margin(),
                    settings.ceiling(),
                    self.gossip.now(),
                ),
            )
        });
        t
    }
}

/// Whether `host` (an id) has OCF copies, placed or still leaving it: their `stop` may run
/// past the lease's end, up to the stop grace ([`engine::stop_budget`]).
pub fn has_slow_stops(st: &model::ClusterState, host: &str) -> bool {
    engine::stop_budget::has_slow_stops(st, host, |instance| {
        st.instance(instance)
            .is_some_and(|i| i.driver == model::instance::DriverKind::Ocf)
    })
}

/// What one host last reported about its instances, and when.
#[derive(Clone, Debug)]
pub struct HostReport {
    pub reported_at: Timestamp,
    pub report: Report,
}

/// The placements (by id and epoch) of copies their hosts report failed.
fn failed_from_reports<'a>(
    reports: impl Iterator<Item = &'a proto::Observed>,
) -> BTreeSet<(String, model::placement::Epoch)> {
    reports
        .filter(|o| o.phase == Phase::Failed)
        .map(|o| (o.placement.clone(), o.epoch))
        .collect()
}
