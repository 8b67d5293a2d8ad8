//! `buoy sim cluster`: the whole system on the virtual clock (`sim::cluster`), one seed or
//! many side by side; prints each broken rule with the command that replays its seed, and
//! exits non-zero when any rule broke.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;
use sim::cluster::{Broken, ClusterReport, ClusterScenario, Fault, LeaderBroken};

/// Flags of `buoy sim cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterSimArgs {
    /// Hosts running instances.
    #[arg(long, default_value_t = 50)]
    pub hosts: usize,
    /// `single` instances (a fifth are OCF resources, whose stops may fail or hang).
    #[arg(long, default_value_t = 200)]
    pub instances: usize,
    /// Control-plane servers (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// Simulated seconds (faults stop 90 s before the end, so that everything can heal).
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// The seed: the same seed replays the same run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run this many seeds, from --seed on, on every core; prints a summary.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Mean time between two faults, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub fault_gap_ms: u64,
    /// Only these fault kinds (comma-separated): crash, agent_kill, hang, suspend, partition,
    /// one_way_partition, gossip_partition, server_crash, server_isolate, move, unplace,
    /// lease_ttl. `none` for a run without faults.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Lease TTL in milliseconds that agents and servers start with.
    #[arg(long, default_value_t = 3000)]
    pub ttl_ms: u64,
    /// Negative control: break rule S1 on purpose to show the checker catches it.
    /// `keep-without-lease` (hosts run on after their lease ends, watchdog disarmed) or
    /// `skip-handoffs` (the leader starts moved copies before the old host stopped them) or
    /// `stale-grants` (a new leader grants from a 20-60 s old state for 5 s, as without the
    /// read barrier).
    #[arg(long)]
    pub inject: Option<String>,
    /// Hosts without the systemd-sleep hook (`buoy sleep-hook`): after a suspend their
    /// instances run until the agent or the watchdog wakes. Such overlaps are reported apart
    /// (`suspend_overlaps`); with the hook (the default) any overlap is an S1 violation.
    #[arg(long)]
    pub no_sleep_hook: bool,
    /// Print every fault, and where this instance (by name) stands while it runs nowhere,
    /// every 5 s (stderr).
    #[arg(long)]
    pub trace: Option<String>,
    /// Print JSON (one object per run; with --seeds, one summary object).
    #[arg(long)]
    pub json: bool,
}

fn scenario(args: &ClusterSimArgs, seed: u64) -> Result<ClusterScenario> {
    let mut sc = ClusterScenario::new(
        args.hosts,
        args.instances,
        Duration::from_secs(args.duration),
        seed,
    );
    sc.servers = args.servers;
    sc.ttl = Duration::from_millis(args.ttl_ms);
    if args.ttl_ms < 1000 {
        bail!("--ttl-ms {}: at least 1000", args.ttl_ms);
    }
    if args.fault_gap_ms < 100 {
        bail!("--fault-gap-ms {}: at least 100", args.fault_gap_ms);
    }
    sc.faults.mean_gap = Duration::from_millis(args.fault_gap_ms);
    if !args.only.is_empty() {
        let mut kinds = Vec::new();
        for k in &args.only {
            if k == "none" {
                continue;
            }
            let Some(known) = Fault::KINDS.iter().find(|x| **x == k.as_str()) else {
                bail!(
                    "--only {k}: not a fault kind; expected none or some of {}",
                    Fault::KINDS.join(", ")
                );
            };
            kinds.push(*known);
        }
        sc.faults.kinds = kinds;
    }
    match args.inject.as_deref() {
        None => {}
        Some("keep-without-lease") => {
            sc.broken_host = Broken {
                keep_without_lease: true,
            }
        }
        Some("skip-handoffs") => {
            sc.broken_leader = LeaderBroken {
                skip_handoffs: true,
                ..LeaderBroken::default()
            }
        }
        Some("stale-grants") => {
            sc.broken_leader = LeaderBroken {
                stale_grants: true,
                ..LeaderBroken::default()
            }
        }
        Some(other) => {
            bail!("--inject {other}: expected keep-without-lease, skip-handoffs or stale-grants")
        }
    }
    sc.sleep_hook = !args.no_sleep_hook;
    sc.trace = args.trace.clone();
    sc.validate().map_err(anyhow::Error::msg)?;
    Ok(sc)
}

/// The command that replays `seed`.
fn replay(args: &ClusterSimArgs, seed: u64) -> String {
    let mut c = format!(
        "buoy sim cluster --hosts {} --instances {} --servers {} --duration {} --fault-gap-ms {} --ttl-ms {} --seed {seed}",
        args.hosts, args.instances, args.servers, args.duration, args.fault_gap_ms, args.ttl_ms
    );
    if !args.only.is_empty() {
        c.push_str(&format!(" --only {}", args.only.join(",")));
    }
    if let Some(i) = &args.inject {
        c.push_str(&format!(" --inject {i}"));
    }
    if args.no_sleep_hook {
        c.push_str(" --no-sleep-hook");
    }
    c
}

fn report_json(r: &ClusterReport, args: &ClusterSimArgs) -> serde_json::Value {
    json!({
        "seed": r.seed,
        "hosts": r.hosts,
        "instances": r.instances,
        "servers": r.servers,
        "duration_s": r.duration_s,
        "faults": r.faults,
        "starts": r.starts,
        "moves": r.moves,
        "hosts_failed": r.hosts_failed,
        "leader_changes": r.leader_changes,
        "events": r.events,
        "gossip_events": r.gossip_events,
        "s1_violations": r.s1.len(),
        "s3_violations": r.s3.len(),
        "l1_violations": r.over_bound.len() + r.not_running_at_end.len(),
        "suspend_overlaps": r.suspend_overlaps,
        "suspend_overlap_max_ms": r.suspend_overlap_max_ms,
        "down_ms": {"count": r.down_periods, "p50": r.down.p50, "p99": r.down.p99, "max": r.down.max},
        "violations": r.violations(),
        "replay": (!r.ok()).then(|| replay(args, r.seed)),
        "wall_ms": r.wall_ms,
    })
}

fn print_report(r: &ClusterReport, args: &ClusterSimArgs) {
    let row = |k: &str, v: String| println!("  {k:<24} {v}");
    println!(
        "buoy sim cluster: {} hosts, {} instances, {} servers, {} s simulated, seed {}",
        r.hosts, r.instances, r.servers, r.duration_s, r.seed
    );
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    row("faults", faults.join(", "));
    row(
        "activity",
        format!(
            "{} process starts, {} moves, {} hosts failed, {} leader changes, {} events, {} gossip events",
            r.starts, r.moves, r.hosts_failed, r.leader_changes, r.events, r.gossip_events
        ),
    );
    row("S1 (never twice)", format!("{} violations", r.s1.len()));
    row(
        "  after a suspend",
        format!(
            "{} overlaps, longest {} ms (hosts without the sleep hook only, see BENCHMARKS.md)",
            r.suspend_overlaps, r.suspend_overlap_max_ms
        ),
    );
    row("S3 (isolation)", format!("{} violations", r.s3.len()));
    row(
        "L1 (recovery)",
        format!(
            "{} violations; no copy running: {} periods, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            r.over_bound.len() + r.not_running_at_end.len(),
            r.down_periods,
            r.down.p50,
            r.down.p99,
            r.down.max
        ),
    );
    row("wall time", format!("{} ms", r.wall_ms));
    for v in r.violations().iter().take(20) {
        println!("  VIOLATION {v}");
    }
    if !r.ok() {
        println!("  replay: {}", replay(args, r.seed));
    }
}

pub fn cluster(args: ClusterSimArgs) -> Result<()> {
    scenario(&args, args.seed)?;
    if args.seeds <= 1 {
        let r = scenario(&args, args.seed)?.run();
        if args.json {
            println!("{}", report_json(&r, &args));
        } else {
            print_report(&r, &args);
        }
        if !r.ok() {
            bail!(
                "seed {}: {} rule violation(s)",
                r.seed,
                r.violations().len()
            );
        }
        return Ok(());
    }
    let done = AtomicU64::new(0);
    let wall = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = scenario(&args, args.seed)?;
    let make = |seed| ClusterScenario {
        seed,
        ..base.clone()
    };
    let results = sim::cluster::run_many(args.seed..args.seed + args.seeds, make, |r| {
        if !r.ok() {
            eprintln!(
                "seed {}: {} violation(s), first: {}\n  replay: {}",
                r.seed,
                r.violations().len(),
                r.violations()[0],
                replay(&args, r.seed)
            );
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if !args.json && (n.is_multiple_of(100) || n == args.seeds) {
            eprintln!("{n}/{} seeds", args.seeds);
        }
    });
    let failed: Vec<u64> = results.iter().filter(|r| !r.ok()).map(|r| r.seed).collect();
    let mut walls: Vec<u64> = results.iter().map(|r| r.wall_ms).collect();
    walls.sort_unstable();
    let pct = |p: f64| walls[((p * walls.len() as f64).ceil() as usize).clamp(1, walls.len()) - 1];
    let sum = |f: fn(&ClusterReport) -> u64| results.iter().map(f).sum::<u64>();
    let mut faults = std::collections::BTreeMap::<String, u64>::new();
    for r in &results {
        for (k, v) in &r.faults {
            *faults.entry(k.clone()).or_default() += v;
        }
    }
    let max_down = results.iter().map(|r| r.down.max).fold(0.0, f64::max);
    let summary = json!({
        "seeds": results.len(),
        "first_seed": args.seed,
        "hosts": args.hosts,
        "instances": args.instances,
        "duration_s": args.duration,
        "failed_seeds": failed,
        "s1_violations": results.iter().map(|r| r.s1.len()).sum::<usize>(),
        "s3_violations": results.iter().map(|r| r.s3.len()).sum::<usize>(),
        "l1_violations": results.iter().map(|r| r.over_bound.len() + r.not_running_at_end.len()).sum::<usize>(),
        "suspend_overlaps": sum(|r| r.suspend_overlaps),
        "suspend_overlap_max_ms": results.iter().map(|r| r.suspend_overlap_max_ms).max().unwrap_or(0),
        "faults": faults,
        "starts": sum(|r| r.starts),
        "moves": sum(|r| r.moves),
        "hosts_failed": sum(|r| r.hosts_failed),
        "leader_changes": sum(|r| r.leader_changes),
        "down_max_ms": max_down,
        "wall_ms_per_run": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        "wall_ms_total": wall.elapsed().as_millis() as u64,
        "threads": threads,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} seeds broke a rule (first: seed {})",
            failed.len(),
            results.len(),
            failed[0]
        );
    }
    Ok(())
}
