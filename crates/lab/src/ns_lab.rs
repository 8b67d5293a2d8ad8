//! Hosts in namespaces for the database labs (the PostgreSQL and Galera labs):
//! host 0 runs the control-plane server, the next ones run database copies, and one more
//! namespace holds a client. Each agent runs in its network namespace and a mount namespace of
//! its own in which its directory is bind-mounted at [`NsLab::mnt`], so that the same path
//! (a data directory, a socket) is a different directory on each host, as on real machines.
//! Every process is ended by PID and the directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::Netns;

/// The hosts of a lab, deleted on drop after every process in them is killed by PID.
pub struct NsLab {
    pub net: Netns,
    pub dir: PathBuf,
    buoy: PathBuf,
    children: Vec<Child>,
    keep: bool,
    namespaces: usize,
}

/// The control-plane server's host index.
pub const SERVER: usize = 0;

/// Polls `ok` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn wait_for(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether this process may create namespaces (root), and which of `files` are missing.
pub fn missing(files: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network and mount namespaces need root".into());
    }
    files
        .iter()
        .find(|f| !Path::new(f).exists())
        .map(|f| format!("{f} missing (scripts/setup-test-deps.sh installs it)"))
}

impl NsLab {
    /// Creates `namespaces` network namespaces and directory `dir` (emptied first) with a
    /// directory for each of the first `agents` hosts; `buoy` is the binary the agents run.
    pub fn create(buoy: &Path, dir: PathBuf, namespaces: usize, agents: usize) -> Result<NsLab> {
        let net = Netns::create(namespaces).context("cannot create network namespaces")?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mnt"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let lab = NsLab {
            net,
            dir,
            buoy: buoy.to_path_buf(),
            children: Vec::new(),
            keep: false,
            namespaces,
        };
        for i in 0..agents {
            std::fs::create_dir_all(lab.host_dir(i))?;
        }
        Ok(lab)
    }

    /// Keeps the directory (logs, data) when dropped.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// Whether the directory is kept when dropped.
    pub fn kept(&self) -> bool {
        self.keep
    }

    pub fn name(i: usize) -> String {
        format!("h{}", i + 1)
    }

    pub fn ip(i: usize) -> String {
        Netns::gossip_ip(i).to_string()
    }

    /// Where host `i`'s own files are; mounted at [`Self::mnt`] inside its mount namespace.
    pub fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join(NsLab::name(i))
    }

    /// The path every host sees its own files at.
    pub fn mnt(&self) -> PathBuf {
        self.dir.join("mnt")
    }

    /// Waits until the control plane answers with h1 as its leader.
    pub fn wait_for_leader(&self) -> Result<()> {
        if !wait_for(Duration::from_secs(30), || {
            let (ok, out) = self.cli(&["status", "--json"]);
            ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["leader"]["name"] == "h1")
        }) {
            bail!("no control plane after 30 s");
        }
        Ok(())
    }

    /// Runs the CLI with `args`, an error with its output when it fails.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let (ok, out) = self.cli(args);
        if !ok {
            bail!("buoy {}: {out}", args.join(" "));
        }
        Ok(out)
    }

    /// Runs the CLI with each of `commands` in turn; the first failure's error.
    pub fn cli_all(&self, commands: &[Vec<&str>]) -> Result<()> {
        for args in commands {
            self.cli_ok(args)?;
        }
        Ok(())
    }

    /// Runs `script` (sh) in host `i`'s namespace in the background until the lab is dropped
    /// or [`Self::kill_all`] ends it.
    pub fn spawn_in(&mut self, i: usize, script: &str, env: &[(&str, &str)]) -> Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i), "sh", "-c", script])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start a process in a namespace")?;
        self.children.push(child);
        Ok(())
    }

    /// Kills every process in host `i`'s namespace.
    pub fn kill_all(&self, i: usize) {
        kill_all_in(&self.net.ns(i));
    }

    /// Crashes host `i`: every process in its namespace killed at once, its link cut. Returns
    /// when, in Unix milliseconds.
    pub fn crash(&self, i: usize) -> u64 {
        let at = unix_ms();
        let _ = self.net.link(i, false);
        kill_all_in(&self.net.ns(i));
        at
    }

    /// Brings crashed host `i` back as it was (its link up, its agent started) and enables it
    /// once the control plane takes it.
    pub fn revive(&mut self, i: usize) -> Result<()> {
        self.wait_failed(i)?;
        self.reboot(i)?;
        self.start_agent(i)?;
        self.enable(i)
    }

    /// Waits until the control plane counts crashed host `i` failed: a host is enabled back
    /// from there (a machine rebooting takes longer than that anyway).
    pub fn wait_failed(&self, i: usize) -> Result<()> {
        let name = NsLab::name(i);
        if !wait_for(Duration::from_secs(30), || {
            let (ok, out) = self.cli(&["host", "show", &name, "--json"]);
            ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["failed"] == true)
        }) {
            bail!(
                "{name} was not counted failed within 30 s: {}",
                self.cli(&["host", "show", &name, "--json"]).1
            );
        }
        Ok(())
    }

    /// Host `i` comes back from its crash as a machine does from a reboot: the addresses its
    /// resources had added (a virtual IP) are gone, then its link comes up.
    pub fn reboot(&self, i: usize) -> Result<()> {
        let out = self.run(i, "ip", &["-o", "-4", "addr", "show", "dev", "eth0"], &[]);
        let own = NsLab::ip(i);
        for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if word.contains('/') && !word.starts_with(&format!("{own}/")) {
                let del = self.run(i, "ip", &["addr", "del", word, "dev", "eth0"], &[]);
                if !del.status.success() {
                    bail!(
                        "cannot remove {word} from {}: {}",
                        NsLab::name(i),
                        String::from_utf8_lossy(&del.stderr)
                    );
                }
            }
        }
        self.net.link(i, true)
    }

    /// `buoy host enable` for host `i`, retried while the control plane does not know it back.
    pub fn enable(&self, i: usize) -> Result<()> {
        let name = NsLab::name(i);
        if !wait_for(Duration::from_secs(30), || {
            self.cli(&["host", "enable", &name]).0
        }) {
            bail!(
                "cannot enable {name}: {}",
                self.cli(&["host", "enable", &name]).1
            );
        }
        Ok(())
    }
    /// Starts `buoy agent` for host `i`, in its network namespace and a mount namespace of its
    /// own with its directory at [`Self::mnt`].
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let name = NsLab::name(i);
        let data = self.host_dir(i).join("buoy");
        let args = crate::netns::lab_agent_args(
            &self.dir,
            &name,
            Netns::gossip_ip(i),
            i == SERVER,
            &data,
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent-{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i)])
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            // `ip netns exec` mounts a sysfs of the namespace's own, which hides the cgroup v2
            // hierarchy: mount it again so the agent contains its instances as on a real host.
            .arg(r#"mount --bind "$0" "$1" && { mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true; } && shift && exec "$@""#)
            .arg(self.host_dir(i))
            .arg(self.mnt())
            .arg(&self.buoy)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}'s agent"))?;
        self.children.push(child);
        Ok(())
    }

    /// Runs `program args` in host `i`'s network namespace.
    pub fn run(&self, i: usize, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i), program])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
                stdout: Vec::new(),
                stderr: format!("cannot run ip netns exec: {e}").into_bytes(),
            })
    }

    /// The CLI against the server's agent: success and its output.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let http = format!("{}:7070", NsLab::ip(SERVER));
        let buoy = self.buoy.display().to_string();
        let out = self.run(SERVER, &buoy, args, &[("BUOY_HTTP_ADDR", &http)]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Node `node`'s attribute `name` in Buoy's attribute store (what the agents wrote).
    pub fn attribute(&self, node: &str, name: &str) -> Option<String> {
        let script = format!(
            "import json, urllib.request; print(json.dumps(json.load(urllib.request.urlopen('http://{}:7070/v1/attributes?node={node}&name={name}', timeout=2))))",
            NsLab::ip(SERVER)
        );
        let out = self.run(SERVER, "python3", &["-c", &script], &[]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["attributes"].as_array()?.first()?["value"]
            .as_str()
            .map(str::to_string)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The agents' logs, the host files `files` (relative to each host's directory) and the
    /// instances' logs of `hosts`, their last lines: what a failure message needs.
    pub fn logs(&self, hosts: &[usize], files: &[&str]) -> String {
        let mut s = String::new();
        for &i in hosts {
            let name = NsLab::name(i);
            s += &format!(
                "--- agent {name}\n{}\n",
                tail(&self.log(&format!("agent-{name}.log")), 60)
            );
            for f in files {
                let text = std::fs::read_to_string(self.host_dir(i).join(f)).unwrap_or_default();
                s += &format!("--- {name}: {f}\n{}\n", tail(&text, 30));
            }
            let runs = self.host_dir(i).join("buoy/instances");
            for f in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                s += &format!("--- {name}: {}\n{}\n", f.path().display(), tail(&text, 40));
            }
        }
        s
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd`; an error with its output when it fails.
pub fn must(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Kills (SIGKILL, by PID) every process in network namespace `ns`.
pub fn kill_all_in(ns: &str) {
    for _ in 0..5 {
        let out = Command::new("ip").args(["netns", "pids", ns]).output();
        let pids: Vec<i32> = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for NsLab {
    fn drop(&mut self) {
        for i in 0..self.namespaces {
            kill_all_in(&self.net.ns(i));
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            return;
        }
        // A process dying as the directory goes may still write into it: try again.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            for i in 0..self.namespaces {
                kill_all_in(&self.net.ns(i));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
