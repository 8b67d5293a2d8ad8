//! `crm_resource -B` end to end: an OCF agent bans its own copy from its host, as pgsql does
//! when its data is newer than the new primary's. The copy is stopped there and counted failed
//! there (not restarted in place), and the leader places it on the other host. A host cannot
//! ban a copy from another host (the shim says so and exits non-zero).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, create_placed, wait_until, zone};
use serde_json::json;

/// An OCF agent whose state file is per host; its monitor bans the copy from its host (and
/// fails, as pgsql's check does) while `<dir>/<host>.ban` exists.
fn banner_agent(root: &Path) {
    let script = r#"#!/bin/sh
state="$OCF_RESKEY_dir/$BUOY_HOST.state"
case "$1" in
  meta-data) echo '<?xml version="1.0"?><resource-agent name="Banner"/>'; exit 0 ;;
  validate-all) exit 0 ;;
  start) touch "$state"; echo "$BUOY_HOST start" >> "$OCF_RESKEY_dir/log"; exit 0 ;;
  monitor)
    [ -f "$state" ] || exit 7
    if [ -f "$OCF_RESKEY_dir/$BUOY_HOST.ban" ]; then
      "$HA_SBIN_DIR/crm_resource" -B -r "$OCF_RESOURCE_INSTANCE" -N "$BUOY_HOST" -Q
      echo "$BUOY_HOST ban $?" >> "$OCF_RESKEY_dir/log"
      exit 1
    fi
    exit 0 ;;
  stop) rm -f "$state"; echo "$BUOY_HOST stop" >> "$OCF_RESKEY_dir/log"; exit 0 ;;
  *) exit 3 ;;
esac
"#;
    common::install_ocf_agent(root, "Banner", script);
}

#[test]
fn an_agent_bans_its_copy_from_its_host_and_the_copy_moves() {
    let mut c = Cluster::new(101);
    let root = c.dir.join("ocf");
    banner_agent(&root);
    let state = c.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    c.start_agent(1, None, &[]);
    let _watchdogs: Vec<common::Watchdog> = (2..=3).map(|i| c.start_watched(i, &[])).collect();
    zone(&c, json!({}), &["h2", "h3"]);
    create_placed(
        &c,
        json!({"name": "db", "segment": "zone", "driver": "ocf",
               "params": {"agent": "test:Banner", "ocf_root": root.display().to_string(),
                          "monitor_interval": "200ms", "timeout": "5s",
                          "params": {"dir": state.display().to_string()}}}),
        "h2",
    );
    let log = || std::fs::read_to_string(state.join("log")).unwrap_or_default();
    wait_until(Duration::from_secs(20), || state.join("h2.state").exists())
        .unwrap_or_else(|| panic!("never started on h2: {}\n{}", log(), c.log(2)));

    // A host may not ban a copy from another host: h2's shim asked about h3 refuses.
    let out = Command::new(c.dir.join("d2/sbin/crm_resource"))
        .args(["-B", "-r", "db", "-N", "h3", "-Q"])
        .env("BUOY_TOOLS_SOCKET", c.dir.join("d2/tools.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("may ban copies from itself only"), "{said}");
    assert!(state.join("h2.state").exists(), "still running on h2");

    // h2's agent bans its copy: stopped there, not restarted there, started on h3.
    std::fs::write(state.join("h2.ban"), b"").unwrap();
    wait_until(Duration::from_secs(30), || state.join("h3.state").exists())
        .unwrap_or_else(|| panic!("never moved to h3: {}\n{}\n{}", log(), c.log(2), c.log(1)));
    let lines: Vec<String> = log().lines().map(str::to_string).collect();
    assert!(lines.contains(&"h2 ban 0".to_string()), "{lines:?}");
    let stop = lines
        .iter()
        .position(|l| l == "h2 stop")
        .expect("stopped on h2");
    let start = lines
        .iter()
        .position(|l| l == "h3 start")
        .expect("started on h3");
    assert!(stop < start, "started on h3 before h2 stopped: {lines:?}");
    assert_eq!(
        lines.iter().filter(|l| *l == "h2 start").count(),
        1,
        "restarted on h2 after the ban: {lines:?}"
    );
    assert!(
        c.log(2).contains("banned from this host by its agent"),
        "{}",
        c.log(2)
    );
}
