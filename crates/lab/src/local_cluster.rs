//! A Buoy cluster of real processes on this machine, for benchmarks (and the sandbox): one
//! agent per host on its own loopback address `127.0.NET.i`, a `buoy watchdog` beside each
//! (it outlives a killed agent, as a hardware watchdog would), the first `servers` hosts
//! being the control plane. Every process is ended by PID when the cluster is dropped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One host: its agent and its watchdog.
pub struct LocalHost {
    pub name: String,
    /// Its HTTP address's IP (and, on loopback, its gossip IP too).
    pub ip: String,
    gossip_ip: String,
    agent: Option<Child>,
    watchdog: Option<Child>,
}

/// The cluster's processes and files.
pub struct LocalCluster {
    pub dir: PathBuf,
    pub hosts: Vec<LocalHost>,
    servers: usize,
    profile: String,
    exe: PathBuf,
    keep_dir: bool,
    /// Hosts in their own network namespaces (`buoy chaos --netns`).
    netns: Option<crate::netns::Netns>,
}

impl LocalCluster {
    /// Hosts `h1..=hN` on `127.0.net.1..=N`; nothing is started yet.
    pub fn new(net: u8, hosts: usize, servers: usize, profile: &str) -> Result<LocalCluster> {
        if !(1..=250).contains(&hosts) || servers == 0 || servers > hosts {
            bail!("a local cluster has 1 to 250 hosts, 1 to that many of them servers");
        }
        let dir = std::env::temp_dir().join(format!("buoy-local-{net}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(LocalCluster {
            dir,
            hosts: (1..=hosts)
                .map(|i| LocalHost {
                    name: format!("h{i}"),
                    ip: format!("127.0.{net}.{i}"),
                    gossip_ip: format!("127.0.{net}.{i}"),
                    agent: None,
                    watchdog: None,
                })
                .collect(),
            servers,
            profile: profile.to_string(),
            exe: std::env::current_exe().context("cannot find the buoy executable")?,
            keep_dir: false,
            netns: None,
        })
    }

    /// Like `new`, but every host lives in its own network namespace (root only); the calling
    /// thread moves into the namespaces' switch to reach them.
    pub fn new_in_netns(hosts: usize, servers: usize, profile: &str) -> Result<LocalCluster> {
        let mut c = LocalCluster::new(0, hosts, servers, profile)?;
        let n = crate::netns::Netns::create(hosts)?;
        n.enter_switch()?;
        for (i, h) in c.hosts.iter_mut().enumerate() {
            h.ip = crate::netns::Netns::http_ip(i).to_string();
            h.gossip_ip = crate::netns::Netns::gossip_ip(i).to_string();
        }
        c.netns = Some(n);
        Ok(c)
    }

    /// The HTTP API address of host `i` (0-based).
    pub fn http(&self, i: usize) -> SocketAddr {
        format!("{}:7070", self.hosts[i].ip)
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7070)))
    }

    /// Calls host `i`'s own routes (its supervisor, its fault filter...), signed with that
    /// host's credential as its gate asks (`node::http::host_gate`).
    pub fn host_call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let name = &self.hosts[i].name;
        client::call_json_with(self.http(i), method, path, body, |b| {
            crate::identity_files::sign_for(&self.dir, name, method, path, b)
        })
    }

    /// A signed `GET path` of host `i`'s own routes, waiting at most `timeout`.
    pub fn host_get(&self, i: usize, path: &str, timeout: Duration) -> Result<client::Response> {
        let headers =
            crate::identity_files::sign_for(&self.dir, &self.hosts[i].name, "GET", path, b"");
        client::request_with(self.http(i), "GET", path, None, timeout, &headers)
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir
            .join(format!("watchdog-{}.sock", self.hosts[i].name))
    }

    /// The agent log of host `i`.
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("agent-{}.log", self.hosts[i].name))
    }

    /// Starts every watchdog, then every agent.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.hosts.len() {
            self.start_watchdog(i)?;
        }
        for i in 0..self.hosts.len() {
            self.start_agent(i)?;
        }
        Ok(())
    }

    fn start_watchdog(&mut self, i: usize) -> Result<()> {
        let socket = self.socket(i);
        let log = std::fs::File::create(
            self.dir
                .join(format!("watchdog-{}.log", self.hosts[i].name)),
        )?;
        let child = Command::new(&self.exe)
            .arg("watchdog")
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a watchdog")?;
        self.hosts[i].watchdog = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("the watchdog of {} does not listen", self.hosts[i].name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts (or restarts) host `i`'s agent.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let h = &self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))?;
        let mut cmd = match &self.netns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.ns(i)]).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(["agent", "--name", &h.name, "--profile", &self.profile])
            .args(["--bind", &format!("{}:7946", h.gossip_ip)])
            .args(["--http", &format!("{}:7070", h.ip)])
            .arg("--data-dir")
            .arg(self.dir.join(format!("data-{}", h.name)))
            .arg("--watchdog")
            .arg(self.socket(i))
            .arg("--enable-fault-injection")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if i < self.servers {
            cmd.args(["--server", "--bootstrap-expect", &self.servers.to_string()]);
        }
        cmd.args(crate::identity_files::agent_args(
            &self.dir,
            &h.name,
            i < self.servers,
        )?);
        cmd.args(crate::identity_files::keyring_args(&self.dir)?);
        let seeds: Vec<String> = (0..self.servers)
            .filter(|&s| s != i)
            .map(|s| format!("{}:7946", self.hosts[s].gossip_ip))
            .collect();
        if !seeds.is_empty() {
            cmd.args(["--join", &seeds.join(",")]);
        }
        let child = cmd.spawn().context("cannot start an agent")?;
        self.hosts[i].agent = Some(child);
        Ok(())
    }

    /// The PID of host `i`'s agent, while it runs.
    pub fn agent_pid(&self, i: usize) -> Option<i32> {
        self.hosts[i].agent.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `signal` to host `i`'s agent; SIGKILL also reaps it.
    pub fn signal_agent(&mut self, i: usize, signal: i32) {
        if let Some(pid) = self.agent_pid(i) {
            // SAFETY: kill(2) on a PID this cluster started; no memory is touched.
            unsafe { libc::kill(pid, signal) };
        }
        if signal == libc::SIGKILL
            && let Some(mut c) = self.hosts[i].agent.take()
        {
            let _ = c.wait();
        }
    }

    /// A host crash: kill -9 of host `i`'s agent and of its instances (their process groups,
    /// as its supervisor reports them); its watchdog stays, as hardware would. Returns how
    /// many instances it ran.
    pub fn crash(&mut self, i: usize) -> usize {
        let pids: Vec<i32> = self
            .host_call(i, "GET", "/v1/supervisor", None)
            .ok()
            .and_then(|v| {
                v["instances"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|o| o["pid"].as_i64().map(|p| p as i32))
                        .collect()
                })
            })
            .unwrap_or_default();
        self.signal_agent(i, libc::SIGKILL);
        for pid in &pids {
            // SAFETY: kill(2) on the process groups of instances this cluster started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        pids.len()
    }

    /// Restarts host `i`'s agent (gracefully stopping it first if it runs).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.hosts[i].agent.take() {
            // SAFETY: kill(2) on a PID this cluster started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start_agent(i)
    }

    /// Cuts host `i` from every other host, both ways (its link goes down in netns mode).
    pub fn partition(&self, i: usize) -> Result<()> {
        match &self.netns {
            Some(n) => n.link(i, false),
            None => self.cut(i, "both", "all", true),
        }
    }

    /// Cuts gossip only between host `i` and every other host, both ways: host `i` looks dead
    /// to membership but still renews its lease (an isolated host, rule S3).
    pub fn isolate(&self, i: usize) -> Result<()> {
        use crate::netns::Netns;
        let Some(n) = &self.netns else {
            return self.cut(i, "both", "gossip", true);
        };
        self.each_other(i, |j| {
            n.blackhole(i, Netns::gossip_ip(j))?;
            n.blackhole(j, Netns::gossip_ip(i))
        })
    }

    /// Host `i` can no longer send anything to the others (one-way partition); it still
    /// hears them.
    pub fn mute(&self, i: usize) -> Result<()> {
        use crate::netns::Netns;
        let Some(n) = &self.netns else {
            return self.cut(i, "out", "all", false);
        };
        self.each_other(i, |j| {
            n.blackhole(i, Netns::gossip_ip(j))?;
            n.blackhole(i, Netns::http_ip(j))
        })
    }

    /// Runs `f` for every host other than `i`.
    fn each_other(&self, i: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<()> {
        (0..self.hosts.len())
            .filter(|&j| j != i)
            .try_for_each(&mut f)
    }

    fn cut(&self, i: usize, direction: &str, scope: &str, both_sides: bool) -> Result<()> {
        let others: Vec<usize> = (0..self.hosts.len()).filter(|&j| j != i).collect();
        let rule = |peers: Vec<&str>| serde_json::json!({"drop": peers.iter().map(|p| serde_json::json!({"peer": p, "direction": direction, "scope": scope})).collect::<Vec<_>>()});
        let names: Vec<&str> = others
            .iter()
            .map(|&j| self.hosts[j].name.as_str())
            .collect();
        self.host_call(i, "POST", "/v1/debug/faults", Some(&rule(names)))?;
        if both_sides {
            for j in others {
                let _ = self.host_call(
                    j,
                    "POST",
                    "/v1/debug/faults",
                    Some(&rule(vec![self.hosts[i].name.as_str()])),
                );
            }
        }
        Ok(())
    }

    /// Clears every agent's fault filter (and, in netns mode, every cut link and route).
    pub fn heal(&self) {
        if let Some(n) = &self.netns {
            n.heal();
            return;
        }
        for j in 0..self.hosts.len() {
            let _ = self.host_call(
                j,
                "POST",
                "/v1/debug/faults",
                Some(&serde_json::json!({"drop": []})),
            );
        }
    }

    /// Waits until host `i`'s API answers with a control-plane leader.
    pub fn wait_for_leader(&self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(v) = client::call_json(self.http(i), "GET", "/v1/status", None)
                && v["leader"]["name"].is_string()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "no control-plane leader after {timeout:?}; see {}",
                    self.log(i).display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Keeps the directory (logs, data) when the cluster is dropped.
    pub fn keep_files(&mut self) {
        self.keep_dir = true;
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// One placed copy, as `GET /v1/placements` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub id: String,
    pub instance: String,
    pub replica: u64,
    /// Host id.
    pub host: String,
    pub epoch: u64,
}

/// A POST during a cluster's setup: retried while the control plane answers 503 (a leader
/// election right after start, or under load), for up to 30 s.
pub fn post_setup(addr: SocketAddr, path: &str, body: &Value) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client::call_json(addr, "POST", path, Some(body)) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline && format!("{e:#}").contains("HTTP 503") => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A GET as JSON, with a short timeout (a hung agent must not stall a benchmark or the
/// chaos schedule).
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Value> {
    let r = client::request(addr, "GET", path, None, Duration::from_secs(2))?;
    if !(200..300).contains(&r.status) {
        bail!("GET {path}: HTTP {}", r.status);
    }
    serde_json::from_str(&r.body).with_context(|| format!("GET {path}: not JSON"))
}

/// Every placement.
pub fn placements(api: SocketAddr) -> Result<Vec<Placed>> {
    let v = get_json(api, "/v1/placements?limit=10000")?;
    Ok(v["placements"]
        .as_array()
        .map_or(&[][..], |a| a)
        .iter()
        .filter_map(|p| {
            Some(Placed {
                id: p["id"].as_str()?.to_string(),
                instance: p["instance"].as_str()?.to_string(),
                replica: p["replica"].as_u64()?,
                host: p["host"].as_str()?.to_string(),
                epoch: p["epoch"].as_u64()?,
            })
        })
        .collect())
}

/// (placement id, epoch) of every copy the `instances` of a supervisor report show running.
pub fn running_in(report: &Value) -> BTreeSet<(String, u64)> {
    report["instances"]
        .as_array()
        .map_or(&[][..], |a| a)
        .iter()
        .filter(|o| o["phase"] == "running")
        .filter_map(|o| Some((o["placement"].as_str()?.to_string(), o["epoch"].as_u64()?)))
        .collect()
}

/// (placement id, epoch) of every copy the leader's copy of the hosts' reports shows running.
pub fn reported_running(api: SocketAddr) -> Result<BTreeSet<(String, u64)>> {
    let v = get_json(api, "/v1/observed")?;
    Ok(v["hosts"]
        .as_object()
        .into_iter()
        .flat_map(|h| h.values())
        .flat_map(running_in)
        .collect())
}

/// How many placements are reported running at their current epoch by hosts that still run
/// things: a failed host's last, stale report does not count, nor does a dead one's (it no
/// longer renews its lease, so its copies are being killed).
pub fn running_count(api: SocketAddr) -> Result<usize> {
    let up = reported_running(api)?;
    let hosts = get_json(api, "/v1/hosts?limit=10000")?;
    let live: BTreeSet<&str> = hosts["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            matches!(
                h["status"].as_str(),
                Some("alive" | "suspect" | "isolated" | "maintenance")
            )
        })
        .filter_map(|h| h["id"].as_str())
        .collect();
    Ok(placements(api)?
        .iter()
        .filter(|p| live.contains(p.host.as_str()) && up.contains(&(p.id.clone(), p.epoch)))
        .count())
}

impl Drop for LocalCluster {
    /// Agents get SIGTERM first, so that they stop their instances; whatever still runs
    /// after a grace period is killed; then the watchdogs.
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Some(c) = &h.agent {
                // SAFETY: kill(2) on PIDs this cluster started (SIGCONT first: a stopped
                // process cannot act on SIGTERM).
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGCONT);
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for h in &mut self.hosts {
            if let Some(mut c) = h.agent.take() {
                while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for h in &mut self.hosts {
            if let Some(mut c) = h.watchdog.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
