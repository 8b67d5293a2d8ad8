//! `buoy sim cluster`: the whole system on the virtual clock. Every server and host runs the
//! real SWIM core, and the leader reads failures from its own. Hosts run the real lease
//! (`engine::host_lease`) and assignment rules (`engine::assignment_floor`) with models of the
//! supervisor and the watchdog; the control plane runs the real state machine, lease table,
//! grant and handoff rules and planner, with leader changes; faults come from the seed: host
//! crashes, agent kills and hangs, suspends, one- and two-way partitions, gossip-only
//! partitions, server crashes and isolations, operator moves and unplacements, lease-TTL
//! changes, stops that hang or fail, and processes that crash.
//!
//! It checks as it goes:
//! - S1 exactly, from every process's start and end ([`crate::run_log`]);
//! - S3: no host is marked failed while it holds its lease;
//! - L1: every period with no copy of an instance running, against a bound; and at the end
//!   (after 90 s without faults) no instance has been running nowhere for over 30 s.
//!
//! Files: `clock` (drifting boot clocks), `host` (agent, supervisor, watchdog, processes),
//! `control` (state machine, leader, grants, recovery), `gossip` (the real SWIM cores),
//! `faults` (the fault plan), `setup` (the starting cluster), `world` (the event loop).

mod clock;
mod control;
pub mod faults;
mod gossip;
mod host;
mod setup;
mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use swim::Instant;

pub use control::LeaderBroken;
pub use faults::{Fault, FaultMix};
pub use host::Broken;

use crate::stats::Percentiles;

/// One run's settings.
#[derive(Clone, Debug)]
pub struct ClusterScenario {
    pub hosts: usize,
    pub instances: usize,
    pub servers: usize,
    pub duration: Duration,
    pub seed: u64,
    /// The lease TTL hosts and servers start with (renewals every sixth of it).
    pub ttl: Duration,
    /// Largest clock rate error, in parts per million, either way.
    pub max_drift_ppm: u64,
    pub faults: FaultMix,
    /// An instance with no copy running for longer than this breaks L1.
    pub recovery_bound: Duration,
    /// Negative controls: S1 broken on purpose.
    pub broken_host: Broken,
    pub broken_leader: LeaderBroken,
    /// Hosts have the systemd-sleep hook (`buoy sleep-hook`): instances are frozen before a
    /// suspend and thawed by the agent only while it holds its lease. Without it, a resumed
    /// host's instances run until its agent or watchdog wakes (reported apart, as
    /// `suspend_overlaps`).
    pub sleep_hook: bool,
    /// An instance name whose outages are printed to stderr as the run goes.
    pub trace: Option<String>,
}

impl ClusterScenario {
    pub fn new(hosts: usize, instances: usize, duration: Duration, seed: u64) -> Self {
        ClusterScenario {
            hosts,
            instances,
            servers: 3,
            duration,
            seed,
            ttl: Duration::from_secs(3),
            max_drift_ppm: 10_000,
            faults: FaultMix::default(),
            recovery_bound: Duration::from_secs(60),
            broken_host: Broken::default(),
            broken_leader: LeaderBroken::default(),
            sleep_hook: true,
            trace: None,
        }
    }

    /// Refuses settings that cannot make a run.
    pub fn validate(&self) -> Result<(), String> {
        if self.hosts < 2 {
            return Err(format!("--hosts {}: at least 2 hosts", self.hosts));
        }
        if self.instances == 0 {
            return Err("--instances 0: at least 1 instance".into());
        }
        if ![1, 3, 5].contains(&self.servers) {
            return Err(format!("--servers {}: 1, 3 or 5", self.servers));
        }
        if self.duration < Duration::from_secs(30) {
            return Err(format!(
                "--duration {}: at least 30 simulated seconds",
                self.duration.as_secs()
            ));
        }
        if self.max_drift_ppm >= 50_000 {
            return Err(format!(
                "--max-drift-ppm {}: below 50000 (5%); the drift margin is a tenth of the TTL",
                self.max_drift_ppm
            ));
        }
        Ok(())
    }

    /// Runs it.
    pub fn run(&self) -> ClusterReport {
        let wall = std::time::Instant::now();
        let mut w = world::World::new(self);
        w.trace = self.trace.as_ref().and_then(|name| {
            w.state()
                .instances()
                .find(|i| &i.name == name)
                .map(|i| i.meta.id.clone())
        });
        w.run(Instant::from_nanos(self.duration.as_nanos() as u64));
        let (s1, suspend) = classify(&w);
        let mut periods: Vec<u64> = w.down_periods.iter().map(|(ms, _)| *ms).collect();
        periods.sort_unstable();
        let bound = self.recovery_bound.as_millis() as u64;
        let names: BTreeMap<&str, &str> = w
            .state()
            .instances()
            .map(|i| (i.meta.id.as_str(), i.name.as_str()))
            .collect();
        let over_bound: Vec<String> = w
            .down_periods
            .iter()
            .filter(|(ms, _)| *ms > bound)
            .map(|(ms, id)| {
                format!(
                    "{} ran nowhere for {ms} ms",
                    names.get(id.as_str()).unwrap_or(&id.as_str())
                )
            })
            .collect();
        ClusterReport {
            seed: self.seed,
            hosts: self.hosts,
            instances: self.instances,
            servers: self.servers,
            duration_s: self.duration.as_secs(),
            faults: w.faults.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            starts: w.log.starts(),
            moves: w.control.moves,
            hosts_failed: w.control.failed_hosts,
            leader_changes: w.leader_changes,
            events: w.events,
            gossip_events: w.gossip.processed(),
            s1,
            suspend_overlaps: suspend.len() as u64,
            suspend_overlap_max_ms: suspend.iter().copied().max().unwrap_or(0),
            s3: w.s3.clone(),
            down: Percentiles::of(
                &periods
                    .iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect::<Vec<_>>(),
            ),
            down_periods: periods.len() as u64,
            over_bound,
            not_running_at_end: w.stuck_at_end(Duration::from_secs(30)),
            wall_ms: wall.elapsed().as_millis() as u64,
        }
    }
}

/// Runs the scenarios `scenario(seed)` for every seed of `seeds` on every core, calling `each`
/// as each run ends; the reports come back in seed order.
pub fn run_many(
    seeds: std::ops::Range<u64>,
    scenario: impl Fn(u64) -> ClusterScenario + Sync,
    each: impl Fn(&ClusterReport) + Sync,
) -> Vec<ClusterReport> {
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let out = std::sync::Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    let r = scenario(seed).run();
                    each(&r);
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|r| r.seed);
    out
}

/// Splits the run log's violations into S1 violations and the overlaps a suspended host
/// causes when it resumes (its processes run until the agent or the watchdog, both asleep on
/// the monotonic clock, notice the lease is over): those are reported apart, with their
/// length, as the known limit of a software watchdog.
fn classify(w: &world::World) -> (Vec<String>, Vec<u64>) {
    let mut resumed: BTreeMap<usize, (u64, &crate::run_log::Copy)> = BTreeMap::new();
    for h in &w.hosts {
        for (copy, at, _) in &h.resumed {
            for (i, v) in w.log.violations().iter().enumerate() {
                // Two copies at once because a resumed one ran on: found when it resumed,
                // or when another started while it still ran.
                if v.at == *at && v.started == *copy || v.since == *at && v.running == *copy {
                    let end = w.log.ended_after(copy, v.at).unwrap_or(w.now);
                    let other = if v.started == *copy {
                        &v.running
                    } else {
                        &v.started
                    };
                    let other_end = w.log.ended_after(other, v.at).unwrap_or(w.now);
                    let ms = end.min(other_end).saturating_since(v.at).as_millis() as u64;
                    resumed.insert(i, (ms, copy));
                }
            }
        }
    }
    let ms = |t: Instant| t.as_nanos() / 1_000_000;
    let s1 = w
        .log
        .violations()
        .iter()
        .enumerate()
        .filter(|(i, _)| !resumed.contains_key(i))
        .map(|(_, v)| {
            format!(
                "instance {}: host {} started epoch {} at {} ms while host {} ran epoch {} (since {} ms)",
                v.started.instance,
                v.started.host,
                v.started.epoch,
                ms(v.at),
                v.running.host,
                v.running.epoch,
                ms(v.since)
            )
        })
        .collect();
    (s1, resumed.values().map(|(ms, _)| *ms).collect())
}

/// What one run saw.
#[derive(Clone, Debug)]
pub struct ClusterReport {
    pub seed: u64,
    pub hosts: usize,
    pub instances: usize,
    pub servers: usize,
    pub duration_s: u64,
    pub faults: BTreeMap<String, u64>,
    /// Processes started in all.
    pub starts: u64,
    pub moves: u64,
    pub hosts_failed: u64,
    pub leader_changes: u64,
    pub events: u64,
    /// Deliveries and timer wake-ups of the SWIM cores.
    pub gossip_events: u64,
    /// Rule S1 broken: two copies of an instance running at once.
    pub s1: Vec<String>,
    /// Overlaps right after a resume from suspend, and the longest (ms).
    pub suspend_overlaps: u64,
    pub suspend_overlap_max_ms: u64,
    /// Rule S3 broken.
    pub s3: Vec<String>,
    /// Periods with no copy of an instance running (ms).
    pub down: Percentiles,
    pub down_periods: u64,
    /// Periods longer than the recovery bound (rule L1).
    pub over_bound: Vec<String>,
    /// Instances running nowhere for over 30 s at the end, though the last 90 s had no fault
    /// (rule L1).
    pub not_running_at_end: Vec<String>,
    pub wall_ms: u64,
}

impl ClusterReport {
    /// Every rule held.
    pub fn ok(&self) -> bool {
        self.violations().is_empty()
    }

    /// Each broken rule, one line each.
    pub fn violations(&self) -> Vec<String> {
        let mut v: Vec<String> = self.s1.iter().map(|s| format!("S1: {s}")).collect();
        v.extend(self.s3.iter().map(|s| format!("S3: {s}")));
        v.extend(self.over_bound.iter().map(|s| format!("L1: {s}")));
        v.extend(
            self.not_running_at_end
                .iter()
                .map(|s| format!("L1: {s} runs nowhere at the end of the run")),
        );
        v
    }
}
