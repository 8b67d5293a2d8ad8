//! A Galera lab: MariaDB with Galera (Debian's `mariadb-server` and `galera-4`) under the
//! unmodified `ocf:heartbeat:galera`, as a promotable instance of three copies, all of them
//! promoted (`promoted_max` 3: a Galera node is "promoted" when its server runs in the
//! cluster). h1 is the control-plane server, h2-h4 the database hosts, each in network and
//! mount namespaces of its own ([`crate::ns_lab`]); a fifth namespace holds a client that
//! writes one row per transaction to h4 and records each acknowledged commit.
//!
//! How the agent bootstraps: every copy's `start` only reads its node's last committed
//! sequence number (`grastate.dat`, or `mysqld --wsrep-recover`) into the attribute store;
//! once every node has reported, the agents pick the node with the most recent state (or the
//! one Galera marked safe to bootstrap) and give it a promotion score; Buoy promotes it, it
//! bootstraps a new cluster and scores the others, which Buoy then promotes and which join.
//!
//! Needs root, `ip netns`, `unshare`, MariaDB, Galera, rsync and resource-agents
//! (scripts/setup-test-deps.sh installs them); [`GaleraLab::missing`] says what is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::acks::{Ack, missing_acks, read_acks};
pub use crate::ns_lab::SERVER;
use crate::ns_lab::{NsLab, must, wait_for};

/// Host indexes in the namespaces: the three database hosts and the client.
pub const DB: [usize; 3] = [1, 2, 3];
pub const CLIENT: usize = 4;
/// The database host the client writes to.
pub const WRITTEN: usize = 3;

/// The Galera lab (see the module's doc).
pub struct GaleraLab {
    pub ns: NsLab,
}

impl GaleraLab {
    /// What this machine lacks to run the lab (none: it can run).
    pub fn missing() -> Option<String> {
        crate::ns_lab::missing(&[
            "/usr/lib/ocf/resource.d/heartbeat/galera",
            "/usr/sbin/mariadbd",
            "/usr/lib/galera/libgalera_smm.so",
            "/usr/bin/mariadb-install-db",
            "/usr/bin/rsync",
            "/usr/bin/xmllint",
        ])
    }

    /// Creates the namespaces and directory `dir` (emptied first); `buoy` is the binary the
    /// agents run.
    pub fn create(buoy: &Path, dir: PathBuf) -> Result<GaleraLab> {
        Ok(GaleraLab {
            ns: NsLab::create(buoy, dir, 5, 4)?,
        })
    }

    pub fn name(i: usize) -> String {
        NsLab::name(i)
    }

    /// The agent's `wsrep_cluster_address` and its map of node names to addresses.
    fn cluster_address() -> (String, String) {
        let ips: Vec<String> = DB.iter().map(|&i| NsLab::ip(i)).collect();
        let map: Vec<String> = DB
            .iter()
            .map(|&i| format!("{}:{}", NsLab::name(i), NsLab::ip(i)))
            .collect();
        (format!("gcomm://{}", ips.join(",")), map.join(";"))
    }

    /// Prepares the data directories, starts the four agents, and creates the segment, the
    /// hosts and the `galera` instance; returns once the control plane answers.
    pub fn start(&mut self) -> Result<()> {
        self.prepare()?;
        for i in [SERVER, DB[0], DB[1], DB[2]] {
            self.ns.start_agent(i)?;
        }
        self.ns.wait_for_leader().with_context(|| self.logs())?;
        let mnt = self.ns.mnt();
        let at = |p: &str| mnt.join(p).display().to_string();
        let (address, map) = GaleraLab::cluster_address();
        let galera = json!({"segment": "db", "driver": "ocf", "mode": "promotable",
            "replicas": 3, "promoted_max": 3,
            "params": {"agent": "ocf:heartbeat:galera", "monitor_interval": "2s",
                "timeout": "60s",
                "params": {"wsrep_cluster_address": address, "cluster_host_map": map,
                    "config": at("my.cnf"), "datadir": at("data"), "socket": at("run/mysqld.sock"),
                    "pid": at("run/mysqld.pid"), "log": at("mysqld.log"),
                    "user": "mysql", "group": "mysql", "check_user": "root",
                    "client_binary": at("mysql-client")}}});
        std::fs::write(self.ns.dir.join("galera.json"), galera.to_string())?;
        let file = self.ns.dir.join("galera.json").display().to_string();
        self.ns.cli_ok(&["segment", "create", "db"])?;
        for &i in &DB {
            self.ns
                .cli_ok(&["host", "create", &NsLab::name(i), "--segment", "db"])?;
        }
        self.ns
            .cli_ok(&["instance", "create", "galera", "-f", &file])?;
        Ok(())
    }

    /// The `galera` instance's copies as `buoy instance show` gives them.
    pub fn copies(&self) -> Vec<Value> {
        let (ok, out) = self.ns.cli(&["instance", "show", "galera", "--json"]);
        if !ok {
            return Vec::new();
        }
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v["copies"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Runs SQL on host `i`'s server through its socket, as root: its output, or why not.
    pub fn sql_on(&self, i: usize, query: &str) -> std::result::Result<String, String> {
        let socket = self.ns.host_dir(i).join("run/mysqld.sock");
        let out = Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "-N", "-B", "-e", query])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// How many nodes host `i`'s server sees in its primary component (0: not running).
    pub fn cluster_size(&self, i: usize) -> usize {
        self.sql_on(i, "show status like 'wsrep_cluster_size'")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// Waits until every host in `hosts` runs a server in a primary component of
    /// `hosts.len()` nodes.
    pub fn wait_cluster(&self, hosts: &[usize], timeout: Duration) -> Result<()> {
        if !wait_for(timeout, || {
            hosts.iter().all(|&i| self.cluster_size(i) == hosts.len())
        }) {
            let sizes: Vec<usize> = hosts.iter().map(|&i| self.cluster_size(i)).collect();
            bail!(
                "no Galera cluster of {} after {timeout:?} (sizes seen {sizes:?}):\n{}",
                hosts.len(),
                self.logs()
            );
        }
        Ok(())
    }

    /// Creates the test's database, table and the client's user (replicated to every node).
    pub fn prepare_schema(&self, on: usize) -> Result<()> {
        self.sql_on(
            on,
            "create database if not exists t; \
             create table if not exists t.acked (i int primary key) engine=InnoDB; \
             create user if not exists 'client'@'%'; \
             grant all on t.* to 'client'@'%'",
        )
        .map_err(|e| anyhow::anyhow!("cannot create the schema on {}: {e}", NsLab::name(on)))?;
        Ok(())
    }

    /// Starts the client in its namespace, writing to [`WRITTEN`]: one transaction per row,
    /// each acknowledged commit appended to `acked` with its send and acknowledgement times.
    pub fn start_client(&mut self) -> Result<()> {
        let script = format!(
            "i=$(cat {next} 2>/dev/null || echo 0); while :; do i=$((i+1)); echo $i > {next}; \
             t=$(date +%s%3N); \
             if mariadb --connect-timeout=1 -h {host} -uclient -e \"insert into t.acked values ($i)\" >/dev/null 2>&1; \
             then echo \"$i $t $(date +%s%3N)\" >> {acked}; else sleep 0.05; fi; done",
            next = self.ns.dir.join("next").display(),
            acked = self.ns.dir.join("acked").display(),
            host = NsLab::ip(WRITTEN),
        );
        self.ns.spawn_in(CLIENT, &script, &[])
    }

    /// Ends the client (every process in its namespace).
    pub fn stop_client(&self) {
        self.ns.kill_all(CLIENT);
    }

    /// Every commit acknowledged to the client so far.
    pub fn acked(&self) -> Vec<Ack> {
        read_acks(&self.ns.dir.join("acked"))
    }

    /// The acknowledged commits missing from host `i`'s database.
    pub fn lost_on(&self, i: usize) -> Result<Vec<i64>> {
        let rows = self.sql_on(i, "select i from t.acked").map_err(|e| {
            anyhow::anyhow!("cannot read the rows back from {}: {e}", NsLab::name(i))
        })?;
        Ok(missing_acks(&self.acked(), &rows))
    }

    /// Sets the `galera` instance's desired state (`started` or `stopped`).
    pub fn set_desired(&self, state: &str) -> Result<()> {
        self.ns
            .cli_ok(&[
                "instance",
                "update",
                "galera",
                "--set",
                &format!("desired_state={state}"),
            ])
            .map(|_| ())
    }

    /// Everything a failure message needs.
    pub fn logs(&self) -> String {
        self.ns
            .logs(&[SERVER, DB[0], DB[1], DB[2]], &["mysqld.log"])
    }

    /// One data directory made by `mariadb-install-db` on the first host and copied to the
    /// others, and each host's configuration (its own node address).
    fn prepare(&self) -> Result<()> {
        let mnt = self.ns.mnt();
        for &i in &DB {
            let d = self.ns.host_dir(i);
            std::fs::create_dir_all(d.join("run"))?;
            let conf = format!(
                "[mysqld]\nbind-address = 0.0.0.0\nport = 3306\nskip-name-resolve\n\
                 binlog_format = ROW\ndefault_storage_engine = InnoDB\n\
                 innodb_autoinc_lock_mode = 2\ninnodb_buffer_pool_size = 32M\n\
                 innodb_log_file_size = 16M\n\
                 wsrep_on = ON\nwsrep_provider = /usr/lib/galera/libgalera_smm.so\n\
                 wsrep_cluster_name = buoy\nwsrep_node_address = {ip}\nwsrep_node_name = {name}\n\
                 wsrep_sst_method = rsync\nwsrep_cluster_address = {address}\n\
                 wsrep_provider_options = \"gcache.size=32M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S\"\n\
                 [client]\nsocket = {socket}\n",
                ip = NsLab::ip(i),
                name = NsLab::name(i),
                socket = mnt.join("run/mysqld.sock").display(),
                address = GaleraLab::cluster_address().0,
            );
            std::fs::write(d.join("my.cnf"), conf)?;
            // The agent's status checks run the client without a socket option (the system's
            // default socket is shared by every namespace): this host's server's socket.
            let client = d.join("mysql-client");
            std::fs::write(
                &client,
                format!(
                    "#!/bin/sh\nexec mariadb --socket={} \"$@\"\n",
                    mnt.join("run/mysqld.sock").display()
                ),
            )?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755))?;
        }
        let first = self.ns.host_dir(DB[0]).join("data");
        must(
            Command::new("mariadb-install-db")
                .args(["--user=mysql", "--auth-root-authentication-method=socket"])
                .arg(format!("--datadir={}", first.display()))
                .arg("--skip-test-db"),
        )?;
        for &i in &DB[1..] {
            must(
                Command::new("cp")
                    .arg("-a")
                    .arg(&first)
                    .arg(self.ns.host_dir(i).join("data")),
            )?;
        }
        for &i in &DB {
            must(
                Command::new("chown")
                    .arg("-R")
                    .arg("mysql:mysql")
                    .arg(self.ns.host_dir(i)),
            )?;
        }
        Ok(())
    }
}
