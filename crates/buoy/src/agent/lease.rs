//! Leases over HTTP (rule S1). Every agent keeps its own lease ([`HostLease`]) by sending
//! renewals to the control plane; the leader grants them from its soft-state
//! [`LeaseTable`], and only after confirming with a quorum that it still leads (one check
//! serves every renewal that arrived before it started). The fault filter applies: a host cut
//! from the servers cannot renew.
//!
//! - `POST /internal/lease` `{"host": NAME}` -> `{"ttl_ms": N}` (relayed to the leader)
//! - `GET /v1/lease` -> this agent's own lease
//! - `GET /v1/leases` -> the leader's view of every host's lease (relayed to the leader)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::Instant;
use engine::handoff::{self, LeftHost};
use engine::host_lease::{HostLease, LeaseTiming, RenewalId};
use engine::lease_table::LeaseTable;
use serde::{Deserialize, Serialize};
use serde_json::json;
use state::instance::Instance;
use state::placement::Placement;
use state::raft::replica::Replica;
use state::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use super::control::ControlPlane;
use super::http::error;
use super::runtime::Shared;
use crate::supervisor::reconciler::{Assigned, Observed, Phase, Report, Supervisor};

/// Converts a time on the agent's clock to wall-clock time, for people and tests.
fn wall(t: Instant, now: Instant) -> Timestamp {
    if t >= now {
        Timestamp::now().plus(t.saturating_since(now))
    } else {
        Timestamp::now().minus(now.saturating_since(t))
    }
}

/// An instance placed on a host, as the host needs it to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub placement: Placement,
    pub instance: Instance,
}

/// A granted renewal: the lease length and, when the state changed since the host's last
/// answer, everything placed on the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub ttl_ms: u64,
    /// The term of the leader that granted it (a host reports its instances again to a new
    /// leader, which starts with none).
    #[serde(default)]
    pub term: u64,
    /// The state's change index these assignments reflect.
    pub index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignments: Option<Vec<Assignment>>,
}

/// Leader side: grants renewals after confirming leadership.
pub struct LeaseGrants {
    replica: Arc<Replica>,
    gossip: Arc<Shared>,
    ttl: Duration,
    /// The table of the term this server leads (replaced when the term changes).
    table: Mutex<Option<(u64, LeaseTable)>>,
    /// What each host last reported about its instances (soft state, like leases).
    reports: Mutex<BTreeMap<String, HostReport>>,
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

    /// Whether `host`'s lease (and the drift margin) is over as this leader sees it; false
    /// until this leader has started its lease table for the current term.
    pub fn lease_over(&self, host: &str, now: Instant) -> bool {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .as_ref()
            .is_some_and(|(t, lt)| *t == term && lt.expired(host, now))
    }

    /// Whether `host` renewed with this leader and its lease runs at `now`.
    pub fn holds_lease(&self, host: &str, now: Instant) -> bool {
        self.with_table(|t| t.renewed(host) && t.ends_at(host) > now)
    }

    /// Whether `host` still renews: it renewed with this leader within the last third of a
    /// lease (two renewals at the default pace). A host gossip calls dead that still renews
    /// is isolated, not failed, and is not fenced.
    pub fn renews(&self, host: &str, now: Instant) -> bool {
        self.with_table(|t| t.renewed(host) && t.ends_at(host) + t.ttl() / 3 > now + t.ttl())
    }

    fn with_table(&self, f: impl FnOnce(&LeaseTable) -> bool) -> bool {
        let term = self.replica.raft().metrics().borrow().current_term;
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.as_ref().is_some_and(|(t, lt)| *t == term && f(lt))
    }

    /// Per host, the copies its last report shows starting.
    pub fn starting(&self) -> BTreeMap<String, u32> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .iter()
            .map(|(h, r)| {
                let n = r
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
        epoch: state::placement::Epoch,
    ) -> Option<Phase> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .get(host)?
            .instances
            .iter()
            .find(|o| o.placement == placement && o.epoch == epoch)
            .map(|o| o.phase)
    }

    /// Placements (id, epoch) whose hosts report them failed past their restart budget.
    pub fn failed_placements(&self) -> BTreeSet<(String, state::placement::Epoch)> {
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        super::recovery::failed_from_reports(reports.values().flat_map(|r| r.instances.iter()))
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
        let ttl = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            self.table_for(&mut table, term).renew(host, received_at)
        };
        if let Some(report) = report {
            self.reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    host.to_string(),
                    HostReport {
                        reported_at: Timestamp::now(),
                        applied: report.applied,
                        instances: report.instances,
                    },
                );
        }
        let now = self.gossip.now();
        let (index, assignments) = self.replica.shared().read(|st| {
            let index = st.change_index();
            if known == Some(index) {
                return (index, None);
            }
            // A copy waiting for its old host to confirm it stopped is held back, and the
            // grant says it reflects an older index: the host asks again until it comes.
            let mut withheld = false;
            let assigned = st.host_by_name(host).map(|h| {
                st.placements()
                    .filter(|p| p.host == h.meta.id)
                    .filter(|p| {
                        let ok = self.handoffs_confirmed(st, p, now);
                        withheld |= !ok;
                        ok
                    })
                    .filter_map(|p| {
                        st.instance(&p.instance).map(|i| Assignment {
                            placement: p.clone(),
                            instance: i.clone(),
                        })
                    })
                    .collect()
            });
            let index = if withheld { index - 1 } else { index };
            (index, Some(assigned.unwrap_or_default()))
        });
        Ok(Grant {
            ttl_ms: ttl.as_millis() as u64,
            term,
            index,
            assignments,
        })
    }

    /// Whether every host `p` moved away from has confirmed its old copy stopped (or is down).
    pub fn handoffs_confirmed(
        &self,
        st: &state::ClusterState,
        p: &Placement,
        now: Instant,
    ) -> bool {
        p.handoffs.iter().all(|h| {
            let left = match st.host(&h.host) {
                None => return handoff::confirmed(&p.meta.id, h, LeftHost::Gone),
                Some(host) => host,
            };
            if left.failed || self.lease_over(&left.name, now) {
                return handoff::confirmed(&p.meta.id, h, LeftHost::Down);
            }
            let report = self
                .reports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&left.name)
                .map(HostReport::engine_view);
            handoff::confirmed(&p.meta.id, h, LeftHost::Up(report.as_ref()))
        })
    }

    /// The table of `term`, started now when this is the term's first use: a leader that
    /// starts its table later than its election only waits longer before declaring a lease
    /// over (the safe side).
    fn table_for<'a>(
        &self,
        table: &'a mut Option<(u64, LeaseTable)>,
        term: u64,
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
                "lease table started: every host has a full lease from now"
            );
            (
                term,
                LeaseTable::new(self.ttl, self.ttl / 10, self.gossip.now()),
            )
        });
        t
    }
}

/// Body of `POST /internal/lease`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalRequest {
    pub host: String,
    /// The change index of the assignments the host holds (none after a start).
    #[serde(default)]
    pub known: Option<u64>,
    /// The host's instances, when they changed since its last report to this leader.
    #[serde(default)]
    pub report: Option<Report>,
}

/// What one host last reported about its instances.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub reported_at: Timestamp,
    /// The change index of the assignments the host had applied.
    pub applied: Option<u64>,
    pub instances: Vec<Observed>,
}

impl HostReport {
    /// The copies the host may still run (the handoff rule's input).
    fn engine_view(&self) -> handoff::HostReport {
        handoff::HostReport {
            applied: self.applied,
            active: self
                .instances
                .iter()
                .filter(|o| !matches!(o.phase, Phase::Stopped | Phase::Failed))
                .map(|o| (o.placement.clone(), o.epoch))
                .collect(),
        }
    }
}

/// What the lease routes need.
#[derive(Clone)]
pub struct LeaseApi {
    pub grants: Option<Arc<LeaseGrants>>,
    pub keeper: Arc<LeaseKeeper>,
    pub gossip: Arc<Shared>,
    pub supervisor: Arc<crate::supervisor::reconciler::Supervisor>,
}

fn not_a_server() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        "this agent is not a control-plane server",
        None,
    )
}

/// `POST /internal/lease` (on the leader: relayed there by the middleware).
pub async fn renew(State(api): State<LeaseApi>, Json(req): Json<RenewalRequest>) -> Response {
    let received_at = api.gossip.now();
    if api.gossip.drops(&req.host, false) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "dropped",
            "renewal dropped by the fault filter",
            None,
        );
    }
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    match grants
        .grant(&req.host, received_at, req.known, req.report)
        .await
    {
        Ok(grant) => Json(grant).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            &format!("cannot grant a lease: {e}"),
            None,
        ),
    }
}

/// `GET /v1/leases` (on the leader): every host's lease as this leader sees it.
pub async fn leases(State(api): State<LeaseApi>) -> Response {
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    let now = api.gossip.now();
    let table = grants.table.lock().unwrap_or_else(|p| p.into_inner());
    let Some((term, t)) = table.as_ref() else {
        return Json(json!({"term": null, "leases": []})).into_response();
    };
    let leases: Vec<_> = t
        .hosts()
        .map(|h| {
            json!({
                "host": h,
                "ends_at": wall(t.ends_at(h), now),
                "fenced_at": wall(t.fenced_at(h), now),
                "expired": t.expired(h, now),
            })
        })
        .collect();
    Json(json!({"term": term, "ttl_ms": t.ttl().as_millis() as u64, "leases": leases}))
        .into_response()
}

/// `GET /v1/observed[?instance=NAME]` (on the leader): what every host last reported about
/// its instances.
pub async fn observed(
    State(api): State<LeaseApi>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    let reports = grants.reports.lock().unwrap_or_else(|p| p.into_inner());
    let hosts: BTreeMap<&String, serde_json::Value> = reports
        .iter()
        .map(|(host, r)| {
            let instances: Vec<&Observed> = r
                .instances
                .iter()
                .filter(|o| {
                    q.get("instance")
                        .is_none_or(|n| *n == o.name || *n == o.instance)
                })
                .collect();
            (
                host,
                json!({"reported_at": r.reported_at, "applied": r.applied, "instances": instances}),
            )
        })
        .collect();
    Json(json!({ "hosts": hosts })).into_response()
}

/// `GET /v1/lease`: this agent's own lease.
pub async fn own_lease(State(api): State<LeaseApi>) -> Json<serde_json::Value> {
    let now = api.gossip.now();
    let lease = api.keeper.lease.lock().unwrap_or_else(|p| p.into_inner());
    let until = lease.until();
    Json(json!({
        "host": api.keeper.me,
        "held": lease.is_held(now),
        "until": until.map(|u| wall(u, now)),
        "remaining_ms": until.map(|u| u.saturating_since(now).as_millis() as u64),
        "ttl_ms": lease.timing().ttl.as_millis() as u64,
        "renew_every_ms": lease.timing().renew_every.as_millis() as u64,
    }))
}

/// `GET /v1/supervisor`: the instances this agent runs or ran, with their state.
pub async fn supervised(State(api): State<LeaseApi>) -> Json<serde_json::Value> {
    Json(json!({"instances": api.supervisor.observed()}))
}

/// Host side: keeps this agent's lease renewed.
pub struct LeaseKeeper {
    me: String,
    lease: Mutex<HostLease>,
    /// Wakes whoever watches the lease (the supervisor, the watchdog feeder) on every change.
    pub changed: tokio::sync::watch::Sender<Option<Instant>>,
    /// The change index of the newest assignments received (reset when the lease is lost, so
    /// the next grant carries fresh ones).
    known: Mutex<Option<u64>>,
    /// What is placed on this host, from the newest grant; none until a grant brings them
    /// (and again after the lease was lost).
    pub assignments: tokio::sync::watch::Sender<Option<Arc<Assigned>>>,
    /// The term of the last grant, and the report (as JSON) the leader of that term has.
    reported: Mutex<(u64, Option<String>)>,
    /// Whose instances this host reports.
    supervisor: std::sync::OnceLock<Arc<Supervisor>>,
}

impl LeaseKeeper {
    pub fn new(me: String, timing: LeaseTiming, now: Instant) -> Arc<Self> {
        Arc::new(LeaseKeeper {
            me,
            lease: Mutex::new(HostLease::new(timing, now)),
            changed: tokio::sync::watch::channel(None).0,
            known: Mutex::new(None),
            assignments: tokio::sync::watch::channel(None).0,
            reported: Mutex::new((0, None)),
            supervisor: std::sync::OnceLock::new(),
        })
    }

    /// Reports `supervisor`'s instances with the renewals from now on.
    pub fn report_for(&self, supervisor: Arc<Supervisor>) {
        let _ = self.supervisor.set(supervisor);
    }

    /// The instances to report with the next renewal, when the leader lacks them.
    fn report_due(&self) -> Option<(Report, String)> {
        let report = self.supervisor.get()?.report();
        let text = serde_json::to_string(&report).ok()?;
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        (reported.1.as_deref() != Some(text.as_str())).then_some((report, text))
    }

    /// Whether this host holds its lease at `now`.
    pub fn is_held(&self, now: Instant) -> bool {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_held(now)
    }

    /// Sends renewals when due, forever.
    pub async fn run(
        self: Arc<Self>,
        cp: Arc<ControlPlane>,
        grants: Option<Arc<LeaseGrants>>,
        gossip: Arc<Shared>,
        token: Option<String>,
    ) {
        let mut held = false;
        loop {
            let now = gossip.now();
            let (due, next) = {
                let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
                let now_held = l.is_held(now);
                if now_held != held {
                    if now_held {
                        info!("lease acquired");
                    } else {
                        warn!("lease lost: this host must run nothing until it renews");
                        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        self.assignments.send_replace(None);
                        self.changed.send_replace(l.until());
                    }
                    held = now_held;
                }
                let due = l.poll_renewal(now);
                let wake = match l.until() {
                    Some(u) if u > now => l.next_renewal().min(u),
                    _ => l.next_renewal(),
                };
                (due, wake)
            };
            if let Some(id) = due {
                let (me, cp, grants, gossip, token) = (
                    self.clone(),
                    cp.clone(),
                    grants.clone(),
                    gossip.clone(),
                    token.clone(),
                );
                tokio::spawn(async move {
                    me.send(id, now, &cp, grants.as_deref(), &gossip, token.as_deref())
                        .await
                });
            }
            let supervisor = self.supervisor.get().cloned();
            let report_changed = async {
                match &supervisor {
                    Some(s) => s.changed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(gossip.to_tokio(next)) => {}
                _ = report_changed => {
                    // Tell the leader soon: it waits for these reports to finish moves.
                    self.lease.lock().unwrap_or_else(|p| p.into_inner()).expedite();
                }
            }
        }
    }

    /// Sends one renewal (sent at `sent`) and records the answer.
    async fn send(
        &self,
        id: RenewalId,
        sent: Instant,
        cp: &ControlPlane,
        grants: Option<&LeaseGrants>,
        gossip: &Shared,
        token: Option<&str>,
    ) {
        let ttl = self
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .timing()
            .ttl;
        let known = *self.known.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.report_due();
        let to_send = report.as_ref().map(|(r, _)| r.clone());
        let granted = match grants.filter(|_| cp.is_leader()) {
            Some(g) => g.grant(&self.me, sent, known, to_send).await.ok(),
            None => {
                self.ask_a_server(cp, gossip, token, ttl, known, to_send)
                    .await
            }
        };
        if let Some(g) = &granted {
            let mut r = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, text)) = report {
                *r = (g.term, Some(text));
            } else if r.0 != g.term {
                // A new leader: it has no report from this host yet.
                *r = (g.term, None);
            }
        }
        let Some(grant) = granted else {
            self.lease
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .on_refused(id);
            return;
        };
        let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let extended = l.on_granted(id, Duration::from_millis(grant.ttl_ms));
        // Assignments only from a grant that left the lease held, and never older ones.
        if l.is_held(gossip.now())
            && let Some(assignments) = grant.assignments
        {
            let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if k.is_none_or(|k| grant.index >= k) {
                *k = Some(grant.index);
                self.assignments.send_replace(Some(Arc::new(Assigned {
                    index: grant.index,
                    list: assignments,
                })));
            }
        }
        if extended {
            self.changed.send_replace(l.until());
        }
    }

    /// Asks the leader (or a live server, which relays) for a renewal.
    async fn ask_a_server(
        &self,
        cp: &ControlPlane,
        gossip: &Shared,
        token: Option<&str>,
        timeout: Duration,
        known: Option<u64>,
        report: Option<Report>,
    ) -> Option<Grant> {
        // The leader when known, then the servers gossip sees alive, then the others: gossip
        // may be cut while HTTP still passes (an isolated host keeps its lease).
        let mut targets: Vec<state::raft::types::ServerNode> = Vec::new();
        let leader = cp.replica.as_ref().and_then(|r| r.leader());
        for t in leader.into_iter().chain(cp.servers_to_try()) {
            if t.name != self.me && !targets.iter().any(|o| o.name == t.name) {
                targets.push(t);
            }
        }
        let body =
            serde_json::to_vec(&json!({"host": self.me, "known": known, "report": report})).ok()?;
        let deadline = tokio::time::Instant::now() + timeout;
        for target in targets {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            if gossip.drops(&target.name, true) {
                continue;
            }
            let url = cp.client.url(&target.http, "/internal/lease");
            if let Ok((status, bytes)) = cp.client.post_bytes(&url, body.clone(), token, left).await
                && status.is_success()
                && let Ok(grant) = serde_json::from_slice(&bytes)
            {
                return Some(grant);
            }
        }
        None
    }
}

/// Moves the watchdog's deadline to the lease's end at every renewal.
pub async fn feed_watchdog(
    keeper: Arc<LeaseKeeper>,
    gossip: Arc<Shared>,
    watchdog: Arc<crate::watchdog::client::WatchdogClient>,
) {
    let mut changed = keeper.changed.subscribe();
    loop {
        if let Some(until) = *changed.borrow_and_update() {
            let left = until.saturating_since(gossip.now());
            watchdog.arm(crate::watchdog::protocol::monotonic_now() + left);
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Pets the hardware watchdog at every lease extension (the device resets the machine when a
/// hung or dead agent stops petting it).
pub async fn feed_device(
    keeper: Arc<LeaseKeeper>,
    gossip: Arc<Shared>,
    device: Arc<Mutex<Option<crate::watchdog::device::WatchdogDevice>>>,
) {
    let mut changed = keeper.changed.subscribe();
    loop {
        if let Some(until) = *changed.borrow_and_update() {
            let remaining = until.saturating_since(gossip.now());
            if let Some(d) = device.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                d.pet(remaining);
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}
