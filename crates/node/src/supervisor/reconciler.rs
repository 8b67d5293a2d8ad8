//! The supervisor's loop: makes what runs on this host match what is placed on it, under
//! rule S1. It starts an instance only while the host holds its lease and with assignments
//! that came with a grant of that lease; it refuses an epoch older than one it already ran;
//! when the lease ends it kills every instance at once and starts nothing until a new lease
//! brings fresh assignments. Crashes restart in place with backoff until the budget is spent,
//! then the instance is reported failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Instant;
use model::instance::DesiredState;
use model::placement::Epoch;
use model::timestamp::Timestamp;
use tracing::{error, info, warn};

use proto::{Assignment, Observed, Phase, Report};

use super::health::HealthWatch;
use super::restart::{AfterCrash, RestartBudget};
use crate::drivers::process::ProcessSpec;
use crate::drivers::running::{Ended, Running, StopOutcome};
use crate::lease::keeper::{Assigned, LeaseKeeper, Reporter};
use crate::watchdog::client::WatchdogClient;

/// How often the loop looks at its processes (crash detection latency).
const TICK: Duration = Duration::from_millis(100);

/// What the leader acts on in one copy's report: placement, epoch, phase, role and the
/// last notification run.
type Fingerprint = (String, Epoch, Phase, Option<proto::Role>, Option<u64>);

/// A copy on its way out: its process, its last report, its stop timeout and, after a lease
/// loss, when an OCF stop is cut off (what is left of the stop grace).
type StoppingCopy = (Running, Observed, Duration, Option<Duration>);

/// One group's copies on their way out, by (order in the group, name).
type GroupQueue = BTreeMap<(u32, String), StoppingCopy>;

/// One placement this host runs (or ran).
struct Unit {
    assignment: Assignment,
    process: Option<Running>,
    /// The instance's health checks while it runs.
    health: Option<HealthWatch>,
    budget: RestartBudget,
    restart_at: Option<Instant>,
    observed: Observed,
    /// An OCF resource that failed is being stopped before anything else happens to it: what
    /// ended it, and where the stop's outcome lands.
    cleanup: Option<(Ended, Arc<Mutex<Option<StopOutcome>>>)>,
    /// Its agent banned it from this host (`crm_resource -B`): once stopped it is failed
    /// here, with this reason, and not restarted.
    banned: Option<String>,
}

impl Unit {
    fn set(&mut self, phase: Phase, reason: Option<String>) {
        if self.observed.phase != phase || self.observed.reason != reason {
            info!(instance = %self.observed.name, epoch = %self.observed.epoch, ?phase, reason = reason.as_deref().unwrap_or(""), "instance state");
        }
        self.observed.phase = phase;
        self.observed.reason = reason;
        self.observed.since = Timestamp::now();
        self.observed.pid = self.process.as_ref().and_then(Running::pid);
        if self.process.is_none() {
            // Its role is unknown now: the phase says whether it may still run.
            self.observed.role = None;
        }
        self.observed.restarts = self.budget.used();
    }
}

/// Runs the instances placed on this host.
pub struct Supervisor {
    /// This host's name and address (given to instances as `BUOY_HOST` and `BUOY_HOST_IP`).
    host: String,
    host_ip: String,
    log_dir: PathBuf,
    watchdog: Option<Arc<WatchdogClient>>,
    /// With no watchdog process: whether instances may run anyway (a hardware watchdog device
    /// resets the machine instead, or the operator gave --unsafe-no-watchdog).
    run_unwatched: bool,
    units: Mutex<BTreeMap<String, Unit>>,
    /// The change index of the assignments the last reconcile applied.
    applied: Mutex<Option<u64>>,
    /// Copies no longer placed here whose stop has not finished yet.
    draining: Arc<Mutex<BTreeMap<String, Observed>>>,
    /// The highest epoch run per placement: an assignment below it is stale.
    highest_epoch: Mutex<BTreeMap<String, Epoch>>,
    /// Woken when what this host would report changed (phases, epochs, applied index), so
    /// that the lease keeper tells the leader early.
    pub changed: tokio::sync::Notify,
    /// The last report's fingerprint.
    fingerprint: Mutex<Vec<Fingerprint>>,
    /// Added to every OCF agent's environment: the Pacemaker tool shims (`HA_SBIN_DIR`,
    /// `PATH`, the agent's socket) and `HA_RSCTMP`.
    agent_env: Mutex<Vec<(String, String)>>,
    /// Set by `shutdown`: start nothing more.
    stopping: std::sync::atomic::AtomicBool,
    /// Set when a stop failed or timed out: this host must be fenced (see [`Fence`]).
    fence: Arc<Fence>,
    /// After a lease loss: how long OCF stops may still run (the stop grace from the lease's
    /// end, less what has passed since), after which their cgroups are killed.
    cut_off: Mutex<Option<Duration>>,
}

/// Pacemaker's rule for a stop that fails or times out: the copy may still run, so the host
/// is fenced before the copy runs anywhere else. Here the host fences itself: once set, the
/// lease keeper sends one last renewal (carrying the report that says why), then renews no
/// more and leaves the cluster; at the lease's end everything is killed (by the supervisor,
/// else by the watchdog), and the leader moves the copies once the lease is over.
#[derive(Default)]
pub struct Fence {
    reason: Mutex<Option<String>>,
}

impl Fence {
    /// Asks for the host to be fenced (the first reason stays).
    pub fn request(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            error!(
                %reason,
                "fencing this host: it renews its lease no more, so its instances stop and move; restart the agent once the resource is cleaned up, then `buoy host enable`"
            );
            *r = Some(reason);
        }
    }

    /// Why the host must be fenced, once asked.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Supervisor {
    pub fn new(
        host: String,
        host_ip: String,
        log_dir: PathBuf,
        watchdog: Option<Arc<WatchdogClient>>,
        run_unwatched: bool,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            host,
            host_ip,
            log_dir,
            watchdog,
            run_unwatched,
            units: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            fingerprint: Mutex::new(Vec::new()),
            agent_env: Mutex::new(Vec::new()),
            draining: Arc::new(Mutex::new(BTreeMap::new())),
            highest_epoch: Mutex::new(BTreeMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            fence: Arc::new(Fence::default()),
            cut_off: Mutex::new(None),
        })
    }

    /// Sets what every OCF agent started from now on gets in its environment.
    pub fn set_agent_env(&self, env: Vec<(String, String)>) {
        *self.agent_env.lock().unwrap_or_else(|p| p.into_inner()) = env;
    }

    /// The agent is shutting down: stop every instance gracefully (they are not re-adopted
    /// by the next agent, which starts them again under its own lease).
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let running: Vec<(String, String, Duration, Running)> = {
            let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
            units
                .values_mut()
                .filter_map(|u| {
                    u.health = None;
                    let p = u.process.take()?;
                    u.set(Phase::Stopped, Some("agent shut down".into()));
                    Some((
                        u.observed.placement.clone(),
                        u.observed.name.clone(),
                        stop_timeout(&u.assignment),
                        p,
                    ))
                })
                .collect()
        };
        let stops = running
            .into_iter()
            .map(|(placement, name, timeout, p)| async move {
                let how = p.stop(timeout).await;
                info!(instance = %name, %how, "stopped for the agent's shutdown");
                placement
            });
        for placement in futures_util::future::join_all(stops).await {
            self.untrack(&placement);
        }
    }

    /// Bans OCF resource `resource`'s copy from this host, as its agent asked
    /// (`crm_resource -B`, Pacemaker's location ban): it is stopped and reported failed here,
    /// not restarted, so the leader counts the failure and places the copy elsewhere (or
    /// nowhere) until `buoy instance reset`. The instance's name, or why not.
    pub fn ban(&self, resource: &str) -> Result<String, String> {
        // A clone's copy may be named `NAME:N`.
        let name = resource.split(':').next().unwrap_or(resource);
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        let unit = units
            .values_mut()
            .find(|u| u.assignment.instance.name == name && u.process.is_some())
            .ok_or_else(|| format!("no copy of `{name}` runs on this host"))?;
        let why = format!(
            "banned from this host by its agent (crm_resource -B); `buoy instance reset {name}` lets it back"
        );
        let p = unit.process.as_ref().expect("a running copy");
        if !p.ban(why.clone()) {
            return Err(format!("`{name}` is not an OCF resource"));
        }
        warn!(instance = %name, "banned from this host by its agent: stopping it");
        unit.banned = Some(why);
        self.changed.notify_one();
        Ok(name.to_string())
    }

    /// Every placement this host runs, ran, or is still stopping.
    pub fn observed(&self) -> Vec<Observed> {
        self.report().instances
    }

    /// What to tell the leader: read under the units lock, so that `applied` and the
    /// instances agree.
    pub fn report(&self) -> Report {
        let units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        let applied = *self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        let mut instances: Vec<Observed> = units.values().map(|u| u.observed.clone()).collect();
        instances.extend(draining.values().cloned());
        Report { applied, instances }
    }

    /// The log file of instance `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Reconciles every tick and whenever the lease or the assignments change.
    pub async fn run(self: Arc<Self>, keeper: Arc<LeaseKeeper>, now: impl Fn() -> Instant) {
        let mut lease = keeper.changed.subscribe();
        let mut assigned = keeper.assignments.subscribe();
        loop {
            let t = now();
            let held = keeper.is_held(t);
            // Stops after a lease loss end by the lease's end plus the grant's stop grace.
            *self.cut_off.lock().unwrap_or_else(|p| p.into_inner()) = if held {
                None
            } else {
                keeper.stop_grace().map(|g| {
                    let late = keeper
                        .with_lease(|l| l.until())
                        .map_or(Duration::ZERO, |u| t.saturating_since(u));
                    g.saturating_sub(late)
                })
            };
            let assignments = assigned.borrow_and_update().clone();
            self.reconcile(t, held, assignments.as_deref());
            self.notice_changes();
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = lease.changed() => {}
                _ = assigned.changed() => {}
            }
        }
    }

    /// Wakes `changed` when the report differs from the last one in a way the leader acts on.
    fn notice_changes(&self) {
        let r = self.report();
        let mut now: Vec<Fingerprint> = r
            .instances
            .iter()
            .map(|o| (o.placement.clone(), o.epoch, o.phase, o.role, o.notified))
            .collect();
        now.push((
            String::new(),
            Epoch(r.applied.unwrap_or(0)),
            Phase::Stopped,
            None,
            None,
        ));
        let mut last = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if *last != now {
            *last = now;
            self.changed.notify_one();
        }
    }

    fn reconcile(&self, now: Instant, held: bool, assigned: Option<&Assigned>) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        if super::injected::keep_without_lease() {
            // Negative control: rule S1 broken on purpose (see `injected`).
            if let Some(w) = &self.watchdog {
                w.disarm();
            }
            if !held {
                return;
            }
        }
        let refusal = self
            .refusal()
            .filter(|_| !super::injected::keep_without_lease());
        if !held || refusal.is_some() {
            // Self-fencing: everything dies at once, nothing starts.
            let reason = match &refusal {
                Some((_, why)) if held => format!("{why}: killed"),
                _ => "lease lost: killed".to_string(),
            };
            for u in units.values_mut() {
                u.health = None;
                if let Some(p) = u.process.take() {
                    self.kill_now(p, &u.observed);
                    u.set(Phase::Stopped, Some(reason.clone()));
                } else if u.cleanup.is_none()
                    && matches!(u.observed.phase, Phase::Restarting | Phase::Starting)
                {
                    // A copy waiting for its (re)start is off too: it starts again with the
                    // next lease, like a killed one (left waiting with no restart time, it
                    // never would).
                    u.set(Phase::Stopped, Some(reason.clone()));
                }
                u.restart_at = None;
            }
            if !held {
                return;
            }
        }
        let Some(assigned) = assigned else {
            return; // Held, but no fresh assignments yet.
        };
        let desired: BTreeMap<&str, &Assignment> = assigned
            .list
            .iter()
            .filter(|a| a.instance.desired_state == DesiredState::Started)
            .map(|a| (a.placement.meta.id.as_str(), a))
            .collect();

        // Stop what is no longer placed here (or moved to a new epoch).
        // A copy still being stopped after a failure stays until that stop is done.
        let gone: Vec<String> = units
            .iter()
            .filter(|(_, u)| u.cleanup.is_none())
            .filter(|(id, u)| {
                desired
                    .get(id.as_str())
                    .is_none_or(|a| a.placement.epoch != u.assignment.placement.epoch)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // A group's members stop one after the other, the last first.
        let mut by_group: BTreeMap<String, GroupQueue> = BTreeMap::new();
        for id in gone {
            if let Some(mut u) = units.remove(&id)
                && let Some(p) = u.process.take()
            {
                let timeout = stop_timeout(&u.assignment);
                info!(instance = %u.observed.name, "stopping: no longer placed here");
                u.health = None;
                u.set(Phase::Stopping, Some("no longer placed here".into()));
                let (group, order) = match &u.assignment.instance.group {
                    Some(g) => (g.name.clone(), g.order),
                    None => (format!("\0{id}"), 0),
                };
                by_group.entry(group).or_default().insert(
                    (order, u.observed.name.clone()),
                    (p, u.observed.clone(), timeout, None),
                );
            }
        }
        for (_, members) in by_group {
            self.drain_in_order(members.into_values().rev().collect());
        }

        // Start what is placed here and not running.
        let mut highest = self.highest_epoch.lock().unwrap_or_else(|p| p.into_inner());
        for (id, a) in desired {
            let epoch = a.placement.epoch;
            if highest.get(id).is_some_and(|h| epoch < *h) {
                warn!(instance = %a.instance.name, %epoch, "refusing a stale epoch");
                continue;
            }
            let unit = units.entry(id.to_string()).or_insert_with(|| Unit {
                assignment: a.clone(),
                process: None,
                health: None,
                budget: RestartBudget::new(a.instance.max_restarts, a.instance.restart_window),
                restart_at: Some(now),
                observed: Observed::new(
                    id,
                    &a.instance.meta.id,
                    &a.instance.name,
                    epoch,
                    Phase::Starting,
                ),
                cleanup: None,
                banned: None,
            });
            // Notifications the leader asks for (each runs once).
            if let Some(p) = &unit.process
                && !a.notify.is_empty()
            {
                p.notify(&a.notify);
            }
            // A promotion granted or revoked: the copy is promoted or demoted in place.
            if unit.assignment.promotion != a.promotion {
                unit.assignment.promotion = a.promotion;
                if let Some(p) = &unit.process {
                    p.set_promoted(a.promotion.is_some());
                }
            }
            // After a lease loss the unit is stopped with no restart time: start it again.
            if unit.process.is_none()
                && unit.observed.phase == Phase::Stopped
                && unit.restart_at.is_none()
            {
                unit.restart_at = Some(now);
            }
            if unit.process.is_none() && unit.restart_at.is_some_and(|t| t <= now) {
                if self.draining(id) {
                    // Its earlier copy is still being stopped here: it starts once that is done.
                    continue;
                }
                if let Some((phase, why)) = &refusal {
                    // Starts once the watchdog answers (restart_at stays).
                    unit.set(*phase, Some(why.clone()));
                    continue;
                }
                unit.restart_at = None;
                highest.insert(id.to_string(), epoch);
                self.start(unit);
            }
        }
        drop(highest);
        // While its watchdog is not ready (it may still be killing an earlier agent's copies,
        // which this agent does not list), this host cannot vouch that a copy missing from its
        // report is stopped: it does not claim these assignments applied, and no handoff away
        // from it is confirmed meanwhile. Found by `buoy sim cluster` (seeds 394, 780, 937).
        // (A host with no watchdog at all never ran anything, and still vouches.)
        if self.watchdog.as_ref().is_none_or(|w| w.ready()) {
            *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(assigned.index);
        }

        // Watch the running ones.
        for u in units.values_mut() {
            let cleaned = u
                .cleanup
                .as_ref()
                .and_then(|(_, slot)| slot.lock().unwrap_or_else(|p| p.into_inner()).take());
            if let Some(how) = cleaned {
                let (ended, _) = u.cleanup.take().expect("a cleanup");
                if !how.done {
                    u.set(
                        Phase::StopFailed,
                        Some(format!("{}; then the stop failed: {how}", ended.reason)),
                    );
                    self.fence
                        .request(format!("{}: stop failed: {how}", u.observed.name));
                    continue;
                }
                self.untrack(&u.observed.placement);
                if let Some(why) = u.banned.take() {
                    u.restart_at = None;
                    u.set(Phase::Failed, Some(why));
                    continue;
                }
                self.after_crash(u, now, ended);
                continue;
            }
            let Some(p) = u.process.as_mut() else {
                continue;
            };
            u.observed.notified = p.notified();
            let role = p.role();
            if u.observed.role != role {
                info!(instance = %u.observed.name, epoch = %u.observed.epoch, ?role, promotion = ?u.assignment.promotion, "role");
                u.observed.role = role;
            }
            let exited = p.poll_end();
            let unhealthy = u.health.as_ref().and_then(HealthWatch::failed);
            let Some(ended) = exited
                .clone()
                .or_else(|| unhealthy.map(|reason| Ended { code: None, reason }))
            else {
                if u.observed.phase == Phase::Starting
                    && p.is_up()
                    && u.health.as_ref().is_none_or(HealthWatch::passed)
                {
                    u.set(Phase::Running, None);
                }
                continue;
            };
            u.health = None;
            if let Some(p) = u.process.take() {
                if matches!(p, Running::Ocf(_)) {
                    // OCF recovery is stop, then start; and until the stop is done the
                    // resource may run: it stays `stopping` (the watchdog keeps tracking
                    // it), and only a clean stop lets it restart or move.
                    let slot = Arc::new(Mutex::new(None));
                    let out = slot.clone();
                    tokio::spawn(async move {
                        let how = p.stop(Duration::ZERO).await;
                        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(how);
                    });
                    u.set(
                        Phase::Stopping,
                        Some(format!(
                            "{}; stopping it before anything else",
                            ended.reason
                        )),
                    );
                    u.cleanup = Some((ended, slot));
                    continue;
                }
                if exited.is_none() {
                    // Alive but failing its health check: it goes before it restarts.
                    p.kill();
                } else {
                    // Ended: what it left behind (a daemon) goes too.
                    p.kill_leftovers();
                }
            }
            self.untrack(&u.observed.placement);
            self.after_crash(u, now, ended);
        }
    }

    /// What follows an instance's end: a restart after the backoff, or failed once its budget
    /// is spent.
    fn after_crash(&self, u: &mut Unit, now: Instant, ended: Ended) {
        u.observed.exit_code = ended.code;
        match u.budget.on_crash(now) {
            AfterCrash::RestartAt(t) => {
                u.restart_at = Some(t);
                u.set(
                    Phase::Restarting,
                    Some(format!(
                        "{}; restart in {} ms",
                        ended.reason,
                        t.saturating_since(now).as_millis()
                    )),
                );
            }
            AfterCrash::GiveUp => {
                let reason = format!(
                    "{}; {} restarts within {} used up",
                    ended.reason,
                    u.assignment.instance.max_restarts,
                    model::duration_text::format(u.assignment.instance.restart_window)
                );
                u.set(Phase::Failed, Some(reason));
            }
        }
    }

    /// Kills `p` at once (lease loss, no watchdog): SIGKILL for processes and VMs; an OCF
    /// resource's `stop`, which fences the host if it fails (its state is then unknown).
    fn kill_now(&self, p: Running, observed: &Observed) {
        match p {
            // Reported `stopping` until its stop is done: the leader must not count it
            // stopped, nor may it start here again, while the stop runs.
            Running::Ocf(_) => {
                let cut_off = *self.cut_off.lock().unwrap_or_else(|p| p.into_inner());
                self.drain_in_order(vec![(p, observed.clone(), Duration::ZERO, cut_off)]);
            }
            other => {
                other.kill();
                self.untrack(&observed.placement);
            }
        }
    }

    /// Stops copies in the background, in the order given (a group's members, last first):
    /// each stop starts once the one before it is done. Until its stop is done a copy stays
    /// reported `stopping` (keyed by placement and epoch: the same placement may come back
    /// meanwhile), and nothing starts under its placement here; a stop that fails (or is cut
    /// off) leaves it `stop_failed` and fences the host before the copy runs anywhere else
    /// (the watchdog keeps tracking it), and the rest still stop.
    fn drain_in_order(&self, copies: Vec<StoppingCopy>) {
        let draining = self.draining.clone();
        let mut queue = Vec::new();
        for (p, mut observed, timeout, cut_off) in copies {
            let key = format!("{}@{}", observed.placement, observed.epoch);
            observed.phase = Phase::Stopping;
            observed.since = Timestamp::now();
            draining
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), observed.clone());
            queue.push((p, observed.placement, key, timeout, cut_off));
        }
        let (fence, watchdog) = (self.fence.clone(), self.watchdog.clone());
        tokio::spawn(async move {
            for (p, placement, key, timeout, cut_off) in queue {
                let how = p.stop_within(timeout, cut_off).await;
                let mut d = draining.lock().unwrap_or_else(|p| p.into_inner());
                if !how.done {
                    if let Some(o) = d.get_mut(&key) {
                        o.phase = Phase::StopFailed;
                        o.reason = Some(format!("stop failed: {how}"));
                        o.since = Timestamp::now();
                        fence.request(format!("{}: stop failed: {how}", o.name));
                    }
                    continue;
                }
                info!(%placement, %how, "stopped");
                if let Some(w) = &watchdog {
                    w.untrack(&placement);
                }
                d.remove(&key);
            }
        });
    }

    /// True while a copy of `placement` (any epoch) is being stopped here.
    fn draining(&self, placement: &str) -> bool {
        let prefix = format!("{placement}@");
        self.draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|k| k.starts_with(&prefix))
    }

    /// The host's fence request (read by the lease keeper).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Why nothing may run on this host now, with the phase to report the copies in; none
    /// when instances may run. Rule S1 leans on the watchdog to kill what a hung agent runs, so
    /// nothing runs while it does not answer, nor on a host that has none unless the operator
    /// accepted that risk.
    fn refusal(&self) -> Option<(Phase, String)> {
        match &self.watchdog {
            Some(w) if !w.ready() => Some((
                Phase::Stopped,
                "the watchdog does not answer, is not armed, or is still killing what ran before; nothing runs here until it is ready"
                    .into(),
            )),
            Some(_) => None,
            None if self.run_unwatched => None,
            None => Some((
                Phase::Failed,
                "this host has no watchdog: give the agent --watchdog (the socket of a running `buoy watchdog`) or --watchdog-device, or accept the risk with --unsafe-no-watchdog".into(),
            )),
        }
    }

    fn start(&self, u: &mut Unit) {
        let a = &u.assignment;
        let mut owned: Vec<(String, String)> = vec![
            ("BUOY_INSTANCE".into(), a.instance.name.clone()),
            ("BUOY_EPOCH".into(), a.placement.epoch.to_string()),
            ("BUOY_HOST".into(), self.host.clone()),
            ("BUOY_HOST_IP".into(), self.host_ip.clone()),
        ];
        let promotable = a.instance.mode == model::instance::Mode::Promotable;
        if a.instance.driver == model::instance::DriverKind::Ocf {
            owned.extend(
                self.agent_env
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
            owned.extend(crate::drivers::ocf::clone_meta(
                &self.host,
                a.instance.mode,
                a.placement.replica,
                a.instance.copies(),
                a.instance.promoted_max,
                a.instance.notify,
            ));
        }
        let env: Vec<(&str, String)> = owned.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        match Running::start(
            &a.instance.name,
            a.instance.driver,
            &a.instance.params,
            &env,
            &self.log_path(&a.instance.name),
            promotable,
        ) {
            Ok(p) => {
                p.set_promoted(a.promotion.is_some());
                if let Some(w) = &self.watchdog {
                    w.track(&u.observed.placement, p.watchdog_target());
                }
                let checks = &u.assignment.instance.health_checks;
                // With health checks, running once they passed (the next poll).
                let up = p.is_up() && checks.is_empty();
                u.process = Some(p);
                u.health = (!checks.is_empty()).then(|| HealthWatch::start(checks, &self.host_ip));
                u.set(if up { Phase::Running } else { Phase::Starting }, None);
            }
            Err(e) => u.set(Phase::Failed, Some(e.to_string())),
        }
    }

    fn untrack(&self, placement: &str) {
        if let Some(w) = &self.watchdog {
            w.untrack(placement);
        }
    }
}

fn stop_timeout(a: &Assignment) -> Duration {
    ProcessSpec::from_params(&a.instance.params)
        .map(|s| s.stop_timeout)
        .unwrap_or(Duration::from_secs(10))
}

impl Reporter for Supervisor {
    fn report(&self) -> Report {
        Supervisor::report(self)
    }

    fn fence_reason(&self) -> Option<String> {
        self.fence.reason()
    }

    fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }
}

#[cfg(test)]
mod tests {
    use model::instance::{Instance, InstanceSpec};
    use model::object::ObjectMeta;
    use model::placement::Placement;

    use super::*;

    fn assignment(epoch: u64) -> Assignment {
        let meta = |id: &str| ObjectMeta {
            id: id.into(),
            ..Default::default()
        };
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "driver": "process",
            "params": {"command": "/bin/sleep", "args": ["60"]}
        }))
        .unwrap();
        Assignment {
            placement: Placement {
                meta: meta("p1"),
                instance: "i1".into(),
                replica: 0,
                host: "h1".into(),
                epoch: Epoch(epoch),
                handoffs: Vec::new(),
                home: None,
                failures: Vec::new(),
                attempt: 0,
            },
            instance: Instance::create(meta("i1"), &spec, "s1".into()).unwrap(),
            promotion: None,
            notify: Vec::new(),
            backends: Vec::new(),
        }
    }

    fn assigned(epoch: u64) -> Assigned {
        Assigned {
            index: epoch * 10,
            list: vec![assignment(epoch)],
        }
    }

    #[tokio::test]
    async fn a_stale_epoch_is_refused_and_lease_loss_kills_at_once() {
        let dir = std::env::temp_dir().join(format!("buoy-reconciler-{}", std::process::id()));
        let s = Supervisor::new("h1".into(), "127.0.0.1".into(), dir.clone(), None, true);
        let now = Instant::from_nanos(1);
        s.reconcile(now, true, Some(&assigned(2)));
        let running = s.observed();
        assert_eq!(running.len(), 1);
        assert_eq!(
            (running[0].phase, running[0].epoch),
            (Phase::Running, Epoch(2))
        );
        let pid = running[0].pid.expect("a pid");

        // An older epoch for the same placement: the epoch-2 copy stops, nothing starts. It
        // stays reported `stopping` until it is gone (the leader waits for that).
        s.reconcile(now, true, Some(&assigned(1)));
        let r = s.report();
        assert_eq!(r.applied, Some(10));
        assert_eq!(r.instances.len(), 1, "{r:?}");
        assert_eq!(
            (r.instances[0].phase, r.instances[0].epoch),
            (Phase::Stopping, Epoch(2))
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !s.observed().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{:?}", s.observed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The current epoch again runs; then the lease ends and it dies at once.
        s.reconcile(now, true, Some(&assigned(3)));
        let o = s.observed();
        assert_eq!((o[0].phase, o[0].epoch), (Phase::Running, Epoch(3)));
        let pid3 = o[0].pid.expect("a pid");
        assert_ne!(pid3, pid);
        s.reconcile(now, false, Some(&assigned(3)));
        let o = s.observed();
        assert_eq!(o[0].phase, Phase::Stopped);
        assert_eq!(o[0].reason.as_deref(), Some("lease lost: killed"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let alive = std::fs::read_to_string(format!("/proc/{pid3}/stat")).is_ok_and(|st| {
            st.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        });
        assert!(!alive, "killed on lease loss");
        // Held again, but without fresh assignments: nothing starts.
        s.reconcile(now, true, None);
        assert_eq!(s.observed()[0].phase, Phase::Stopped);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Found by `buoy sim cluster`: a copy between a crash and its restart when the lease ended
    /// stayed `restarting` with no restart time, and never ran again on that host.
    #[tokio::test]
    async fn a_copy_waiting_for_its_restart_starts_again_after_a_lease_loss() {
        let dir = std::env::temp_dir().join(format!("buoy-reconciler-r-{}", std::process::id()));
        let s = Supervisor::new("h1".into(), "127.0.0.1".into(), dir.clone(), None, true);
        let mut a = assigned(2);
        let params = &mut a.list[0].instance.params;
        params.insert("command".into(), serde_json::json!("/bin/false"));
        params.remove("args");
        let now = Instant::from_nanos(1);
        s.reconcile(now, true, Some(&a));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while s.observed()[0].phase != Phase::Restarting {
            assert!(std::time::Instant::now() < deadline, "{:?}", s.observed());
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.reconcile(now, true, Some(&a));
        }
        s.reconcile(now, false, Some(&a));
        assert_eq!(s.observed()[0].phase, Phase::Stopped, "{:?}", s.observed());
        // The next lease, long after any backoff: it starts again.
        let later = Instant::from_nanos(3_600_000_000_000);
        s.reconcile(later, true, Some(&a));
        let o = s.observed();
        assert!(
            matches!(
                o[0].phase,
                Phase::Starting | Phase::Running | Phase::Restarting
            ),
            "{o:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Reconciles with the lease held until the resource's state file exists.
    async fn started(s: &Supervisor, a: &Assigned, state: &std::path::Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !state.exists() {
            assert!(std::time::Instant::now() < deadline, "{:?}", s.observed());
            s.reconcile(Instant::from_nanos(1), true, Some(a));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Found by `buoy sim cluster`: an OCF resource killed on lease loss was reported
    /// `stopped` while its `stop` still ran, so the leader could count it stopped (and start
    /// the copy elsewhere) and this host could start it again meanwhile.
    #[tokio::test]
    async fn an_ocf_resource_stopped_on_lease_loss_may_run_until_its_stop_is_done() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("buoy-reconciler-ocf-{}", std::process::id()));
        let agents = dir.join("ocf/resource.d/test");
        std::fs::create_dir_all(&agents).unwrap();
        let state = dir.join("state");
        // A resource whose stop takes a second.
        let script = r#"#!/bin/sh
case "$1" in
  meta-data) echo '<?xml version="1.0"?><resource-agent name="Slow"/>'; exit 0 ;;
  validate-all) exit 0 ;;
  start) touch "$OCF_RESKEY_state"; exit 0 ;;
  monitor) [ -f "$OCF_RESKEY_state" ] && exit 0; exit 7 ;;
  stop) sleep 1; rm -f "$OCF_RESKEY_state"; exit 0 ;;
  *) exit 3 ;;
esac
"#;
        std::fs::write(agents.join("Slow"), script).unwrap();
        std::fs::set_permissions(agents.join("Slow"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let mut a = assigned(2);
        let i = &mut a.list[0].instance;
        i.driver = model::instance::DriverKind::Ocf;
        i.params = serde_json::json!({
            "agent": "test:Slow",
            "ocf_root": dir.join("ocf").display().to_string(),
            "monitor_interval": "100ms",
            "params": {"state": state.display().to_string()},
        })
        .as_object()
        .unwrap()
        .clone();
        let s = Supervisor::new("h1".into(), "127.0.0.1".into(), dir.clone(), None, true);
        let now = Instant::from_nanos(1);
        started(&s, &a, &state).await;
        // The lease ends: the stop begins, and takes a second.
        s.reconcile(now, false, Some(&a));
        let r = s.report();
        assert!(
            r.may_run("p1", Epoch(2)),
            "reported stopped while its stop runs: {r:?}"
        );
        // A new lease at once: nothing starts while the old copy is being stopped.
        s.reconcile(now, true, Some(&a));
        assert!(s.report().may_run("p1", Epoch(2)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s
            .report()
            .instances
            .iter()
            .any(|o| o.phase == Phase::Stopping)
        {
            assert!(std::time::Instant::now() < deadline, "{:?}", s.report());
            assert!(
                s.observed()
                    .iter()
                    .all(|o| matches!(o.phase, Phase::Stopped | Phase::Stopping)),
                "started again during the stop: {:?}",
                s.observed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.reconcile(now, true, Some(&a));
        }
        assert!(!state.exists(), "the stop ran to its end");
        // Once it is done, it starts again.
        started(&s, &a, &state).await;
        s.reconcile(now, false, Some(&a));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Found by `buoy sim cluster`: a new agent whose watchdog was still stopping the old
    /// agent's copies claimed its assignments applied; its report lacked those copies, so the
    /// leader confirmed a handoff away from the host while one still ran.
    #[tokio::test]
    async fn a_host_whose_watchdog_is_not_ready_does_not_claim_its_assignments_applied() {
        let dir = std::env::temp_dir().join(format!("buoy-reconciler-a-{}", std::process::id()));
        let now = Instant::from_nanos(1);
        // A watchdog that never answers.
        let silent = WatchdogClient::start(dir.join("no-such-socket"));
        let waiting = Supervisor::new(
            "h1".into(),
            "127.0.0.1".into(),
            dir.clone(),
            Some(silent),
            false,
        );
        waiting.reconcile(now, true, Some(&assigned(2)));
        assert_eq!(waiting.report().applied, None, "{:?}", waiting.report());
        // With no watchdog (it refuses to run anything, and never ran anything): it vouches.
        let bare = Supervisor::new("h2".into(), "127.0.0.1".into(), dir.clone(), None, false);
        bare.reconcile(now, true, Some(&assigned(2)));
        assert_eq!(bare.report().applied, Some(20));
        let _ = std::fs::remove_dir_all(dir);
    }
}
