//! A zones lab (issue 19): hosts in network and mount namespaces of their own, grouped in
//! zones by a host label; a clock service (`buoy demo-app`) spread over the zones behind a
//! real HAProxy run as a Buoy clone of 2 copies (one per zone, its backend kept equal to the
//! running copies), and an `ocf:heartbeat:IPaddr2` virtual IP colocated with an HAProxy copy.
//! A client in the switch namespace requests through the virtual IP every 50 ms and records
//! each answer. Used by `tests/zones_vip.rs` and `buoy bench zone-failure`.
//!
//! With a database ([`ZoneLab::start`] with `db`), the clock copies answer with the time they
//! read from a replicated PostgreSQL (`lab::postgres_lab::PgPair`: the unmodified
//! `ocf:heartbeat:pgsql` as a promotable instance of 2 copies, synchronous replication, and a
//! virtual IP of its own), every 5 s, as in the original clock demonstration. The database
//! hosts are the first host of zones `a` and `b`, the first primary preferred in zone `b`
//! (then the preference is cleared); HAProxy runs only in zones `a` and `c`. So killing zone `b` takes the database primary with it: the
//! clock copies keep answering with their last read during the database failover (about 6 s),
//! then read from the new primary in zone `a`.
//!
//! HAProxy retries a request whose server does not answer on another server (`retries`,
//! `option redispatch`, `retry-on`): a client request counts as failed only when HAProxy could
//! not serve it at all.
//!
//! Needs root, `ip netns`, `unshare`, HAProxy and resource-agents (scripts/setup-test-deps.sh
//! installs them); [`ZoneLab::missing`] says what is absent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::netns::enter;
pub use crate::ns_lab::SERVER;
use crate::ns_lab::{NsLab, unix_ms, wait_for};
use crate::postgres_lab::{PG_BIN, PgPair};

/// Debian's HAProxy.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// The virtual IP clients use.
pub const VIP: &str = "10.77.0.60";
/// HAProxy's port (on every address of its host, the VIP included).
pub const LB_PORT: u16 = 8080;
/// The port each clock copy serves on, at its host's address.
pub const APP_PORT: u16 = 8081;
/// The database's virtual IP (with a database).
pub const DB_VIP: &str = "10.77.0.61";
/// The zone that holds the database's preferred primary and no HAProxy (with a database).
pub const DB_ZONE: usize = 1;

/// One request of the client: when it was sent, how long it took, and whether a copy
/// answered it (`answer`: its first line) or why not.
#[derive(Clone, Debug)]
pub struct Request {
    pub sent_ms: u64,
    pub took_ms: u64,
    pub answer: Result<String, String>,
}

/// The client requesting through the VIP every 50 ms (a thread in the switch namespace).
pub struct Client {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` requests were answered; an error with the last one otherwise.
    pub fn wait_answered(&self, n: usize, timeout: Duration) -> Result<()> {
        if !wait_for(timeout, || {
            self.requests().iter().filter(|r| r.answer.is_ok()).count() >= n
        }) {
            bail!(
                "the client got fewer than {n} answers in {timeout:?}; the last: {:?}",
                self.requests().last()
            );
        }
        Ok(())
    }

    /// Stops the client; its requests.
    pub fn stop(mut self) -> Vec<Request> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.requests()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The database's time in a clock answer (`clock R host TIME db DB_TIME age Nms`, with a
/// database), in Unix ms.
pub fn db_time(answer: &str) -> Option<u64> {
    let mut words = answer.split(' ');
    words.find(|w| *w == "db")?;
    Some(model::Timestamp::parse(words.next()?).ok()?.unix_millis())
}

/// `GET /` at `addr`: the answer's first body line, or why none came.
pub fn get(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: clock\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("status {status}: {}", body.trim()));
    }
    Ok(body.lines().next().unwrap_or("").to_string())
}

/// The zones lab (see the module's doc): host 0 is the control-plane server, hosts 1.. are
/// `per_zone` hosts in each zone `a`, `b`, `c`...
pub struct ZoneLab {
    pub ns: NsLab,
    pub zones: usize,
    pub per_zone: usize,
    /// The replicated database, once started with one.
    pub db: Option<PgPair>,
    buoy: PathBuf,
}

impl ZoneLab {
    /// What this machine lacks to run the lab (none: it can run).
    pub fn missing() -> Option<String> {
        crate::ns_lab::missing(&[HAPROXY, "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"])
    }

    /// What this machine lacks to run the lab with its database (none: it can run).
    pub fn missing_with_db() -> Option<String> {
        ZoneLab::missing().or_else(crate::postgres_lab::PgLab::missing)
    }

    /// For tests: whether the lab can run with its database here. Where it cannot, says why
    /// loudly; on CI (`CI` set), where the setup script installs everything, that fails.
    pub fn can_run_with_db() -> bool {
        let Some(why) = ZoneLab::missing_with_db() else {
            return true;
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "{why}: scripts/setup-test-deps.sh installs what the zones lab needs"
        );
        eprintln!("SKIPPED (loudly): {why}");
        false
    }

    /// The database hosts: the first host of zones `a` and `b`.
    fn db_hosts(&self) -> [usize; 2] {
        [1, 1 + self.per_zone]
    }

    /// Where HAProxy may run: everywhere, or with a database every host but the database
    /// hosts and zone `b`.
    fn lb_host(&self, i: usize, db: bool) -> bool {
        !db || (!self.db_hosts().contains(&i) && self.zone_of(i) != DB_ZONE)
    }

    /// Creates the namespaces and directory `dir`; `buoy` is the binary the agents and the
    /// clock copies run.
    pub fn create(buoy: &Path, dir: PathBuf, zones: usize, per_zone: usize) -> Result<ZoneLab> {
        if !(2..=6).contains(&zones) || !(1..=8).contains(&per_zone) {
            bail!("2 to 6 zones of 1 to 8 hosts each (asked: {zones} zones of {per_zone})");
        }
        let n = 1 + zones * per_zone;
        Ok(ZoneLab {
            ns: NsLab::create(buoy, dir, n, n)?,
            zones,
            per_zone,
            db: None,
            buoy: buoy.to_path_buf(),
        })
    }

    /// The hosts (indexes) that run instances.
    pub fn hosts(&self) -> Vec<usize> {
        (1..=self.zones * self.per_zone).collect()
    }

    /// Zone `z`'s name (`a`, `b`...).
    pub fn zone_name(z: usize) -> String {
        ((b'a' + z as u8) as char).to_string()
    }

    /// The zone of host `i`.
    pub fn zone_of(&self, i: usize) -> usize {
        (i - 1) / self.per_zone
    }

    /// The hosts of zone `z`.
    pub fn zone_hosts(&self, z: usize) -> Vec<usize> {
        self.hosts()
            .into_iter()
            .filter(|&i| self.zone_of(i) == z)
            .collect()
    }

    /// HAProxy's configuration on every host: the clock's backend between Buoy's markers,
    /// quick health checks, and retries on another server for requests a server did not
    /// answer.
    fn haproxy_config(&self) -> String {
        let mnt = self.ns.mnt().display().to_string();
        format!(
            "global\n  stats socket {mnt}/admin.sock level admin\n\
             defaults\n  mode http\n  timeout connect 500ms\n  timeout client 10s\n  timeout server 1s\n  timeout queue 2s\n\
             \x20 retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout 503\n\
             frontend clock\n  bind :{LB_PORT}\n  default_backend clock\n\
             backend clock\n  balance roundrobin\n  option httpchk GET /\n  default-server inter 500ms fall 2 rise 1\n\
             \x20 # buoy:begin clock\n  # buoy:end clock\n"
        )
    }

    /// Starts the agents, registers the hosts with their zones, and creates `lb` (HAProxy,
    /// 2 copies spread over the zones), `vip` (IPaddr2 colocated with an HAProxy copy, started
    /// after it) and `clock` (`copies` copies of the demo app spread over the zones, the
    /// servers of HAProxy's `clock` backend). With `db`, first the replicated database (see
    /// the module's doc), and the clock reads its time from it; needs 3 zones of 2 hosts or
    /// more.
    pub fn start(&mut self, copies: u32, db: bool) -> Result<()> {
        if db && (self.zones < 3 || self.per_zone < 2) {
            bail!("the lab's database needs 3 zones of 2 hosts or more");
        }
        let config = self.haproxy_config();
        for i in self.hosts() {
            std::fs::write(self.ns.host_dir(i).join("haproxy.cfg"), &config)?;
        }
        let pair = db.then(|| {
            let hosts = self.db_hosts();
            let mut labels = serde_json::Map::new();
            labels.insert("db".into(), "yes".into());
            PgPair {
                hosts,
                from: SERVER,
                vip: DB_VIP,
                segment: "web",
                host_labels: labels,
                vip_instance: "db-vip",
                preferred: Some(NsLab::name(hosts[1])),
            }
        });
        if let Some(p) = &pair {
            p.prepare_databases(&self.ns)?;
        }
        self.ns.start_agent(SERVER)?;
        for i in self.hosts() {
            self.ns.start_agent(i)?;
        }
        self.ns.wait_for_leader().with_context(|| self.logs())?;
        let mnt = self.ns.mnt().display().to_string();
        let lb = json!({"segment": "web", "driver": "process", "mode": "clone", "replicas": 2,
            "spread": {"label": "zone"}, "host_labels": if db { json!({"lb": "yes"}) } else { json!({}) },
            "params": {"command": HAPROXY, "args": ["-db", "-f", format!("{mnt}/haproxy.cfg")]},
            "health_checks": [{"type": "tcp", "host": "host-ip", "port": LB_PORT}],
            "load_balancer": {"admin_socket": format!("{mnt}/admin.sock"),
                              "config": format!("{mnt}/haproxy.cfg")}});
        let vip = json!({"segment": "web", "driver": "ocf",
            "colocated_with": {"instance": "lb"},
            "start_after": [{"instance": "lb"}],
            "params": {"agent": "ocf:heartbeat:IPaddr2", "monitor_interval": "1s",
                "params": {"ip": VIP, "cidr_netmask": 24, "nic": "eth0"}}});
        let mut app_args = vec![
            "demo-app".to_string(),
            "--http-port".into(),
            APP_PORT.to_string(),
        ];
        if db {
            app_args.extend([
                "--db-time".into(),
                format!("host={DB_VIP} user=postgres dbname=postgres"),
                "--psql".into(),
                format!("{PG_BIN}/psql"),
            ]);
        }
        let clock = json!({"segment": "web", "driver": "process", "mode": "clone",
            "replicas": copies, "spread": {"label": "zone"},
            "params": {"command": self.buoy.display().to_string(), "args": app_args},
            "health_checks": [{"type": "http", "host": "host-ip", "port": APP_PORT, "path": "/"}],
            "balancer": {"instance": "lb", "backend": "clock", "port": APP_PORT}});
        let mut commands: Vec<Vec<String>> =
            vec![vec!["segment".into(), "create".into(), "web".into()]];
        for i in self.hosts() {
            let mut c: Vec<String> = vec![
                "host".into(),
                "create".into(),
                NsLab::name(i),
                "--segment".into(),
                "web".into(),
                "--set".into(),
                format!("labels.zone={}", ZoneLab::zone_name(self.zone_of(i))),
            ];
            if db && self.lb_host(i, db) {
                c.extend(["--set".into(), "labels.lb=yes".into()]);
            }
            if pair.as_ref().is_some_and(|p| p.hosts.contains(&i)) {
                c.extend(["--set".into(), "labels.db=yes".into()]);
            }
            commands.push(c);
        }
        for c in commands.drain(..) {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            self.ns.cli_ok(&args)?;
        }
        if let Some(p) = &pair {
            p.create_instances(&self.ns)?;
            let primary = p
                .wait_replicated(&self.ns, Duration::from_secs(120))
                .with_context(|| self.logs())?;
            if self.zone_of(primary) != DB_ZONE {
                bail!(
                    "the database's first primary is on {}, not in zone b where it is preferred:\n{}",
                    NsLab::name(primary),
                    self.logs()
                );
            }
            // From here the agents' scores decide: a switchover back to zone b after a
            // failover would stop the old primary the way pgsql leaves it locked (its data
            // may be behind), and it could not start again until rebuilt.
            self.ns.cli_ok(&["instance", "promote", "pg", "--clear"])?;
        }
        self.db = pair;
        for (name, spec) in [("lb", &lb), ("vip", &vip), ("clock", &clock)] {
            let file = self.ns.dir.join(format!("{name}.json"));
            std::fs::write(&file, spec.to_string())?;
            commands.push(vec![
                "instance".into(),
                "create".into(),
                name.into(),
                "-f".into(),
                file.display().to_string(),
            ]);
        }
        for c in &commands {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            self.ns.cli_ok(&args)?;
        }
        Ok(())
    }

    /// Copies of `instance` that run, per the control plane: (replica, host name).
    pub fn running(&self, instance: &str) -> Vec<(u64, String)> {
        let (ok, out) = self.ns.cli(&["instance", "show", instance, "--json"]);
        if !ok {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&out).unwrap_or_default();
        v["copies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["phase"] == "running")
            .filter_map(|c| Some((c["replica"].as_u64()?, c["host"].as_str()?.to_string())))
            .collect()
    }

    /// The servers (name, address) serving in host `i`'s HAProxy `clock` backend (neither
    /// draining nor in maintenance), read from its admin socket.
    pub fn backend(&self, i: usize) -> Option<Vec<(String, String)>> {
        let socket = self.ns.host_dir(i).join("admin.sock");
        let list =
            node::balancer::admin_socket::servers(&socket, "clock", Duration::from_secs(1)).ok()?;
        let mut out: Vec<(String, String)> = list
            .into_iter()
            .filter(|s| !s.in_maintenance() && !s.draining())
            .map(|s| (s.name, s.addr))
            .collect();
        out.sort();
        Some(out)
    }

    /// The running clock copies as HAProxy would name them: (`clock-R`, host address).
    pub fn wanted_servers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .running("clock")
            .into_iter()
            .filter_map(|(r, host)| {
                let i: usize = host.strip_prefix('h')?.parse::<usize>().ok()? - 1;
                Some((format!("clock-{r}"), NsLab::ip(i)))
            })
            .collect();
        out.sort();
        out
    }

    /// Whether every running HAProxy copy's backend equals the running clock copies.
    pub fn backends_match(&self) -> bool {
        let want = self.wanted_servers();
        let lbs = self.running("lb");
        !lbs.is_empty()
            && lbs.iter().all(|(_, host)| {
                host.strip_prefix('h')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| self.backend(n - 1))
                    .is_some_and(|b| b == want)
            })
    }

    /// The host (index) holding the VIP, if any.
    pub fn vip_holder(&self) -> Option<usize> {
        self.vip_holder_except(&[])
    }

    /// The host holding the VIP among all but `crashed` (a crashed host keeps the address on
    /// its link, which is down, until it reboots).
    pub fn vip_holder_except(&self, crashed: &[usize]) -> Option<usize> {
        self.hosts()
            .into_iter()
            .filter(|i| !crashed.contains(i))
            .find(|&i| {
                let out = self
                    .ns
                    .run(i, "ip", &["-o", "-4", "addr", "show", "dev", "eth0"], &[]);
                String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
            })
    }

    /// Waits until `copies` clock copies run, both HAProxy copies run with their backends
    /// in sync, and a request through the VIP is answered.
    pub fn wait_ready(&self, copies: usize, timeout: Duration) -> Result<()> {
        let vip: SocketAddr = format!("{VIP}:{LB_PORT}").parse()?;
        let ok = wait_for(timeout, || {
            self.running("clock").len() == copies
                && self.running("lb").len() == 2
                && self.backends_match()
                && self.vip_holder().is_some()
                && self.through_switch(move || get(vip, Duration::from_secs(2)).is_ok())
        });
        if !ok {
            bail!(
                "not ready after {timeout:?}: clock {:?}, lb {:?}, VIP on {:?}, wanted {:?}\n{}",
                self.running("clock"),
                self.running("lb"),
                self.vip_holder(),
                self.wanted_servers(),
                self.logs()
            );
        }
        Ok(())
    }

    /// Runs `f` on a thread in the switch namespace (where the VIP is reachable).
    fn through_switch<R: Send + Default + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        let name = format!("/run/netns/{}", self.ns.net.switch());
        std::thread::spawn(move || {
            if enter(&name).is_err() {
                return R::default();
            }
            f()
        })
        .join()
        .unwrap_or_default()
    }

    /// Starts the client: a request through the VIP every 50 ms (each waits up to 3 s).
    pub fn start_client(&self) -> Result<Client> {
        let vip: SocketAddr = format!("{VIP}:{LB_PORT}").parse()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let name = format!("/run/netns/{}", self.ns.net.switch());
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            if let Err(e) = enter(&name) {
                l.lock().unwrap_or_else(|p| p.into_inner()).push(Request {
                    sent_ms: unix_ms(),
                    took_ms: 0,
                    answer: Err(format!("cannot enter the switch namespace: {e}")),
                });
                return;
            }
            while !s.load(Ordering::Relaxed) {
                let sent_ms = unix_ms();
                let answer = get(vip, Duration::from_secs(3));
                let took_ms = unix_ms().saturating_sub(sent_ms);
                l.lock().unwrap_or_else(|p| p.into_inner()).push(Request {
                    sent_ms,
                    took_ms,
                    answer,
                });
                std::thread::sleep(
                    Duration::from_millis(50).saturating_sub(Duration::from_millis(took_ms)),
                );
            }
        });
        Ok(Client {
            stop,
            log,
            thread: Some(thread),
        })
    }

    /// Crashes every host of zone `z` (every process killed, links cut); when, in Unix ms.
    pub fn kill_zone(&self, z: usize) -> u64 {
        let at = unix_ms();
        for i in self.zone_hosts(z) {
            self.ns.crash(i);
        }
        at
    }

    /// Brings crashed zone `z` back: its hosts rebooted, their agents started, the hosts
    /// enabled; a database host first rebuilds its data from the primary (as an operator
    /// rejoins an old primary), so its copy starts as a replica.
    pub fn revive_zone(&mut self, z: usize) -> Result<()> {
        let dead = self.zone_hosts(z);
        for i in dead.clone() {
            match &self.db {
                Some(db) if db.hosts.contains(&i) => {
                    let primary = db
                        .vip_holder(&self.ns, &dead)
                        .context("no database primary to rebuild from")?;
                    db.rejoin(&mut self.ns, i, primary)?;
                }
                _ => self.ns.revive(i)?,
            }
        }
        Ok(())
    }

    /// Each running HAProxy copy's serving servers, one line: `h3: clock-0@h2 clock-1@h6 |
    /// h6: ...`.
    pub fn backends_line(&self) -> String {
        let name_of = |addr: &str| {
            self.hosts()
                .into_iter()
                .find(|&i| NsLab::ip(i) == addr)
                .map_or(addr.to_string(), NsLab::name)
        };
        let mut lbs = self.running("lb");
        lbs.sort_by(|a, b| a.1.cmp(&b.1));
        lbs.iter()
            .filter_map(|(_, host)| {
                let i = host.strip_prefix('h')?.parse::<usize>().ok()? - 1;
                let servers = self.backend(i)?;
                let list: Vec<String> = servers
                    .iter()
                    .map(|(n, a)| format!("{n}@{}", name_of(a)))
                    .collect();
                Some(format!("{host}: {}", list.join(" ")))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// The host (index) holding the database's virtual IP among all but `crashed`.
    pub fn db_primary(&self, crashed: &[usize]) -> Option<usize> {
        self.db.as_ref()?.vip_holder(&self.ns, crashed)
    }

    /// The agents' and instances' logs, their last lines.
    pub fn logs(&self) -> String {
        let mut all = vec![SERVER];
        all.extend(self.hosts());
        let files: &[&str] = if self.db.is_some() { &["pg.log"] } else { &[] };
        self.ns.logs(&all, files)
    }
}
