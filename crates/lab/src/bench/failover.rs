//! `buoy bench failover`: real agents on loopback (one server), each host with its watchdog,
//! `--instances` demo apps (process driver) writing heartbeats every 10 ms. Each run strikes a
//! random non-server host that runs instances with `--fault`:
//!
//! - `crash`: kill -9 of its agent and its instances (power loss; its watchdog stays, as
//!   hardware would);
//! - `agent-kill`: kill -9 of the agent only: its instances run on until its watchdog kills
//!   them at the lease's end;
//! - `hang`: SIGSTOP of the agent (SIGCONT once the copies run elsewhere);
//! - `isolate`: the host's link goes down (every host in its own network namespace; root),
//!   cutting gossip, leases, Raft and API traffic alike.
//!
//! It measures the time until every instance the host ran runs elsewhere. The breakdown comes
//! from the recovery's own record (its step times); `double_runs` from the instances'
//! heartbeats (`sim::heartbeats`: two copies of an instance seen running at once, to 10 ms).
//! `--inject-double-run` is the negative control: the struck host keeps its instances after
//! losing its lease and disarms its watchdog, so the checker must report double runs. The host
//! is brought back and enabled between runs. Exits non-zero on any double run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use model::Timestamp;
use serde_json::{Value, json};

use sim::stats::Percentiles;

use crate::local_cluster::{self, LocalCluster};

/// What strikes the host in each run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Agent and instances killed (power loss).
    Crash,
    /// Only the agent killed: the watchdog must stop the instances.
    AgentKill,
    /// The agent frozen (SIGSTOP).
    Hang,
    /// The host cut from every other host (network namespaces; root).
    Isolate,
}

/// What runs on the hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Demo apps (process driver, single copies) writing heartbeats.
    Process,
    /// PostgreSQL 15 under pgsql (primary and synchronous replica) with its virtual IP, each
    /// host in namespaces of its own (root): the primary's host crashes in each run
    /// ([`super::postgres_failover`]).
    Postgres,
    /// MariaDB with Galera under the galera agent (three nodes, all promoted), each host in
    /// namespaces of its own (root): a node the client does not write to crashes in each run
    /// ([`super::galera_failover`]).
    Galera,
}

/// Flags of `buoy bench failover`.
#[derive(Args, Debug)]
pub struct FailoverBenchArgs {
    /// Hosts (agents); the first is the control-plane server and is never killed.
    #[arg(long, default_value_t = 5)]
    pub hosts: usize,
    /// Demo instances (single copies, process driver).
    #[arg(long, default_value_t = 50)]
    pub instances: usize,
    /// Host kills.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Timing profile of the agents (lease 3 s on `lan`).
    #[arg(long, default_value = "lan")]
    pub profile: String,
    /// Seed of the choice of hosts to kill (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Third octet of the 127.0.X.0/24 network the hosts use.
    #[arg(long, default_value_t = 78)]
    pub net: u8,
    /// Keep the cluster's directory (logs, heartbeats) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// What strikes the host in each run.
    #[arg(long, value_enum, default_value = "crash")]
    pub fault: Fault,
    /// Negative control: the struck host keeps its instances after losing its lease and
    /// disarms its watchdog (rule S1 broken on purpose); the run must report double runs.
    #[arg(long)]
    pub inject_double_run: bool,
    /// What runs on the hosts (`postgres`, `galera`: --hosts, --instances, --fault and --net
    /// do not apply; a database host crashes).
    #[arg(long, value_enum, default_value = "process")]
    pub workload: Workload,
}

/// One run's figures, in milliseconds.
#[derive(Debug, Default, Clone)]
struct RunFigures {
    recovery: u64,
    detect: Option<u64>,
    fence: Option<u64>,
    start: Option<u64>,
    moved: usize,
    lost: usize,
}

fn get(addr: SocketAddr, path: &str) -> Result<Value> {
    client::call_json(addr, "GET", path, None)
}

fn post(addr: SocketAddr, path: &str, body: Value) -> Result<Value> {
    local_cluster::post_setup(addr, path, &body)
}

/// Instance id -> (host id, placement id, epoch) (the benchmark's instances are single).
fn placements(api: SocketAddr) -> Result<BTreeMap<String, (String, String, u64)>> {
    Ok(local_cluster::placements(api)?
        .into_iter()
        .map(|p| (p.instance, (p.host, p.id, p.epoch)))
        .collect())
}

fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

pub fn failover(args: FailoverBenchArgs) -> Result<()> {
    match args.workload {
        Workload::Postgres => return super::postgres_failover::run(&args),
        Workload::Galera => return super::galera_failover::run(&args),
        Workload::Process => {}
    }
    if args.hosts < 3 {
        bail!("--hosts must be at least 3: one server and two hosts to move instances between");
    }
    let seed = args.seed.unwrap_or_else(|| Timestamp::now().unix_millis());
    let mut rng = swim::Rng::new(seed);
    let mut c = if args.fault == Fault::Isolate {
        LocalCluster::new_in_netns(args.hosts, 1, &args.profile).map_err(|e| {
            anyhow::anyhow!(
                "--fault isolate puts every host in its own network namespace, which needs root and the `ip` tool: {e:#}"
            )
        })?
    } else {
        LocalCluster::new(args.net, args.hosts, 1, &args.profile)?
    };
    if args.keep {
        c.keep_files();
    }
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    c.start_all()?;
    c.wait_for_leader(0, Duration::from_secs(30))?;
    let api = c.http(0);
    say(&format!(
        "{} agents up on 127.0.{}.x ({} profile); creating {} instances",
        args.hosts, args.net, args.profile, args.instances
    ));
    post(api, "/v1/segments", json!({"name": "bench"}))?;
    let mut host_ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, h) in c.hosts.iter().enumerate() {
        let v = post(
            api,
            "/v1/hosts",
            json!({"name": h.name, "segment": "bench",
                   "capacity": {"cpu": 64, "memory_mb": 65536}}),
        )?;
        host_ids.insert(v["id"].as_str().context("a host id")?.to_string(), i);
    }
    let heartbeats = c.path().join("heartbeats");
    let exe = std::env::current_exe()?.display().to_string();
    for k in 0..args.instances {
        post(
            api,
            "/v1/instances",
            json!({"name": format!("app-{k}"), "segment": "bench", "driver": "process",
                   "cpu": 0.1, "memory_mb": 64,
                   "params": {"command": exe, "args": ["demo-app", "--heartbeats",
                              heartbeats.display().to_string(), "--interval", "10ms"],
                              "stop_timeout": "2s"}}),
        )?;
    }
    wait("every instance to run", Duration::from_secs(60), || {
        local_cluster::running_count(api).is_ok_and(|n| n == args.instances)
    })?;
    say("all instances run; starting the runs");

    let mut runs: Vec<RunFigures> = Vec::new();
    let mut kept: Vec<i32> = Vec::new();
    for run in 0..args.runs {
        let placed = placements(api)?;
        let mut by_host: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (inst, (host, _, _)) in &placed {
            if let Some(&i) = host_ids.get(host)
                && i > 0
            {
                by_host.entry(i).or_default().push(inst.clone());
            }
        }
        let candidates: Vec<usize> = by_host.keys().copied().collect();
        if candidates.is_empty() {
            bail!("no non-server host runs an instance");
        }
        let victim = candidates[rng.below(candidates.len())];
        let victims = by_host[&victim].clone();
        let name = c.hosts[victim].name.clone();
        if args.inject_double_run {
            // The instances it keeps: ended by the benchmark itself at the end (no watchdog
            // will).
            if let Ok(sup) = c.host_call(victim, "GET", "/v1/supervisor", None) {
                kept.extend(
                    sup["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|o| o["pid"].as_i64().map(|p| p as i32)),
                );
            }
            c.host_call(
                victim,
                "POST",
                "/v1/debug/double-run",
                Some(&json!({"keep_instances_without_lease": true})),
            )?;
            // The agent disarms its watchdog at its next reconcile.
            std::thread::sleep(Duration::from_millis(500));
        }
        let t0 = Timestamp::now();
        let started = Instant::now();
        match args.fault {
            Fault::Crash => {
                c.crash(victim);
            }
            Fault::AgentKill => c.signal_agent(victim, libc::SIGKILL),
            Fault::Hang => c.signal_agent(victim, libc::SIGSTOP),
            Fault::Isolate => c.partition(victim)?,
        }
        let mut figures = RunFigures {
            moved: victims.len(),
            ..Default::default()
        };
        let recovered = wait(
            "the victim's instances to run elsewhere",
            Duration::from_secs(60),
            || {
                let (Ok(now), Ok(up)) = (placements(api), local_cluster::reported_running(api))
                else {
                    return false;
                };
                victims.iter().all(|inst| {
                    now.get(inst).is_some_and(|(h, p, e)| {
                        host_ids.get(h) != Some(&victim) && up.contains(&(p.clone(), *e))
                    })
                })
            },
        );
        figures.recovery = started.elapsed().as_millis() as u64;
        if recovered.is_err() {
            let now = placements(api)?;
            let up = local_cluster::reported_running(api)?;
            figures.lost = victims
                .iter()
                .filter(|i| {
                    !now.get(*i)
                        .is_some_and(|(_, p, e)| up.contains(&(p.clone(), *e)))
                })
                .count();
        }
        // The breakdown, from the recovery record's steps.
        let mut record = None;
        let _ = wait("the recovery record", Duration::from_secs(10), || {
            record = get(api, "/v1/notifications?limit=10000")
                .ok()
                .and_then(|v| {
                    v["notifications"].as_array().and_then(|a| {
                        a.iter()
                            .rfind(|n| {
                                n["hostname"] == name.as_str()
                                    && n["type"] == "COMPUTE_HOST"
                                    && n["status"] == "finished"
                                    && n["created_at"]
                                        .as_str()
                                        .and_then(|t| Timestamp::parse(t).ok())
                                        >= Some(t0)
                            })
                            .cloned()
                    })
                });
            record.is_some()
        });
        if let Some(r) = &record {
            let step = |n: &str| {
                r["steps"].as_array().and_then(|a| {
                    a.iter()
                        .find(|s| s["name"] == n)
                        .and_then(|s| s["at"].as_str())
                        .and_then(|t| Timestamp::parse(t).ok())
                })
            };
            let ms = |a: Timestamp, b: Timestamp| b.since(a).as_millis() as u64;
            let detected = step("detected");
            let fenced = step("lease_expired").or_else(|| step("fenced"));
            let healthy = step("healthy");
            figures.detect = detected.map(|d| ms(t0, d));
            figures.fence = detected.zip(fenced).map(|(d, f)| ms(d, f));
            figures.start = fenced.zip(healthy).map(|(f, h)| ms(f, h));
        }
        say(&format!(
            "run {}: killed {name} ({} instances): recovered in {} ms (detect {:?}, fence {:?}, start {:?}){}",
            run + 1,
            figures.moved,
            figures.recovery,
            figures.detect,
            figures.fence,
            figures.start,
            if figures.lost > 0 {
                format!(", {} NOT recovered", figures.lost)
            } else {
                String::new()
            }
        ));
        runs.push(figures);
        // Bring the host back for the next run.
        match args.fault {
            Fault::Crash | Fault::AgentKill => c.start_agent(victim)?,
            Fault::Hang => c.signal_agent(victim, libc::SIGCONT),
            Fault::Isolate => c.heal(),
        }
        wait(
            "the restarted host to be enabled",
            Duration::from_secs(60),
            || post(api, &format!("/v1/hosts/{name}/enable"), json!({})).is_ok(),
        )?;
    }

    // Let everything settle, then count what does not run and read the heartbeats.
    std::thread::sleep(Duration::from_secs(1));
    let lost_instances = args.instances - local_cluster::running_count(api)?;
    let text = std::fs::read_to_string(&heartbeats).unwrap_or_default();
    let spans = sim::heartbeats::spans(&text);
    let double = sim::heartbeats::overlaps(&spans);
    for pid in kept {
        // SAFETY: kill(2) on the process groups of instances this cluster started.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }

    let ms = |v: u64| Duration::from_millis(v);
    let rec = Percentiles::of(&runs.iter().map(|r| ms(r.recovery)).collect::<Vec<_>>());
    let p50_of = |f: fn(&RunFigures) -> Option<u64>| {
        Percentiles::of(&runs.iter().filter_map(f).map(ms).collect::<Vec<_>>()).p50 as u64
    };
    let report = json!({
        "fault": clap::ValueEnum::to_possible_value(&args.fault)
            .map(|v| v.get_name().to_string()),
        "inject_double_run": args.inject_double_run,
        "hosts": args.hosts,
        "instances": args.instances,
        "runs": args.runs,
        "profile": args.profile,
        "seed": seed,
        "recovery_ms": {"p50": rec.p50 as u64, "p99": rec.p99 as u64, "max": rec.max as u64},
        "detect_ms": p50_of(|r| r.detect),
        "fence_ms": p50_of(|r| r.fence),
        "start_ms": p50_of(|r| r.start),
        "moved_per_run": runs.iter().map(|r| r.moved).collect::<Vec<_>>(),
        "lost_instances": lost_instances,
        "double_runs": double.len(),
        "double_run_details": double,
        "heartbeat_copies": spans.len(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "recovery_ms p50 {} p99 {} max {}; detect {} ms, fence {} ms, start {} ms (p50); lost {}; double runs {}",
            report["recovery_ms"]["p50"],
            report["recovery_ms"]["p99"],
            report["recovery_ms"]["max"],
            report["detect_ms"],
            report["fence_ms"],
            report["start_ms"],
            lost_instances,
            double.len()
        );
    }
    if args.keep {
        eprintln!("files kept in {}", c.path().display());
    }
    if !double.is_empty() {
        for o in &double {
            eprintln!(
                "DOUBLE RUN: {} ran as epoch {} on {} and epoch {} on {} at once for {} ms",
                o.instance, o.first.0, o.first.1, o.second.0, o.second.1, o.overlap_ms
            );
        }
        drop(c);
        std::process::exit(1);
    }
    Ok(())
}
