//! Groups end to end: two members (think a filesystem and the service on it) run together on
//! one host, the second started only once the first runs; a host kill moves both, together,
//! to one other host, in order. Each member appends its start time and host to a file.

mod common;

use std::time::Duration;

use common::{Cluster, create, wait_until, zone};
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
