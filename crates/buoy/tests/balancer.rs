//! A real HAProxy kept in sync with placements (issue 19). HAProxy runs as a Buoy clone of
//! 2 copies (the process driver running Debian's haproxy, one configuration file per host
//! because all hosts share this machine's disk); `web`, a clone of `buoy demo-app`, names it
//! as its load balancer. Read back with `show servers state` on each HAProxy, the backend
//! equals the copies that run: after the start, a scale down (the copy leaves: drained, then
//! deleted), a scale up, and a host killed (its copy moves; the server follows it). The
//! configuration file carries the same servers, so an HAProxy started from it (a reload)
//! has them. Requests through HAProxy reach the copies.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, create, get, observed, request, running_pid, wait_until};
use node::balancer::admin_socket::servers;
use serde_json::json;

const HAPROXY: &str = "/usr/sbin/haproxy";
const NET: u8 = 105;
const HOSTS: [u8; 4] = [2, 3, 4, 5];

/// A process killed by PID on drop (the HAProxy started from a written configuration).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, i: u8) -> String {
    format!(
        "global\n  stats socket {dir}/h{i}.sock level admin\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n  retries 3\n  option redispatch\n\
         frontend fe\n  bind 127.0.{NET}.{i}:8080\n  default_backend web\n\
         backend web\n  balance roundrobin\n  option httpchk GET /\n  # buoy:begin web\n  # buoy:end web\n",
        dir = dir.display()
    )
}

/// The copies of `web` that run: `web-R` -> (host address, port).
fn running_copies(c: &Cluster) -> BTreeSet<(String, String, u16)> {
    let placements = get(c.http(1), "/v1/placements?limit=100")
        .map(|(_, b)| common::json(&b))
        .unwrap_or_default();
    let mut out = BTreeSet::new();
    for i in HOSTS {
        let Some(o) = observed(c, i, "web") else {
            continue;
        };
        if o["phase"] != "running" {
            continue;
        }
        let replica = placements["placements"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"] == o["placement"])
            .and_then(|p| p["replica"].as_u64());
        if let Some(r) = replica {
            out.insert((format!("web-{r}"), format!("127.0.{NET}.{i}"), 8081));
        }
    }
    out
}

/// The hosts running a copy of the load balancer.
fn lb_hosts(c: &Cluster) -> Vec<u8> {
    HOSTS
        .into_iter()
        .filter(|&i| observed(c, i, "lb").is_some_and(|o| o["phase"] == "running"))
        .collect()
}

/// The backend of HAProxy on host `i`, serving servers only (not draining, not in
/// maintenance).
fn backend(dir: &Path, i: u8) -> Option<BTreeSet<(String, String, u16)>> {
    let socket: PathBuf = dir.join(format!("h{i}.sock"));
    let list = servers(&socket, "web", Duration::from_secs(2)).ok()?;
    Some(
        list.into_iter()
            .filter(|s| !s.in_maintenance() && !s.draining())
            .map(|s| (s.name, s.addr, s.port))
            .collect(),
    )
}

/// Waits until every HAProxy copy's backend equals the running copies, `n` of them.
fn in_sync(c: &Cluster, dir: &Path, n: usize, what: &str) {
    let ok = || {
        let want = running_copies(c);
        let lbs = lb_hosts(c);
        want.len() == n
            && lbs.len() == 2
            && lbs
                .iter()
                .all(|&i| backend(dir, i).is_some_and(|b| b == want))
    };
    let took = wait_until(Duration::from_secs(30), ok).unwrap_or_else(|| {
        let lbs = lb_hosts(c);
        panic!(
            "{what}: HAProxy's backends never matched the {n} running copies {:?}: {:?}\n{}",
            running_copies(c),
            lbs.iter()
                .map(|&i| (i, backend(dir, i)))
                .collect::<Vec<_>>(),
            lbs.first().map(|&i| c.log(i)).unwrap_or_default()
        )
    });
    eprintln!(
        "{what}: both HAProxy backends hold the {n} running copies {:?} ({} ms)",
        running_copies(c),
        took.as_millis()
    );
}

fn set_replicas(c: &Cluster, n: u32) {
    let (s, b) = request(
        c.http(1),
        "PATCH",
        "/v1/instances/web",
        &json!({ "replicas": n }).to_string(),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
}

#[test]
fn a_real_haproxy_backend_follows_the_running_copies() {
    if !Path::new(HAPROXY).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{HAPROXY} is missing: scripts/setup-test-deps.sh installs haproxy"
        );
        eprintln!("SKIPPED: no {HAPROXY} (scripts/setup-test-deps.sh installs it)");
        return;
    }
    // Instances outlive their agents here: they all name the test's directory, and go by
    // PID after the agents.
    let _reaper = common::Reaper(common::cluster_dir(NET));
    let mut c = Cluster::new(NET);
    let dir = c.dir.join("lb");
    std::fs::create_dir_all(&dir).unwrap();
    for i in HOSTS {
        std::fs::write(dir.join(format!("h{i}.cfg")), config(&dir, i)).unwrap();
    }
    c.start_agent(1, None, &[]);
    for i in HOSTS {
        c.start_agent(i, None, &[]);
    }
    create(
        &c,
        "/v1/segments",
        json!({"name": "zone", "auto_rejoin": true}),
    );
    for i in HOSTS {
        create(
            &c,
            "/v1/hosts",
            json!({"name": format!("h{i}"), "segment": "zone"}),
        );
    }
    let d = dir.display();
    create(
        &c,
        "/v1/instances",
        json!({"name": "lb", "segment": "zone", "driver": "process", "mode": "clone",
               "replicas": 2,
               "params": {"command": "/bin/sh",
                          "args": ["-c", format!("exec {HAPROXY} -db -f {d}/$BUOY_HOST.cfg")]},
               "load_balancer": {"admin_socket": format!("{d}/{{host}}.sock"),
                                 "config": format!("{d}/{{host}}.cfg")}}),
    );
    create(
        &c,
        "/v1/instances",
        json!({"name": "web", "segment": "zone", "driver": "process", "mode": "clone",
               "replicas": 3,
               "params": {"command": env!("CARGO_BIN_EXE_buoy"),
                          "args": ["demo-app", "--http-port", "8081", "--heartbeats",
                                   format!("{d}/heartbeats")]},
               "health_checks": [{"type": "http", "host": "host-ip", "port": 8081, "path": "/"}],
               "balancer": {"instance": "lb", "backend": "web", "port": 8081}}),
    );
    in_sync(&c, &dir, 3, "after the start");
    // The API shows what the leader sends the HAProxy copies.
    let (_, body) = get(c.http(1), "/v1/instances/lb").unwrap();
    let shown: BTreeSet<(String, String, u16)> = common::json(&body)["backends"][0]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["addr"].as_str().unwrap_or("").to_string(),
                s["port"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect();
    assert_eq!(shown, running_copies(&c), "{body}");

    // Requests through each HAProxy reach a copy.
    for i in lb_hosts(&c) {
        let addr = ([127, 0, NET, i], 8080).into();
        let (s, body) = get(addr, "/").expect("HAProxy answers");
        assert_eq!(s, 200, "through HAProxy on h{i}: {body}");
        assert!(body.starts_with("web "), "{body}");
    }

    // The configuration file says the same: an HAProxy started from it (a reload) has the
    // servers before anyone tells it.
    let lb = lb_hosts(&c)[0];
    let written = std::fs::read_to_string(dir.join(format!("h{lb}.cfg"))).unwrap();
    for (name, addr, port) in running_copies(&c) {
        assert!(
            written.contains(&format!("server {name} {addr}:{port} check")),
            "{written}"
        );
    }
    let copy = written
        .replace(&format!("h{lb}.sock"), "reload.sock")
        .replace(
            &format!("127.0.{NET}.{lb}:8080"),
            &format!("127.0.{NET}.{lb}:8090"),
        );
    std::fs::write(dir.join("reload.cfg"), copy).unwrap();
    let reload = Guard(
        Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(dir.join("reload.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let reloaded = wait_until(Duration::from_secs(10), || {
        servers(&dir.join("reload.sock"), "web", Duration::from_secs(2)).is_ok()
    });
    assert!(
        reloaded.is_some(),
        "the written configuration does not start"
    );
    let names: BTreeSet<(String, String, u16)> =
        servers(&dir.join("reload.sock"), "web", Duration::from_secs(2))
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.addr, s.port))
            .collect();
    assert_eq!(names, running_copies(&c), "a reload keeps the servers");
    drop(reload);

    // Scale down: the copy leaves the backend (drained, then deleted); up: it joins once
    // healthy.
    set_replicas(&c, 2);
    in_sync(&c, &dir, 2, "after scaling down");
    set_replicas(&c, 3);
    in_sync(&c, &dir, 3, "after scaling up");

    // A host with a copy of web (and none of the load balancer, if there is one) is killed
    // with its copy: the copy moves and the backend follows it.
    let lbs = lb_hosts(&c);
    let victim = HOSTS
        .into_iter()
        .filter(|i| observed(&c, *i, "web").is_some_and(|o| o["phase"] == "running"))
        .find(|i| !lbs.contains(i))
        .expect("a host with web only");
    let pid = running_pid(&c, victim, "web").expect("its pid");
    c.kill(&format!("h{victim}"));
    // SAFETY: kill(2) on a PID this test's cluster started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let gone = format!("127.0.{NET}.{victim}");
    wait_until(Duration::from_secs(30), || {
        let now = running_copies(&c);
        now.len() == 3 && now.iter().all(|(_, addr, _)| addr != &gone)
    })
    .unwrap_or_else(|| {
        panic!(
            "the killed host's copy did not move: {:?}",
            running_copies(&c)
        )
    });
    in_sync(&c, &dir, 3, "after a host was killed");

    // The last instance served through the backend is deleted: its servers leave both
    // HAProxy copies (drained, then deleted) and their configuration files.
    let (s, b) = request(c.http(1), "DELETE", "/v1/instances/web", "").unwrap();
    assert!(s == 200 || s == 204, "{s} {b}");
    let lbs = lb_hosts(&c);
    let emptied = wait_until(Duration::from_secs(30), || {
        lbs.iter().all(|&i| {
            let socket = dir.join(format!("h{i}.sock"));
            let left = servers(&socket, "web", Duration::from_secs(2)).map(|l| l.len());
            let cfg = std::fs::read_to_string(dir.join(format!("h{i}.cfg"))).unwrap_or_default();
            left.is_ok_and(|n| n == 0) && !cfg.contains("server web-")
        })
    });
    assert!(
        emptied.is_some(),
        "the deleted instance's servers stayed: {:?}\n{}",
        lbs.iter()
            .map(|&i| servers(
                &dir.join(format!("h{i}.sock")),
                "web",
                Duration::from_secs(2)
            ))
            .collect::<Vec<_>>(),
        lbs.first().map(|&i| c.log(i)).unwrap_or_default()
    );
    eprintln!(
        "web deleted: both HAProxy backends and configuration files emptied ({} ms)",
        emptied.unwrap().as_millis()
    );

    // A balancer whose socket does not answer: a recorded failure on its host, never a
    // crash, and its copy keeps running.
    create(
        &c,
        "/v1/instances",
        json!({"name": "ghost", "segment": "zone", "driver": "process",
               "params": {"command": env!("CARGO_BIN_EXE_buoy"),
                          "args": ["demo-app", "--heartbeats", format!("{d}/idle")]},
               "load_balancer": {"admin_socket": format!("{d}/nowhere/{{host}}.sock")}}),
    );
    create(
        &c,
        "/v1/instances",
        json!({"name": "api", "segment": "zone", "driver": "process",
               "params": {"command": env!("CARGO_BIN_EXE_buoy"),
                          "args": ["demo-app", "--heartbeats", format!("{d}/idle")]},
               "balancer": {"instance": "ghost", "backend": "api", "port": 9}}),
    );
    let alive: Vec<u8> = HOSTS.into_iter().filter(|i| *i != victim).collect();
    let mut seen = None;
    wait_until(Duration::from_secs(20), || {
        seen = alive.iter().find_map(|&i| {
            let (_, body) = c.host_get(i, "/v1/supervisor")?;
            let v = common::json(&body);
            v["balancers"]
                .as_array()?
                .iter()
                .find(|b| b["backend"] == "api" && b["failures"].as_u64() >= Some(2))
                .map(|b| (i, b.clone()))
        });
        seen.is_some()
    })
    .unwrap_or_else(|| panic!("no failure recorded for the ghost balancer"));
    let (i, status) = seen.unwrap();
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("nowhere/h") && e.contains("admin socket")),
        "{status}"
    );
    assert_eq!(
        observed(&c, i, "ghost").map(|o| o["phase"].clone()),
        Some(json!("running")),
        "the balancer's copy keeps running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
