//! Real agents on 127.0.x.y: crashes (SIGKILL), hangs (SIGSTOP), partitions through the fault
//! filter, encryption with a live key rotation, and bad input at start-up. Every test owns a
//! distinct 127.0.N.0/24 so tests can run in parallel, and kills what it started by PID.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Cluster, five, get, wait_until};

#[test]
fn a_killed_agent_is_declared_dead_by_all_others() {
    let mut c = five(31, &[]);
    c.signal("h5", libc::SIGKILL);
    let took = c.wait_all_see(&[1, 2, 3, 4], "h5", "dead", Duration::from_secs(15));
    assert!(took < Duration::from_secs(10), "detection took {took:?}");
    // The agent's own metrics count the death it declared or learned.
    let (_, metrics) = get(c.http(1), "/metrics").unwrap();
    assert!(
        metrics.contains("buoy_swim_members{state=\"dead\"} 1"),
        "{metrics}"
    );
    c.agents.retain(|(n, _)| n != "h5");
}

#[test]
fn a_hung_agent_is_declared_dead_then_refutes_when_it_resumes() {
    let c = five(32, &[]);
    c.signal("h3", libc::SIGSTOP);
    c.wait_all_see(&[1, 2, 4, 5], "h3", "dead", Duration::from_secs(15));
    let before = c.view(1)["h3"].1;
    c.signal("h3", libc::SIGCONT);
    c.wait_all_see(&[1, 2, 4, 5], "h3", "alive", Duration::from_secs(15));
    assert!(
        c.view(1)["h3"].1 > before,
        "it came back with a higher incarnation"
    );
    for s in ["h1", "h2", "h4", "h5"] {
        c.wait_all_see(&[3], s, "alive", Duration::from_secs(15));
    }
}

#[test]
fn a_partition_through_the_fault_filter_splits_the_cluster_and_heals() {
    let c = five(33, &[]);
    let cut = |i: u8, peers: &[&str]| {
        let rules: Vec<String> = peers
            .iter()
            .map(|p| format!("{{\"peer\":\"{p}\",\"direction\":\"both\"}}"))
            .collect();
        c.faults(i, &format!("{{\"drop\":[{}]}}", rules.join(",")));
    };
    for i in [1, 2] {
        cut(i, &["h3", "h4", "h5"]);
    }
    for i in [3, 4, 5] {
        cut(i, &["h1", "h2"]);
    }
    c.wait_all_see(&[1, 2], "h4", "dead", Duration::from_secs(20));
    c.wait_all_see(&[3, 4, 5], "h1", "dead", Duration::from_secs(20));
    assert_eq!(
        c.state(1, "h2").as_deref(),
        Some("alive"),
        "a side keeps its own members"
    );
    for i in 1..=5 {
        c.faults(i, "{\"drop\":[]}");
    }
    for s in 1..=5 {
        c.wait_all_see(
            &[1, 2, 3, 4, 5],
            &format!("h{s}"),
            "alive",
            Duration::from_secs(30),
        );
    }
    let (_, metrics) = get(c.http(1), "/metrics").unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.contains("reason=\"fault_filter\""))
        .unwrap();
    assert!(!dropped.ends_with(" 0"), "{dropped}");
}

fn write_keyring(path: &PathBuf, keys: &[&str]) {
    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    std::fs::write(path, format!("{{\"keys\": [{}]}}", quoted.join(","))).unwrap();
    // Secret files others can read are refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn an_encrypted_cluster_rotates_its_key_without_losing_a_member() {
    let k1 = "11".repeat(32);
    let k2 = "22".repeat(32);
    let mut c = Cluster::new(34);
    let files: Vec<PathBuf> = (1..=4)
        .map(|i| c.dir.join(format!("keyring-{i}.json")))
        .collect();
    for i in 1..=3u8 {
        write_keyring(&files[i as usize - 1], &[&k1]);
        c.start(
            i,
            &[
                "--keyring".into(),
                files[i as usize - 1].display().to_string(),
            ],
        );
    }
    for s in 1..=3 {
        c.wait_all_see(
            &[1, 2, 3],
            &format!("h{s}"),
            "alive",
            Duration::from_secs(15),
        );
    }
    // A host with another key cannot join and its packets are counted as undecryptable.
    write_keyring(&files[3], &[&"33".repeat(32)]);
    c.start(4, &["--keyring".into(), files[3].display().to_string()]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.state(1, "h4"),
        None,
        "a member with the wrong key never appears"
    );
    let (_, metrics) = get(c.http(1), "/metrics").unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l == "buoy_swim_packets_dropped_total{reason=\"decrypt\"} 0"),
        "{metrics}"
    );
    // Rotation: add k2 everywhere, make it primary everywhere, remove k1 everywhere.
    for step in [
        vec![k1.as_str(), k2.as_str()],
        vec![k2.as_str(), k1.as_str()],
        vec![k2.as_str()],
    ] {
        for i in 1..=3u8 {
            write_keyring(&files[i as usize - 1], &step);
            let (status, body) = c.host_post(i, "/v1/keyring/reload", "").unwrap();
            assert_eq!(status, 200, "{body}");
        }
        std::thread::sleep(Duration::from_millis(1500));
        for o in 1..=3 {
            for s in 1..=3 {
                assert_eq!(
                    c.state(o, &format!("h{s}")).as_deref(),
                    Some("alive"),
                    "after rotation step {step:?}"
                );
            }
        }
    }
}

fn run_buoy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_flags_and_bad_config_files_fail_with_a_clear_message() {
    let out = run_buoy(&["agent", "--name", "a b"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("whitespace"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::env::temp_dir().join(format!("buoy-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("buoy.toml");
    std::fs::write(&cfg, "name = \"x\"\n[timing]\nprobe_intervall = \"1s\"\n").unwrap();
    let out = run_buoy(&["agent", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probe_intervall") && err.contains("buoy.toml"),
        "{err}"
    );
    std::fs::write(&cfg, "[timing]\nprobe_timeout = \"5s\"\n").unwrap();
    let out = run_buoy(&["agent", "--name", "x", "--config", cfg.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("probe_timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_buoy(&["agent", "--name", "x", "--profile", "moon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_host_with_a_live_members_name_is_rejected_and_stops() {
    let mut c = Cluster::new(35);
    c.start(1, &[]);
    c.start(2, &[]);
    c.wait_all_see(&[1], "h2", "alive", Duration::from_secs(10));
    let out = c
        .command(3, "h2", &["--join".into(), c.gossip(1).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = out.id();
    c.agents.push(("impostor".into(), out));
    let exited = wait_until(Duration::from_secs(10), || {
        c.agents
            .iter_mut()
            .find(|(n, _)| n == "impostor")
            .is_some_and(|(_, ch)| matches!(ch.try_wait(), Ok(Some(_))))
    });
    assert!(exited.is_some(), "the impostor (pid {pid}) must stop");
    let (_, child) = c.agents.pop().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already used by a live member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.view(1)["h2"],
        ("alive".to_string(), 0),
        "the original keeps its name"
    );
    assert!(c.log(1).contains("rejected a second host"), "{}", c.log(1));
}

#[test]
fn the_fault_filter_is_off_unless_enabled() {
    let mut c = Cluster::new(36);
    let log = std::fs::File::create(c.dir.join("h1.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "agent",
            "--name",
            "solo",
            "--bind",
            &c.gossip(1).to_string(),
            "--http",
            &c.http(1).to_string(),
        ])
        .args(c.identity_args("solo", &[]))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    c.agents.push(("solo".into(), child));
    c.set_name(1, "solo");
    wait_until(Duration::from_secs(10), || {
        get(c.http(1), "/v1/health").is_some()
    })
    .unwrap();
    let (status, body) = c.host_post(1, "/v1/debug/faults", "{\"drop\":[]}").unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("--enable-fault-injection"), "{body}");
    let cred = c.dir.join("solo.cred").display().to_string();
    let out = run_buoy(&[
        "members",
        "--http",
        &c.http(1).to_string(),
        "--credential",
        &cred,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("solo"));
    let out = run_buoy(&["members", "--http", "127.0.36.99:7070"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn a_host_cut_on_its_main_network_stays_alive_through_its_storage_address() {
    let mut c = Cluster::new(59);
    c.start(1, &[]);
    // h2 announces a second network (its "storage" address) and listens there too.
    let config = c.dir.join("h2.toml");
    std::fs::write(
        &config,
        "[metadata]\naddresses = [{ label = \"storage\", address = \"127.0.59.12:7946\" }]\n",
    )
    .unwrap();
    c.start(2, &["--config".into(), config.display().to_string()]);
    c.wait_all_see(&[1], "h2", "alive", Duration::from_secs(10));
    // h1 can no longer reach h2's main address (its pings there are dropped); h2 answers the
    // pings that h1 then sends to its storage address.
    c.faults(
        1,
        r#"{"drop":[{"peer":"h2","direction":"out","scope":"gossip"}]}"#,
    );
    std::thread::sleep(Duration::from_secs(6));
    let state = c.view(1).get("h2").map(|(s, _)| s.clone());
    assert_eq!(state.as_deref(), Some("alive"), "{}", c.log(1));
    let (_, metrics) = get(c.http(1), "/metrics").unwrap();
    let alternates: u64 = metrics
        .lines()
        .find(|l| l.starts_with("buoy_swim_alternate_probes_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        alternates > 5,
        "probes went to the storage address: {alternates}"
    );
}

/// Issue 15, hole 8: a running agent never exits on a name conflict; the newcomer is the one
/// refused. A second agent started with the name of the running single server exits with a
/// message naming the conflict, and the server keeps running, with its instance.
#[test]
fn a_newcomer_with_a_taken_name_is_refused_and_the_running_agent_keeps_its_instances() {
    let mut c = Cluster::new(71);
    c.start_agent(1, None, &[]);
    common::zone(&c, serde_json::json!({}), &["h1"]);
    common::place_sleeper(&c, "sleeper", "h1");
    let mut pid = None;
    wait_until(Duration::from_secs(10), || {
        pid = common::running_pid(&c, 1, "sleeper");
        pid.is_some()
    })
    .expect("the sleeper runs on h1");
    let pid = pid.unwrap();
    let log = c.dir.join("impostor.log");
    let impostor = c
        .command(2, "h1", &["--join".into(), c.gossip(1).to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    c.agents.push(("impostor".into(), impostor));
    let mut impostor_status = None;
    wait_until(Duration::from_secs(15), || {
        let (_, child) = c.agents.iter_mut().find(|(n, _)| n == "impostor").unwrap();
        impostor_status = child.try_wait().ok().flatten();
        impostor_status.is_some()
    });
    // Give a wrongly exiting server the time to do so.
    std::thread::sleep(Duration::from_secs(2));
    let (_, server) = c.agents.iter_mut().find(|(n, _)| n == "h1").unwrap();
    let server_exited = matches!(server.try_wait(), Ok(Some(_)));
    let sleeper_alive = common::alive(pid);
    if server_exited && sleeper_alive {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        !server_exited,
        "the running server exited on the newcomer's name claim: {}",
        c.log(1)
    );
    assert!(sleeper_alive, "the server's instance was stopped");
    let status = impostor_status.expect("the newcomer was refused and exited");
    assert!(!status.success(), "the newcomer exits with an error");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("already used by a live member") && text.contains("--name"),
        "the newcomer says why: {text}"
    );
    assert!(
        c.log(1).contains("was here first"),
        "the server logs the refused claim: {}",
        c.log(1)
    );
}
