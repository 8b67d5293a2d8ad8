//! The supervisor with real agents and real processes: an instance placed on a host runs
//! there with its epoch; a crash restarts it in place; cut from the servers, the host kills it
//! before the leader may move it (rule S1) and runs it again once it renews; a move stops it
//! here and starts it there with a new epoch; a crash loop ends in `failed` with the reason.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    Cluster, Watchdog, alive, buoy, create, create_placed, get, json, observed, place_sleeper,
    request, running_pid, wait_until,
};
use model::timestamp::Timestamp;
use serde_json::json;

fn log_has(dir: &Path, host: u8, name: &str, text: &str) -> bool {
    std::fs::read_to_string(dir.join(format!("data-h{host}/instances/{name}.log")))
        .is_ok_and(|l| l.contains(text))
}

#[test]
fn placed_instances_run_restart_fence_themselves_and_move() {
    let mut c = Cluster::new(48);
    let dir = c.dir.clone();
    let data = |i: u8| dir.join(format!("data-h{i}")).display().to_string();
    c.start(1, &["--server".into(), "--data-dir".into(), data(1)]);
    c.start(2, &["--data-dir".into(), data(2)]);
    // auto_rejoin: under load the cut below may last long enough for the leader to mark h2
    // failed (dead in gossip, lease over); a failed host takes no work until it is enabled.
    create(
        &c,
        "/v1/segments",
        json!({"name": "zone", "auto_rejoin": true}),
    );
    // h1 becomes a host only for the move below: while h2 is cut off, the recovery engine
    // has nowhere else to put the instance, so it stays placed on h2.
    create(&c, "/v1/hosts", json!({"name": "h2", "segment": "zone"}));
    let ticker = json!({
        "name": "ticker", "segment": "zone", "driver": "process",
        "params": {"command": "/bin/sh", "args": ["-c", "while true; do echo tick $BUOY_INSTANCE $BUOY_EPOCH; sleep 0.1; done"], "stop_timeout": "2s"},
        "max_restarts": 3, "restart_window": "60s"
    });
    let placement = create_placed(&c, ticker, "h2");
    assert_eq!(placement["epoch"], 1, "{placement}");

    // It runs on h2 with its epoch.
    let mut pid = None;
    wait_until(Duration::from_secs(10), || {
        pid = running_pid(&c, 2, "ticker");
        pid.is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "ticker never ran: {:?}\n{}",
            observed(&c, 2, "ticker"),
            c.log(2)
        )
    });
    let first = pid.unwrap();
    wait_until(Duration::from_secs(5), || {
        log_has(&dir, 2, "ticker", "tick ticker 1")
    })
    .expect("its output reaches its log with its epoch");

    // Its log, from another agent: the last lines, then following new ones.
    let (ok, out, err) = buoy(c.http(1), &["instance", "logs", "ticker", "--tail", "3"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        (1..=3).contains(&lines.len()) && lines.iter().all(|l| *l == "tick ticker 1"),
        "{out}"
    );
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["instance", "logs", "ticker", "--tail", "0", "--follow"])
        .env("BUOY_HTTP_ADDR", c.http(1).to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut followed = String::new();
    for _ in 0..5 {
        std::io::BufRead::read_line(&mut reader, &mut followed).unwrap();
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(followed.matches("tick ticker 1\n").count(), 5, "{followed}");
    let (ok, _, err) = buoy(c.http(1), &["instance", "logs", "nope"]);
    assert!(
        !ok && err.contains("instance `nope` does not exist"),
        "{err}"
    );

    // A crash restarts it in place (after the first backoff).
    // SAFETY: killing the process group the test just looked up.
    unsafe { libc::killpg(first, libc::SIGKILL) };
    let mut second = None;
    wait_until(Duration::from_secs(5), || {
        second = running_pid(&c, 2, "ticker").filter(|p| *p != first);
        second.is_some()
    })
    .expect("a crashed instance restarts in place");
    let o = observed(&c, 2, "ticker").unwrap();
    assert_eq!(o["restarts"], 1, "{o}");
    let second = second.unwrap();

    // Cut h2 from the server: it kills the instance before the leader may move it.
    c.cut(2, 1);
    wait_until(Duration::from_secs(5), || !alive(second)).expect("killed on lease loss");
    let died = Timestamp::now();
    let (_, leases) = get(c.http(1), "/v1/leases").unwrap();
    let fenced_at = json(&leases)["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["host"] == "h2")
        .map(|l| Timestamp::parse(l["fenced_at"].as_str().unwrap()).unwrap())
        .expect("the leader tracks h2's lease");
    assert!(
        died < fenced_at,
        "the instance died at {died}, after the leader's view of h2's lease ended ({fenced_at})"
    );
    let o = observed(&c, 2, "ticker").unwrap();
    assert_eq!(o["phase"], "stopped", "{o}");
    assert!(
        o["reason"].as_str().unwrap_or("").contains("lease lost"),
        "{o}"
    );

    // Healed: a new lease brings fresh assignments, and it runs again (same epoch).
    c.heal(&[1, 2]);
    wait_until(Duration::from_secs(10), || {
        running_pid(&c, 2, "ticker").is_some()
    })
    .expect("runs again once the lease is back");

    // A move: h2 stops it, h1 runs it under a new epoch.
    create(&c, "/v1/hosts", json!({"name": "h1", "segment": "zone"}));
    let id = placement["id"].as_str().unwrap();
    let (status, body) = request(
        c.http(1),
        "PATCH",
        &format!("/v1/placements/{id}"),
        r#"{"host": "h1"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["epoch"], 2, "{body}");
    let on_h2 = running_pid(&c, 2, "ticker");
    wait_until(Duration::from_secs(10), || {
        running_pid(&c, 1, "ticker").is_some() && observed(&c, 2, "ticker").is_none()
    })
    .expect("moved: stopped on h2, running on h1");
    if let Some(p) = on_h2 {
        wait_until(Duration::from_secs(5), || !alive(p)).expect("the old copy is gone");
    }
    wait_until(Duration::from_secs(5), || {
        log_has(&dir, 1, "ticker", "tick ticker 2")
    })
    .expect("h1 runs it with epoch 2");

    // A crash loop spends the budget and ends in `failed`, with the reason.
    create_placed(
        &c,
        json!({"name": "crasher", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/sh", "args": ["-c", "exit 3"]},
               "max_restarts": 2, "restart_window": "60s"}),
        "h2",
    );
    let mut failed = None;
    wait_until(Duration::from_secs(10), || {
        failed = observed(&c, 2, "crasher").filter(|o| o["phase"] == "failed");
        failed.is_some()
    })
    .unwrap_or_else(|| panic!("never failed: {:?}", observed(&c, 2, "crasher")));
    let o = failed.unwrap();
    assert_eq!(o["exit_code"], 3, "{o}");
    assert_eq!(o["restarts"], 2, "{o}");
    assert!(
        o["reason"]
            .as_str()
            .unwrap_or("")
            .contains("exit code 3; 2 restarts within 1m"),
        "{o}"
    );
    // Past its budget on h2, the recovery engine relocates it: h1 runs it, new epoch.
    wait_until(Duration::from_secs(10), || {
        observed(&c, 1, "crasher").is_some_and(|n| n["epoch"].as_u64() > o["epoch"].as_u64())
    })
    .unwrap_or_else(|| panic!("not relocated: {:?}", observed(&c, 1, "crasher")));
    // The control plane has the hosts' reports too (for the recovery engine and operators).
    wait_until(Duration::from_secs(5), || {
        get(c.http(1), "/v1/observed?instance=crasher").is_some_and(|(_, body)| {
            let hosts = json(&body)["hosts"].clone();
            hosts.as_object().is_some_and(|h| {
                h.values().any(|r| {
                    r["instances"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|i| i["phase"] == "failed" && i["exit_code"] == 3)
                    })
                })
            })
        })
    })
    .unwrap_or_else(|| panic!("no report: {:?}", get(c.http(1), "/v1/observed")));
}

#[test]
fn an_ocf_dummy_resource_is_monitored_restarted_and_stopped_by_the_watchdog_of_a_frozen_agent() {
    if !Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").is_file() {
        eprintln!(
            "SKIPPED: ocf:heartbeat:Dummy missing (scripts/setup-test-deps.sh installs resource-agents)"
        );
        return;
    }
    let mut c = Cluster::new(49);
    let dir = c.dir.clone();
    let data = |i: u8| dir.join(format!("data-h{i}")).display().to_string();
    let socket = dir.join("wd-h2.sock");
    let _watchdog = Watchdog::start(&socket);
    c.start(1, &["--server".into(), "--data-dir".into(), data(1)]);
    c.start(
        2,
        &[
            "--data-dir".into(),
            data(2),
            "--watchdog".into(),
            socket.display().to_string(),
        ],
    );
    create(&c, "/v1/segments", json!({"name": "zone"}));
    create(&c, "/v1/hosts", json!({"name": "h2", "segment": "zone"}));
    let state_file = dir.join("dummy.state");
    create_placed(
        &c,
        json!({"name": "dummy", "segment": "zone", "driver": "ocf",
               "params": {"agent": "ocf:heartbeat:Dummy", "monitor_interval": "200ms",
                          "params": {"state": state_file.display().to_string()}},
               "max_restarts": 3, "restart_window": "60s"}),
        "h2",
    );
    let phase = |c: &Cluster| observed(c, 2, "dummy").map(|o| o["phase"].clone());
    wait_until(Duration::from_secs(10), || {
        phase(&c) == Some(json!("running"))
    })
    .unwrap_or_else(|| {
        panic!(
            "never running: {:?}\n{}",
            observed(&c, 2, "dummy"),
            c.log(2)
        )
    });
    assert!(state_file.exists(), "Dummy's start creates its state file");

    // The resource vanishes: monitor says 7 (not running), the supervisor restarts it.
    std::fs::remove_file(&state_file).unwrap();
    wait_until(Duration::from_secs(10), || {
        observed(&c, 2, "dummy").is_some_and(|o| o["restarts"] == 1 && o["phase"] == "running")
    })
    .unwrap_or_else(|| panic!("not restarted: {:?}", observed(&c, 2, "dummy")));
    assert!(state_file.exists());
    assert!(log_has(
        &dir,
        2,
        "dummy",
        "ocf monitor: exit 7 (not running)"
    ));

    // A resource whose agent refuses its params fails every start: failed after its budget,
    // with the OCF code and its meaning.
    create_placed(
        &c,
        json!({"name": "broken", "segment": "zone", "driver": "ocf",
               "params": {"agent": "heartbeat:Dummy", "params": {"state": "/proc/none/b.state"}},
               "max_restarts": 1, "restart_window": "60s"}),
        "h2",
    );
    wait_until(Duration::from_secs(10), || {
        observed(&c, 2, "broken").is_some_and(|o| o["phase"] == "failed")
    })
    .unwrap_or_else(|| panic!("never failed: {:?}", observed(&c, 2, "broken")));
    let o = observed(&c, 2, "broken").unwrap();
    assert!(
        o["reason"]
            .as_str()
            .unwrap_or("")
            // With the agent's own `ocf-exit-reason:` words.
            .starts_with(
                "ocf validate-all returned 2 (invalid arguments): State file \"/proc/none/b.state\" is not writable; 1 restarts within 1m"
            ),
        "{o}"
    );

    // The agent freezes: its watchdog runs the agent's `stop` once the lease is over.
    std::thread::sleep(Duration::from_millis(300)); // the watchdog learns the stop command
    c.signal("h2", libc::SIGSTOP);
    let stopped = wait_until(Duration::from_secs(5), || !state_file.exists());
    c.signal("h2", libc::SIGCONT);
    let stopped = stopped.expect("the watchdog must stop the OCF resource of a frozen agent");
    assert!(
        stopped < Duration::from_millis(2000),
        "stopped {stopped:?} after the freeze"
    );
}

#[test]
fn a_killed_agent_leaves_nothing_running_past_its_lease_and_a_restarted_one_starts_afresh() {
    let mut c = Cluster::new(50);
    let dir = c.dir.clone();
    let data = |i: u8| dir.join(format!("data-h{i}")).display().to_string();
    let socket = dir.join("wd-h2.sock");
    let _watchdog = Watchdog::start(&socket);
    let h2_args: Vec<String> = vec![
        "--data-dir".into(),
        data(2),
        "--watchdog".into(),
        socket.display().to_string(),
    ];
    c.start(1, &["--server".into(), "--data-dir".into(), data(1)]);
    c.start(2, &h2_args);
    create(&c, "/v1/segments", json!({"name": "zone"}));
    create(&c, "/v1/hosts", json!({"name": "h2", "segment": "zone"}));
    place_sleeper(&c, "sleeper", "h2");
    let mut pid = None;
    wait_until(Duration::from_secs(10), || {
        pid = running_pid(&c, 2, "sleeper");
        pid.is_some()
    })
    .expect("runs on h2");
    let first = pid.unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the watchdog learns of it

    // kill -9 of the agent: the watchdog kills the orphaned instance at the lease's end.
    c.kill("h2");
    let dead_after = wait_until(Duration::from_secs(5), || !alive(first))
        .expect("the watchdog must kill the instance of a killed agent");
    assert!(
        dead_after < Duration::from_millis(1500),
        "dead {dead_after:?} after the kill; lease 1 s"
    );

    // The restarted agent starts it afresh under its new lease.
    c.start(2, &h2_args);
    let mut again = None;
    wait_until(Duration::from_secs(10), || {
        again = running_pid(&c, 2, "sleeper");
        again.is_some()
    })
    .expect("a restarted agent runs its placements again");
    let second = again.unwrap();
    assert_ne!(second, first);

    // SIGTERM: the agent stops its instances before it leaves.
    c.signal("h2", libc::SIGTERM);
    wait_until(Duration::from_secs(10), || !alive(second))
        .expect("a shutting-down agent stops its instances");
    assert!(
        c.log(2).contains("stopped for the agent's shutdown"),
        "{}",
        c.log(2)
    );
}

/// A cluster of one agent, server and host `h1` in segment `zone`, on `127.0.NET.0/24`.
fn one_host(net: u8) -> Cluster {
    let mut c = Cluster::new(net);
    let data = c.dir.join("data-h1").display().to_string();
    c.start(1, &["--server".into(), "--data-dir".into(), data]);
    create(&c, "/v1/segments", json!({"name": "zone"}));
    create(&c, "/v1/hosts", json!({"name": "h1", "segment": "zone"}));
    c
}

/// A local port nothing listens on (now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_instance_failing_its_health_check_is_restarted_then_reported_failed() {
    let c = one_host(51);
    // Alive, but nothing answers on the port its check probes.
    let closed = free_port();
    create_placed(
        &c,
        json!({"name": "deaf", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/sleep", "args": ["600"]},
               "health_checks": [{"type": "tcp", "port": closed, "interval": "200ms",
                                  "timeout": "100ms", "failure_threshold": 2}],
               "max_restarts": 1, "restart_window": "60s"}),
        "h1",
    );
    // It never passes its check, so it never counts as running: its process, starting.
    let mut first = None;
    wait_until(Duration::from_secs(10), || {
        first = observed(&c, 1, "deaf")
            .and_then(|o| o["pid"].as_i64())
            .map(|p| p as i32);
        first.is_some()
    })
    .expect("it starts");
    wait_until(Duration::from_secs(10), || {
        observed(&c, 1, "deaf").is_some_and(|o| o["phase"] == "failed")
    })
    .unwrap_or_else(|| panic!("never failed: {:?}", observed(&c, 1, "deaf")));
    let o = observed(&c, 1, "deaf").unwrap();
    let reason = o["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!(
            "health check 0 (tcp 127.0.0.1:{closed}) failed 2 times in a row"
        )),
        "{o}"
    );
    assert_eq!(o["restarts"], 1, "{o}");
    assert!(
        !alive(first.unwrap()),
        "an unhealthy instance is killed before its restart"
    );
}

/// A copy with a health check runs (for the leader: its backends, the instances started after
/// it, a move waiting for it) only once the check passed: a service that listens 3 s after
/// its process starts is `starting` until then, and no health check failure is counted
/// meanwhile (its interval is 10 s: the check probes faster until it passes).
#[test]
fn a_copy_with_a_health_check_is_running_only_once_the_check_passed() {
    let c = one_host(107);
    let port = free_port();
    create_placed(
        &c,
        json!({"name": "slow", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/sh",
                          "args": ["-c", format!("sleep 3; exec {} demo-app --http 127.0.0.1:{port}",
                                                 env!("CARGO_BIN_EXE_buoy"))]},
               "health_checks": [{"type": "http", "port": port, "path": "/"}]}),
        "h1",
    );
    let t = std::time::Instant::now();
    wait_until(Duration::from_secs(10), || {
        observed(&c, 1, "slow").is_some()
    })
    .expect("it starts");
    let mut phases = Vec::new();
    let running = wait_until(Duration::from_secs(20), || {
        let phase = observed(&c, 1, "slow").map(|o| o["phase"].as_str().unwrap_or("").to_string());
        if phases.last() != phase.as_ref() {
            phases.push(phase.clone().unwrap_or_default());
        }
        phase.as_deref() == Some("running")
    });
    let took = t.elapsed();
    assert!(running.is_some(), "never running: {phases:?}");
    assert_eq!(
        phases.first().map(String::as_str),
        Some("starting"),
        "{phases:?}"
    );
    assert!(
        took >= Duration::from_millis(2500),
        "running after {took:?}, before its service listened: {phases:?}"
    );
    assert!(took < Duration::from_secs(6), "running only after {took:?}");
    let o = observed(&c, 1, "slow").unwrap();
    assert_eq!(o["restarts"], 0, "{o}");
    eprintln!("starting, then running {took:?} after its start (its service listens after 3 s)");
}

#[test]
fn a_qemu_vm_boots_on_its_host_crashes_restarts_and_fails_after_its_budget() {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-guest");
    let (kernel, initrd) = (guest.join("vmlinuz"), guest.join("initrd.gz"));
    if !kernel.is_file()
        || Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "SKIPPED: qemu or the test guest missing (scripts/setup-test-deps.sh installs both)"
        );
        return;
    }
    let mut c = Cluster::new(52);
    let dir = c.dir.clone();
    let data = |i: u8| dir.join(format!("data-h{i}")).display().to_string();
    c.start(1, &["--server".into(), "--data-dir".into(), data(1)]);
    create(&c, "/v1/segments", json!({"name": "zone"}));
    create(&c, "/v1/hosts", json!({"name": "h1", "segment": "zone"}));
    create_placed(
        &c,
        json!({"name": "vm", "segment": "zone", "driver": "qemu",
               "params": {"kernel": kernel, "initrd": initrd, "memory_mb": 128, "stop_timeout": "1s"},
               "max_restarts": 1, "restart_window": "60s"}),
        "h1",
    );
    let mut first = None;
    wait_until(Duration::from_secs(10), || {
        first = running_pid(&c, 1, "vm");
        first.is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "the VM never ran: {:?}\n{}",
            observed(&c, 1, "vm"),
            c.log(1)
        )
    });
    // The guest really runs: its marker line reaches the instance log (serial console).
    wait_until(Duration::from_secs(60), || {
        log_has(&dir, 1, "vm", "BUOY-GUEST-READY")
    })
    .expect("the guest boots and prints its marker");
    // SAFETY: the VM's QEMU process, by PID.
    unsafe { libc::kill(first.unwrap(), libc::SIGKILL) };
    let mut second = None;
    wait_until(Duration::from_secs(10), || {
        second = running_pid(&c, 1, "vm").filter(|p| Some(*p) != first);
        second.is_some()
    })
    .expect("a crashed VM restarts in place");
    // SAFETY: as above.
    unsafe { libc::kill(second.unwrap(), libc::SIGKILL) };
    wait_until(Duration::from_secs(10), || {
        observed(&c, 1, "vm").is_some_and(|o| o["phase"] == "failed")
    })
    .unwrap_or_else(|| panic!("never failed: {:?}", observed(&c, 1, "vm")));
    let o = observed(&c, 1, "vm").unwrap();
    assert!(
        o["reason"]
            .as_str()
            .unwrap_or("")
            .contains("killed by signal 9; 1 restarts within 1m"),
        "{o}"
    );
}
