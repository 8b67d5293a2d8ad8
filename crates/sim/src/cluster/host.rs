//! A simulated host: its agent (the real [`HostLease`] and [`AssignmentFloor`], and a model of
//! the supervisor that mirrors `node::supervisor::reconciler`), its watchdog, and the processes
//! of the copies it runs, with start and stop durations, stops that hang or fail, and crashes.
//! Every process start and end goes to the [`RunLog`], which judges rule S1.
//!
//! Physical durations (a stop taking 200 ms) run on true time; everything the agent and the
//! watchdog decide runs on the host's own boot clock ([`Clock`]), which drifts.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::assignment_floor::{AssignmentFloor, Verdict};
use engine::host_lease::{HostLease, LeaseTiming, RenewalId};
use model::Timestamp;
use model::placement::Epoch;
use proto::{Assignment, Grant, Observed, Phase, Report};
use swim::{Instant, Rng};

use super::clock::Clock;
use crate::run_log::{Copy, RunLog};

/// How an instance's processes stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// SIGTERM, then `cgroup.kill` after the stop timeout: the stop always ends it.
    Process,
    /// An OCF agent's `stop`: it may fail or hang until `timeout`, and the host is fenced.
    Ocf { timeout: Duration },
}

/// A renewal the agent sends: its id, when it was sent (host clock), and its content.
#[derive(Clone, Debug)]
pub struct Renewal {
    pub id: RenewalId,
    pub known: Option<u64>,
    pub report: Report,
}

/// What one step of a host produced for the world.
#[derive(Debug, Default)]
pub struct HostOut {
    pub renewals: Vec<Renewal>,
    /// The agent fenced itself and left gossip.
    pub left_gossip: bool,
}

/// Knobs of the negative controls: faults that break rule S1 on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Broken {
    /// The agent keeps its instances running after its lease ends, and its watchdog is disarmed.
    pub keep_without_lease: bool,
}

/// A process of one copy.
#[derive(Debug)]
struct Proc {
    copy: Copy,
    /// When it ends (a stop or kill under way).
    dies_at: Option<Instant>,
    /// When it would crash by itself.
    crash_at: Option<Instant>,
    /// Frozen by a suspend (its cgroup, by the sleep hook): it does not run until thawed.
    frozen: bool,
}

/// The supervisor's record of one placement (as `reconciler::Unit`).
#[derive(Debug)]
struct Unit {
    instance: String,
    name: String,
    epoch: Epoch,
    phase: Phase,
    has_proc: bool,
    ready_at: Option<Instant>,
    restart_at: Option<Instant>,
    crashes: u32,
    /// An OCF resource that crashed is stopped before anything else: done at.
    cleanup_at: Option<Instant>,
}

/// A copy being stopped because it no longer runs here.
#[derive(Debug)]
struct Drain {
    instance: String,
    name: String,
    phase: Phase,
    done_at: Instant,
    ok: bool,
}

/// The agent's state; lost when it dies.
#[derive(Debug)]
struct Agent {
    lease: HostLease,
    held: bool,
    floor: AssignmentFloor,
    assigned: Option<(u64, std::sync::Arc<Vec<Assignment>>)>,
    units: BTreeMap<String, Unit>,
    draining: BTreeMap<(String, Epoch), Drain>,
    highest: BTreeMap<String, Epoch>,
    applied: Option<u64>,
    fence_reason: Option<String>,
    fenced: bool,
    /// Not before this (true time): frozen, or just resumed and still asleep.
    asleep_until: Option<Instant>,
}

/// Restarts before a crashing copy is reported failed (and moved).
const MAX_RESTARTS: u32 = 2;
const RESTART_DELAY: Duration = Duration::from_millis(200);
/// The SIGTERM-to-SIGKILL timeout of process instances.
const PROCESS_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the watchdog may sleep at most (`node::clock::RECHECK`).
const WATCHDOG_RECHECK: Duration = Duration::from_millis(100);

/// One simulated host.
pub struct Host {
    pub name: String,
    pub clock: Clock,
    timing: LeaseTiming,
    rng: Rng,
    broken: Broken,
    /// The systemd-sleep hook is installed: instances are frozen before a suspend and thawed
    /// only by the agent, once it holds its lease after the resume (`node::sleep`).
    sleep_hook: bool,
    /// When (host clock) the hook froze the instances, until the agent thaws or kills them.
    frozen_at: Option<Instant>,
    /// Powered off until (crash).
    down_until: Option<Instant>,
    agent: Option<Agent>,
    /// A new agent starts then.
    agent_restart_at: Option<Instant>,
    /// Suspended (the whole machine) from, until.
    suspended: Option<(Instant, Instant)>,
    procs: BTreeMap<(String, Epoch), Proc>,
    /// The watchdog's deadline (host clock), and when it may next look (after a resume).
    watchdog: Option<Instant>,
    watchdog_asleep_until: Option<Instant>,
    /// The watchdog's kills under way end then (the agent starts nothing before).
    watchdog_killing: Option<Instant>,
    /// The stop grace of the last grant: an OCF stop after a lease loss (the agent's, or the
    /// watchdog's) ends by then, killed if it has not (`node::drivers::ocf`).
    stop_grace: Duration,
    /// Grants that came while the agent could not read them.
    inbox: Vec<(u64, RenewalId, Grant)>,
    /// Bumped at every agent start: answers to an older agent are dropped.
    pub agent_gen: u64,
    /// Copies that ran on after a resume, with the violations index they were checked from.
    pub resumed: Vec<(Copy, Instant, usize)>,
    /// Set when the agent fenced itself and left gossip (until it restarts).
    pub fenced: bool,
}

impl Host {
    pub fn new(
        name: String,
        clock: Clock,
        timing: LeaseTiming,
        seed: u64,
        broken: Broken,
        sleep_hook: bool,
    ) -> Self {
        let mut h = Host {
            name,
            clock,
            timing,
            rng: Rng::new(seed),
            broken,
            sleep_hook,
            frozen_at: None,
            down_until: None,
            agent: None,
            agent_restart_at: None,
            suspended: None,
            procs: BTreeMap::new(),
            watchdog: None,
            watchdog_asleep_until: None,
            watchdog_killing: None,
            stop_grace: model::lease_settings::DEFAULT_STOP_GRACE,
            inbox: Vec::new(),
            agent_gen: 0,
            resumed: Vec::new(),
            fenced: false,
        };
        h.start_agent(Instant::ZERO);
        h
    }

    fn start_agent(&mut self, t: Instant) {
        self.agent_gen += 1;
        self.fenced = false;
        self.inbox.clear();
        self.agent = Some(Agent {
            lease: HostLease::new(self.timing, self.clock.local(t)),
            held: false,
            floor: AssignmentFloor::default(),
            assigned: None,
            units: BTreeMap::new(),
            draining: BTreeMap::new(),
            highest: BTreeMap::new(),
            applied: None,
            fence_reason: None,
            fenced: false,
            asleep_until: None,
        });
    }

    /// True while the machine is powered and awake.
    pub fn awake(&self) -> bool {
        self.down_until.is_none() && self.suspended.is_none()
    }

    /// The generation of the agent that runs (frozen or not), if one does.
    pub fn agent_running(&self) -> Option<u64> {
        (self.down_until.is_none() && self.agent.is_some()).then_some(self.agent_gen)
    }

    /// True when the host holds its lease by its own clock.
    pub fn holds_lease(&self, t: Instant) -> bool {
        self.agent
            .as_ref()
            .is_some_and(|a| a.lease.is_held(self.clock.local(t)))
    }

    // ---- faults ------------------------------------------------------------------------

    /// Power loss: everything dies now; it boots again at `until`.
    pub fn crash(&mut self, t: Instant, until: Instant, log: &mut RunLog) {
        for (_, p) in std::mem::take(&mut self.procs) {
            if !p.frozen {
                log.end(t, &p.copy);
            }
        }
        self.agent = None;
        self.watchdog = None;
        self.watchdog_killing = None;
        self.suspended = None;
        self.frozen_at = None;
        self.down_until = Some(until);
        self.agent_restart_at = None;
    }

    /// Only the agent dies; a new one starts at `until`.
    pub fn kill_agent(&mut self, until: Instant) {
        if self.down_until.is_some() {
            return;
        }
        self.agent = None;
        self.agent_restart_at = Some(until);
    }

    /// The agent is frozen until `until` (SIGSTOP, then SIGCONT).
    pub fn hang_agent(&mut self, until: Instant) {
        if let Some(a) = self.agent.as_mut() {
            a.asleep_until = Some(a.asleep_until.map_or(until, |u| u.max(until)));
        }
    }

    /// The machine sleeps from `t` until `until`: its processes stop running meanwhile (with
    /// the sleep hook, their cgroups are frozen first and stay frozen after the resume).
    pub fn suspend(&mut self, t: Instant, until: Instant, log: &mut RunLog) {
        if !self.awake() {
            return;
        }
        for p in self.procs.values_mut() {
            if !p.frozen {
                log.end(t, &p.copy);
            }
            p.frozen = true;
        }
        if self.sleep_hook {
            let at = self.clock.local(t);
            self.frozen_at = Some(self.frozen_at.map_or(at, |f| f.min(at)));
        }
        self.suspended = Some((t, until));
    }

    /// Once resumed, the agent thaws its frozen instances under a lease held without a break
    /// since before the freeze, and kills them otherwise (as `node::sleep::thaw_if_held`).
    fn thaw(&mut self, t: Instant, log: &mut RunLog) {
        let Some(frozen_at) = self.frozen_at else {
            return;
        };
        let now = self.clock.local(t);
        let Some(a) = self.agent.as_ref() else {
            return;
        };
        let keep = self.broken.keep_without_lease
            || a.lease.held_since(now).is_some_and(|s| s <= frozen_at);
        self.frozen_at = None;
        if keep {
            for p in self.procs.values_mut().filter(|p| p.frozen) {
                p.frozen = false;
                log.started(t, p.copy.clone());
            }
        } else {
            self.procs.retain(|_, p| !p.frozen);
        }
    }

    fn resume(&mut self, t: Instant, log: &mut RunLog) {
        let Some((from, _)) = self.suspended.take() else {
            return;
        };
        let slept = t.saturating_since(from);
        let shift = |x: &mut Option<Instant>| {
            if let Some(v) = x.as_mut() {
                *v += slept;
            }
        };
        for p in self.procs.values_mut() {
            shift(&mut p.dies_at);
            shift(&mut p.crash_at);
            if self.sleep_hook {
                continue; // frozen until the agent thaws it
            }
            // Its process runs again: any copy elsewhere is now a second one.
            p.frozen = false;
            let before = log.violations().len();
            log.started(t, p.copy.clone());
            self.resumed.push((p.copy.clone(), t, before));
        }
        if let Some(a) = self.agent.as_mut() {
            for u in a.units.values_mut() {
                shift(&mut u.ready_at);
                shift(&mut u.restart_at);
                shift(&mut u.cleanup_at);
            }
            for d in a.draining.values_mut() {
                d.done_at += slept;
            }
            // Timers sleep on the monotonic clock, which stood still: the agent's next
            // wake-up (at most a renewal interval) and the watchdog's (at most RECHECK)
            // come that much after the resume.
            let agent_sleep = self
                .rng
                .duration_between(Duration::ZERO, self.timing.renew_every);
            let wake = t + agent_sleep;
            a.asleep_until = Some(a.asleep_until.map_or(wake, |u| (u + slept).max(wake)));
        }
        self.agent_restart_at = self.agent_restart_at.map(|r| r + slept);
        self.watchdog_killing = self.watchdog_killing.map(|r| r + slept);
        let wd = self.rng.duration_between(Duration::ZERO, WATCHDOG_RECHECK);
        self.watchdog_asleep_until = Some(t + wd);
    }

    // ---- the step --------------------------------------------------------------------------

    /// Everything due on this host at `t`.
    pub fn step(
        &mut self,
        t: Instant,
        drivers: &BTreeMap<String, Driver>,
        log: &mut RunLog,
        out: &mut HostOut,
    ) {
        if let Some(until) = self.down_until {
            if t < until {
                return;
            }
            self.down_until = None;
            self.start_agent(t);
        }
        if let Some((_, until)) = self.suspended {
            if t < until {
                return;
            }
            self.resume(t, log);
        }
        // Processes end on their own time, whatever the agent does.
        self.reap(t, log);
        self.watchdog_step(t, drivers);
        self.reap(t, log);
        if self.agent.is_none() && self.agent_restart_at.is_some_and(|r| r <= t) {
            self.agent_restart_at = None;
            self.start_agent(t);
            // Its first sync: whatever the watchdog tracked for the old agent is an orphan.
            self.kill_all(t, drivers);
        }
        let agent_awake = self
            .agent
            .as_ref()
            .is_some_and(|a| a.asleep_until.is_none_or(|u| u <= t));
        if agent_awake {
            if let Some(a) = self.agent.as_mut() {
                a.asleep_until = None;
            }
            for (generation, id, grant) in std::mem::take(&mut self.inbox) {
                if generation == self.agent_gen {
                    self.take_grant(t, id, grant);
                }
            }
            self.agent_step(t, drivers, log, out);
        }
        self.reap(t, log);
    }

    /// Its state in one line, for `--trace`.
    pub fn describe(&self, t: Instant) -> String {
        let agent = self.agent.as_ref().map(|a| {
            format!(
                "held {} assigned {:?} units {:?} draining {:?} fence {:?} asleep {:?}",
                a.lease.is_held(self.clock.local(t)),
                a.assigned.as_ref().map(|x| x.0),
                a.units
                    .iter()
                    .map(|(k, u)| (k.as_str(), u.phase, u.epoch.0))
                    .collect::<Vec<_>>(),
                a.draining.keys().collect::<Vec<_>>(),
                a.fence_reason,
                a.asleep_until,
            )
        });
        format!(
            "down until {:?}, suspended {:?}, agent {agent:?}, processes {:?}",
            self.down_until,
            self.suspended,
            self.procs.keys().collect::<Vec<_>>()
        )
    }

    /// Ends the processes whose end is due.
    fn reap(&mut self, t: Instant, log: &mut RunLog) {
        let ended: Vec<(String, Epoch)> = self
            .procs
            .iter()
            .filter(|(_, p)| {
                p.dies_at.is_some_and(|d| d <= t) || p.crash_at.is_some_and(|c| c <= t)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(p) = self.procs.remove(&k)
                && !p.frozen
            {
                log.end(t, &p.copy);
            }
        }
    }

    /// The watchdog: once its deadline passes unmoved, it kills everything (signals at once,
    /// OCF stops side by side), then disarms.
    fn watchdog_step(&mut self, t: Instant, drivers: &BTreeMap<String, Driver>) {
        if self.watchdog_asleep_until.is_some_and(|u| u > t) {
            return;
        }
        self.watchdog_asleep_until = None;
        let Some(deadline) = self.watchdog else {
            return;
        };
        if self.clock.local(t) < deadline {
            return;
        }
        self.watchdog = None;
        self.kill_all(t, drivers);
    }

    /// Every process is signalled now; OCF resources get their `stop` (which ends them by
    /// its timeout at the latest).
    fn kill_all(&mut self, t: Instant, drivers: &BTreeMap<String, Driver>) {
        let keys: Vec<(String, Epoch)> = self.procs.keys().cloned().collect();
        for k in keys {
            let driver = self.driver_of(&k, drivers);
            let end = match driver {
                Driver::Process => t,
                Driver::Ocf { .. } => t + self.ocf_stop(driver).0.min(self.stop_grace),
            };
            // Its status says `killing` until the last stop is done.
            self.watchdog_killing = Some(self.watchdog_killing.map_or(end, |b| b.max(end)));
            if let Some(p) = self.procs.get_mut(&k) {
                p.dies_at = Some(p.dies_at.map_or(end, |d| d.min(end)));
            }
        }
    }

    /// The agent's watchdog client is not ready while kills are under way (it learns within a
    /// status ping, `node::watchdog::client`).
    fn watchdog_busy(&self, t: Instant) -> bool {
        self.watchdog_killing
            .is_some_and(|end| t < end + Duration::from_millis(300))
    }

    fn driver_of(&self, key: &(String, Epoch), drivers: &BTreeMap<String, Driver>) -> Driver {
        self.procs
            .get(key)
            .and_then(|p| drivers.get(&p.copy.instance))
            .copied()
            .unwrap_or(Driver::Process)
    }

    /// How long an OCF stop takes and whether it succeeds: mostly fine, sometimes an error
    /// (the resource ends anyway), sometimes hung until the timeout (killed then).
    fn ocf_stop(&mut self, driver: Driver) -> (Duration, bool) {
        let Driver::Ocf { timeout } = driver else {
            return (Duration::ZERO, true);
        };
        let r = self.rng.unit();
        if r < 0.9 {
            let d = self
                .rng
                .duration_between(Duration::from_millis(20), Duration::from_millis(1_500));
            (d.min(timeout), true)
        } else if r < 0.95 {
            (
                self.rng
                    .duration_between(Duration::from_millis(20), Duration::from_millis(500)),
                false,
            )
        } else {
            (timeout, false)
        }
    }

    /// How long a process stop takes: SIGTERM answered, or ignored until the SIGKILL.
    fn process_stop(&mut self) -> Duration {
        if self.rng.chance(0.05) {
            PROCESS_STOP_TIMEOUT
        } else {
            self.rng
                .duration_between(Duration::from_millis(5), Duration::from_millis(300))
        }
    }

    /// Starts stopping `key`'s process: when the stop is done and whether it succeeded.
    fn begin_stop(
        &mut self,
        t: Instant,
        key: &(String, Epoch),
        drivers: &BTreeMap<String, Driver>,
    ) -> (Instant, bool) {
        let driver = self.driver_of(key, drivers);
        let (d, ok) = match driver {
            Driver::Process => (self.process_stop(), true),
            Driver::Ocf { .. } => self.ocf_stop(driver),
        };
        if let Some(p) = self.procs.get_mut(key) {
            let end = t + d;
            p.dies_at = Some(p.dies_at.map_or(end, |x| x.min(end)));
        }
        (t + d, ok)
    }

    /// A grant came back.
    pub fn on_grant(&mut self, generation: u64, id: RenewalId, grant: Grant) {
        if generation != self.agent_gen || self.down_until.is_some() {
            return;
        }
        self.inbox.push((generation, id, grant));
    }

    fn take_grant(&mut self, t: Instant, id: RenewalId, grant: Grant) {
        let now = self.clock.local(t);
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        a.lease.on_granted(id, Duration::from_millis(grant.ttl_ms));
        if let Some(g) = grant.stop_grace_ms {
            self.stop_grace = Duration::from_millis(g);
        }
        // Assignments only from a grant that left the lease held, and never from a state older
        // than one this host acted on (as `node::lease::keeper`).
        if a.lease.is_held(now)
            && let Some(list) = grant.assignments
            && a.floor.offer(grant.index) == Verdict::Take
        {
            a.assigned = Some((grant.index, std::sync::Arc::new(list)));
        }
    }

    fn report(a: &Agent) -> Report {
        let since = Timestamp::from_unix_millis(0);
        // Reports at a fixed time: the simulation stays deterministic.
        let observed = |placement: &str, instance: &str, name: &str, epoch, phase| Observed {
            since,
            ..Observed::new(placement, instance, name, epoch, phase)
        };
        let mut instances: Vec<Observed> = a
            .units
            .iter()
            .map(|(p, u)| observed(p, &u.instance, &u.name, u.epoch, u.phase))
            .collect();
        instances.extend(
            a.draining
                .iter()
                .map(|((p, e), d)| observed(p, &d.instance, &d.name, *e, d.phase)),
        );
        Report {
            applied: a.applied,
            instances,
        }
    }

    fn agent_step(
        &mut self,
        t: Instant,
        drivers: &BTreeMap<String, Driver>,
        log: &mut RunLog,
        out: &mut HostOut,
    ) {
        let now = self.clock.local(t);
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        let held = a.lease.is_held(now);
        if a.held && !held {
            a.floor.lease_lost();
            a.assigned = None;
        }
        a.held = held;
        self.thaw(t, log);
        self.reconcile(t, held, drivers, log);
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        if a.fence_reason.is_some() {
            if !a.fenced {
                a.lease.expedite();
                if let Some(id) = a.lease.poll_renewal(now) {
                    out.renewals.push(Renewal {
                        id,
                        known: a.floor.known(),
                        report: Self::report(a),
                    });
                    a.fenced = true;
                    self.fenced = true;
                    out.left_gossip = true;
                }
            }
        } else if let Some(id) = a.lease.poll_renewal(now) {
            out.renewals.push(Renewal {
                id,
                known: a.floor.known(),
                report: Self::report(a),
            });
        }
        // The watchdog follows the lease (`node::watchdog::feed`).
        let Some(a) = self.agent.as_ref() else {
            return;
        };
        if self.broken.keep_without_lease {
            self.watchdog = None;
        } else if let Some(until) = a.lease.until().filter(|_| a.held) {
            self.watchdog = Some(until);
        }
    }

    /// The supervisor, as `reconciler::reconcile`.
    fn reconcile(
        &mut self,
        t: Instant,
        held: bool,
        drivers: &BTreeMap<String, Driver>,
        log: &mut RunLog,
    ) {
        let host = self.name.clone();
        // Stops under way end on their own (tasks in the real supervisor), lease or not.
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        let mut fence = None;
        let mut done = Vec::new();
        for (k, d) in a.draining.iter_mut() {
            if d.done_at > t || d.phase == Phase::StopFailed {
                continue;
            }
            if d.ok {
                done.push(k.clone());
            } else {
                d.phase = Phase::StopFailed;
                fence = Some(format!("{}: stop failed", d.name));
            }
        }
        for k in done {
            a.draining.remove(&k);
        }
        if let Some(f) = fence {
            a.fence_reason.get_or_insert(f);
        }
        // Units whose process is gone on its own: a crash.
        let Some(a) = self.agent.as_ref() else {
            return;
        };
        let crashed: Vec<String> = a
            .units
            .iter()
            .filter(|(p, u)| u.has_proc && !self.procs.contains_key(&((*p).clone(), u.epoch)))
            .map(|(p, _)| p.clone())
            .collect();
        for p in crashed {
            let Some(a) = self.agent.as_mut() else {
                return;
            };
            let Some(u) = a.units.get_mut(&p) else {
                continue;
            };
            u.has_proc = false;
            u.ready_at = None;
            if matches!(drivers.get(&u.instance), Some(Driver::Ocf { .. })) {
                // OCF recovery is stop, then start: the resource counts as running until
                // its cleanup stop is done.
                let d = self
                    .rng
                    .duration_between(Duration::from_millis(20), Duration::from_millis(500));
                u.phase = Phase::Stopping;
                u.cleanup_at = Some(t + d);
            } else {
                after_crash(u, t);
            }
        }
        if !held && !self.broken.keep_without_lease {
            // Self-fencing: everything dies at once, nothing starts.
            let keys: Vec<(String, Epoch)> = self.procs.keys().cloned().collect();
            for k in keys {
                match self.driver_of(&k, drivers) {
                    Driver::Process => {
                        if let Some(p) = self.procs.remove(&k)
                            && !p.frozen
                        {
                            log.end(t, &p.copy);
                        }
                    }
                    Driver::Ocf { .. } => {
                        // Reported `stopping` until the stop is done (`reconciler::drain`).
                        let Some(a) = self.agent.as_ref() else {
                            return;
                        };
                        let Some(u) = a.units.get(&k.0).filter(|u| u.epoch == k.1 && u.has_proc)
                        else {
                            continue; // a copy the agent no longer knows: the watchdog's
                        };
                        let (instance, name) = (u.instance.clone(), u.name.clone());
                        let (done_at, ok) = self.begin_stop(t, &k, drivers);
                        // Past the grace its cgroup is killed: ended, but not a clean stop.
                        let (done_at, ok) = if done_at > t + self.stop_grace {
                            (t + self.stop_grace, false)
                        } else {
                            (done_at, ok)
                        };
                        if let Some(p) = self.procs.get_mut(&k) {
                            p.dies_at = Some(p.dies_at.map_or(done_at, |d| d.min(done_at)));
                        }
                        if let Some(a) = self.agent.as_mut() {
                            a.draining.insert(
                                k,
                                Drain {
                                    instance,
                                    name,
                                    phase: Phase::Stopping,
                                    done_at,
                                    ok,
                                },
                            );
                        }
                    }
                }
            }
            if let Some(a) = self.agent.as_mut() {
                for u in a.units.values_mut() {
                    // A copy waiting for its restart is off too: it starts again with the next
                    // lease, like a killed one.
                    let waiting = matches!(u.phase, Phase::Restarting | Phase::Starting);
                    if u.has_proc || waiting && u.cleanup_at.is_none() {
                        u.has_proc = false;
                        u.phase = Phase::Stopped;
                    }
                    u.restart_at = None;
                    u.ready_at = None;
                }
            }
            return;
        }
        if !held {
            return;
        }
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        let Some((index, list)) = a.assigned.clone() else {
            return;
        };
        let desired: BTreeMap<&str, &Assignment> = list
            .iter()
            .filter(|x| x.instance.desired_state == model::instance::DesiredState::Started)
            .map(|x| (x.placement.meta.id.as_str(), x))
            .collect();
        // Stop what is no longer placed here (or moved to a new epoch).
        let gone: Vec<String> = a
            .units
            .iter()
            .filter(|(_, u)| u.cleanup_at.is_none())
            .filter(|(id, u)| {
                desired
                    .get(id.as_str())
                    .is_none_or(|x| x.placement.epoch != u.epoch)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let Some(a) = self.agent.as_mut() else {
                return;
            };
            let Some(u) = a.units.remove(&id) else {
                continue;
            };
            if !u.has_proc {
                continue;
            }
            let key = (id.clone(), u.epoch);
            let (done_at, ok) = self.begin_stop(t, &key, drivers);
            if let Some(a) = self.agent.as_mut() {
                a.draining.insert(
                    key,
                    Drain {
                        instance: u.instance,
                        name: u.name,
                        phase: Phase::Stopping,
                        done_at,
                        ok,
                    },
                );
            }
        }
        // Start what is placed here and not running.
        let watchdog_busy = self.watchdog_busy(t);
        for (&id, x) in &desired {
            let epoch = x.placement.epoch;
            let Some(a) = self.agent.as_mut() else {
                return;
            };
            if a.highest.get(id).is_some_and(|h| epoch < *h) {
                continue;
            }
            let unit = a.units.entry(id.to_string()).or_insert_with(|| Unit {
                instance: x.instance.meta.id.clone(),
                name: x.instance.name.clone(),
                epoch,
                phase: Phase::Starting,
                has_proc: false,
                ready_at: None,
                restart_at: Some(t),
                crashes: 0,
                cleanup_at: None,
            });
            if !unit.has_proc && unit.phase == Phase::Stopped && unit.restart_at.is_none() {
                unit.restart_at = Some(t);
            }
            let draining = a.draining.keys().any(|(p, _)| p == id);
            if !unit.has_proc && unit.restart_at.is_some_and(|r| r <= t) && !draining {
                if watchdog_busy {
                    // Not ready: it starts once the watchdog is done killing.
                    continue;
                }
                unit.restart_at = None;
                unit.has_proc = true;
                unit.phase = Phase::Starting;
                let ready = self
                    .rng
                    .duration_between(Duration::from_millis(50), Duration::from_millis(2_000));
                unit.ready_at = Some(t + ready);
                a.highest.insert(id.to_string(), epoch);
                let copy = Copy {
                    instance: x.instance.meta.id.clone(),
                    host: host.clone(),
                    epoch: epoch.0,
                };
                log.started(t, copy.clone());
                let crash_at = self.rng.chance(0.02).then(|| {
                    t + self
                        .rng
                        .duration_between(Duration::from_secs(1), Duration::from_secs(120))
                });
                self.procs.insert(
                    (id.to_string(), epoch),
                    Proc {
                        copy,
                        dies_at: None,
                        crash_at,
                        frozen: false,
                    },
                );
            }
        }
        let Some(a) = self.agent.as_mut() else {
            return;
        };
        // While the watchdog is still killing what ran before (orphans of an earlier agent),
        // this host cannot vouch that a copy it no longer lists is stopped.
        if !watchdog_busy {
            a.applied = Some(index);
        }
        // Watch the running ones.
        for u in a.units.values_mut() {
            if u.cleanup_at.is_some_and(|c| c <= t) {
                u.cleanup_at = None;
                after_crash(u, t);
                continue;
            }
            if u.has_proc && u.phase == Phase::Starting && u.ready_at.is_some_and(|r| r <= t) {
                u.phase = Phase::Running;
            }
        }
    }

    /// When this host next has something to do after `now` (true time). Something due but
    /// blocked (a stop finishing while the lease is lost) waits for the next wake-up.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x.filter(|x| *x > now) {
                next = Some(next.map_or(x, |n| n.min(x)));
            }
        };
        if let Some(u) = self.down_until {
            return Some(u.max(now));
        }
        if let Some((_, u)) = self.suspended {
            return Some(u.max(now));
        }
        for p in self.procs.values() {
            at(p.dies_at);
            at(p.crash_at);
        }
        at(self.watchdog.map(|d| {
            let due = self.clock.true_time(d);
            self.watchdog_asleep_until.map_or(due, |s| s.max(due))
        }));
        at(self.agent_restart_at);
        if let Some(a) = &self.agent {
            if let Some(s) = a.asleep_until {
                at(Some(s));
                return next;
            }
            if !self.inbox.is_empty() {
                return Some(now);
            }
            if !a.fenced {
                at(Some(self.clock.true_time(a.lease.next_renewal())));
            }
            if let Some(u) = a.lease.until() {
                at(Some(self.clock.true_time(u)));
            }
            for u in a.units.values() {
                at(u.ready_at.filter(|_| u.phase == Phase::Starting));
                at(u.restart_at.filter(|_| a.assigned.is_some()));
                at(self
                    .watchdog_killing
                    .map(|e| e + Duration::from_millis(300)));
                at(u.cleanup_at);
            }
            for d in a.draining.values() {
                if d.phase != Phase::StopFailed {
                    at(Some(d.done_at));
                }
            }
        }
        next
    }
}

/// After a crash: a restart after a short delay, or failed once the budget is spent.
fn after_crash(u: &mut Unit, t: Instant) {
    u.crashes += 1;
    if u.crashes > MAX_RESTARTS {
        u.phase = Phase::Failed;
        u.restart_at = None;
    } else {
        u.phase = Phase::Restarting;
        u.restart_at = Some(t + RESTART_DELAY);
    }
}
