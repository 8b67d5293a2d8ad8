//! The Masakari-compatible API driven by the real OpenStack client (openstacksdk's instance-ha
//! proxy from python-masakariclient, installed into `target/masakari-venv` by
//! `scripts/setup-test-deps.sh`), both on its own listener and under `/masakari` of the
//! agent's HTTP address.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Cluster, get, json, place_sleeper, wait_until, zone};

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("BUOY_MASAKARI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/masakari-venv/bin/python")
        });
    p.exists().then_some(p)
}

fn run_client(python: &PathBuf, endpoint: &str) {
    run_script(python, "client_test.py", &[endpoint]);
}

fn run_script(python: &PathBuf, script: &str, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/masakari")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test: ok"),
        "{script:?} {args:?}: {text}"
    );
}

/// The client's Python, or why the test skips (CI must have it).
fn python_or_skip() -> Option<PathBuf> {
    let p = python();
    if p.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("target/masakari-venv is missing: scripts/setup-test-deps.sh installs it");
        }
        eprintln!("SKIPPED: no target/masakari-venv (run scripts/setup-test-deps.sh)");
    }
    p
}

#[test]
fn the_openstack_client_manages_segments_hosts_and_notifications() {
    let Some(python) = python_or_skip() else {
        return;
    };
    for (net, own_listener) in [(41u8, true), (42, false)] {
        let mut c = Cluster::new(net);
        let data = c.dir.join("data").display().to_string();
        let masakari = format!("127.0.{net}.1:15868");
        c.start(
            1,
            &[
                "--server".into(),
                "--data-dir".into(),
                data,
                "--masakari-http".into(),
                masakari.clone(),
            ],
        );
        wait_until(std::time::Duration::from_secs(10), || {
            get(c.http(1), "/v1/segments").is_some_and(|(s, _)| s == 200)
        })
        .expect("the control plane is up");
        let endpoint = if own_listener {
            format!("http://{masakari}/v1")
        } else {
            format!("http://{}/masakari/v1", c.http(1))
        };
        run_client(&python, &endpoint);
    }
}

#[test]
fn notifications_from_the_openstack_client_start_recoveries_with_vmoves() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let mut c = Cluster::new(43);
    let masakari = "127.0.43.1:15868".to_string();
    c.start_agent(1, None, &["--masakari-http", &masakari]);
    c.start_agent(2, None, &[]);
    c.start_agent(3, None, &[]);
    zone(&c, serde_json::json!({}), &["h2", "h3"]);
    place_sleeper(&c, "vm-1", "h2");
    let pid_on = |i: u8| common::running_pid(&c, i, "vm-1");
    wait_until(std::time::Duration::from_secs(10), || pid_on(2).is_some())
        .expect("vm-1 runs on h2");
    let old = pid_on(2).unwrap();
    // Gossip must see h3 alive for the host report to be judged against it.
    wait_until(std::time::Duration::from_secs(10), || {
        get(c.http(1), "/v1/hosts/h3").is_some_and(|(_, b)| json(&b)["status"] == "alive")
    })
    .expect("h3 alive");
    let (_, body) = get(c.http(1), "/v1/instances/vm-1").unwrap();
    let id = json(&body)["id"].as_str().unwrap().to_string();
    run_script(
        &python,
        "notification_test.py",
        &[&format!("http://{masakari}/v1"), &id],
    );
    // The instance moved: h3 runs it, h2's copy is gone.
    assert!(pid_on(3).is_some(), "vm-1 runs on h3");
    assert!(!common::alive(old), "the copy on h2 stopped");
}
