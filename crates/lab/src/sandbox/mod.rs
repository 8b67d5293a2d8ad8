//! `buoy sandbox`: a whole cluster on this machine, and what to try with it. One agent per
//! host on `127.0.NET.i` with its own data directory and a watchdog beside it, the first
//! `--servers` hosts forming the control plane; segments; demo instances (`buoy demo-app`,
//! writing heartbeats); optional tiny QEMU guests; an active-active clock app (a clone) behind
//! a health-checked TCP load balancer. It prints the dashboard's URL, shows a host crash and
//! its recovery, then a live summary until Ctrl-C (or `--duration`), and stops everything it
//! started and removes its files. `buoy sandbox chaos ACTION HOST` (or the dashboard's
//! buttons) injects faults through its control endpoint. `--zones N` runs the zones
//! scenario instead (`zones`: the clock spread over zones behind HAProxy, a zone crashed): in
//! network namespaces with a virtual IP and a replicated PostgreSQL where this machine can
//! (`zones_netns`), else on loopback.

mod chaos;
mod lb;
mod zones;
mod zones_netns;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::local_cluster::LocalCluster;

/// Flags of `buoy sandbox`.
#[derive(Args, Debug)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: Option<SandboxAction>,
    /// Hosts (agent processes) to start.
    #[arg(long, default_value_t = 5)]
    pub hosts: usize,
    /// Control-plane servers among them: 1 or 3.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Segments (failover domains) the hosts are spread over.
    #[arg(long, default_value_t = 2)]
    pub segments: usize,
    /// Demo instances (single copies) besides the clock app.
    #[arg(long, default_value_t = 12)]
    pub instances: usize,
    /// Tiny QEMU guests to run too (needs qemu-system-x86 and scripts/build-test-guest.sh).
    #[arg(long, default_value_t = 0)]
    pub vms: usize,
    /// Skip the scripted crash-and-recovery demonstration.
    #[arg(long)]
    pub no_demo: bool,
    /// Seconds to wait, announced, before the scripted crash: time to open the dashboard.
    #[arg(long, default_value_t = 10)]
    pub demo_delay: u64,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Third octet of the 127.0.X.0/24 network the sandbox uses.
    #[arg(long, default_value_t = 10)]
    pub net: u8,
    /// The zones scenario: hosts labelled with N zones in turn, the clock spread over them
    /// (one copy per zone) behind HAProxy run as a Buoy clone of 2 copies (where Debian's
    /// haproxy is installed), and a demo that crashes a whole zone. 0: off.
    #[arg(long, default_value_t = 0)]
    pub zones: usize,
    /// With --zones: run on loopback even where network namespaces can run (root, HAProxy,
    /// resource-agents), without the virtual IP and the database.
    #[arg(long)]
    pub loopback: bool,
}

/// `buoy sandbox chaos ...`: faults for a running sandbox.
#[derive(Subcommand, Debug)]
pub enum SandboxAction {
    /// Inject a fault into a running sandbox: kill (kill -9 of the agent and its instances),
    /// hang (SIGSTOP of the agent), unhang, partition (cut from every other host), heal (all
    /// cuts), restart (the agent).
    Chaos {
        action: String,
        /// The host (`h3`); `heal` takes none.
        host: Option<String>,
        /// The sandbox's network (its `--net`).
        #[arg(long, default_value_t = 10)]
        net: u8,
    },
}

/// Where the sandbox's own services listen on its network.
fn service(net: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, net, 100], port))
}

const CLOCK_PORT: u16 = 8080;
const CONTROL_PORT: u16 = 7000;

pub fn run(mut args: SandboxArgs) -> Result<()> {
    if let Some(SandboxAction::Chaos { action, host, net }) = &args.action {
        return chaos::send(*net, action, host.as_deref());
    }
    if args.zones > 0 {
        if !(2..=6).contains(&args.zones) {
            bail!("--zones {}: expected 2 to 6 (or 0: off)", args.zones);
        }
        if args.hosts < 2 * args.zones + args.servers {
            bail!(
                "--zones {} needs at least {} hosts (two per zone, besides the servers' zone): give --hosts {}",
                args.zones,
                2 * args.zones + args.servers,
                2 * args.zones + args.servers
            );
        }
        // One failover domain: the zones are the hosts' labels.
        args.segments = 1;
    }
    if !(2..=99).contains(&args.hosts) {
        bail!("--hosts {}: expected 2 to 99", args.hosts);
    }
    if !matches!(args.servers, 1 | 3) || args.servers > args.hosts {
        bail!(
            "--servers {}: expected 1 or 3 (and no more than --hosts)",
            args.servers
        );
    }
    if args.segments == 0 || args.segments > args.hosts {
        bail!("--segments {}: expected 1 to --hosts", args.segments);
    }
    let stop = crate::interrupt::flag();
    let started = Instant::now();
    // On a terminal the live summary is redrawn on the last line; other lines go above it.
    let tty = std::io::stdout().is_terminal();
    let clear = if tty { "\r\x1b[K" } else { "" };
    let say = |m: String| println!("{clear}[{:>6.2}s] {m}", started.elapsed().as_secs_f64());
    if args.zones > 0 && !args.loopback {
        match zones_netns::missing() {
            None if args.servers == 1 => return zones_netns::run(&args, &stop, &say),
            None => say(format!(
                "the namespaces scenario runs one server (--servers {}): on loopback instead",
                args.servers
            )),
            Some(why) => say(format!(
                "zones on loopback, without a virtual IP or a database: {why} (--loopback says so quietly)"
            )),
        }
    }

    let mut c = LocalCluster::new(args.net, args.hosts, args.servers, "local")?;
    say(format!(
        "starting {} agents on 127.0.{}.1-{} ({} server{}), a watchdog beside each; files in {}",
        args.hosts,
        args.net,
        args.hosts,
        args.servers,
        if args.servers == 1 { "" } else { "s" },
        c.path().display()
    ));
    c.start_all()?;
    c.wait_for_leader(0, Duration::from_secs(30))?;
    let api = c.http(0);
    let leader = client::call_json(api, "GET", "/v1/status", None)?;
    say(format!(
        "control plane up: leader {} (Raft + redb)",
        leader["leader"]["name"].as_str().unwrap_or("?")
    ));
    let segments = setup(&c, &args)?;
    say(format!(
        "segments {} with {} hosts registered",
        segments.join(", "),
        args.hosts
    ));
    let haproxy = args.zones > 0 && zones::haproxy_available();
    if args.zones > 0 && !haproxy {
        say(format!(
            "{} is not installed (scripts/setup-test-deps.sh installs it): the sandbox's own balancer serves the clock directly",
            zones::HAPROXY
        ));
    }
    // With HAProxy the sandbox's address stands in for the virtual IP, in front of the
    // HAProxy copies; else it balances over the clock's copies itself.
    let targets = if haproxy {
        zones::fronted(&c)?
    } else {
        c.hosts
            .iter()
            .map(|h| format!("{}:{CLOCK_PORT}", h.ip).parse())
            .collect::<Result<Vec<SocketAddr>, _>>()?
    };
    let lb = lb::LoadBalancer::start(service(args.net, CLOCK_PORT), targets, stop.clone())?;
    let control = chaos::Control::start(service(args.net, CONTROL_PORT), stop.clone())?;
    let wanted = args.instances + clock_copies(&args) + args.vms + if haproxy { 2 } else { 0 };
    let t = Instant::now();
    // With HAProxy, also until both copies serve every clock copy: an HAProxy with an empty
    // backend answers 503, which the customer would count as failed.
    while running_copies(api) < wanted || (haproxy && !zones::in_sync(&c, args.zones)) {
        if stop.load(Ordering::Relaxed) || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say(format!(
        "{} demo instances, the clock app ({} copies behind the load balancer on {}){} running",
        args.instances,
        clock_copies(&args),
        service(args.net, CLOCK_PORT),
        if args.vms > 0 {
            format!(" and {} QEMU guests", args.vms)
        } else {
            String::new()
        }
    ));
    let ui = format!(
        "http://{api}/ui?sandbox=http://{}&clock=http://{}",
        service(args.net, CONTROL_PORT),
        service(args.net, CLOCK_PORT)
    );
    println!();
    println!("  dashboard:  {ui}");
    println!("  try:        buoy host list --http {api}");
    println!("              buoy notification list --http {api}");
    println!(
        "              curl http://{}/",
        service(args.net, CLOCK_PORT)
    );
    println!(
        "              buoy sandbox chaos kill h3 --net {}      (also hang, unhang, partition, heal, restart)",
        args.net
    );
    println!();

    let mut clock = ClockProbe::default();
    // Recoveries already told (the demo tells its own).
    let mut told: BTreeSet<String> = finished_records(api)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if !args.no_demo && !stop.load(Ordering::Relaxed) {
        if args.demo_delay > 0 {
            say(format!(
                "demo: a host crashes in {} s; open the dashboard to watch (--demo-delay 0 starts at once, --no-demo skips it)",
                args.demo_delay
            ));
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && t.elapsed() < Duration::from_secs(args.demo_delay)
            {
                clock.poll(args.net);
                control.apply_pending(&mut c, &say);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !stop.load(Ordering::Relaxed) && args.zones > 0 {
            demo_zone(&mut c, &say, &stop, &mut clock, &args, haproxy)?;
        } else if !stop.load(Ordering::Relaxed) {
            told.extend(demo(
                &mut c,
                api,
                &say,
                &stop,
                &mut clock,
                args.net,
                args.servers,
            )?);
        }
    }
    say(format!(
        "live summary {}; Ctrl-C stops the sandbox",
        if tty {
            "on the last line"
        } else {
            "when it changes"
        }
    ));
    let until = args.duration.map(|d| started + Duration::from_secs(d));
    let mut last_summary = Instant::now() - Duration::from_secs(10);
    let mut backends = String::new();
    let mut shown = String::new();
    let mut last_shown = Instant::now();
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        clock.poll(args.net);
        control.apply_pending(&mut c, &say);
        if last_summary.elapsed() >= Duration::from_secs(1) {
            last_summary = Instant::now();
            // Every recovery, the chaos buttons' too, gets its line.
            for (id, r) in finished_records(api) {
                if told.insert(id) {
                    say(recovery_line(&r, None));
                }
            }
            if haproxy {
                let now = zones::backends(&c);
                if now != backends {
                    say(format!("HAProxy backends: {now}"));
                    backends = now;
                }
            }
            let line = summary(api, &clock, lb.healthy_count());
            if tty {
                print!("\r\x1b[K{line}");
                let _ = std::io::stdout().flush();
            } else {
                // Off a terminal: when the cluster's state changes (the clock app's counts
                // alone do not count), and every 30 s.
                let state = line
                    .split(" | clock app")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if state != shown || last_shown.elapsed() >= Duration::from_secs(30) {
                    say(line);
                    last_shown = Instant::now();
                }
                shown = state;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if tty {
        println!();
    }
    say(format!(
        "clock app seen by its customer: {} requests answered, {} failed",
        clock.ok, clock.failed
    ));
    say("stopping every agent and removing the sandbox files".to_string());
    stop.store(true, Ordering::Relaxed);
    drop(c);
    Ok(())
}

/// Copies of the clock app: up to 3, leaving one host of its segment free to take a copy
/// when a host fails.
fn clock_copies(args: &SandboxArgs) -> usize {
    if args.zones > 0 {
        return args.zones;
    }
    let in_first_segment = args.hosts.div_ceil(args.segments);
    in_first_segment.saturating_sub(1).clamp(1, 3)
}

/// Registers segments and hosts and creates the demo instances, as an operator would.
fn setup(c: &LocalCluster, args: &SandboxArgs) -> Result<Vec<String>> {
    let api = c.http(0);
    let call = |path: &str, body: Value| client::call_json(api, "POST", path, Some(&body));
    let names: Vec<String> = (0..args.segments)
        .map(|k| format!("zone-{}", (b'a' + k as u8) as char))
        .collect();
    for n in &names {
        call(
            "/v1/segments",
            json!({"name": n, "auto_rejoin": true, "description": "a sandbox failover domain"}),
        )?;
    }
    for (i, h) in c.hosts.iter().enumerate() {
        let mut host = json!({"name": h.name, "segment": names[i % names.len()],
                              "capacity": {"cpu": 8, "memory_mb": 8192}});
        if args.zones > 0 {
            host["labels"] = json!({"zone": zones::zone_name(zones::zone_of(i, args.zones))});
        }
        call("/v1/hosts", host)?;
    }
    let haproxy = args.zones > 0 && zones::haproxy_available();
    if haproxy {
        zones::create_lb(c, &names[0])?;
    }
    let exe = std::env::current_exe()?.display().to_string();
    let heartbeats = c.path().join("heartbeats").display().to_string();
    for k in 0..args.instances {
        call(
            "/v1/instances",
            json!({"name": format!("app-{}", k + 1), "segment": names[k % names.len()],
                   "driver": "process", "cpu": 0.5, "memory_mb": 256,
                   "priority": 1000 - (k as u32 % 5) * 200,
                   "params": {"command": exe, "args": ["demo-app", "--heartbeats", heartbeats, "--interval", "100ms"],
                              "stop_timeout": "2s"}}),
        )?;
    }
    // The clock app: an active-active clone in the first segment, one copy per host (per
    // zone, behind HAProxy, in the zones scenario).
    let mut clock = json!({"name": "clock", "segment": names[0], "driver": "process", "mode": "clone",
               "replicas": clock_copies(args),
               "cpu": 0.25, "memory_mb": 64, "priority": 900,
               "params": {"command": exe, "args": ["demo-app", "--http-port", CLOCK_PORT.to_string()],
                          "stop_timeout": "2s"},
               "health_checks": [{"type": "tcp", "host": "host-ip", "port": CLOCK_PORT, "interval": "500ms",
                                   "timeout": "300ms", "failure_threshold": 3}]});
    if args.zones > 0 {
        clock["spread"] = json!({"label": "zone"});
    }
    if haproxy {
        clock["balancer"] = json!({"instance": "lb", "backend": "clock", "port": CLOCK_PORT});
    }
    call("/v1/instances", clock)?;
    if args.vms > 0 {
        create_vms(c, args, &names)?;
    }
    Ok(names)
}

/// Tiny QEMU guests (the test guest: a kernel and a busybox initramfs).
fn create_vms(c: &LocalCluster, args: &SandboxArgs, names: &[String]) -> Result<()> {
    let guest = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("test-guest"))
        .unwrap_or_else(|| PathBuf::from("target/test-guest"));
    let (kernel, initrd) = (guest.join("vmlinuz"), guest.join("initrd.gz"));
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !qemu || !kernel.exists() || !initrd.exists() {
        bail!(
            "--vms needs qemu-system-x86_64 and the test guest ({}): run scripts/setup-test-deps.sh, or drop --vms",
            guest.display()
        );
    }
    for k in 0..args.vms {
        client::call_json(
            c.http(0),
            "POST",
            "/v1/instances",
            Some(
                &json!({"name": format!("vm-{}", k + 1), "segment": names[k % names.len()],
                   "driver": "qemu", "cpu": 1, "memory_mb": 128,
                   "params": {"kernel": kernel.display().to_string(),
                              "initrd": initrd.display().to_string(),
                              "memory_mb": 128, "stop_timeout": "2s"}}),
            ),
        )?;
    }
    Ok(())
}

/// How many placed copies the leader's reports show running at their current epoch.
fn running_copies(api: SocketAddr) -> usize {
    crate::local_cluster::running_count(api).unwrap_or(0)
}

/// The clock app as its customer sees it: one request through the load balancer at a time.
#[derive(Default)]
struct ClockProbe {
    ok: u64,
    failed: u64,
    last: Option<Instant>,
}

impl ClockProbe {
    fn poll(&mut self, net: u8) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(Instant::now());
        match fetch(service(net, CLOCK_PORT)) {
            Some(_) => self.ok += 1,
            None => self.failed += 1,
        }
    }
}

/// One HTTP GET; the body when the answer is 200.
fn fetch(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// One line: hosts by status, copies running, recoveries, the customer's view.
fn summary(api: SocketAddr, clock: &ClockProbe, healthy: usize) -> String {
    let hosts = client::call_json(api, "GET", "/v1/hosts?limit=10000", None).ok();
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for h in hosts
        .as_ref()
        .and_then(|v| v["hosts"].as_array())
        .into_iter()
        .flatten()
    {
        *by.entry(h["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let notes = client::call_json(api, "GET", "/v1/notifications?limit=10000", None).ok();
    let (mut finished, mut open) = (0, 0);
    for n in notes
        .as_ref()
        .and_then(|v| v["notifications"].as_array())
        .into_iter()
        .flatten()
    {
        match n["status"].as_str() {
            Some("finished") => finished += 1,
            Some("new" | "running") => open += 1,
            _ => {}
        }
    }
    format!(
        "hosts: {} | copies running: {} | recoveries: {finished} finished, {open} in progress | clock app: {} ok, {} failed ({healthy} backends up)",
        by.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        running_copies(api),
        clock.ok,
        clock.failed
    )
}

/// The finished and failed recovery records: id and record.
fn finished_records(api: SocketAddr) -> Vec<(String, serde_json::Value)> {
    client::call_json(api, "GET", "/v1/notifications?limit=10000", None)
        .ok()
        .and_then(|v| v["notifications"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| matches!(n["status"].as_str(), Some("finished" | "failed")))
        .filter_map(|n| Some((n["id"].as_str()?.to_string(), n)))
        .collect()
}

/// One recovery in one line: what failed, how long until its copies ran elsewhere, and each
/// step, timed from `t0` (the demo's crash) or else from the record's first step (the last
/// renewal the leader received from the host: the fault's first evidence).
fn recovery_line(r: &serde_json::Value, t0: Option<model::Timestamp>) -> String {
    let at = |s: &serde_json::Value| model::Timestamp::parse(s["at"].as_str()?).ok();
    let steps = r["steps"].as_array().map_or(&[][..], |a| a);
    let origin = t0.or_else(|| steps.first().and_then(at));
    let from = if t0.is_some() {
        "the crash"
    } else {
        "its last lease renewal"
    };
    let text: Vec<String> = steps
        .iter()
        .filter_map(|s| {
            let since = at(s)?.since(origin?).as_secs_f64();
            Some(format!("{} +{since:.2}s", s["name"].as_str()?))
        })
        .collect();
    let healthy = steps.iter().find(|s| s["name"] == "healthy").and_then(at);
    let what = format!(
        "{} {}",
        r["type"].as_str().unwrap_or("?"),
        r["hostname"].as_str().unwrap_or("?")
    );
    match (healthy, origin) {
        (Some(h), Some(o)) => format!(
            "recovery of {what}: ran elsewhere {} ms after {from}; steps {}",
            h.since(o).as_millis(),
            text.join(", ")
        ),
        _ => format!(
            "recovery of {what}: {}; steps {}",
            r["status"].as_str().unwrap_or("?"),
            text.join(", ")
        ),
    }
}

/// The scripted demonstration: a host crashes; its instances come back elsewhere; it returns.
/// Returns the id of the recovery record it told.
fn demo(
    c: &mut LocalCluster,
    api: SocketAddr,
    say: &dyn Fn(String),
    stop: &AtomicBool,
    clock: &mut ClockProbe,
    net: u8,
    servers: usize,
) -> Result<Option<String>> {
    // The busiest host that is not a server.
    let placements = client::call_json(api, "GET", "/v1/placements?limit=10000", None)?;
    let hosts = client::call_json(api, "GET", "/v1/hosts?limit=10000", None)?;
    let id_of = |name: &str| {
        hosts["hosts"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["name"] == name))
            .and_then(|h| h["id"].as_str().map(String::from))
    };
    let victim = (servers..c.hosts.len())
        .max_by_key(|&i| {
            let id = id_of(&c.hosts[i].name);
            placements["placements"].as_array().map_or(0, |a| {
                a.iter()
                    .filter(|p| p["host"].as_str() == id.as_deref())
                    .count()
            })
        })
        .context("no host to crash")?;
    let name = c.hosts[victim].name.clone();
    say(format!(
        "demo: crashing {name}: kill -9 of its agent and its instances (its watchdog stays)"
    ));
    let t0 = model::Timestamp::now();
    let crashed = Instant::now();
    let n = c.crash(victim);
    say(format!("demo: {name} ran {n} instance copies"));
    let mut record = None;
    while !stop.load(Ordering::Relaxed) && crashed.elapsed() < Duration::from_secs(60) {
        clock.poll(net);
        record = client::call_json(api, "GET", "/v1/notifications?limit=10000", None)
            .ok()
            .and_then(|v| {
                v["notifications"].as_array().and_then(|a| {
                    a.iter()
                        .find(|n| n["hostname"] == name.as_str() && n["status"] == "finished")
                        .cloned()
                })
            });
        if record.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let told = record
        .as_ref()
        .and_then(|r| r["id"].as_str().map(String::from));
    match record {
        Some(r) => say(format!("demo: {}", recovery_line(&r, Some(t0)))),
        None => say(format!("demo: {name} was not recovered within 60 s")),
    }
    say(format!(
        "demo: restarting {name}; it rejoins by itself (the segments have auto_rejoin)"
    ));
    c.start_agent(victim)?;
    Ok(told)
}

/// The zones demo: every host of a zone without a control-plane server crashes; the clock
/// keeps answering (HAProxy retries on the other zones' copies), its copies come back in the
/// other zones, and HAProxy's backends follow (printed as they change). Then the zone's
/// agents start again and the hosts rejoin.
fn demo_zone(
    c: &mut LocalCluster,
    say: &dyn Fn(String),
    stop: &AtomicBool,
    clock: &mut ClockProbe,
    args: &SandboxArgs,
    haproxy: bool,
) -> Result<()> {
    let z = zones::victim_zone(c, args.zones, args.servers)
        .context("every zone holds a control-plane server: give more --hosts")?;
    let victims: Vec<usize> = (0..c.hosts.len())
        .filter(|&i| zones::zone_of(i, args.zones) == z)
        .collect();
    let names: Vec<String> = victims.iter().map(|&i| c.hosts[i].name.clone()).collect();
    // Both HAProxy copies serve every copy before the crash.
    let t = Instant::now();
    while haproxy
        && !stop.load(Ordering::Relaxed)
        && t.elapsed() < Duration::from_secs(15)
        && !zones::in_sync(c, args.zones)
    {
        clock.poll(args.net);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut last = if haproxy {
        zones::backends(c)
    } else {
        String::new()
    };
    if haproxy {
        say(format!("HAProxy backends: {last}"));
    }
    say(format!(
        "demo: zone {} crashes: kill -9 of {} and their instances",
        zones::zone_name(z),
        names.join(", ")
    ));
    let before = (clock.ok, clock.failed);
    for &i in &victims {
        c.crash(i);
    }
    let t = Instant::now();
    let api = c.http(0);
    let mut back = None;
    while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(30) {
        clock.poll(args.net);
        if haproxy {
            let now = zones::backends(c);
            if now != last {
                say(format!("HAProxy backends: {now}"));
                last = now;
            }
        }
        if back.is_none() {
            let v =
                client::call_json(api, "GET", "/v1/instances/clock", None).unwrap_or(Value::Null);
            let running = v["copies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    c["phase"] == "running" && !names.iter().any(|n| c["host"] == n.as_str())
                })
                .count();
            if running == args.zones {
                back = Some(t.elapsed());
                say(format!(
                    "demo: the clock's {} copies run again in the other zones after {:.2} s",
                    args.zones,
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        if back.is_some_and(|b| t.elapsed() > b + Duration::from_secs(3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say(format!(
        "demo: while zone {} was down the clock answered {} requests, {} failed",
        zones::zone_name(z),
        clock.ok - before.0,
        clock.failed - before.1
    ));
    say(format!(
        "demo: restarting {}; they rejoin by themselves and copies spread back to zone {}",
        names.join(", "),
        zones::zone_name(z)
    ));
    for &i in &victims {
        c.start_agent(i)?;
    }
    Ok(())
}
