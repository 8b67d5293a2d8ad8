//! Groups end to end: two members (think a filesystem and the service on it) run together on
//! one host, the second started only once the first runs; a host kill moves both, together,
//! to one other host, in order. Each member appends its start time and host to a file. The
//! second test does the same on hosts in network namespaces with a real `ocf:heartbeat:IPaddr2`
//! virtual IP and a service listening on it (root and resource-agents; skips loudly otherwise).

mod common;

use std::time::Duration;

use common::{Cluster, create, get, json, request, wait_until, zone};
use serde_json::json;

/// Start records of member `name`: (host, nanoseconds since the epoch).
fn starts(c: &Cluster, name: &str) -> Vec<(String, u128)> {
    std::fs::read_to_string(c.dir.join(format!("{name}.starts")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (host, t) = l.split_once(' ')?;
            Some((host.to_string(), t.trim().parse().ok()?))
        })
        .collect()
}

fn member(c: &Cluster, name: &str, order: u32) -> serde_json::Value {
    let file = c.dir.join(format!("{name}.starts"));
    json!({"name": name, "segment": "zone", "driver": "process",
           "params": {"command": "/bin/sh",
                      "args": ["-c", format!("echo \"$BUOY_HOST $(date +%s%N)\" >> {}; exec sleep 600", file.display())]},
           "group": {"name": "web", "order": order}})
}

#[test]
fn a_group_runs_together_starts_in_order_and_moves_as_one() {
    let mut c = Cluster::new(98);
    c.start_agent(1, None, &[]);
    let _watchdogs: Vec<common::Watchdog> = (2..=4).map(|i| c.start_watched(i, &[])).collect();
    zone(&c, json!({}), &["h2", "h3", "h4"]);
    // The service is created first: it still waits for the filesystem.
    create(&c, "/v1/instances", member(&c, "svc", 1));
    create(&c, "/v1/instances", member(&c, "fs", 0));
    wait_until(Duration::from_secs(20), || {
        starts(&c, "fs").len() == 1 && starts(&c, "svc").len() == 1
    })
    .unwrap_or_else(|| {
        panic!(
            "never started: {:?} {:?}\n{}",
            starts(&c, "fs"),
            starts(&c, "svc"),
            c.log(1)
        )
    });
    let (fs, svc) = (starts(&c, "fs")[0].clone(), starts(&c, "svc")[0].clone());
    assert_eq!(fs.0, svc.0, "together");
    assert!(svc.1 > fs.1, "the service started after the filesystem");

    // Their host dies: both start again on one other host, in order.
    let host = fs.0.clone();
    c.kill(&host);
    wait_until(Duration::from_secs(30), || {
        starts(&c, "fs").len() == 2 && starts(&c, "svc").len() == 2
    })
    .unwrap_or_else(|| {
        panic!(
            "never moved: {:?} {:?}\n{}",
            starts(&c, "fs"),
            starts(&c, "svc"),
            c.log(1)
        )
    });
    let (fs, svc) = (starts(&c, "fs")[1].clone(), starts(&c, "svc")[1].clone());
    assert_ne!(fs.0, host);
    assert_eq!(fs.0, svc.0, "moved together");
    assert!(svc.1 > fs.1, "in order");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        (starts(&c, "fs").len(), starts(&c, "svc").len()),
        (2, 2),
        "started once each"
    );
}

/// A leader change must not restart a group: the new leader decides the follower's start
/// condition from the hosts' reports, and a follower it withheld would be stopped by its host.
/// Three servers, the group on two other hosts; the leader is killed: the group runs on,
/// started once. (Leases of 6 s, so that no host loses its lease during the election.)
#[test]
fn a_new_leader_leaves_a_running_group_alone() {
    let mut c = Cluster::new(102);
    c.start_three_servers();
    let leader_of = |c: &Cluster, i: u8| -> Option<String> {
        let (s, b) = get(c.http(i), "/v1/status")?;
        (s == 200).then(|| json(&b)["leader"]["name"].as_str().map(String::from))?
    };
    wait_until(Duration::from_secs(20), || {
        get(c.http(1), "/v1/settings")
            .is_some_and(|(s, b)| s == 200 && !json(&b)["lease"].is_null())
    })
    .expect("the first leader writes the cluster's lease timing");
    let (status, body) =
        request(c.http(1), "PUT", "/v1/settings/lease", r#"{"ttl": "6s"}"#).unwrap();
    assert_eq!(status, 200, "{body}");
    let _watchdogs: Vec<common::Watchdog> = (4..=5)
        .map(|i| c.start_watched(i, &["--lease-ttl", "6s"]))
        .collect();
    zone(&c, json!({}), &["h4", "h5"]);
    create(&c, "/v1/instances", member(&c, "fs", 0));
    create(&c, "/v1/instances", member(&c, "svc", 1));
    let counts = |c: &Cluster| (starts(c, "fs").len(), starts(c, "svc").len());
    wait_until(Duration::from_secs(20), || counts(&c) == (1, 1))
        .unwrap_or_else(|| panic!("never started: {:?}\n{}", counts(&c), c.log(4)));

    let old = leader_of(&c, 1).expect("a leader");
    c.kill(&old);
    let survivor = (1..=3u8).find(|i| format!("h{i}") != old).unwrap();
    wait_until(Duration::from_secs(20), || {
        leader_of(&c, survivor).is_some_and(|l| l != old)
    })
    .unwrap_or_else(|| panic!("no new leader\n{}", c.log(survivor)));
    // Several renewals with the new leader, the first ones without reports.
    std::thread::sleep(Duration::from_secs(6));
    let host = starts(&c, "svc")[0].0.clone();
    let agent: u8 = host[1..].parse().unwrap();
    assert_eq!(
        counts(&c),
        (1, 1),
        "the group was restarted under the new leader\n{}",
        c.log(agent)
    );
}

/// The virtual IP of the group in namespaces.
const VIP: &str = "10.77.0.60";

/// Prints how many times the VIP is on this host's `eth0`: what each service start records.
fn vip_probe() -> String {
    format!("ip -o -4 addr show dev eth0 | grep -c ' {VIP}/'")
}

/// The answer of the service behind the VIP, asked from the client's namespace (3): the host
/// it runs on.
fn ask(lab: &lab::ns_lab::NsLab) -> Option<String> {
    let out = lab.run(
        3,
        "curl",
        &["-sf", "--max-time", "1", &format!("http://{VIP}:8080/")],
        &[],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Issue 18's group test on real hosts: an `ocf:heartbeat:IPaddr2` virtual IP and a service
/// listening on it (a process that can start only once the address is there) in one group,
/// hosts in network namespaces. The service starts after the address, on its host; the host
/// crashes; both come back on the other host, in order, and a client through the address gets
/// its answers from there. Each service start records whether the address was up at that
/// moment: a start before it is what the check catches.
#[test]
fn a_virtual_ip_and_its_service_move_together_in_order_when_their_host_crashes() {
    use lab::ns_lab::{NsLab, SERVER, missing, wait_for};
    if let Some(why) = missing(&["/usr/lib/ocf/resource.d/heartbeat/IPaddr2", "/usr/bin/curl"]) {
        eprintln!("SKIPPED (loudly): {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("buoy-group-vip-{}", std::process::id()));
    let buoy = std::path::Path::new(env!("CARGO_BIN_EXE_buoy"));
    let mut lab = NsLab::create(buoy, dir, 4, 3).unwrap_or_else(|e| panic!("{e:#}"));
    if std::env::var_os("BUOY_TEST_KEEP").is_some() {
        lab.keep_files();
    }
    for i in [SERVER, 1, 2] {
        lab.start_agent(i).unwrap();
    }
    let logs = |lab: &NsLab| lab.logs(&[SERVER, 1, 2], &[]);
    lab.wait_for_leader()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&lab)));

    // The service answers with its host's name, on the VIP only: it cannot run without it.
    let starts = lab.dir.join("svc.starts");
    let server = lab.dir.join("svc.py");
    std::fs::write(
        &server,
        format!(
            "import http.server, os\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       b = os.environ['BUOY_HOST'].encode()\n\
             \x20       self.send_response(200)\n\
             \x20       self.send_header('Content-Length', str(len(b)))\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(b)\n\
             \x20   def log_message(self, *a):\n\
             \x20       pass\n\
             http.server.HTTPServer(('{VIP}', 8080), H).serve_forever()\n"
        ),
    )
    .unwrap();
    let svc = json!({"segment": "web", "driver": "process", "group": {"name": "web", "order": 1},
        "params": {"command": "/bin/sh", "args": ["-c", format!(
            "echo \"$BUOY_HOST $(date +%s%3N) $({})\" >> {}; exec python3 {}",
            vip_probe(), starts.display(), server.display())]}});
    let vip = json!({"segment": "web", "driver": "ocf", "group": {"name": "web", "order": 0},
        "params": {"agent": "ocf:heartbeat:IPaddr2", "monitor_interval": "1s",
            "params": {"ip": VIP, "cidr_netmask": 24, "nic": "eth0"}}});
    for (name, spec) in [("svc", &svc), ("vip", &vip)] {
        std::fs::write(lab.dir.join(format!("{name}.json")), spec.to_string()).unwrap();
    }
    let file = |name: &str| lab.dir.join(format!("{name}.json")).display().to_string();
    let (svc_file, vip_file) = (file("svc"), file("vip"));
    // The service is created first: the group still starts the address before it.
    lab.cli_all(&[
        vec!["segment", "create", "web"],
        vec!["host", "create", "h2", "--segment", "web"],
        vec!["host", "create", "h3", "--segment", "web"],
        vec!["instance", "create", "svc", "-f", &svc_file],
        vec!["instance", "create", "vip", "-f", &vip_file],
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    let records = || -> Vec<(String, u64, bool)> {
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok()?,
                    w.next()? != "0",
                ))
            })
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(60), || ask(&lab).is_some()),
        "the service never answered through {VIP}: {:?}\n{}",
        records(),
        logs(&lab)
    );
    let first = ask(&lab).unwrap();
    assert_eq!(records().len(), 1, "started once: {:?}", records());
    assert_eq!(records()[0].0, first, "the service runs where it answers");
    assert!(records()[0].2, "the service started before its address");
    let holder = if first == "h2" { 1 } else { 2 };

    // The host crashes: the address and the service come back on the other host, in order.
    let crashed_ms = lab.crash(holder);
    let other = NsLab::name(3 - holder);
    assert!(
        wait_for(Duration::from_secs(60), || ask(&lab)
            .is_some_and(|h| h == other)),
        "the group never answered from {other}: {:?}\n{}",
        records(),
        logs(&lab)
    );
    let answered_ms = lab::ns_lab::unix_ms();
    let moved = records();
    assert_eq!(moved.len(), 2, "started twice in all: {moved:?}");
    assert_eq!(moved[1].0, other, "{moved:?}");
    assert!(
        moved[1].2,
        "the service started before its address moved: {moved:?}"
    );
    eprintln!(
        "{} crashed: the service answered from {other} through {VIP} {} ms later (its start {} ms after the crash)",
        NsLab::name(holder),
        answered_ms - crashed_ms,
        moved[1].1 - crashed_ms
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(records().len(), 2, "started once each: {:?}", records());

    // Negative control: the probe the service starts with reads 0 where the address is not
    // (the crashed host, rebooted), so a start before the address would have been recorded.
    lab.reboot(holder).unwrap();
    let out = lab.run(holder, "sh", &["-c", &vip_probe()], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}
