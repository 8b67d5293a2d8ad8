//! The Masakari-compatible API driven by the real OpenStack client (openstacksdk's instance-ha
//! proxy from python-masakariclient, installed into `target/masakari-venv` by
//! `scripts/setup-test-deps.sh`), both on its own listener and under `/masakari` of the
//! agent's HTTP address.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Cluster, get, wait_until};

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("BUOY_MASAKARI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/masakari-venv/bin/python")
        });
    p.exists().then_some(p)
}

fn run_client(python: &PathBuf, endpoint: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/masakari/client_test.py");
    let out = Command::new(python)
        .arg(script)
        .arg(endpoint)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("masakari client test: ok"),
        "{endpoint}: {text}"
    );
}

#[test]
fn the_openstack_client_manages_segments_hosts_and_notifications() {
    let Some(python) = python() else {
        if std::env::var_os("CI").is_some() {
            panic!("target/masakari-venv is missing: scripts/setup-test-deps.sh installs it");
        }
        eprintln!("SKIPPED: no target/masakari-venv (run scripts/setup-test-deps.sh)");
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
