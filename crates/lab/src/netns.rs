//! Network namespaces for a local cluster (`buoy chaos --netns`, root only): one namespace per
//! host with `eth0` on a bridge in a switch namespace. Each host has two addresses on `eth0`:
//! gossip on 10.77.0.I and HTTP on 10.78.0.I, so that links can be cut with `ip` alone (this
//! kernel may have no traffic-control or firewall modules): a link down cuts everything, and
//! blackhole routes cut one direction, or gossip only. The calling thread joins the switch
//! namespace (its bridge has 10.77.0.254 and 10.78.0.254) to reach the hosts; threads it
//! starts afterwards are there too. Everything is deleted on drop.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// The namespaces of one cluster.
pub struct Netns {
    tag: String,
    hosts: usize,
    /// Blackhole routes added, per host namespace: (host, destination).
    routes: Mutex<Vec<(usize, Ipv4Addr)>>,
}

/// Runs `ip args...`.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Host `i`'s (0-based) gossip address.
    pub fn gossip_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    /// Host `i`'s HTTP address.
    pub fn http_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, 0, i as u8 + 1)
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-h{}", self.tag, i + 1)
    }

    /// The switch namespace (the bridge every host is on).
    pub fn switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// Creates the switch and `hosts` host namespaces.
    pub fn create(hosts: usize) -> Result<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("--netns needs root (it creates network namespaces)");
        }
        if hosts > 250 {
            bail!("--netns supports up to 250 hosts");
        }
        let tag = format!("buoy{}", std::process::id());
        let n = Netns {
            tag,
            hosts,
            routes: Mutex::new(Vec::new()),
        };
        let sw = n.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        ip(&["-n", &sw, "addr", "add", "10.77.0.254/24", "dev", "br0"])?;
        ip(&["-n", &sw, "addr", "add", "10.78.0.254/24", "dev", "br0"])?;
        for i in 0..hosts {
            let ns = n.ns(i);
            let (a, b) = (
                format!("bh{}a{}", i + 1, std::process::id() % 10_000),
                format!("bh{}b{}", i + 1, std::process::id() % 10_000),
            );
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &ns])?;
            ip(&["link", "set", &b, "netns", &sw])?;
            ip(&["-n", &ns, "link", "set", &a, "name", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            let g = format!("{}/24", Netns::gossip_ip(i));
            let h = format!("{}/24", Netns::http_ip(i));
            ip(&["-n", &ns, "addr", "add", &g, "dev", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &h, "dev", "eth0"])?;
            ip(&["-n", &sw, "link", "set", &b, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &b, "up"])?;
        }
        Ok(n)
    }

    /// Moves the calling thread into the switch namespace (threads it starts follow).
    pub fn enter_switch(&self) -> Result<()> {
        enter(&format!("/run/netns/{}", self.switch()))
    }

    /// Brings host `i`'s link down (everything cut) or up.
    pub fn link(&self, i: usize, up: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.ns(i),
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ])
    }

    /// Drops what host `i` sends to `to`.
    pub fn blackhole(&self, i: usize, to: Ipv4Addr) -> Result<()> {
        ip(&[
            "-n",
            &self.ns(i),
            "route",
            "add",
            "blackhole",
            &format!("{to}/32"),
        ])?;
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((i, to));
        Ok(())
    }

    /// Removes every blackhole route and brings every link up.
    pub fn heal(&self) {
        let routes = std::mem::take(&mut *self.routes.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, to) in routes {
            let _ = ip(&[
                "-n",
                &self.ns(i),
                "route",
                "del",
                "blackhole",
                &format!("{to}/32"),
            ]);
        }
        for i in 0..self.hosts {
            let _ = self.link(i, true);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`).
pub fn enter(path: &str) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    // SAFETY: setns on a namespace file we hold open; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns into {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `buoy agent` arguments of lab host `name` in its namespace, at `addr`: gossip on port
/// 7946 and HTTP on 7070 of that address, the `local` profile, no watchdog, data in `data`,
/// its identity and the gossip keyring from files in `dir`. The server (`server`) is the
/// first host; the others join it.
pub fn lab_agent_args(
    dir: &std::path::Path,
    name: &str,
    addr: Ipv4Addr,
    server: bool,
    data: &std::path::Path,
) -> Result<Vec<String>> {
    let mut args = vec![
        "agent".to_string(),
        "--name".into(),
        name.into(),
        "--bind".into(),
        format!("{addr}:7946"),
        "--http".into(),
        format!("{addr}:7070"),
        "--profile".into(),
        "local".into(),
        "--unsafe-no-watchdog".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    if server {
        args.push("--server".into());
    } else {
        args.extend(["--join".into(), format!("{}:7946", Netns::gossip_ip(0))]);
    }
    args.extend(crate::identity_files::agent_args(dir, name, server)?);
    args.extend(crate::identity_files::keyring_args(dir)?);
    Ok(args)
}
