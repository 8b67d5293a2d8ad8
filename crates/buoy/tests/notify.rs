//! Notifications end to end: a promotable instance with `notify` runs a test agent
//! (`tests/ocf/Recorder`, a real OCF script run through Buoy's driver and shims) that logs
//! every action with Pacemaker's notification lists. Every active copy runs the pre-promote
//! notification before the promotion and the post-promote one after it, with the promoted
//! node named; after the promoted host dies, the survivor is told before it is promoted. Copies
//! that start are announced to every running copy (post-start), and so is the copy lost with
//! its host (post-stop); the copy that replaces it on a spare host starts only after the
//! survivor was told (pre-start). An operator then moves that copy: it stops only after every
//! active copy, itself included, was told (pre-stop). The agent reads the status through the `crm_mon` and `cibadmin` shims
//! as it runs.

mod common;

use std::time::Duration;

use common::{Cluster, create, get, json, request, wait_until, zone};
use serde_json::json;

/// The agents' log: (time in ns, node, what).
fn log(c: &Cluster) -> Vec<(u128, String, String)> {
    std::fs::read_to_string(c.dir.join("rec.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((
                w.next()?.parse().ok()?,
                w.next()?.to_string(),
                w.next()?.to_string(),
            ))
        })
        .collect()
}

/// When `node` logged a line starting with `what`, the first time after `after`.
fn when(c: &Cluster, node: &str, what: &str, after: u128) -> Option<u128> {
    log(c)
        .into_iter()
        .find(|(t, n, w)| *t > after && n == node && w.starts_with(what))
        .map(|(t, _, _)| t)
}

#[test]
fn every_active_copy_is_notified_before_and_after_a_promotion() {
    let mut c = Cluster::new(99);
    // The agent under an OCF root of the test's own.
    let root = c.dir.join("ocf");
    let agent_dir = root.join("resource.d/test");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ocf/Recorder"),
        agent_dir.join("Recorder"),
    )
    .unwrap();
    c.start_agent(1, None, &[]);
    let _watchdogs: Vec<common::Watchdog> = (2..=5).map(|i| c.start_watched(i, &[])).collect();
    zone(&c, json!({}), &["h2", "h3", "h4", "h5"]);
    create(
        &c,
        "/v1/instances",
        json!({"name": "rec", "segment": "zone", "driver": "ocf", "mode": "promotable",
               "replicas": 2, "notify": true,
               "params": {"agent": "test:Recorder", "ocf_root": root.display().to_string(),
                          "monitor_interval": "300ms", "timeout": "5s",
                          "params": {"log": c.dir.join("rec.log").display().to_string()}}}),
    );
    let promoted = |c: &Cluster| {
        log(c)
            .into_iter()
            .find(|(_, _, w)| w == "promote")
            .map(|(t, n, _)| (t, n))
    };
    wait_until(Duration::from_secs(30), || promoted(&c).is_some())
        .unwrap_or_else(|| panic!("never promoted: {:?}\n{}", log(&c), c.log(1)));
    let (t_promote, p) = promoted(&c).unwrap();
    // The two hosts with copies.
    let mut nodes: Vec<String> = log(&c)
        .into_iter()
        .filter(|(_, _, w)| w == "start")
        .map(|(_, n, _)| n)
        .collect();
    nodes.sort();
    assert_eq!(nodes.len(), 2, "two copies started once: {:?}", log(&c));
    let (a, b) = (nodes[0].as_str(), nodes[1].as_str());
    let other = if p == a { b } else { a };
    // The copies started together: nobody ran yet to be told.
    assert!(
        !log(&c)
            .iter()
            .any(|(_, _, w)| w.starts_with("notify pre-start")),
        "{:?}",
        log(&c)
    );
    // Both copies ran the pre-promote notification before the promotion, naming it.
    for node in [a, b] {
        let pre = log(&c).into_iter().find(|(_, n, w)| {
            n == node
                && w.starts_with("notify pre-promote")
                && w.contains(&format!("promote=[{p}]"))
        });
        let (t, _, what) = pre.unwrap_or_else(|| panic!("{node} not told before: {:?}", log(&c)));
        assert!(
            t < t_promote,
            "{node} told after the promotion: {:?}",
            log(&c)
        );
        // Lists pair with the copies in replica order, whichever hosts those are.
        assert!(
            what.contains(&format!("active=[{a} {b}]"))
                || what.contains(&format!("active=[{b} {a}]")),
            "{what}"
        );
    }
    // And the post-promote one after it, with the promoted node listed.
    for node in [a, b] {
        wait_until(Duration::from_secs(10), || {
            when(&c, node, "notify post-promote", t_promote).is_some()
        })
        .unwrap_or_else(|| panic!("{node} not told after: {:?}", log(&c)));
    }
    let post = log(&c)
        .into_iter()
        .find(|(_, _, w)| w.starts_with("notify post-promote"))
        .unwrap();
    assert!(post.2.contains(&format!("promoted=[{p}]")), "{post:?}");
    // crm_mon (the shim) shows the promoted copy where it is, and none before.
    assert!(post.2.contains(&format!("mon=[{p}]")), "{post:?}");
    let pre = log(&c)
        .into_iter()
        .find(|(_, _, w)| w.starts_with("notify pre-promote"))
        .unwrap();
    assert!(pre.2.contains("mon=[]"), "{pre:?}");
    // Both starts were announced to the running copies, naming the started nodes.
    for node in [a, b] {
        wait_until(Duration::from_secs(10), || {
            log(&c).iter().any(|(_, n, w)| {
                n == node && w.starts_with("notify post-start") && !w.contains("start=[ ]")
            })
        })
        .unwrap_or_else(|| panic!("{node} was never told of a start: {:?}", log(&c)));
    }
    let started: Vec<String> = log(&c)
        .into_iter()
        .filter(|(_, _, w)| w.starts_with("notify post-start"))
        .filter_map(|(_, _, w)| {
            let list = w.split("start=[").nth(1)?;
            Some(list[..list.find(']')?].to_string())
        })
        .collect();
    for node in [a, b] {
        assert!(
            started.iter().any(|l| l.split(' ').any(|n| n == node)),
            "{node}'s start never announced: {started:?}"
        );
    }
    // cibadmin (the shim) lists both online nodes' transient attributes, read with
    // rabbitmq-cluster's XPath and pipeline.
    assert!(
        post.2.contains(&format!("cib=[{a} {b}]")) || post.2.contains(&format!("cib=[{b} {a}]")),
        "{post:?}"
    );

    // The promoted host dies: the survivor is told (alone active) before its promotion.
    let killed_at = log(&c).last().map_or(0, |l| l.0);
    c.kill(&p);
    wait_until(Duration::from_secs(30), || {
        when(&c, other, "promote", killed_at).is_some()
    })
    .unwrap_or_else(|| panic!("{other} never promoted: {:?}\n{}", log(&c), c.log(1)));
    let t2 = when(&c, other, "promote", killed_at).unwrap();
    let pre = log(&c)
        .into_iter()
        .find(|(t, n, w)| *t > killed_at && n == other && w.starts_with("notify pre-promote"))
        .unwrap_or_else(|| panic!("{other} not told before its promotion: {:?}", log(&c)));
    assert!(pre.0 < t2, "{:?}", log(&c));
    // The dead host's copy is not active, does not look promoted to crm_mon, and its host
    // is not online in the CIB (the spare's copy may run already).
    let list = |w: &str, name: &str| -> Vec<String> {
        let tail = w.split(&format!("{name}=[")).nth(1).unwrap_or("");
        tail[..tail.find(']').unwrap_or(0)]
            .split(' ')
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect()
    };
    assert!(
        pre.2.contains(&format!("promote=[{other}]"))
            && list(&pre.2, "active").contains(&other.to_string())
            && !list(&pre.2, "active").contains(&p)
            && pre.2.contains("mon=[]")
            && !list(&pre.2, "cib").contains(&p),
        "{pre:?}"
    );
    // The lost copy is announced stopped to the survivor, after its promotion (promotion
    // goes first).
    wait_until(Duration::from_secs(10), || {
        log(&c).iter().any(|(t, n, w)| {
            *t > killed_at
                && n == other
                && w.starts_with("notify post-stop")
                && w.contains(&format!("stop=[{p}]"))
        })
    })
    .unwrap_or_else(|| panic!("{other} was never told {p}'s copy stopped: {:?}", log(&c)));

    // The lost copy comes back on a spare host, which starts it only after the survivor ran
    // the pre-start notification naming it.
    let restarted = |c: &Cluster| {
        log(c)
            .into_iter()
            .find(|(t, _, w)| *t > killed_at && w == "start")
    };
    wait_until(Duration::from_secs(30), || restarted(&c).is_some()).unwrap_or_else(|| {
        panic!(
            "the lost copy never started again: {:?}\n{}",
            log(&c),
            c.log(1)
        )
    });
    let (t_start, spare, _) = restarted(&c).unwrap();
    let spare = spare.as_str();
    assert!(spare != p && spare != other, "{:?}", log(&c));
    let told = log(&c)
        .into_iter()
        .find(|(t, n, w)| *t > killed_at && n == other && w.starts_with("notify pre-start"));
    let (t_told, _, what) = told.unwrap_or_else(|| {
        panic!(
            "{other} was never told before {spare}'s start: {:?}",
            log(&c)
        )
    });
    assert!(
        t_told < t_start && list(&what, "start") == [spare.to_string()],
        "{other} told at {t_told}, {spare} started at {t_start}: {what}"
    );
    // And after it, post-start.
    wait_until(Duration::from_secs(10), || {
        log(&c).iter().any(|(t, n, w)| {
            *t > t_start
                && n == other
                && w.starts_with("notify post-start")
                && list(w, "start") == [spare.to_string()]
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "{other} was never told {spare}'s copy started: {:?}",
            log(&c)
        )
    });

    // An operator moves that copy to the last free host. Every active copy, the leaving one
    // too, is told before it stops (pre-stop); the free host starts it only after the stop;
    // the stop is announced after it (post-stop).
    let free = ["h2", "h3", "h4", "h5"]
        .into_iter()
        .find(|h| ![p.as_str(), other, spare].contains(h))
        .unwrap();
    let hosts = get(c.http(1), "/v1/hosts").map(|(_, b)| json(&b)).unwrap();
    let name_of = |id: &serde_json::Value| {
        hosts["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| &h["id"] == id)
            .map(|h| h["name"].as_str().unwrap().to_string())
    };
    let placements = get(c.http(1), "/v1/placements")
        .map(|(_, b)| json(&b))
        .unwrap();
    let id = placements["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pl| name_of(&pl["host"]).as_deref() == Some(spare))
        .map(|pl| pl["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no placement on {spare}: {placements}"));
    let t_move = log(&c).last().map_or(0, |l| l.0);
    let (status, body) = request(
        c.http(1),
        "PATCH",
        &format!("/v1/placements/{id}"),
        &format!(r#"{{"host": "{free}"}}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(30), || {
        when(&c, free, "start", t_move).is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "{free} never started the moved copy: {:?}\n{}",
            log(&c),
            c.log(1)
        )
    });
    let t_free = when(&c, free, "start", t_move).unwrap();
    let t_stop = when(&c, spare, "stop", t_move)
        .unwrap_or_else(|| panic!("{spare} never stopped its copy: {:?}", log(&c)));
    assert!(
        t_stop < t_free,
        "started on {free} before the stop on {spare}: {:?}",
        log(&c)
    );
    for node in [other, spare] {
        let told = log(&c)
            .into_iter()
            .find(|(t, n, w)| *t > t_move && n == node && w.starts_with("notify pre-stop"));
        let (t, _, what) = told.unwrap_or_else(|| {
            panic!("{node} was never told before {spare}'s stop: {:?}", log(&c))
        });
        assert!(
            t < t_stop && list(&what, "stop") == [spare.to_string()],
            "{node} told at {t}, {spare} stopped at {t_stop}: {what}"
        );
    }
    wait_until(Duration::from_secs(10), || {
        log(&c).iter().any(|(t, n, w)| {
            *t > t_stop
                && n == other
                && w.starts_with("notify post-stop")
                && list(w, "stop") == [spare.to_string()]
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "{other} was never told {spare}'s copy stopped: {:?}",
            log(&c)
        )
    });
}
