//! Zones end to end (issue 19): a clone of three copies spread over three zones of two
//! hosts each (a host label `zone`). A whole zone is cut off from everyone: its copy comes
//! back in a surviving zone. The zone returns: a copy moves back to it, so each zone holds
//! one again (re-spreading), and every copy runs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, create, get, json, observed, wait_until};
use serde_json::json;

const ZONES: [(&str, [u8; 2]); 3] = [("a", [2, 3]), ("b", [4, 5]), ("c", [6, 7])];

/// Copies of `web` per zone, from the placements.
fn per_zone(c: &Cluster) -> BTreeMap<String, usize> {
    let hosts = get(c.http(1), "/v1/hosts")
        .map(|(_, b)| json(&b))
        .unwrap_or_default();
    let zone_of = |id: &serde_json::Value| {
        hosts["hosts"].as_array().and_then(|hs| {
            hs.iter()
                .find(|h| &h["id"] == id)
                .and_then(|h| h["labels"]["zone"].as_str().map(String::from))
        })
    };
    let placements = get(c.http(1), "/v1/placements")
        .map(|(_, b)| json(&b))
        .unwrap_or_default();
    let mut out: BTreeMap<String, usize> = ZONES.iter().map(|(z, _)| (z.to_string(), 0)).collect();
    for p in placements["placements"].as_array().into_iter().flatten() {
        if let Some(z) = zone_of(&p["host"]) {
            *out.entry(z).or_default() += 1;
        }
    }
    out
}

/// How many hosts run a copy of `web`.
fn running(c: &Cluster) -> usize {
    (2..=7)
        .filter(|&i| observed(c, i, "web").is_some_and(|o| o["phase"] == "running"))
        .count()
}

#[test]
fn a_failed_zone_s_copy_moves_to_another_zone_and_comes_back_when_the_zone_returns() {
    let mut c = Cluster::new(103);
    c.start_agent(1, None, &[]);
    let _watchdogs: Vec<common::Watchdog> = (2..=7).map(|i| c.start_watched(i, &[])).collect();
    create(
        &c,
        "/v1/segments",
        json!({"name": "zone", "auto_rejoin": true}),
    );
    for (zone, hosts) in ZONES {
        for i in hosts {
            create(
                &c,
                "/v1/hosts",
                json!({"name": format!("h{i}"), "segment": "zone", "labels": {"zone": zone}}),
            );
        }
    }
    create(
        &c,
        "/v1/instances",
        json!({"name": "web", "segment": "zone", "driver": "process", "mode": "clone",
               "replicas": 3, "spread": {"label": "zone"},
               "params": {"command": "/bin/sleep", "args": ["600"]}}),
    );
    let even = |c: &Cluster| per_zone(c).values().all(|n| *n == 1) && running(c) == 3;
    wait_until(Duration::from_secs(20), || even(&c))
        .unwrap_or_else(|| panic!("not one copy per zone: {:?}\n{}", per_zone(&c), c.log(1)));

    // Zone c is cut off from every other agent (its two hosts still see each other).
    let drop = |peers: &[u8]| {
        let list: Vec<String> = peers
            .iter()
            .map(|p| format!(r#"{{"peer":"h{p}","direction":"both"}}"#))
            .collect();
        format!(r#"{{"drop":[{}]}}"#, list.join(","))
    };
    for i in [6, 7] {
        c.faults(i, &drop(&[1, 2, 3, 4, 5]));
    }
    for i in 1..=5 {
        c.faults(i, &drop(&[6, 7]));
    }
    wait_until(Duration::from_secs(40), || {
        let z = per_zone(&c);
        z["c"] == 0 && z["a"] + z["b"] == 3 && running(&c) >= 3
    })
    .unwrap_or_else(|| {
        panic!(
            "zone c's copy never moved: {:?}\n{}",
            per_zone(&c),
            c.log(1)
        )
    });

    // The zone returns: one copy moves back, and each zone holds one again.
    c.heal(&[1, 2, 3, 4, 5, 6, 7]);
    wait_until(Duration::from_secs(60), || even(&c)).unwrap_or_else(|| {
        panic!(
            "never spread again: {:?}, {} running\n{}",
            per_zone(&c),
            running(&c),
            c.log(1)
        )
    });
    assert!(
        c.log(1).contains("re-spread"),
        "the leader logs the move:\n{}",
        c.log(1)
    );
}
