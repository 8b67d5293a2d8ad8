//! The faults of one run, drawn from its seed before it starts: what happens to which host or
//! server, when, and for how long. The world applies them on the virtual clock.

use std::time::Duration;

use swim::{Instant, Rng};

/// One fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Power loss: the agent, the watchdog and every instance die; the host boots again after
    /// `down`.
    Crash { host: usize, down: Duration },
    /// Only the agent dies (its instances and watchdog keep running); a new agent starts after
    /// `down`.
    AgentKill { host: usize, down: Duration },
    /// The agent is frozen (SIGSTOP) for `length`; its instances and watchdog run on.
    Hang { host: usize, length: Duration },
    /// The whole machine sleeps for `length`: nothing on it runs, its boot clock runs on.
    Suspend { host: usize, length: Duration },
    /// `hosts` are cut off from every other machine (only what they send, with `one_way`);
    /// with `gossip_only`, only from the other hosts: they still reach the servers (rule S3).
    Partition {
        hosts: Vec<usize>,
        one_way: bool,
        gossip_only: bool,
        length: Duration,
    },
    /// A server crashes and comes back after `down`.
    ServerCrash { server: usize, down: Duration },
    /// A server is cut off from everything for `length`.
    ServerIsolate { server: usize, length: Duration },
    /// An operator moves a copy to another host (a handoff between live hosts).
    Move,
    /// An operator deletes a placement; the recovery loop places the replica again.
    Unplace,
    /// An operator changes the cluster's lease TTL (the drift margin follows at a tenth).
    LeaseTtl { ttl: Duration },
}

impl Fault {
    /// The name the report counts it under.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::AgentKill { .. } => "agent_kill",
            Fault::Hang { .. } => "hang",
            Fault::Suspend { .. } => "suspend",
            Fault::Partition {
                gossip_only: true, ..
            } => "gossip_partition",
            Fault::Partition { one_way: true, .. } => "one_way_partition",
            Fault::Partition { .. } => "partition",
            Fault::ServerCrash { .. } => "server_crash",
            Fault::ServerIsolate { .. } => "server_isolate",
            Fault::Move => "move",
            Fault::Unplace => "unplace",
            Fault::LeaseTtl { .. } => "lease_ttl",
        }
    }

    /// Every kind, for `--only`.
    pub const KINDS: [&'static str; 12] = [
        "crash",
        "agent_kill",
        "hang",
        "suspend",
        "partition",
        "one_way_partition",
        "gossip_partition",
        "server_crash",
        "server_isolate",
        "move",
        "unplace",
        "lease_ttl",
    ];
}

/// How often faults come.
#[derive(Clone, Debug)]
pub struct FaultMix {
    /// Mean time between two faults.
    pub mean_gap: Duration,
    /// The kinds drawn (all of [`Fault::KINDS`] by default).
    pub kinds: Vec<&'static str>,
    /// No fault starts before this (the cluster settles first).
    pub quiet_start: Duration,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            mean_gap: Duration::from_secs(3),
            kinds: Fault::KINDS.to_vec(),
            quiet_start: Duration::from_secs(15),
        }
    }
}

/// Draws the faults of a run of `duration` over `hosts` hosts and `servers` servers.
pub fn plan(
    rng: &mut Rng,
    mix: &FaultMix,
    hosts: usize,
    servers: usize,
    duration: Duration,
) -> Vec<(Instant, Fault)> {
    let mut out = Vec::new();
    if mix.kinds.is_empty() || hosts == 0 {
        return out;
    }
    let ms = |rng: &mut Rng, lo: u64, hi: u64| {
        rng.duration_between(Duration::from_millis(lo), Duration::from_millis(hi))
    };
    let mut t = mix.quiet_start;
    // Leave the last stretch quiet, so every fault can heal and recovery finish before the end.
    let end = duration.saturating_sub(Duration::from_secs(90));
    loop {
        let gap = mix.mean_gap.as_secs_f64() * -(1.0 - rng.unit()).ln();
        t += Duration::from_secs_f64(gap.min(mix.mean_gap.as_secs_f64() * 10.0));
        if t >= end {
            return out;
        }
        let host = rng.below(hosts);
        let fault = match mix.kinds[rng.below(mix.kinds.len())] {
            "crash" => Fault::Crash {
                host,
                down: ms(rng, 2_000, 50_000),
            },
            "agent_kill" => Fault::AgentKill {
                host,
                down: ms(rng, 500, 20_000),
            },
            "hang" => Fault::Hang {
                host,
                length: ms(rng, 200, 12_000),
            },
            "suspend" => Fault::Suspend {
                host,
                length: ms(rng, 200, 15_000),
            },
            kind @ ("partition" | "one_way_partition" | "gossip_partition") => {
                let n = 1 + rng.below(2.min(hosts));
                let mut hs: Vec<usize> = (0..n).map(|_| rng.below(hosts)).collect();
                hs.sort_unstable();
                hs.dedup();
                Fault::Partition {
                    hosts: hs,
                    one_way: kind == "one_way_partition",
                    gossip_only: kind == "gossip_partition",
                    length: ms(rng, 500, 20_000),
                }
            }
            "server_crash" if servers > 1 => Fault::ServerCrash {
                server: rng.below(servers),
                down: ms(rng, 1_000, 30_000),
            },
            "server_isolate" if servers > 1 => Fault::ServerIsolate {
                server: rng.below(servers),
                length: ms(rng, 500, 15_000),
            },
            "server_crash" | "server_isolate" => continue,
            "move" => Fault::Move,
            "unplace" => Fault::Unplace,
            "lease_ttl" => Fault::LeaseTtl {
                ttl: Duration::from_millis([2_000, 3_000, 4_000][rng.below(3)]),
            },
            other => unreachable!("fault kind {other} is not in Fault::KINDS"),
        };
        out.push((Instant::from_nanos(t.as_nanos() as u64), fault));
    }
}
