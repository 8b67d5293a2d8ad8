//! PostgreSQL 15 under the unmodified `ocf:heartbeat:pgsql`, as a promotable instance of two
//! copies with synchronous streaming replication, and an `ocf:heartbeat:IPaddr2` virtual IP
//! colocated with the promoted copy and started after its promotion. Every host lives in a
//! network namespace of its own (created here) and a mount namespace of its own (so the same
//! `pgdata` path is a different directory on each host, as on real machines). A client writes
//! through the virtual IP and records each commit acknowledged to it; the primary's host
//! crashes (every process in it killed, its link cut); a replica is promoted, the address
//! follows, the client resumes, and every acknowledged row is there. A negative control
//! deletes one acknowledged row and shows the check catches it.
//!
//! Needs root, `ip netns`, `unshare`, PostgreSQL 15 and resource-agents (installed by
//! scripts/setup-test-deps.sh); skips loudly otherwise. `BUOY_TEST_KEEP=1` keeps its directory
//! (logs, data) for a look afterwards.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::wait_until;
use lab::netns::Netns;
use serde_json::{Value, json};

const BUOY: &str = env!("CARGO_BIN_EXE_buoy");
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const VIP: &str = "10.77.0.50";
/// Host indexes in the namespaces: the control-plane server, the two database hosts and the
/// client.
const SERVER: usize = 0;
const DB: [usize; 2] = [1, 2];
const CLIENT: usize = 3;

/// The test's hosts, deleted on drop after every process in them is killed by PID.
struct Lab {
    net: Netns,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn name(i: usize) -> String {
        format!("h{}", i + 1)
    }

    fn ip(i: usize) -> String {
        Netns::gossip_ip(i).to_string()
    }

    /// Where host `i`'s own files are; mounted at `mnt()` inside its mount namespace.
    fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join(Lab::name(i))
    }

    /// The path every database host sees its own files at.
    fn mnt(&self) -> PathBuf {
        self.dir.join("mnt")
    }

    /// Starts `buoy agent` for host `i`, in its network namespace and a mount namespace of its
    /// own with its directory at `mnt()`.
    fn start_agent(&mut self, i: usize) {
        let name = Lab::name(i);
        let addr = Lab::ip(i);
        let data = self.host_dir(i).join("buoy");
        let mut args = vec![
            "agent".to_string(),
            "--name".into(),
            name.clone(),
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
        if i == SERVER {
            args.push("--server".into());
        } else {
            args.extend(["--join".into(), format!("{}:7946", Lab::ip(SERVER))]);
        }
        args.extend(lab::identity_files::agent_args(&self.dir, &name, i == SERVER).unwrap());
        args.extend(lab::identity_files::keyring_args(&self.dir).unwrap());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent-{name}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i)])
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$1" && shift && exec "$@""#)
            .arg(self.host_dir(i))
            .arg(self.mnt())
            .arg(BUOY)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Runs `program args` in host `i`'s network namespace.
    fn run(&self, i: usize, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.net.ns(i), program])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The CLI against the server's agent: success and its output.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let http = format!("{}:7070", Lab::ip(SERVER));
        let out = self.run(SERVER, BUOY, args, &[("BUOY_HTTP_ADDR", &http)]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `psql` from the client through the virtual IP: its output, or why it failed.
    fn sql(&self, query: &str) -> Result<String, String> {
        let out = self.run(
            CLIENT,
            &format!("{PG_BIN}/psql"),
            &[
                "-h", VIP, "-U", "postgres", "-d", "postgres", "-qAtc", query,
            ],
            &[("PGCONNECT_TIMEOUT", "2")],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Node `node`'s attribute `name` in Buoy's attribute store (what the agents wrote).
    fn attribute(&self, node: &str, name: &str) -> Option<String> {
        let script = format!(
            "import json, urllib.request; print(json.dumps(json.load(urllib.request.urlopen('http://{}:7070/v1/attributes?node={node}&name={name}', timeout=2))))",
            Lab::ip(SERVER)
        );
        let out = self.run(SERVER, "python3", &["-c", &script], &[]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["attributes"].as_array()?.first()?["value"]
            .as_str()
            .map(str::to_string)
    }

    /// Which database host holds the virtual IP, of those not in `crashed` (a crashed host's
    /// namespace keeps its addresses behind its cut link).
    fn vip_holder(&self, crashed: &[usize]) -> Option<usize> {
        DB.into_iter().filter(|i| !crashed.contains(i)).find(|&i| {
            let out = self.run(i, "ip", &["-o", "addr", "show", "dev", "eth0"], &[]);
            String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/"))
        })
    }

    /// Crashes host `i`: every process in its namespace killed at once, its link cut.
    fn crash(&self, i: usize) {
        let _ = self.net.link(i, false);
        kill_all_in(&self.net.ns(i));
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Everything a failure message needs.
    fn logs(&self) -> String {
        let mut s = String::new();
        for i in [SERVER, DB[0], DB[1]] {
            let name = Lab::name(i);
            s += &format!(
                "--- agent {name}\n{}\n",
                tail(&self.log(&format!("agent-{name}.log")), 60)
            );
            let pg = std::fs::read_to_string(self.host_dir(i).join("pg.log")).unwrap_or_default();
            s += &format!("--- postgres {name}\n{}\n", tail(&pg, 30));
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

/// Kills (SIGKILL, by PID) every process in network namespace `ns`.
fn kill_all_in(ns: &str) {
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

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..4 {
            kill_all_in(&self.net.ns(i));
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("BUOY_TEST_KEEP").is_none() {
            // A process dying as the directory goes may still write into it: try again.
            for _ in 0..20 {
                if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                    break;
                }
                for i in 0..4 {
                    kill_all_in(&self.net.ns(i));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Runs `cmd`, panicking with its output when it fails.
fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One database cluster, initialised on the first host and copied (shut down cleanly) to
/// the second: the standby's base. Configured for streaming replication; the agent adds
/// its own include files (synchronous_standby_names, the recovery settings).
fn prepare_databases(lab: &Lab) {
    for i in DB {
        let d = lab.host_dir(i);
        for sub in ["tmp", "run"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        must(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&d),
        );
    }
    let first = lab.host_dir(DB[0]).join("pgdata");
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
    );
    let mnt = lab.mnt();
    let conf = format!(
        "listen_addresses = '*'\nport = 5432\nunix_socket_directories = '{run}'\n\
         wal_level = replica\nmax_wal_senders = 10\nwal_keep_size = 256MB\nhot_standby = on\n\
         hot_standby_feedback = on\nwal_receiver_status_interval = 1s\n\
         shared_buffers = 16MB\nrestart_after_crash = off\nlogging_collector = off\n",
        run = mnt.join("run").display()
    );
    let mut c = std::fs::read_to_string(first.join("postgresql.conf")).unwrap();
    c += &conf;
    std::fs::write(first.join("postgresql.conf"), c).unwrap();
    let mut hba = std::fs::read_to_string(first.join("pg_hba.conf")).unwrap();
    hba += "host all all 10.77.0.0/24 trust\nhost replication all 10.77.0.0/24 trust\n";
    std::fs::write(first.join("pg_hba.conf"), hba).unwrap();
    must(
        Command::new("cp")
            .arg("-a")
            .arg(&first)
            .arg(lab.host_dir(DB[1]).join("pgdata")),
    );
}

#[test]
fn postgres_fails_over_with_its_virtual_ip_and_loses_no_acknowledged_commit() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED (loudly): network and mount namespaces need root");
        return;
    }
    for need in [
        "/usr/lib/ocf/resource.d/heartbeat/pgsql",
        "/usr/lib/ocf/resource.d/heartbeat/IPaddr2",
        "/usr/lib/postgresql/15/bin/postgres",
        "/usr/bin/xmllint",
    ] {
        if !Path::new(need).exists() {
            eprintln!("SKIPPED (loudly): {need} missing (scripts/setup-test-deps.sh installs it)");
            return;
        }
    }
    let net = match Netns::create(4) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED (loudly): cannot create network namespaces: {e}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("buoy-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let mut lab = Lab {
        net,
        dir,
        children: Vec::new(),
    };
    for i in 0..3 {
        std::fs::create_dir_all(lab.host_dir(i)).unwrap();
    }
    prepare_databases(&lab);
    for i in [SERVER, DB[0], DB[1]] {
        lab.start_agent(i);
    }
    wait_until(Duration::from_secs(30), || {
        let (ok, out) = lab.cli(&["status", "--json"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["leader"]["name"] == "h1")
    })
    .unwrap_or_else(|| panic!("no control plane:\n{}", lab.logs()));

    let mnt = lab.mnt();
    let at = |p: &str| mnt.join(p).display().to_string();
    let pg = json!({"segment": "db", "driver": "ocf", "mode": "promotable", "replicas": 2,
        "notify": true,
        "params": {"agent": "ocf:heartbeat:pgsql", "monitor_interval": "2s", "timeout": "20s",
            "params": {"pgctl": format!("{PG_BIN}/pg_ctl"), "psql": format!("{PG_BIN}/psql"),
                "pgdata": at("pgdata"), "tmpdir": at("tmp"), "socketdir": at("run"),
                "logfile": at("pg.log"), "rep_mode": "sync", "node_list": "h2 h3",
                "master_ip": VIP, "restart_on_promote": "false", "check_wal_receiver": "false",
                "primary_conninfo_opt": "keepalives_idle=60 keepalives_interval=5 keepalives_count=5"}}});
    let vip = json!({"segment": "db", "driver": "ocf",
        "colocated_with": {"instance": "pg", "promoted": true},
        "start_after": [{"instance": "pg", "promoted": true}],
        "params": {"agent": "ocf:heartbeat:IPaddr2", "monitor_interval": "1s",
            "params": {"ip": VIP, "cidr_netmask": 24, "nic": "eth0"}}});
    for (name, spec) in [("pg", &pg), ("vip", &vip)] {
        std::fs::write(lab.dir.join(format!("{name}.json")), spec.to_string()).unwrap();
    }
    let pg_file = lab.dir.join("pg.json").display().to_string();
    let vip_file = lab.dir.join("vip.json").display().to_string();
    for args in [
        vec!["segment", "create", "db"],
        vec!["host", "create", "h2", "--segment", "db"],
        vec!["host", "create", "h3", "--segment", "db"],
        vec!["instance", "create", "pg", "-f", &pg_file],
        vec!["instance", "create", "vip", "-f", &vip_file],
    ] {
        let (ok, out) = lab.cli(&args);
        assert!(ok, "buoy {args:?}: {out}");
    }

    // A primary behind the virtual IP, with its replica in synchronous mode.
    wait_until(Duration::from_secs(90), || {
        lab.sql("select pg_is_in_recovery()").as_deref() == Ok("f")
    })
    .unwrap_or_else(|| panic!("no primary behind the VIP:\n{}", lab.logs()));
    lab.sql("create table acked (i int primary key)").unwrap();
    wait_until(Duration::from_secs(90), || {
        lab.sql("select sync_state from pg_stat_replication")
            .is_ok_and(|s| s == "sync")
    })
    .unwrap_or_else(|| panic!("the replica never became synchronous:\n{}", lab.logs()));
    let primary = lab.vip_holder(&[]).expect("the VIP is on no database host");
    eprintln!("primary on {}", Lab::name(primary));
    // pgsql promotes only a replica its primary recorded as synchronous.
    let replica = Lab::name(if primary == DB[0] { DB[1] } else { DB[0] });
    wait_until(Duration::from_secs(30), || {
        lab.attribute(&replica, "pg-data-status").as_deref() == Some("STREAMING|SYNC")
    })
    .unwrap_or_else(|| {
        panic!(
            "the primary never recorded {replica} as synchronous ({:?}):\n{}",
            lab.attribute(&replica, "pg-data-status"),
            lab.logs()
        )
    });

    // The client: one transaction per row, each row id recorded once its commit is
    // acknowledged.
    let acked_file = lab.dir.join("acked");
    let script = format!(
        "i=0; while :; do i=$((i+1)); \
         if {PG_BIN}/psql -h {VIP} -U postgres -d postgres -qAtc \"insert into acked values ($i)\" >/dev/null 2>&1; \
         then echo $i >> {acked}; fi; done",
        acked = acked_file.display()
    );
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.net.ns(CLIENT), "sh", "-c", &script])
        .env("PGCONNECT_TIMEOUT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(client);
    let acked = |lab: &Lab| -> Vec<i64> {
        std::fs::read_to_string(lab.dir.join("acked"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    wait_until(Duration::from_secs(30), || acked(&lab).len() >= 20)
        .unwrap_or_else(|| panic!("the client never wrote:\n{}", lab.logs()));

    // The primary's host crashes.
    let before = acked(&lab).len();
    let crashed = Instant::now();
    lab.crash(primary);
    let resumed = wait_until(Duration::from_secs(120), || acked(&lab).len() > before + 5)
        .unwrap_or_else(|| panic!("writes never resumed:\n{}", lab.logs()));
    let new_primary = lab.vip_holder(&[primary]);
    eprintln!(
        "{} crashed: writes through the VIP resumed after {:?} (on {:?})",
        Lab::name(primary),
        crashed.elapsed().min(resumed + Duration::from_secs(1)),
        new_primary.map(Lab::name)
    );
    assert!(
        new_primary.is_some_and(|n| n != primary),
        "the VIP did not move"
    );
    kill_all_in(&lab.net.ns(CLIENT));

    // Every acknowledged commit is there.
    let lost = |lab: &Lab| -> Vec<i64> {
        let rows: BTreeSet<i64> = lab
            .sql("select i from acked")
            .unwrap_or_else(|e| panic!("cannot read back: {e}"))
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        acked(lab)
            .into_iter()
            .filter(|i| !rows.contains(i))
            .collect()
    };
    let acks = acked(&lab);
    assert!(
        lost(&lab).is_empty(),
        "acknowledged commits lost: {:?}",
        lost(&lab)
    );
    eprintln!("{} acknowledged commits, none lost", acks.len());
    // Negative control: one acknowledged row removed is caught.
    lab.sql(&format!("delete from acked where i = {}", acks[0]))
        .unwrap();
    assert_eq!(lost(&lab), [acks[0]], "the check missed a removed row");

    // The old primary's host comes back. pgsql left its lock file there (it never stopped
    // cleanly): its copy refuses to start and says why, for the operator to act on; the new
    // primary keeps serving.
    lab.net.link(primary, true).unwrap();
    lab.start_agent(primary);
    let old = Lab::name(primary);
    // A failed host gets work again only once the operator says it is fit.
    wait_until(Duration::from_secs(30), || {
        lab.cli(&["host", "enable", &old]).0
    })
    .unwrap_or_else(|| {
        panic!(
            "cannot enable {old}: {}",
            lab.cli(&["host", "enable", &old]).1
        )
    });
    let reason = wait_until(Duration::from_secs(90), || {
        let (ok, out) = lab.cli(&["instance", "show", "pg", "--json"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| {
            v["copies"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["host"] == old.as_str()
                        && c["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("PGSQL.lock"))
                })
            })
        })
    });
    let (_, shown) = lab.cli(&["instance", "show", "pg", "--json"]);
    assert!(
        reason.is_some(),
        "the old primary's copy does not say why it stays down:\n{shown}\n{}",
        lab.logs()
    );
    eprintln!("the old primary's copy stays down, saying why: {shown}");
    assert_eq!(lab.sql("select pg_is_in_recovery()").as_deref(), Ok("f"));
}
