//! Zones end to end (issue 19): a clone of three copies spread over three zones of two
//! hosts each (a host label `zone`). A whole zone is cut off from everyone: its copy comes
//! back in a surviving zone. The zone returns: a copy moves back to it, so each zone holds
//! one again (re-spreading), and every copy runs. The move makes before it breaks: the
//! heartbeats show the new copy running before the old one stopped.

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
    let _reaper = common::Reaper(common::cluster_dir(103));
    let mut c = Cluster::new(103);
    let beats = c.dir.join("heartbeats");
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
               "params": {"command": env!("CARGO_BIN_EXE_buoy"),
                          "args": ["demo-app", "--heartbeats", beats.display().to_string(),
                                   "--http-port", "8081"]},
               // Running means answering: the old copy is held until then.
               "health_checks": [{"type": "http", "host": "host-ip", "port": 8081}]}),
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
    let healed_ms = now_ms();
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
    // The move made before it broke (a surge): the new copy's first heartbeat came before
    // the old copy's last, so the copies serving never dropped to 2.
    // The old copy's heartbeats end once its stop is done (it may outlast `even` by a report):
    // wait until one that beat after the heal has been quiet for 300 ms.
    let read = || spans(&std::fs::read_to_string(&beats).unwrap_or_default());
    let ended = |s: &BTreeMap<(String, String), (u64, u64)>| {
        let quiet = now_ms() - 300;
        s.values()
            .any(|(_, last)| *last < quiet && *last >= healed_ms)
    };
    wait_until(Duration::from_secs(15), || ended(&read()));
    let spans = read();
    let quiet = now_ms() - 300;
    let newest = spans
        .iter()
        .filter(|(_, (first, _))| *first >= healed_ms)
        .max_by_key(|(_, (first, _))| *first)
        .expect("a copy started after the heal");
    let stopped = spans
        .iter()
        .filter(|(_, (_, last))| *last < quiet && *last >= healed_ms)
        .max_by_key(|(_, (_, last))| *last)
        .expect("a copy stopped after the heal");
    let (first, last) = (newest.1.0, stopped.1.1);
    eprintln!(
        "re-spread: new copy {:?} first beat {first}, old copy {:?} last beat {last}: overlap {} ms",
        newest.0,
        stopped.0,
        last as i64 - first as i64
    );
    assert!(
        first < last,
        "the old copy {:?} stopped {} ms before the new one {:?} ran: the move broke before it made",
        stopped.0,
        first - last,
        newest.0
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Heartbeat lines `instance epoch host unix_millis`: (epoch, host) -> (first, last).
fn spans(text: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(epoch), Some(host), Some(t)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        let Ok(t) = t.parse::<u64>() else { continue };
        let e = out
            .entry((epoch.to_string(), host.to_string()))
            .or_insert((t, t));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
    }
    out
}
