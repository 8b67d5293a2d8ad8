//! `buoy sandbox`: a whole local cluster on this machine. It starts one agent process per host
//! on its own 127.0.0.x address, shows the membership live, and (unless `--no-demo`) kills a
//! host with SIGKILL to show detection, then restarts it to show the rejoin. Ctrl-C stops
//! every process it started and removes its files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::client;

/// Flags of `buoy sandbox`.
#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Hosts (agent processes) to start.
    #[arg(long, default_value_t = 5)]
    pub hosts: usize,
    /// Skip the scripted kill-and-restart demonstration.
    #[arg(long)]
    pub no_demo: bool,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Timing profile of the agents.
    #[arg(long, default_value = "local")]
    pub profile: String,
    /// First address octet used: hosts get 127.0.0.(BASE+1), 127.0.0.(BASE+2)...
    #[arg(long, default_value_t = 10)]
    pub base: u8,
}

/// One agent process of the sandbox.
struct Host {
    name: String,
    gossip: SocketAddr,
    http: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

struct Sandbox {
    dir: PathBuf,
    hosts: Vec<Host>,
    seeds: Vec<SocketAddr>,
    profile: String,
    started: Instant,
}

impl Sandbox {
    fn say(&self, msg: impl AsRef<str>) {
        println!(
            "[{:>7.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let exe = std::env::current_exe().context("cannot find the buoy executable")?;
        let h = &self.hosts[i];
        let log = std::fs::File::create(&h.log)
            .with_context(|| format!("cannot create {}", h.log.display()))?;
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .filter(|s| **s != h.gossip)
            .map(|s| s.to_string())
            .collect();
        let mut cmd = Command::new(exe);
        cmd.args([
            "agent",
            "--name",
            &h.name,
            "--bind",
            &h.gossip.to_string(),
            "--http",
            &h.http.to_string(),
        ])
        .args(["--profile", &self.profile, "--enable-fault-injection"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        if !seeds.is_empty() {
            cmd.args(["--join", &seeds.join(",")]);
        }
        if i == 0 {
            // The first host is the control plane's single server.
            cmd.arg("--server")
                .arg("--data-dir")
                .arg(self.dir.join(format!("data-{}", h.name)));
        }
        let child = cmd.spawn().context("cannot start an agent process")?;
        self.hosts[i].child = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize, signal: i32) {
        if let Some(c) = &self.hosts[i].child {
            // SAFETY: kill(2) on a PID we started; no memory is touched.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// Each running host's view: observer -> (member -> (state, incarnation)).
    fn views(&self) -> BTreeMap<String, BTreeMap<String, (String, u64)>> {
        let mut out = BTreeMap::new();
        for h in self.hosts.iter().filter(|h| h.child.is_some()) {
            if let Ok(v) = client::get_json(h.http, "/v1/members") {
                let view = v["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let name = m["name"].as_str().unwrap_or("?").to_string();
                        (
                            name,
                            (
                                m["state"].as_str().unwrap_or("?").to_string(),
                                m["incarnation"].as_u64().unwrap_or(0),
                            ),
                        )
                    })
                    .collect();
                out.insert(h.name.clone(), view);
            }
        }
        out
    }

    /// Waits until every running host other than `subject` sees `subject` in `state`.
    fn wait_for(
        &self,
        subject: &str,
        state: &str,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout && !stop.load(Ordering::Relaxed) {
            let views = self.views();
            let others: Vec<_> = views
                .iter()
                .filter(|(o, _)| o.as_str() != subject)
                .collect();
            if !others.is_empty()
                && others
                    .iter()
                    .all(|(_, v)| v.get(subject).is_some_and(|(s, _)| s == state))
            {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn print_table(&self) {
        let views = self.views();
        let Some((observer, view)) = views.iter().next() else {
            return;
        };
        println!(
            "           {:<10} {:<18} {:<8} {:>11}   (view of {observer})",
            "MEMBER", "ADDRESS", "STATE", "INCARNATION"
        );
        for (name, (state, inc)) in view {
            let addr = self
                .hosts
                .iter()
                .find(|h| &h.name == name)
                .map_or("?".into(), |h| h.gossip.to_string());
            println!("           {name:<10} {addr:<18} {state:<8} {inc:>11}");
        }
    }

    fn stop_all(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill(i, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for h in &mut self.hosts {
            if let Some(mut c) = h.child.take() {
                while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(args: SandboxArgs) -> Result<()> {
    if !(2..=200).contains(&args.hosts) {
        bail!("--hosts {}: expected 2 to 200", args.hosts);
    }
    if usize::from(args.base) + args.hosts > 254 {
        bail!(
            "--base {} leaves no room for {} hosts in 127.0.0.x",
            args.base,
            args.hosts
        );
    }
    swim::Config::profile(&args.profile).context("--profile")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let _ = tokio::signal::ctrl_c().await;
                });
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let dir = std::env::temp_dir().join(format!("buoy-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let hosts: Vec<Host> = (1..=args.hosts)
        .map(|i| {
            let ip = [127, 0, 0, args.base + i as u8];
            Host {
                name: format!("host-{i}"),
                gossip: SocketAddr::from((ip, 7946)),
                http: SocketAddr::from((ip, 7070)),
                child: None,
                log: dir.join(format!("host-{i}.log")),
            }
        })
        .collect();
    let seeds = hosts.iter().take(2).map(|h| h.gossip).collect();
    let mut sb = Sandbox {
        dir,
        hosts,
        seeds,
        profile: args.profile.clone(),
        started: Instant::now(),
    };
    let result = demo(&mut sb, &args, &stop);
    sb.say("stopping every agent and removing the sandbox files");
    sb.stop_all();
    result
}

/// Waits for the control plane (host-1 is its server), then registers a segment and every
/// host in it through the API, as an operator would.
fn register_hosts(sb: &Sandbox, stop: &AtomicBool) -> Result<()> {
    let api = sb.hosts[0].http;
    let t0 = Instant::now();
    while client::call_json(api, "GET", "/v1/segments", None).is_err() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the control plane did not start within 30 s; see {}",
                sb.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let segment = serde_json::json!({"name": "sandbox", "description": "the sandbox's hosts"});
    client::call_json(api, "POST", "/v1/segments", Some(&segment))?;
    for h in &sb.hosts {
        let host = serde_json::json!({"name": h.name, "segment": "sandbox"});
        client::call_json(api, "POST", "/v1/hosts", Some(&host))?;
    }
    sb.say(format!(
        "control plane up on {} (1 server, Raft + redb): segment `sandbox` with {} hosts registered",
        sb.hosts[0].name,
        sb.hosts.len()
    ));
    Ok(())
}

fn demo(sb: &mut Sandbox, args: &SandboxArgs, stop: &AtomicBool) -> Result<()> {
    sb.say(format!(
        "starting {} agents (profile {}), logs in {}",
        args.hosts,
        args.profile,
        sb.dir.display()
    ));
    for i in 0..sb.hosts.len() {
        sb.start(i)?;
    }
    let n = sb.hosts.len();
    let t0 = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let views = sb.views();
        if views.len() == n
            && views
                .values()
                .all(|v| v.values().filter(|(s, _)| s == "alive").count() == n)
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the cluster did not form within 30 s; see the logs in {}",
                sb.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sb.say(format!(
        "cluster formed: all {n} agents see {n} alive members ({} ms)",
        t0.elapsed().as_millis()
    ));
    sb.print_table();
    register_hosts(sb, stop)?;
    println!();
    println!("  try:  buoy members --http {}", sb.hosts[0].http);
    println!("        buoy status --http {}", sb.hosts[0].http);
    println!("        buoy host list --http {}", sb.hosts[0].http);
    for h in &sb.hosts {
        if let Some(c) = &h.child {
            println!(
                "        kill -9 {:<8} # crash {} ({})",
                c.id(),
                h.name,
                h.gossip
            );
        }
    }
    println!();
    if !args.no_demo {
        std::thread::sleep(Duration::from_secs(2));
        let victim = n - 1;
        let name = sb.hosts[victim].name.clone();
        sb.say(format!("demo: kill -9 {name} (a host crash)"));
        sb.kill(victim, libc::SIGKILL);
        if let Some(mut c) = sb.hosts[victim].child.take() {
            let _ = c.wait();
        }
        match sb.wait_for(&name, "dead", Duration::from_secs(30), stop) {
            Some(d) => sb.say(format!(
                "demo: every other agent declared {name} dead {} ms after the crash",
                d.as_millis()
            )),
            None => sb.say(format!(
                "demo: {name} was not declared dead everywhere within 30 s"
            )),
        }
        sb.say(format!("demo: restarting {name}"));
        sb.start(victim)?;
        match sb.wait_for(&name, "alive", Duration::from_secs(30), stop) {
            Some(d) => sb.say(format!(
                "demo: {name} rejoined with a higher incarnation after {} ms",
                d.as_millis()
            )),
            None => sb.say(format!("demo: {name} did not rejoin within 30 s")),
        }
        sb.print_table();
    }
    sb.say("watching membership; press Ctrl-C to stop");
    let deadline = args.duration.map(|d| sb.started + Duration::from_secs(d));
    let mut last = sb.views();
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(200));
        for i in 0..sb.hosts.len() {
            let exited = sb.hosts[i]
                .child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                sb.hosts[i].child = None;
                sb.say(format!("{} exited", sb.hosts[i].name));
            }
        }
        let now = sb.views();
        for (observer, view) in &now {
            for (member, (state, inc)) in view {
                let before = last.get(observer).and_then(|v| v.get(member));
                if before.map(|(s, _)| s) != Some(state) {
                    let was = before.map_or("unknown", |(s, _)| s.as_str());
                    sb.say(format!(
                        "{observer} sees {member}: {was} -> {state} (incarnation {inc})"
                    ));
                }
            }
        }
        last = now;
    }
    Ok(())
}
