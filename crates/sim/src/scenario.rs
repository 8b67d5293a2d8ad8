//! The membership scenario behind `buoy sim membership`: a formed cluster of N members under
//! loss, with K crashes staggered over the run, a fraction of members stalling at random times,
//! and a fresh metadata update every second. It measures detection, false positives,
//! dissemination and bandwidth.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use swim::keyring::ENCRYPTION_OVERHEAD;

use swim::{Capacity, Config, Event, Identity, Incarnation, Instant, Metadata, Rng, Swim};

use crate::network::NetworkConfig;
use crate::protocol::Protocol;
use crate::simulation::{NodeId, Simulation};
use crate::stats::Percentiles;

/// The knobs of one run.
#[derive(Clone, Debug)]
pub struct MembershipScenario {
    pub nodes: usize,
    pub loss: f64,
    pub crashes: usize,
    pub stall_fraction: f64,
    pub stall_min: Duration,
    pub stall_max: Duration,
    pub duration: Duration,
    pub seed: u64,
    pub config: Config,
    pub network: NetworkConfig,
    /// Time given to the formed cluster before faults and measurements start.
    pub warmup: Duration,
    /// Print every event about this member to stderr (to study a replayed seed).
    pub trace: Option<String>,
    /// Which membership implementation runs.
    pub implementation: Implementation,
    /// Gossip sealed with a keyring, as agents run by default: the core packs for the payload
    /// left after [`ENCRYPTION_OVERHEAD`], and every packet and stream frame carries it on the
    /// wire (`wire_bytes_per_member_per_s`).
    pub encrypted: bool,
}

/// The membership implementations the scenario can run on identical networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implementation {
    /// Buoy's SWIM + Lifeguard core.
    Buoy,
    /// The foca crate (SWIM without Lifeguard), built with the `foca` feature; with
    /// `buoy_timing` it runs on Buoy's probe and suspicion timings instead of its own LAN ones.
    #[cfg(feature = "foca")]
    Foca { buoy_timing: bool },
}

impl MembershipScenario {
    /// A quiet run of `nodes` members for `duration` on a LAN.
    pub fn new(nodes: usize, duration: Duration, seed: u64) -> Self {
        MembershipScenario {
            nodes,
            loss: 0.0,
            crashes: 0,
            stall_fraction: 0.0,
            stall_min: Duration::from_millis(200),
            stall_max: Duration::from_millis(2000),
            duration,
            seed,
            config: Config::lan(),
            network: NetworkConfig::lan(),
            warmup: Duration::from_secs(5),
            trace: None,
            implementation: Implementation::Buoy,
            encrypted: true,
        }
    }
}

/// What one run measured. Times are in milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MembershipReport {
    pub nodes: usize,
    pub seed: u64,
    pub duration_s: f64,
    pub crashes: usize,
    /// From a crash until the first live member considers the crashed one dead.
    pub detect_first_ms: Percentiles,
    /// From a crash until every live member does.
    pub detect_all_ms: Percentiles,
    /// Crashes some live member never learned of by the end of the run.
    pub undetected: usize,
    /// Members that had not crashed but were declared dead by someone (counted per declaration).
    pub false_positives: usize,
    /// Each false positive: seconds since start, the member that declared, the member declared.
    pub false_positive_details: Vec<(f64, String, String)>,
    /// Suspicions raised against members that had not crashed (refuted in time unless counted above).
    pub false_suspicions: usize,
    pub refutations: usize,
    /// Time for a fresh update to reach 99.99% of the running members.
    pub dissemination_ms: Percentiles,
    /// Fresh updates that some member which never crashed had not learned by the end.
    pub dissemination_incomplete: usize,
    pub msgs_per_member_per_s: f64,
    /// Plaintext bytes (what the core writes).
    pub bytes_per_member_per_s: f64,
    /// What goes on the wire: the plaintext plus the keyring's overhead on every packet and
    /// stream frame, when `encrypted` (IP and UDP headers not counted).
    pub wire_bytes_per_member_per_s: f64,
    /// Simulated deliveries and timer wake-ups.
    pub sim_events: u64,
}

struct CrashRecord {
    node: NodeId,
    at: Instant,
    learned: Vec<Option<Instant>>,
}

struct UpdateRecord {
    incarnation: Incarnation,
    at: Instant,
    seen: Vec<bool>,
    count: usize,
    target: usize,
    done: Option<Duration>,
}

fn event_mentions(e: &Event, who: &str) -> bool {
    match e {
        Event::MemberJoined { name, .. }
        | Event::MemberUpdated { name, .. }
        | Event::MemberRecovered { name, .. }
        | Event::MemberLeft { name }
        | Event::MemberReaped { name } => name == who,
        Event::MemberSuspected { name, by, .. } | Event::MemberDied { name, by, .. } => {
            name == who || by == who
        }
        _ => false,
    }
}

/// How often the scenario publishes a fresh metadata update to time its dissemination.
const UPDATE_EVERY: Duration = Duration::from_secs(5);

/// The address of simulated node `i`, inside 127.0.0.0/8 (never used on a real network).
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(
            127,
            1 + (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        )),
        7946,
    )
}

/// The length simulated member names are padded to ([`set_name_len`]); 0: as short as can be.
static NAME_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Pads every simulated member name to at least `len` bytes (`n` and the zero-padded index),
/// as real host names are long: names travel in every ping, suspicion, death and refutation,
/// so the bytes on the wire depend on them. Set it before a simulation starts.
pub fn set_name_len(len: usize) {
    NAME_LEN.store(len, std::sync::atomic::Ordering::Relaxed);
}

/// The name of simulated node `i`: `n17`, or `n0000000000017` when padded.
pub fn sim_name(i: usize) -> String {
    let width = NAME_LEN
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(1);
    format!("n{i:0width$}")
}

/// A membership implementation the scenario can run.
pub trait ScenarioNode: Protocol + Sized + Send + 'static {
    /// Builds `n` nodes (named `sim_name(i)`, at `sim_addr(i)`) that already know each other;
    /// `seeds[i]` seeds node `i`.
    fn formed(
        n: usize,
        config: &Config,
        seeds: &[u64],
        implementation: Implementation,
    ) -> Vec<Self>;
    /// Publishes new metadata; returns the incarnation that carries it, so its spread can be
    /// timed (`None` when the implementation has no metadata updates).
    fn publish_update(&mut self, memory_mb: u64) -> Option<Incarnation>;
}

impl ScenarioNode for Swim {
    fn formed(n: usize, config: &Config, seeds: &[u64], _: Implementation) -> Vec<Swim> {
        let config = Arc::new(config.clone());
        let ids: Vec<Arc<Identity>> = (0..n)
            .map(|i| Arc::new(Identity::new(&sim_name(i), sim_addr(i), sim_metadata(i))))
            .collect();
        // Each thread clones from its own copy of the identities: sharing stays within a thread,
        // so 100 million reference-count increments never bounce a cache line between cores.
        let build = |i: usize, ids: &[Arc<Identity>]| {
            let id = &ids[i];
            let mut s = Swim::new(
                config.clone(),
                &id.name,
                id.addr,
                id.meta.clone(),
                seeds[i],
                Instant::ZERO,
            )
            .expect("scenario config is validated by the caller");
            s.assume_members(Instant::ZERO, ids.iter().cloned());
            s
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(8);
        let chunk = n.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    let (build, ids) = (&build, &ids);
                    scope.spawn(move || {
                        let own: Vec<Arc<Identity>> =
                            ids.iter().map(|id| Arc::new(Identity::clone(id))).collect();
                        (start..(start + chunk).min(n))
                            .map(|i| build(i, &own))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("building a simulated node panicked"))
                .collect()
        })
    }

    fn publish_update(&mut self, memory_mb: u64) -> Option<Incarnation> {
        let meta = Metadata {
            capacity: Capacity { cpus: 8, memory_mb },
            ..self.me().meta().clone()
        };
        self.set_metadata(meta).ok().map(|_| self.me().incarnation)
    }
}

/// Member `i`'s metadata, as a real agent announces it: its segment, role, capacity and the
/// address of its HTTP API.
fn sim_metadata(i: usize) -> Metadata {
    Metadata {
        segment: "default".into(),
        capacity: Capacity {
            cpus: 8,
            memory_mb: 32768,
        },
        http: Some(SocketAddr::new(sim_addr(i).ip(), 7070)),
        ..Metadata::default()
    }
}

/// Builds a simulation of `n` Buoy members that already know each other.
pub fn formed_cluster(n: usize, config: &Config, network: NetworkConfig, seed: u64) -> Simulation {
    formed::<Swim>(n, config, network, seed, Implementation::Buoy)
}

/// Builds a simulation of `n` members of implementation `P` that already know each other.
pub fn formed<P: ScenarioNode>(
    n: usize,
    config: &Config,
    network: NetworkConfig,
    seed: u64,
    implementation: Implementation,
) -> Simulation<P> {
    let mut sim = Simulation::new(seed, network);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let seeds: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    for (i, core) in P::formed(n, config, &seeds, implementation)
        .into_iter()
        .enumerate()
    {
        let node = sim.add_node(core);
        debug_assert_eq!(node, i);
    }
    sim
}

impl MembershipScenario {
    /// Runs the scenario; the same scenario gives the same report.
    pub fn run(&self) -> Result<MembershipReport, String> {
        match self.implementation {
            Implementation::Buoy => self.run_with::<Swim>(),
            #[cfg(feature = "foca")]
            Implementation::Foca { .. } => self.run_with::<crate::foca_node::FocaNode>(),
        }
    }

    /// Runs the scenario with implementation `P`.
    pub fn run_with<P: ScenarioNode>(&self) -> Result<MembershipReport, String> {
        self.config.validate().map_err(|e| e.to_string())?;
        if self.nodes < 2 {
            return Err(format!(
                "--nodes {} is too small: at least 2 members are needed",
                self.nodes
            ));
        }
        if self.crashes >= self.nodes {
            return Err(format!(
                "--crash {} must be below --nodes {}",
                self.crashes, self.nodes
            ));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!("--loss {} must be within [0, 1)", self.loss));
        }
        if !(0.0..=1.0).contains(&self.stall_fraction) {
            return Err(format!(
                "--stall {} must be within [0, 1]",
                self.stall_fraction
            ));
        }
        let n = self.nodes;
        let network = NetworkConfig {
            loss: self.loss,
            ..self.network.clone()
        };
        let mut config = self.config.clone();
        if self.encrypted {
            config.max_packet_bytes = config.max_packet_bytes.saturating_sub(ENCRYPTION_OVERHEAD);
        }
        let mut sim = formed::<P>(n, &config, network, self.seed, self.implementation);
        let mut rng = Rng::new(self.seed ^ 0xfa17);
        let start = Instant::ZERO + self.warmup;
        let end = start + self.duration;

        // Faults: crash victims and stallers are distinct members.
        let mut order: Vec<NodeId> = (0..n).collect();
        rng.shuffle(&mut order);
        let victims = &order[..self.crashes];
        let stallers_n = ((n as f64) * self.stall_fraction).round() as usize;
        let stallers = &order[self.crashes..(self.crashes + stallers_n).min(n)];
        let crash_window = self.duration.mul_f64(0.7);
        let mut crashes: Vec<CrashRecord> = Vec::new();
        let mut crash_time: HashMap<String, Instant> = HashMap::new();
        for (k, &v) in victims.iter().enumerate() {
            let at = start + crash_window.mul_f64((k as f64 + rng.unit()) / self.crashes as f64);
            sim.schedule_crash(v, at);
            crash_time.insert(sim_name(v), at);
            crashes.push(CrashRecord {
                node: v,
                at,
                learned: vec![None; n],
            });
        }
        for &s in stallers {
            let mut t = start + rng.duration_between(Duration::ZERO, Duration::from_secs(10));
            while t < end {
                let len = rng.duration_between(self.stall_min, self.stall_max);
                sim.schedule_stall(s, t, len);
                t = t + len + rng.duration_between(Duration::from_secs(5), Duration::from_secs(15));
            }
        }
        let crashed_by_end: Vec<bool> = (0..n).map(|i| victims.contains(&i)).collect();
        let crash_index: HashMap<String, usize> = crashes
            .iter()
            .enumerate()
            .map(|(k, c)| (sim_name(c.node), k))
            .collect();

        let mut updates: Vec<(String, UpdateRecord)> = Vec::new();
        let mut spread: Vec<Duration> = Vec::new();
        let mut false_deaths: std::collections::HashSet<(String, Incarnation)> = Default::default();
        let mut report = MembershipReport {
            nodes: n,
            seed: self.seed,
            crashes: self.crashes,
            ..Default::default()
        };
        let step = Duration::from_millis(100);
        let mut next_update = start + Duration::from_secs(1);
        let mut traffic_at_start = None;
        let mut t = Instant::ZERO;
        while t < end {
            t = (t + step).min(end);
            sim.run_until(t);
            if traffic_at_start.is_none() && t >= start {
                traffic_at_start = Some(sim.traffic());
            }
            let now = sim.now();
            for (at, node, e) in sim.drain_events() {
                if let Some(trace) = &self.trace
                    && event_mentions(&e, trace)
                {
                    eprintln!("{:>10.4}s n{node}: {e:?}", at.as_nanos() as f64 / 1e9);
                }
                match e {
                    Event::MemberDied {
                        name,
                        by,
                        incarnation,
                    } => {
                        if let Some(&k) = crash_index.get(&name)
                            && crash_time.get(&name).is_some_and(|&c| c <= at)
                        {
                            let slot = &mut crashes[k].learned[node];
                            slot.get_or_insert(at);
                        } else if false_deaths.insert((name.clone(), incarnation)) {
                            // One episode per (member, incarnation), however many learn of it.
                            report.false_positives += 1;
                            let by = if by.is_empty() { sim_name(node) } else { by };
                            report.false_positive_details.push((
                                at.as_nanos() as f64 / 1e9,
                                by,
                                name,
                            ));
                        }
                    }
                    Event::MemberSuspected { name, by, .. } => {
                        let crashed = crash_time.get(&name).is_some_and(|&c| c <= at);
                        if !crashed && by == sim_name(node) {
                            report.false_suspicions += 1;
                        }
                    }
                    Event::Refuted { .. } => report.refutations += 1,
                    Event::MemberUpdated { name, incarnation }
                    | Event::MemberRecovered { name, incarnation }
                    | Event::MemberJoined {
                        name, incarnation, ..
                    } => {
                        for (origin, u) in updates.iter_mut() {
                            if *origin == name && incarnation >= u.incarnation && !u.seen[node] {
                                u.seen[node] = true;
                                u.count += 1;
                                if u.done.is_none() && u.count >= u.target {
                                    let took = at.saturating_since(u.at);
                                    u.done = Some(took);
                                    spread.push(took);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A fresh update every few seconds from a running member that will not crash.
            if now >= next_update && now + Duration::from_secs(5) < end {
                next_update += UPDATE_EVERY;
                let candidates: Vec<NodeId> = (0..n)
                    .filter(|&i| !sim.is_crashed(i) && !sim.is_stalled(i) && !crashed_by_end[i])
                    .collect();
                if !candidates.is_empty() {
                    let origin = candidates[rng.below(candidates.len())];
                    let running = (0..n)
                        .filter(|&i| !sim.is_crashed(i) && !sim.is_stalled(i))
                        .count();
                    let memory_mb = 1024 + rng.below(1 << 20) as u64;
                    let incarnation = sim.with_node(origin, |s, _| s.publish_update(memory_mb));
                    if let Some(Some(incarnation)) = incarnation {
                        let mut seen = vec![false; n];
                        seen[origin] = true;
                        let target = ((running as f64) * 0.9999).ceil() as usize;
                        let u = UpdateRecord {
                            incarnation,
                            at: now,
                            seen,
                            count: 1,
                            target,
                            done: None,
                        };
                        updates.push((sim_name(origin), u));
                    }
                }
            }
            // Forget completed updates so the scan above stays short.
            updates.retain(|(_, u)| u.done.is_none());
        }

        let mut first = Vec::new();
        let mut all = Vec::new();
        for c in &crashes {
            let learned_first = c.learned.iter().flatten().min();
            if let Some(f) = learned_first {
                first.push(f.saturating_since(c.at));
            }
            let everyone: Option<Vec<Instant>> = (0..n)
                .filter(|&i| !crashed_by_end[i])
                .map(|i| c.learned[i])
                .collect();
            match everyone {
                Some(times) => all.push(
                    times
                        .iter()
                        .max()
                        .map_or(Duration::ZERO, |m| m.saturating_since(c.at)),
                ),
                None => report.undetected += 1,
            }
        }
        report.detect_first_ms = Percentiles::of(&first);
        report.detect_all_ms = Percentiles::of(&all);
        report.dissemination_ms = Percentiles::of(&spread);
        // An update is incomplete when a member that never crashed did not learn it. (Its
        // 99.99% target counts the members running when it was made; one that crashed before
        // learning it would keep it from the target without anyone missing it.)
        report.dissemination_incomplete = updates
            .iter()
            .filter(|(_, u)| (0..n).any(|i| !u.seen[i] && !crashed_by_end[i]))
            .count();
        let before = traffic_at_start.unwrap_or_default();
        let after = sim.traffic();
        let member_seconds = n as f64 * self.duration.as_secs_f64();
        report.msgs_per_member_per_s = ((after.packets - before.packets)
            + (after.stream_frames - before.stream_frames))
            as f64
            / member_seconds;
        report.bytes_per_member_per_s = ((after.packet_bytes - before.packet_bytes)
            + (after.stream_bytes - before.stream_bytes))
            as f64
            / member_seconds;
        let sealed = if self.encrypted {
            ENCRYPTION_OVERHEAD as f64
        } else {
            0.0
        };
        report.wire_bytes_per_member_per_s =
            report.bytes_per_member_per_s + sealed * report.msgs_per_member_per_s;
        report.duration_s = self.duration.as_secs_f64();
        report.sim_events = sim.processed();
        // Freeing 10,000 member tables takes a while; nobody needs to wait for it.
        std::thread::spawn(move || drop(sim));
        Ok(report)
    }
}
