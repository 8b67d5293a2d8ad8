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
use tracing::{info, warn};

use proto::{Assignment, Observed, Phase, Report};

use super::health::HealthWatch;
use super::restart::{AfterCrash, RestartBudget};
use crate::drivers::process::ProcessSpec;
use crate::drivers::running::{Ended, Running};
use crate::lease::keeper::{Assigned, LeaseKeeper, Reporter};
use crate::watchdog::client::WatchdogClient;

/// How often the loop looks at its processes (crash detection latency).
const TICK: Duration = Duration::from_millis(100);

/// One placement this host runs (or ran).
struct Unit {
    assignment: Assignment,
    process: Option<Running>,
    /// The instance's health checks while it runs.
    health: Option<HealthWatch>,
    budget: RestartBudget,
    restart_at: Option<Instant>,
    observed: Observed,
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
    fingerprint: Mutex<Vec<(String, Epoch, Phase)>>,
    /// Set by `shutdown`: start nothing more.
    stopping: std::sync::atomic::AtomicBool,
}

impl Supervisor {
    pub fn new(
        host: String,
        host_ip: String,
        log_dir: PathBuf,
        watchdog: Option<Arc<WatchdogClient>>,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            host,
            host_ip,
            log_dir,
            watchdog,
            units: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            fingerprint: Mutex::new(Vec::new()),
            draining: Arc::new(Mutex::new(BTreeMap::new())),
            highest_epoch: Mutex::new(BTreeMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
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
        let mut now: Vec<(String, Epoch, Phase)> = r
            .instances
            .iter()
            .map(|o| (o.placement.clone(), o.epoch, o.phase))
            .collect();
        now.push((String::new(), Epoch(r.applied.unwrap_or(0)), Phase::Stopped));
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
        if !held {
            // Self-fencing: everything dies at once, nothing starts.
            for u in units.values_mut() {
                u.health = None;
                if let Some(p) = u.process.take() {
                    p.kill();
                    self.untrack(&u.observed.placement);
                    u.set(Phase::Stopped, Some("lease lost: killed".into()));
                }
                u.restart_at = None;
            }
            return;
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
        let gone: Vec<String> = units
            .iter()
            .filter(|(id, u)| {
                desired
                    .get(id.as_str())
                    .is_none_or(|a| a.placement.epoch != u.assignment.placement.epoch)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(mut u) = units.remove(&id)
                && let Some(p) = u.process.take()
            {
                let timeout = stop_timeout(&u.assignment);
                let watchdog = self.watchdog.clone();
                let placement = id.clone();
                info!(instance = %u.observed.name, "stopping: no longer placed here");
                u.health = None;
                u.set(Phase::Stopping, Some("no longer placed here".into()));
                // Keyed by placement and epoch: the same placement may come back meanwhile.
                let key = format!("{id}@{}", u.observed.epoch);
                let draining = self.draining.clone();
                draining
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), u.observed.clone());
                tokio::spawn(async move {
                    let how = p.stop(timeout).await;
                    info!(%placement, %how, "stopped");
                    if let Some(w) = watchdog {
                        w.untrack(&placement);
                    }
                    draining
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                });
            }
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
                observed: Observed {
                    placement: id.to_string(),
                    instance: a.instance.meta.id.clone(),
                    name: a.instance.name.clone(),
                    epoch,
                    phase: Phase::Starting,
                    since: Timestamp::now(),
                    pid: None,
                    reason: None,
                    exit_code: None,
                    restarts: 0,
                },
            });
            // After a lease loss the unit is stopped with no restart time: start it again.
            if unit.process.is_none()
                && unit.observed.phase == Phase::Stopped
                && unit.restart_at.is_none()
            {
                unit.restart_at = Some(now);
            }
            if unit.process.is_none() && unit.restart_at.is_some_and(|t| t <= now) {
                unit.restart_at = None;
                highest.insert(id.to_string(), epoch);
                self.start(unit);
            }
        }
        drop(highest);
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(assigned.index);

        // Watch the running ones.
        for u in units.values_mut() {
            let Some(p) = u.process.as_mut() else {
                continue;
            };
            let exited = p.poll_end();
            let unhealthy = u.health.as_ref().and_then(HealthWatch::failed);
            let Some(ended) = exited
                .clone()
                .or_else(|| unhealthy.map(|reason| Ended { code: None, reason }))
            else {
                if u.observed.phase == Phase::Starting && p.is_up() {
                    u.set(Phase::Running, None);
                }
                continue;
            };
            u.health = None;
            if let Some(p) = u.process.take() {
                if exited.is_none() {
                    // Alive but failing its health check: it goes before it restarts.
                    p.kill();
                } else if matches!(p, Running::Ocf(_)) {
                    // OCF recovery is stop, then start: clean up before the restart.
                    tokio::spawn(p.stop(Duration::ZERO));
                }
            }
            self.untrack(&u.observed.placement);
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
    }

    fn start(&self, u: &mut Unit) {
        let a = &u.assignment;
        let env = [
            ("BUOY_INSTANCE", a.instance.name.clone()),
            ("BUOY_EPOCH", a.placement.epoch.to_string()),
            ("BUOY_HOST", self.host.clone()),
            ("BUOY_HOST_IP", self.host_ip.clone()),
        ];
        match Running::start(
            &a.instance.name,
            a.instance.driver,
            &a.instance.params,
            &env,
            &self.log_path(&a.instance.name),
        ) {
            Ok(p) => {
                if let Some(w) = &self.watchdog {
                    w.track(&u.observed.placement, p.watchdog_target());
                }
                let up = p.is_up();
                u.process = Some(p);
                let checks = &u.assignment.instance.health_checks;
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
            },
            instance: Instance::create(meta("i1"), &spec, "s1".into()).unwrap(),
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
        let s = Supervisor::new("h1".into(), "127.0.0.1".into(), dir.clone(), None);
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
}
