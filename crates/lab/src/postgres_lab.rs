//! A PostgreSQL lab: PostgreSQL 15 under the unmodified `ocf:heartbeat:pgsql`, as a promotable
//! instance of two copies with synchronous streaming replication, and an
//! `ocf:heartbeat:IPaddr2` virtual IP colocated with the promoted copy and started after its
//! promotion. Every host lives in a network namespace of its own and a mount namespace of its
//! own (the same `pgdata` path is a different directory on each host, as on real machines): h1
//! is the control-plane server, h2 and h3 the database hosts, and a fourth namespace holds the
//! client, which writes through the virtual IP and records each acknowledged commit with the
//! times it was sent and acknowledged. Used by `tests/postgres.rs` and by `buoy bench failover
//! --workload postgres`.
//!
//! Needs root, `ip netns`, `unshare`, PostgreSQL 15 and resource-agents
//! (scripts/setup-test-deps.sh installs them); [`PgLab::missing`] says what is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::acks::{Ack, missing_acks, read_acks};
pub use crate::ns_lab::SERVER;
use crate::ns_lab::{NsLab, must, wait_for};

/// Where Debian's PostgreSQL 15 programs are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The virtual IP the client writes through.
pub const VIP: &str = "10.77.0.50";
/// Host indexes in the namespaces: the two database hosts and the client.
pub const DB: [usize; 2] = [1, 2];
pub const CLIENT: usize = 3;

/// The PostgreSQL lab (see the module's doc).
pub struct PgLab {
    pub ns: NsLab,
    pub pg: PgPair,
}

/// A replicated PostgreSQL in an [`NsLab`]: the `pg` promotable instance (the unmodified
/// `ocf:heartbeat:pgsql`, 2 copies, synchronous replication) on two hosts and the `pg-vip`
/// address (`ocf:heartbeat:IPaddr2`) colocated with its primary, started after its promotion.
/// Shared by the PostgreSQL lab and the zones lab (whose clock reads its time from it).
pub struct PgPair {
    /// The two database hosts.
    pub hosts: [usize; 2],
    /// The namespace `psql` runs in to reach the virtual IP.
    pub from: usize,
    /// The virtual IP of the primary.
    pub vip: &'static str,
    /// The instances' segment.
    pub segment: &'static str,
    /// Host labels the database hosts carry (none: the segment holds only them).
    pub host_labels: serde_json::Map<String, serde_json::Value>,
    /// The name of the virtual IP's instance.
    pub vip_instance: &'static str,
    /// The host whose copy is promoted when both are ready (`preferred_promoted`).
    pub preferred: Option<String>,
}

impl PgLab {
    /// What this machine lacks to run the lab (none: it can run).
    pub fn missing() -> Option<String> {
        crate::ns_lab::missing(&[
            "/usr/lib/ocf/resource.d/heartbeat/pgsql",
            "/usr/lib/ocf/resource.d/heartbeat/IPaddr2",
            "/usr/lib/postgresql/15/bin/postgres",
            "/usr/bin/xmllint",
        ])
    }

    /// Creates the namespaces and directory `dir` (emptied first); `buoy` is the binary the
    /// agents run.
    pub fn create(buoy: &Path, dir: PathBuf) -> Result<PgLab> {
        Ok(PgLab {
            ns: NsLab::create(buoy, dir, 4, 3)?,
            pg: PgPair {
                hosts: DB,
                from: CLIENT,
                vip: VIP,
                segment: "db",
                host_labels: serde_json::Map::new(),
                vip_instance: "vip",
                preferred: None,
            },
        })
    }

    pub fn name(i: usize) -> String {
        NsLab::name(i)
    }

    /// Prepares the databases, starts the three agents, and creates the segment, the hosts,
    /// the `pg` instance and its `vip`; returns once the control plane answers.
    pub fn start(&mut self) -> Result<()> {
        self.pg.prepare_databases(&self.ns)?;
        for i in [SERVER, DB[0], DB[1]] {
            self.ns.start_agent(i)?;
        }
        self.ns.wait_for_leader().with_context(|| self.logs())?;
        self.ns.cli_all(&[
            vec!["segment", "create", "db"],
            vec!["host", "create", "h2", "--segment", "db"],
            vec!["host", "create", "h3", "--segment", "db"],
        ])?;
        self.pg.create_instances(&self.ns)
    }

    /// Waits for a primary behind the virtual IP whose replica is synchronous and recorded as
    /// such, with its promotion score (pgsql promotes only a replica its primary recorded as
    /// synchronous, and writes the two attributes one after the other); returns the primary's
    /// host index.
    pub fn wait_replicated(&self, timeout: Duration) -> Result<usize> {
        self.pg
            .wait_replicated(&self.ns, timeout)
            .with_context(|| self.logs())
    }

    /// Starts the client in its namespace: one transaction per row, each acknowledged commit
    /// appended to `acked` with its send and acknowledgement times. It runs until the lab is
    /// dropped or [`Self::stop_client`]. Like an HA-aware client it gives up on a connection whose data goes
    /// unacknowledged for 1 s (`tcp_user_timeout`): a write in flight when the primary's host
    /// crashes would otherwise wait out TCP's retransmission backoff (about 12.6 s until a
    /// retransmission meets the VIP's new holder), which measures the client, not the failover.
    /// A write given up on counts as not acknowledged, as for any client.
    pub fn start_client(&mut self) -> Result<()> {
        let script = format!(
            "i=$(cat {next} 2>/dev/null || echo 0); while :; do i=$((i+1)); echo $i > {next}; \
             t=$(date +%s%3N); \
             if {PG_BIN}/psql \"host={VIP} user=postgres dbname=postgres tcp_user_timeout=1000\" -qAtc \"insert into acked values ($i)\" >/dev/null 2>&1; \
             then echo \"$i $t $(date +%s%3N)\" >> {acked}; fi; done",
            next = self.ns.dir.join("next").display(),
            acked = self.ns.dir.join("acked").display()
        );
        self.ns
            .spawn_in(CLIENT, &script, &[("PGCONNECT_TIMEOUT", "1")])
    }

    /// Ends the client (every process in its namespace).
    pub fn stop_client(&self) {
        self.ns.kill_all(CLIENT);
    }

    /// Every commit acknowledged to the client so far.
    pub fn acked(&self) -> Vec<Ack> {
        read_acks(&self.ns.dir.join("acked"))
    }

    /// The acknowledged commits missing from the database behind the virtual IP.
    pub fn lost(&self) -> Result<Vec<i64>> {
        let rows = self
            .sql("select i from acked")
            .map_err(|e| anyhow::anyhow!("cannot read the rows back: {e}"))?;
        Ok(missing_acks(&self.acked(), &rows))
    }

    /// Brings crashed host `i` back the way an operator rejoins an old primary (README,
    /// "PostgreSQL"; [`PgPair::rejoin`]).
    pub fn rejoin(&mut self, i: usize, primary: usize) -> Result<()> {
        self.pg.rejoin(&mut self.ns, i, primary)
    }

    /// `psql` from the client's namespace through the virtual IP: its output, or why it
    /// failed.
    pub fn sql(&self, query: &str) -> std::result::Result<String, String> {
        self.pg.sql(&self.ns, query)
    }

    /// Which database host holds the virtual IP, of those not in `crashed`.
    pub fn vip_holder(&self, crashed: &[usize]) -> Option<usize> {
        self.pg.vip_holder(&self.ns, crashed)
    }

    /// Everything a failure message needs.
    pub fn logs(&self) -> String {
        self.ns.logs(&[SERVER, DB[0], DB[1]], &["pg.log"])
    }
}

impl PgPair {
    /// Creates `pg` and its virtual IP (the hosts and the segment exist).
    pub fn create_instances(&self, ns: &NsLab) -> Result<()> {
        let mnt = ns.mnt();
        let at = |p: &str| mnt.join(p).display().to_string();
        let node_list = format!(
            "{} {}",
            NsLab::name(self.hosts[0]),
            NsLab::name(self.hosts[1])
        );
        let pg = json!({"segment": self.segment, "driver": "ocf", "mode": "promotable", "replicas": 2,
            "notify": true, "host_labels": self.host_labels, "preferred_promoted": self.preferred,
            "params": {"agent": "ocf:heartbeat:pgsql", "monitor_interval": "2s", "timeout": "20s",
                "params": {"pgctl": format!("{PG_BIN}/pg_ctl"), "psql": format!("{PG_BIN}/psql"),
                    "pgdata": at("pgdata"), "tmpdir": at("tmp"), "socketdir": at("run"),
                    "logfile": at("pg.log"), "rep_mode": "sync", "node_list": node_list,
                    "master_ip": self.vip, "restart_on_promote": "false", "check_wal_receiver": "false",
                    "primary_conninfo_opt": "keepalives_idle=60 keepalives_interval=5 keepalives_count=5"}}});
        let vip = json!({"segment": self.segment, "driver": "ocf",
            "colocated_with": {"instance": "pg", "promoted": true},
            "start_after": [{"instance": "pg", "promoted": true}],
            "params": {"agent": "ocf:heartbeat:IPaddr2", "monitor_interval": "1s",
                "params": {"ip": self.vip, "cidr_netmask": 24, "nic": "eth0"}}});
        let mut commands = Vec::new();
        let mut files = Vec::new();
        for (name, spec) in [("pg", &pg), (self.vip_instance, &vip)] {
            let file = ns.dir.join(format!("{name}.json"));
            std::fs::write(&file, spec.to_string())?;
            files.push((name, file.display().to_string()));
        }
        for (name, file) in &files {
            commands.push(vec!["instance", "create", name, "-f", file.as_str()]);
        }
        ns.cli_all(&commands)
    }

    /// Waits for a primary behind the virtual IP whose replica is synchronous and recorded as
    /// such, with its promotion score (pgsql promotes only a replica its primary recorded as
    /// synchronous, and writes the two attributes one after the other); returns the primary's
    /// host index.
    pub fn wait_replicated(&self, ns: &NsLab, timeout: Duration) -> Result<usize> {
        if !wait_for(timeout, || {
            self.sql(ns, "select pg_is_in_recovery()").as_deref() == Ok("f")
        }) {
            bail!("no primary behind the VIP");
        }
        let _ = self.sql(ns, "create table if not exists acked (i int primary key)");
        if !wait_for(timeout, || {
            self.sql(ns, "select sync_state from pg_stat_replication")
                .is_ok_and(|s| s == "sync")
        }) {
            bail!("the replica never became synchronous");
        }
        let primary = self
            .vip_holder(ns, &[])
            .context("the VIP is on no database host")?;
        let replica = NsLab::name(if primary == self.hosts[0] {
            self.hosts[1]
        } else {
            self.hosts[0]
        });
        if !wait_for(Duration::from_secs(30), || {
            ns.attribute(&replica, "pg-data-status").as_deref() == Some("STREAMING|SYNC")
                && ns.attribute(&replica, "master-pg").as_deref() == Some("100")
        }) {
            bail!(
                "the primary never recorded {replica} as synchronous ({:?}, promotion score {:?})",
                ns.attribute(&replica, "pg-data-status"),
                ns.attribute(&replica, "master-pg"),
            );
        }
        Ok(primary)
    }

    /// Brings crashed host `i` back the way an operator rejoins an old primary (README,
    /// "PostgreSQL"): its data rebuilt from the new primary with `pg_basebackup` and the lock
    /// file removed before its agent starts; then enabled. Its copy starts as a replica.
    pub fn rejoin(&self, ns: &mut NsLab, i: usize, primary: usize) -> Result<()> {
        ns.wait_failed(i)?;
        ns.reboot(i)?;
        let d = ns.host_dir(i);
        let pgdata = d.join("pgdata");
        let _ = std::fs::remove_dir_all(&pgdata);
        let _ = std::fs::remove_file(d.join("tmp/PGSQL.lock"));
        let out = ns.run(
            i,
            "runuser",
            &[
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_basebackup"),
                "-h",
                &NsLab::ip(primary),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-D",
                &pgdata.display().to_string(),
            ],
            &[],
        );
        if !out.status.success() {
            bail!(
                "pg_basebackup from {} failed: {}",
                NsLab::name(primary),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns.start_agent(i)?;
        ns.enable(i)
    }

    /// `psql` through the virtual IP: its output, or why it failed.
    pub fn sql(&self, ns: &NsLab, query: &str) -> std::result::Result<String, String> {
        let out = ns.run(
            self.from,
            &format!("{PG_BIN}/psql"),
            &[
                "-h", self.vip, "-U", "postgres", "-d", "postgres", "-qAtc", query,
            ],
            &[("PGCONNECT_TIMEOUT", "2")],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Which database host holds the virtual IP, of those not in `crashed` (a crashed host's
    /// namespace keeps its addresses behind its cut link).
    pub fn vip_holder(&self, ns: &NsLab, crashed: &[usize]) -> Option<usize> {
        self.hosts
            .into_iter()
            .filter(|i| !crashed.contains(i))
            .find(|&i| {
                let out = ns.run(i, "ip", &["-o", "addr", "show", "dev", "eth0"], &[]);
                String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip))
            })
    }

    /// One database cluster, initialised on the first host and copied (shut down cleanly) to
    /// the second: the standby's base. Configured for streaming replication; the agent adds
    /// its own include files (synchronous_standby_names, the recovery settings).
    pub fn prepare_databases(&self, ns: &NsLab) -> Result<()> {
        for i in self.hosts {
            let d = ns.host_dir(i);
            for sub in ["tmp", "run"] {
                std::fs::create_dir_all(d.join(sub))?;
            }
            must(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(&d),
            )?;
        }
        let first = ns.host_dir(self.hosts[0]).join("pgdata");
        must(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(&first),
        )?;
        let conf = format!(
            "listen_addresses = '*'\nport = 5432\nunix_socket_directories = '{run}'\n\
             wal_level = replica\nmax_wal_senders = 10\nwal_keep_size = 256MB\nhot_standby = on\n\
             hot_standby_feedback = on\nwal_receiver_status_interval = 1s\n\
             shared_buffers = 16MB\nrestart_after_crash = off\nlogging_collector = off\n",
            run = ns.mnt().join("run").display()
        );
        let mut c = std::fs::read_to_string(first.join("postgresql.conf"))?;
        c += &conf;
        std::fs::write(first.join("postgresql.conf"), c)?;
        let mut hba = std::fs::read_to_string(first.join("pg_hba.conf"))?;
        hba += "host all all 10.77.0.0/24 trust\nhost replication all 10.77.0.0/24 trust\n";
        std::fs::write(first.join("pg_hba.conf"), hba)?;
        must(
            Command::new("cp")
                .arg("-a")
                .arg(&first)
                .arg(ns.host_dir(self.hosts[1]).join("pgdata")),
        )
    }
}
