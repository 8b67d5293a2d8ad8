//! `buoy sandbox --zones N`: the zones scenario. Every host carries a `zone` label (`a`, `b`,
//! ... in turn); the clock app is spread over the zones, one copy per zone, behind a real
//! HAProxy run as a Buoy clone of 2 copies (one per zone; its backend kept equal to the
//! running copies through its admin socket), where Debian's haproxy is installed. On loopback
//! there is no virtual IP: the sandbox's own address stands in for it and forwards to the
//! HAProxy copies. The demo crashes every host of a zone that holds no control-plane server;
//! the clock keeps answering, its copies come back in the other zones, and HAProxy's backend
//! follows, which the sandbox prints as it changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::local_cluster::LocalCluster;

/// Debian's HAProxy.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// HAProxy's port on each host running a copy.
pub const LB_PORT: u16 = 8090;

/// Zone `k`'s name.
pub fn zone_name(k: usize) -> String {
    ((b'a' + k as u8) as char).to_string()
}

/// The zone of host `i` (hosts take the zones in turn).
pub fn zone_of(i: usize, zones: usize) -> usize {
    i % zones
}

/// Where the HAProxy copies keep their configuration and sockets.
fn lb_dir(c: &LocalCluster) -> PathBuf {
    c.path().join("haproxy")
}

/// Whether HAProxy can run here.
pub fn haproxy_available() -> bool {
    Path::new(HAPROXY).exists()
}

/// Writes every host's HAProxy configuration and creates the `lb` instance: 2 copies spread
/// over the zones, each HAProxy listening on its host's address.
pub fn create_lb(c: &LocalCluster, segment: &str) -> Result<()> {
    let dir = lb_dir(c);
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    for h in &c.hosts {
        let cfg = format!(
            "global\n  stats socket {d}/{name}.sock level admin\n\
             defaults\n  mode http\n  timeout connect 500ms\n  timeout client 10s\n  timeout server 1s\n\
             \x20 retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout 503\n\
             frontend clock\n  bind {ip}:{LB_PORT}\n  default_backend clock\n\
             backend clock\n  balance roundrobin\n  option httpchk GET /\n  default-server inter 500ms fall 2 rise 1\n\
             \x20 # buoy:begin clock\n  # buoy:end clock\n",
            name = h.name,
            ip = h.ip
        );
        std::fs::write(dir.join(format!("{}.cfg", h.name)), cfg)?;
    }
    client::call_json(
        c.http(0),
        "POST",
        "/v1/instances",
        Some(
            &json!({"name": "lb", "segment": segment, "driver": "process", "mode": "clone",
            "replicas": 2, "spread": {"label": "zone"}, "priority": 950,
            "cpu": 0.25, "memory_mb": 64,
            "params": {"command": "/bin/sh",
                       "args": ["-c", format!("exec {HAPROXY} -db -f {d}/$BUOY_HOST.cfg")]},
            "health_checks": [{"type": "tcp", "host": "host-ip", "port": LB_PORT}],
            "load_balancer": {"admin_socket": format!("{d}/{{host}}.sock"),
                              "config": format!("{d}/{{host}}.cfg")}}),
        ),
    )?;
    Ok(())
}

/// Whether two HAProxy copies each serve `copies` servers.
pub fn in_sync(c: &LocalCluster, copies: usize) -> bool {
    let line = backends(c);
    let parts: Vec<&str> = line.split(" | ").filter(|p| !p.is_empty()).collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            p.split_once(": ")
                .is_some_and(|(_, s)| s.split(' ').filter(|x| !x.is_empty()).count() == copies)
        })
}

/// The servers serving in each running HAProxy copy's backend, one line: `h2: clock-0@h3
/// clock-1@h5 | h4: ...`.
pub fn backends(c: &LocalCluster) -> String {
    let dir = lb_dir(c);
    let by_ip = |ip: &str| {
        c.hosts
            .iter()
            .find(|h| h.ip == ip)
            .map_or(ip.to_string(), |h| h.name.clone())
    };
    let mut parts = Vec::new();
    for h in &c.hosts {
        let socket = dir.join(format!("{}.sock", h.name));
        if !socket.exists() {
            continue;
        }
        let Ok(list) =
            node::balancer::admin_socket::servers(&socket, "clock", Duration::from_millis(500))
        else {
            continue;
        };
        let mut servers: Vec<String> = list
            .iter()
            .filter(|s| !s.in_maintenance() && !s.draining())
            .map(|s| format!("{}@{}", s.name, by_ip(&s.addr)))
            .collect();
        servers.sort();
        parts.push(format!("{}: {}", h.name, servers.join(" ")));
    }
    parts.join(" | ")
}

/// The addresses the sandbox's front forwards to: the hosts' HAProxy ports.
pub fn fronted(c: &LocalCluster) -> Result<Vec<SocketAddr>> {
    Ok(c.hosts
        .iter()
        .map(|h| format!("{}:{LB_PORT}", h.ip).parse())
        .collect::<Result<Vec<SocketAddr>, _>>()?)
}

/// The zone to crash in the demo: the one with the most clock copies among those without a
/// control-plane server (hosts `0..servers`).
pub fn victim_zone(c: &LocalCluster, zones: usize, servers: usize) -> Option<usize> {
    let copies = copies_per_host(c);
    (0..zones)
        .filter(|&z| (0..servers).all(|i| zone_of(i, zones) != z))
        .max_by_key(|&z| {
            (0..c.hosts.len())
                .filter(|&i| zone_of(i, zones) == z)
                .map(|i| copies.get(&c.hosts[i].name).copied().unwrap_or(0))
                .sum::<usize>()
        })
}

/// Copies of the clock per host name.
fn copies_per_host(c: &LocalCluster) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let v: Value =
        client::call_json(c.http(0), "GET", "/v1/instances/clock", None).unwrap_or(Value::Null);
    for copy in v["copies"].as_array().into_iter().flatten() {
        if let Some(h) = copy["host"].as_str() {
            *out.entry(h.to_string()).or_default() += 1;
        }
    }
    out
}
