//! Stops that fail or hang (issue 15, hole 4). Pacemaker's rule: a copy whose stop failed may
//! still run, so its host is fenced before the copy runs anywhere else. Here the host fences
//! itself (it renews no more and leaves the cluster), and the leader waits for its lease, the
//! drift margin and, for a host with OCF copies, the cluster's stop grace: by then the host
//! has cut off any stop still running and killed the resource's cgroup (the agent and all it
//! started).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cluster, get, json, request, wait_until};

/// An OCF agent whose state file is per host (`$HANG_TEST_HOST`), whose `start` leaves a
/// daemon (its PID in `<dir>/<host>.daemon`) and whose `stop` hangs while `<dir>/<host>.hang`
/// exists.
fn hang_agent(root: &Path) {
    let script = r#"#!/bin/sh
state="$OCF_RESKEY_dir/$HANG_TEST_HOST.state"
case "$1" in
  meta-data) echo '<?xml version="1.0"?><resource-agent name="Hang"><actions><action name="start"/><action name="stop"/><action name="monitor"/></actions></resource-agent>'; exit 0 ;;
  validate-all) exit 0 ;;
  start)
    touch "$state"
    setsid sleep 600 >/dev/null 2>&1 &
    echo $! > "$OCF_RESKEY_dir/$HANG_TEST_HOST.daemon"
    exit 0 ;;
  monitor) [ -f "$state" ] && exit 0; exit 7 ;;
  stop)
    if [ -f "$OCF_RESKEY_dir/$HANG_TEST_HOST.hang" ]; then exec sleep 30; fi
    rm -f "$state"; exit 0 ;;
  *) exit 3 ;;
esac
"#;
    common::install_ocf_agent(root, "Hang", script);
}

fn start_host(c: &mut Cluster, i: u8) {
    let name = format!("h{i}");
    let log = std::fs::File::create(c.dir.join(format!("h{i}.log"))).unwrap();
    let data = c.dir.join(format!("d{i}")).display().to_string();
    let child = c
        .command(
            i,
            &name,
            &[
                "--join".into(),
                c.gossip(1).to_string(),
                "--data-dir".into(),
                data,
            ],
        )
        .env("HANG_TEST_HOST", &name)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    c.agents.push((name, child));
    wait_until(Duration::from_secs(10), || {
        get(c.http(i), "/v1/health").is_some_and(|(s, _)| s == 200)
    })
    .unwrap_or_else(|| panic!("h{i} did not start:\n{}", c.log(i)));
}

/// When host `i`'s lease ends (or ended), as it counts it, in Unix milliseconds.
fn lease_until_ms(c: &Cluster, i: u8) -> Option<u64> {
    let (s, b) = c.host_get(i, "/v1/lease")?;
    if s != 200 {
        return None;
    }
    let until = json(&b)["until"].as_str()?.to_string();
    model::timestamp::Timestamp::parse(&until)
        .ok()
        .map(|t| t.unix_millis())
}

fn held(c: &Cluster, i: u8) -> Option<bool> {
    let (s, b) = c.host_get(i, "/v1/lease")?;
    (s == 200).then(|| json(&b)["held"].as_bool())?
}

/// A cluster of the server h1 and hosts h2, h3 (segment `zone`, with `zone_fields`) where h2
/// runs `name`, a Hang agent's copy with OCF `timeout`, started and its daemon up. `lease` is
/// a body for `PUT /v1/settings/lease`, sent first.
struct Hung {
    c: Cluster,
    /// The agent's state directory.
    state: PathBuf,
    /// The copy's placement.
    placement: serde_json::Value,
    /// The daemon h2's copy left.
    daemon: i32,
}

impl Hung {
    fn start(
        net: u8,
        lease: Option<&str>,
        zone_fields: serde_json::Value,
        name: &str,
        timeout: &str,
    ) -> Hung {
        let mut c = Cluster::new(net);
        let root: PathBuf = c.dir.join("ocf");
        hang_agent(&root);
        let state = c.dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        c.start_agent(1, None, &[]);
        start_host(&mut c, 2);
        start_host(&mut c, 3);
        if let Some(body) = lease {
            let (status, answer) = request(c.http(1), "PUT", "/v1/settings/lease", body).unwrap();
            assert_eq!(status, 200, "{answer}");
        }
        common::zone(&c, zone_fields, &["h2", "h3"]);
        let placement = common::create_placed(
            &c,
            serde_json::json!({"name": name, "segment": "zone", "driver": "ocf",
                "params": {"agent": "test:Hang", "ocf_root": root.display().to_string(),
                           "timeout": timeout, "monitor_interval": "200ms",
                           "params": {"dir": state.display().to_string()}}}),
            "h2",
        );
        let mut daemon = None;
        wait_until(Duration::from_secs(15), || {
            daemon = daemon_pid(&state.join("h2.daemon"));
            state.join("h2.state").exists() && daemon.is_some()
        })
        .unwrap_or_else(|| panic!("the resource never started on h2:\n{}", c.log(2)));
        Hung {
            c,
            state,
            placement,
            daemon: daemon.unwrap(),
        }
    }

    /// Whether host `h` runs the copy (its state file is there).
    fn on(&self, h: &str) -> bool {
        self.state.join(format!("{h}.state")).exists()
    }

    /// When host `h` started the copy, in Unix milliseconds.
    fn started_ms(&self, h: &str) -> Option<u64> {
        std::fs::metadata(self.state.join(format!("{h}.state")))
            .and_then(|m| m.modified())
            .ok()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64)
    }
}

/// A copy whose stop hangs on its old host starts on the new one only once the old host has
/// fenced itself: its lease is over. (Before the fix the stop's timeout counted as a stop, and
/// the new host started the copy 1 s after the move while the old one still held its lease
/// and its resource.)
#[test]
fn a_copy_whose_stop_hangs_moves_only_once_its_old_host_is_fenced() {
    let h = Hung::start(75, None, serde_json::json!({}), "vip", "1s");
    let (c, state_dir) = (&h.c, &h.state);
    let placement = &h.placement;
    let on = |host: &str| h.on(host);

    // From now on h2's stop hangs. Move the copy to h3.
    std::fs::write(state_dir.join("h2.hang"), b"").unwrap();
    let id = placement["id"].as_str().unwrap();
    let moved = Instant::now();
    let (status, body) = request(
        c.http(1),
        "PATCH",
        &format!("/v1/placements/{id}"),
        r#"{"host": "h3"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Wait until h3 runs the copy (its state file appears), then compare when it started with
    // when h2's lease ended as h2 itself counts it (a fenced host renews no more, so its
    // lease's end stays put).
    let started = wait_until(Duration::from_secs(30), || on("h3"));
    let _ = std::fs::remove_file(state_dir.join("h2.hang"));
    let started = started.unwrap_or_else(|| {
        panic!(
            "the copy never started on h3 ({:?} after the move):\nh2:\n{}\nh1:\n{}",
            moved.elapsed(),
            c.log(2),
            c.log(1)
        )
    });
    let h3_started_ms = h.started_ms("h3").unwrap();
    let mut h2_until = None;
    wait_until(Duration::from_secs(10), || {
        h2_until = lease_until_ms(c, 2);
        h2_until.is_some() && held(c, 2) == Some(false)
    })
    .unwrap_or_else(|| {
        panic!(
            "h3 started the copy {started:?} after the move while h2 (whose stop hangs) still holds its lease 10 s later:\n{}",
            c.log(2)
        )
    });
    let h2_until = h2_until.unwrap();
    assert!(
        h3_started_ms >= h2_until,
        "h3 started the copy {started:?} after the move, {} ms before the lease of h2 (whose stop hangs) ended:\n{}",
        h2_until - h3_started_ms,
        c.log(2)
    );
    let log = c.log(2);
    assert!(
        log.contains("stop failed") && log.contains("fenced"),
        "h2 says it fenced itself and why:\n{log}"
    );
    // The failed stop's resource was killed whole: the daemon its agent left is gone.
    let daemon = daemon_pid(&state_dir.join("h2.daemon")).expect("h2's daemon pid");
    let dead = gone(daemon);
    kill_daemons(state_dir);
    assert!(
        dead,
        "the daemon of h2's failed copy still runs after the move"
    );
}

/// Kills the daemons the Hang agent left (a test ends every process it starts).
fn kill_daemons(dir: &Path) {
    for h in ["h2", "h3"] {
        if let Some(pid) = daemon_pid(&dir.join(format!("{h}.daemon"))) {
            // SAFETY: a plain signal to a PID this test's agent started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The bound after a lease loss (issue 18: failover within seconds without giving up rule
/// S1): an OCF stop that hangs is cut off at the lease's end plus the cluster's stop grace,
/// and everything its agent started (a daemon) is killed then; the copy starts elsewhere only
/// after that, and not a whole OCF `timeout` later. (Before, the leader waited the agent's
/// `timeout`, here 10 s, and nothing killed what the agent had started.)
#[test]
fn after_a_lease_loss_a_hung_stop_is_cut_off_at_the_stop_grace_and_the_copy_moves_then() {
    let h = Hung::start(
        100,
        Some(r#"{"ttl": "3s", "stop_grace": "2s"}"#),
        serde_json::json!({"auto_rejoin": true}),
        "db",
        "10s",
    );
    let (status, body) = request(h.c.http(1), "GET", "/v1/settings", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["lease"]["stop_grace_ms"], 2000, "{body}");
    let (c, state_dir, daemon) = (&h.c, &h.state, h.daemon);
    let on = |host: &str| h.on(host);
    // The grace reached h2 with its renewals.
    wait_until(Duration::from_secs(5), || {
        c.log(2).contains("db") && lease_until_ms(c, 2).is_some()
    });

    // h2's stop hangs from now on, and h2 loses its lease: cut it from the server.
    std::fs::write(state_dir.join("h2.hang"), b"").unwrap();
    c.cut(2, 1);
    let dead = wait_until(Duration::from_secs(20), || gone(daemon)).map(|_| unix_ms());
    let moved = wait_until(Duration::from_secs(20), || on("h3"));
    let _ = std::fs::remove_file(state_dir.join("h2.hang"));
    let h2_until = lease_until_ms(c, 2);
    let h3_started_ms = h.started_ms("h3");
    c.heal(&[1, 2]);
    kill_daemons(state_dir);
    let (dead, h2_until) = (
        dead.unwrap_or_else(|| {
            panic!("h2's daemon outlived the lease loss by 20 s:\n{}", c.log(2))
        }),
        h2_until.expect("h2's lease end"),
    );
    moved.unwrap_or_else(|| panic!("the copy never moved to h3:\n{}", c.log(1)));
    let h3_started_ms = h3_started_ms.unwrap();
    assert!(
        dead <= h2_until + 2_000 + 1_500,
        "h2's daemon died {} ms after h2's lease ended: the stop was not cut off at the 2 s grace:\n{}",
        dead - h2_until,
        c.log(2)
    );
    assert!(
        h3_started_ms >= h2_until + 2_000,
        "h3 started the copy {} ms after h2's lease ended, within the 2 s stop grace:\n{}",
        h3_started_ms as i64 - h2_until as i64,
        c.log(1)
    );
    assert!(
        h3_started_ms <= h2_until + 2_000 + 4_000,
        "h3 started the copy {} ms after h2's lease ended: the leader waited longer than the grace",
        h3_started_ms - h2_until
    );
    let log = c.log(2);
    assert!(log.contains("cut off after the stop grace"), "{log}");
}

/// Whether `pid` is gone (or a zombie waiting to be reaped by its new parent).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

fn daemon_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Issue 15, hole 6: an instance that daemonizes (a child calls setsid and so leaves the
/// process group) is contained by its cgroup: a lease loss kills the daemon too, and so does
/// stopping the instance. (Before, only the process group was signalled and the daemon ran
/// on.)
#[test]
fn a_daemonizing_instance_is_killed_whole_on_lease_loss_and_on_stop() {
    let mut c = Cluster::new(76);
    c.start_agent(1, None, &[]);
    start_host(&mut c, 2);
    common::zone(&c, serde_json::json!({"auto_rejoin": true}), &["h2"]);
    let pidfile = c.dir.join("daemon.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 600' & exec sleep 600",
        pidfile.display()
    );
    common::create_placed(
        &c,
        serde_json::json!({"name": "forker", "segment": "zone", "driver": "process",
            "params": {"command": "/bin/sh", "args": ["-c", script], "stop_timeout": "1s"}}),
        "h2",
    );
    let mut first = None;
    wait_until(Duration::from_secs(15), || {
        first = daemon_pid(&pidfile);
        first.is_some()
    })
    .unwrap_or_else(|| panic!("the daemon never started:\n{}", c.log(2)));
    let first = first.unwrap();
    assert!(c.log(2).contains("cgroup"), "{}", c.log(2));

    // Lease loss: cut h2 from the server.
    c.cut(2, 1);
    let died = wait_until(Duration::from_secs(5), || gone(first));
    if died.is_none() {
        unsafe { libc::kill(first, libc::SIGKILL) };
    }
    died.expect("the daemon dies with its instance when the lease is lost");
    c.heal(&[1, 2]);

    // Back: it runs again, with a new daemon; stopping the instance stops that one too.
    let _ = std::fs::remove_file(&pidfile);
    let mut second = None;
    wait_until(Duration::from_secs(20), || {
        second = daemon_pid(&pidfile);
        second.is_some()
    })
    .unwrap_or_else(|| panic!("it never ran again:\n{}", c.log(2)));
    let second = second.unwrap();
    let (status, body) = request(
        c.http(1),
        "PATCH",
        "/v1/instances/forker",
        r#"{"desired_state": "stopped"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let died = wait_until(Duration::from_secs(10), || gone(second));
    if died.is_none() {
        unsafe { libc::kill(second, libc::SIGKILL) };
    }
    died.expect("the daemon stops with its instance");
}
