//! `buoy chaos`: a seeded random schedule of faults against a real local cluster, then a check
//! of the safety rules. Faults, one at a time, each held for a while and then undone: kill -9
//! of a host (agent and instances; restarted later), SIGSTOP/SIGCONT of an agent, a two-way
//! partition, a one-way partition, a gossip-only cut (an isolated host), a graceful agent
//! restart and, with 3 servers, a kill of the control-plane leader. Demo instances write
//! heartbeats and a writer keeps creating objects throughout. The checker reports:
//!
//! - S1: two epochs of one single instance alive at the same time (from the heartbeats);
//! - S2: a write the control plane acknowledged that is missing at the end;
//! - S3: an instance moved off a host while it was only isolated (it kept its lease);
//! - an instance not running at the end although capacity existed.
//!
//! With `--netns` every host lives in its own network namespace and the cuts are made with
//! `ip` (a link down, blackhole routes for one-way and gossip-only cuts). Without it there are
//! no partitions: the agents' fault filters cut gossip and lease renewals but not Raft RPCs,
//! relays or forwarded API calls, so a "partition" would not be one. `--inject-double-run` is
//! the checker's negative control.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::local_cluster::{self, LocalCluster};

/// Flags of `buoy chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Hosts (agents).
    #[arg(long, default_value_t = 5)]
    pub hosts: usize,
    /// Control-plane servers among them: 1 or 3 (3 adds leader kills).
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// How long to inject faults, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seed of the schedule (default: from the clock); the same seed replays the same schedule.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Demo instances (default: two per host).
    #[arg(long)]
    pub instances: Option<usize>,
    /// Recoveries slower than this are listed as slow.
    #[arg(long, default_value_t = 5000)]
    pub target_ms: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Third octet of the 127.0.X.0/24 network the hosts use.
    #[arg(long, default_value_t = 79)]
    pub net: u8,
    /// Keep the cluster's files (logs, heartbeats) and print where they are.
    #[arg(long)]
    pub keep: bool,
    /// Put every host in its own network namespace (root): links are cut with `ip` (link down,
    /// blackhole routes) instead of the agents' fault filters.
    #[arg(long)]
    pub netns: bool,
    /// Only these faults (comma-separated: kill, hang, partition, one-way, isolate, restart,
    /// kill-leader). Partitions need --netns.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Negative control: every host but the first keeps its instances after losing its lease
    /// and disarms its watchdog (rule S1 broken on purpose); the checker must report it.
    #[arg(long)]
    pub inject_double_run: bool,
}

/// Every segment's name, page after page (the S2 check must see all of them).
fn all_segment_names(api: SocketAddr) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            Some(m) => format!("/v1/segments?limit=500&marker={m}"),
            None => "/v1/segments?limit=500".to_string(),
        };
        let Some(page) = get(api, &path) else { break };
        names.extend(
            page["segments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["name"].as_str().map(String::from)),
        );
        match page["next_marker"].as_str() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    names
}

/// The faults the schedule draws from: `--only`, else all of them; partitions only with
/// `--netns` (the fault filters cannot cut every path between two agents).
fn schedule_faults(args: &ChaosArgs) -> Result<Vec<Fault>> {
    let mut all = vec![Fault::Kill, Fault::Hang, Fault::Isolate, Fault::Restart];
    if args.netns {
        all.extend([Fault::Partition, Fault::OneWay]);
    }
    if args.servers == 3 {
        all.push(Fault::KillLeader);
    }
    if args.only.is_empty() {
        return Ok(all);
    }
    let mut picked = Vec::new();
    for name in &args.only {
        let f = match name.as_str() {
            "kill" => Fault::Kill,
            "hang" => Fault::Hang,
            "partition" => Fault::Partition,
            "one-way" => Fault::OneWay,
            "isolate" => Fault::Isolate,
            "restart" => Fault::Restart,
            "kill-leader" => Fault::KillLeader,
            other => bail!(
                "--only: unknown fault `{other}` (kill, hang, partition, one-way, isolate, restart, kill-leader)"
            ),
        };
        if !all.contains(&f) {
            bail!(
                "--only: `{name}` is not available here ({})",
                if matches!(f, Fault::KillLeader) {
                    "it needs --servers 3"
                } else {
                    "partitions need --netns: without it the fault filters cannot cut Raft RPCs, relays or forwarded API calls"
                }
            );
        }
        picked.push(f);
    }
    Ok(picked)
}

/// The faults of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Hang,
    Partition,
    OneWay,
    Isolate,
    Restart,
    KillLeader,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Hang => "hang",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way partition",
            Fault::Isolate => "isolate (gossip only)",
            Fault::Restart => "restart",
            Fault::KillLeader => "kill the leader",
        }
    }
}

/// One fault as it happened.
#[derive(Debug, serde::Serialize)]
struct Injected {
    at_ms: u64,
    fault: &'static str,
    host: String,
    held_ms: u64,
    /// Whether some instance stopped running because of it.
    disrupted: bool,
    /// Fault -> every instance running again (0: nothing stopped; none: not within 30 s).
    recovery_ms: Option<u64>,
}

fn get(api: SocketAddr, path: &str) -> Option<Value> {
    local_cluster::get_json(api, path).ok()
}

/// "Instance#replica" -> (host id, epoch) of every placement.
fn placements(api: SocketAddr) -> BTreeMap<String, (String, u64)> {
    local_cluster::placements(api)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (format!("{}#{}", p.instance, p.replica), (p.host, p.epoch)))
        .collect()
}

/// How many placements run at their current epoch, as the hosts' own supervisors say (the
/// leader's copy of their reports can be stale while a host is cut off).
fn running(c: &LocalCluster, api: SocketAddr) -> Option<usize> {
    let placed = local_cluster::placements(api).ok()?;
    let mut up = BTreeSet::new();
    for i in 0..c.hosts.len() {
        // A short timeout: a hung agent must not stall the measurement; it runs nothing we
        // can vouch for.
        if let Ok(r) = c.host_get(i, "/v1/supervisor", Duration::from_millis(500))
            && let Ok(v) = serde_json::from_str::<Value>(&r.body)
        {
            up.extend(local_cluster::running_in(&v));
        }
    }
    Some(
        placed
            .iter()
            .filter(|p| up.contains(&(p.id.clone(), p.epoch)))
            .count(),
    )
}

/// Any server that answers (they relay to the leader).
fn any_api(c: &LocalCluster, servers: usize) -> SocketAddr {
    (0..servers)
        .map(|i| c.http(i))
        .find(|a| get(*a, "/v1/status").is_some_and(|v| v["leader"]["name"].is_string()))
        .unwrap_or_else(|| c.http(0))
}

pub fn chaos(args: ChaosArgs) -> Result<()> {
    if args.hosts < 3 || !matches!(args.servers, 1 | 3) || args.servers > args.hosts {
        bail!("expected --hosts 3 or more and --servers 1 or 3 (no more than --hosts)");
    }
    let seed = args
        .seed
        .unwrap_or_else(|| model::Timestamp::now().unix_millis());
    let mut rng = swim::Rng::new(seed);
    let faults = schedule_faults(&args)?;
    let instances = args.instances.unwrap_or(2 * args.hosts);
    let say = |m: String| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let mut c = if args.netns {
        LocalCluster::new_in_netns(args.hosts, args.servers, "local")?
    } else {
        LocalCluster::new(args.net, args.hosts, args.servers, "local")?
    };
    if args.keep {
        c.keep_files();
    }
    c.start_all()?;
    c.wait_for_leader(0, Duration::from_secs(30))?;
    let api = c.http(0);
    let post = |path: &str, body: Value| local_cluster::post_setup(api, path, &body);
    post(
        "/v1/segments",
        json!({"name": "chaos", "auto_rejoin": true}),
    )?;
    for h in &c.hosts {
        post(
            "/v1/hosts",
            json!({"name": h.name, "segment": "chaos", "capacity": {"cpu": 16, "memory_mb": 16384}}),
        )?;
    }
    let exe = std::env::current_exe()?.display().to_string();
    let heartbeats = c.path().join("heartbeats");
    for k in 0..instances {
        post(
            "/v1/instances",
            json!({"name": format!("app-{k}"), "segment": "chaos", "driver": "process",
                   "cpu": 0.1, "memory_mb": 64,
                   "params": {"command": exe, "args": ["demo-app", "--heartbeats",
                              heartbeats.display().to_string()], "stop_timeout": "2s"}}),
        )?;
    }
    let settle = |c: &LocalCluster, timeout: Duration| -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if running(c, any_api(c, args.servers)) == Some(instances) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    };
    if settle(&c, Duration::from_secs(60)).is_none() {
        bail!("the instances did not all start within 60 s");
    }
    say(format!(
        "chaos: {} hosts ({} servers), {instances} instances; seed {seed}; {} s of faults",
        args.hosts, args.servers, args.duration
    ));

    // The writer: creates objects through any server; every acknowledged one must survive.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let apis: Vec<SocketAddr> = (0..args.servers).map(|i| c.http(i)).collect();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w-{n}");
                let api = apis[(n as usize) % apis.len()];
                if client::call_json(api, "POST", "/v1/segments", Some(&json!({"name": name})))
                    .is_ok()
                {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                    n += 1;
                } else {
                    // Not acknowledged: this name may or may not exist; never reuse it.
                    n += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let started = Instant::now();
    let started_unix_ms = model::Timestamp::now().unix_millis();
    let mut log: Vec<Injected> = Vec::new();
    let mut s3: Vec<String> = Vec::new();
    if !args.netns {
        say(
            "no --netns: partitions are left out (the agents' fault filters cut gossip and leases, not Raft RPCs, relays or forwarded API calls)"
                .into(),
        );
    }
    if args.inject_double_run {
        for i in 1..c.hosts.len() {
            c.host_call(
                i,
                "POST",
                "/v1/debug/double-run",
                Some(&json!({"keep_instances_without_lease": true})),
            )?;
        }
        say(
            "negative control: every host but the first keeps its instances without a lease".into(),
        );
    }
    let interrupted = crate::interrupt::flag();
    while started.elapsed() < Duration::from_secs(args.duration) {
        if interrupted.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            let _ = writer.join();
            if args.netns {
                c.heal();
            }
            drop(c);
            bail!(
                "interrupted after {:.0} s: every agent, watchdog and instance it started is stopped and its files are removed",
                started.elapsed().as_secs_f64()
            );
        }
        let fault = faults[rng.below(faults.len())];
        let held = Duration::from_millis(1500 + rng.below(2500) as u64);
        let target = match fault {
            Fault::KillLeader => {
                let leader = get(any_api(&c, args.servers), "/v1/status")
                    .and_then(|v| v["leader"]["name"].as_str().map(String::from));
                match leader.and_then(|l| c.hosts.iter().position(|h| h.name == l)) {
                    Some(i) => i,
                    None => continue,
                }
            }
            // Any host but the first server, so that one control-plane address stays up.
            _ => 1 + rng.below(args.hosts - 1),
        };
        let name = c.hosts[target].name.clone();
        let at = started.elapsed();
        let before = placements(any_api(&c, args.servers));
        say(format!(
            "[{:>6.1}s] {} {name} for {} ms",
            at.as_secs_f64(),
            fault.name(),
            held.as_millis()
        ));
        let t0 = Instant::now();
        match fault {
            Fault::Kill | Fault::KillLeader => {
                c.crash(target);
            }
            Fault::Hang => c.signal_agent(target, libc::SIGSTOP),
            Fault::Partition => c.partition(target)?,
            Fault::OneWay => c.mute(target)?,
            Fault::Isolate => c.isolate(target)?,
            Fault::Restart => c.restart(target)?,
        }
        // While the fault holds: did service dip (an instance not running), and when did it
        // come back?
        let mut dipped = false;
        let mut restored: Option<Duration> = None;
        while t0.elapsed() < held && !interrupted.load(Ordering::Relaxed) {
            let full = running(&c, any_api(&c, args.servers)) == Some(instances);
            if !full {
                dipped = true;
                restored = None;
            } else if dipped && restored.is_none() {
                restored = Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if fault == Fault::Isolate {
            // Rule S3: nothing placed on an isolated host moved while it was isolated.
            let host_id = get(any_api(&c, args.servers), &format!("/v1/hosts/{name}"))
                .and_then(|h| h["id"].as_str().map(String::from));
            let after = placements(any_api(&c, args.servers));
            for (slot, (h, epoch)) in &before {
                if Some(h) == host_id.as_ref() && after.get(slot) != Some(&(h.clone(), *epoch)) {
                    s3.push(format!(
                        "S3: {slot} moved off {name} while {name} was only isolated"
                    ));
                }
            }
        }
        match fault {
            Fault::Kill | Fault::KillLeader => c.start_agent(target)?,
            Fault::Hang => c.signal_agent(target, libc::SIGCONT),
            Fault::Partition | Fault::OneWay | Fault::Isolate => c.heal(),
            Fault::Restart => {}
        }
        // Undoing the fault may disrupt too (a restarted host, a healed partition).
        let back = settle(&c, Duration::from_secs(30));
        let undo_dipped = back.is_some_and(|d| d > Duration::from_millis(100));
        let recovery = if back.is_none() {
            None // Not back to full service within 30 s: slow, and checked again at the end.
        } else if dipped && restored.is_some() && !undo_dipped {
            restored
        } else if dipped || undo_dipped {
            Some(t0.elapsed())
        } else {
            Some(Duration::ZERO) // Nothing stopped running.
        };
        log.push(Injected {
            at_ms: at.as_millis() as u64,
            fault: fault.name(),
            host: name,
            held_ms: held.as_millis() as u64,
            disrupted: dipped || undo_dipped || back.is_none(),
            recovery_ms: recovery.map(|d| d.as_millis() as u64),
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();

    // The checks.
    let mut violations: Vec<String> = s3;
    let final_settle = settle(&c, Duration::from_secs(30));
    let api = any_api(&c, args.servers);
    if final_settle.is_none() {
        let up = running(&c, api).unwrap_or(0);
        violations.push(format!(
            "availability: {} of {instances} instances not running at the end, although the hosts had room",
            instances - up.min(instances)
        ));
    }
    let segments = all_segment_names(api);
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for name in acked.iter().filter(|n| !segments.contains(*n)) {
        violations.push(format!("S2: acknowledged write `{name}` is missing"));
    }
    let text = std::fs::read_to_string(&heartbeats).unwrap_or_default();
    let spans = sim::heartbeats::spans(&text);
    for o in sim::heartbeats::overlaps(&spans) {
        violations.push(format!(
            "S1: {} ran as epoch {} on {} and epoch {} on {} at once for {} ms from {:.1} s",
            o.instance,
            o.first.0,
            o.first.1,
            o.second.0,
            o.second.1,
            o.overlap_ms,
            o.since_ms.saturating_sub(started_unix_ms) as f64 / 1000.0
        ));
    }
    let rec: Vec<u64> = log
        .iter()
        .filter(|f| f.disrupted)
        .filter_map(|f| f.recovery_ms)
        .collect();
    let rec = sim::stats::Percentiles::of(
        &rec.into_iter()
            .map(Duration::from_millis)
            .collect::<Vec<_>>(),
    );
    let slow: Vec<&Injected> = log
        .iter()
        .filter(|f| f.recovery_ms.is_none_or(|r| r > args.target_ms))
        .collect();
    let records = get(api, "/v1/notifications?limit=10000")
        .and_then(|v| v["notifications"].as_array().map(Vec::len))
        .unwrap_or(0);
    let report = json!({
        "seed": seed,
        "hosts": args.hosts,
        "servers": args.servers,
        "instances": instances,
        "duration_s": args.duration,
        "faults": log,
        "recoveries": records,
        "recovery_ms": {"p50": rec.p50 as u64, "p99": rec.p99 as u64, "max": rec.max as u64},
        "slow_recoveries": slow,
        "acknowledged_writes": acked.len(),
        "heartbeat_copies": spans.len(),
        "violations": violations,
        "replay": replay(&args, seed),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} faults, {} recovery records, {} acknowledged writes, {} instance copies seen; recovery to full service p50 {} ms, p99 {} ms",
            log.len(),
            records,
            acked.len(),
            spans.len(),
            rec.p50 as u64,
            rec.p99 as u64
        );
        for v in &violations {
            println!("VIOLATION {v}");
        }
    }
    if args.keep {
        eprintln!("files kept in {}", c.path().display());
    }
    if !violations.is_empty() {
        eprintln!(
            "{} violation(s); replay with: {}",
            violations.len(),
            report["replay"].as_str().unwrap_or("")
        );
        drop(c);
        std::process::exit(1);
    }
    Ok(())
}

/// The command that runs the same schedule again (timing on a real machine differs, so a
/// violation may need a few tries; `--keep` keeps the logs).
fn replay(args: &ChaosArgs, seed: u64) -> String {
    let mut cmd = format!(
        "buoy chaos --hosts {} --servers {} --duration {} --seed {seed} --keep",
        args.hosts, args.servers, args.duration
    );
    if let Some(n) = args.instances {
        cmd.push_str(&format!(" --instances {n}"));
    }
    if args.netns {
        cmd.push_str(" --netns");
    }
    if !args.only.is_empty() {
        cmd.push_str(&format!(" --only {}", args.only.join(",")));
    }
    if args.inject_double_run {
        cmd.push_str(" --inject-double-run");
    }
    cmd
}
