//! Notifications end to end: a promotable instance with `notify` runs a test agent
//! (`tests/ocf/Recorder`, a real OCF script run through Buoy's driver and shims) that logs
//! every action with Pacemaker's notification lists. Every active copy runs the pre-promote
//! notification before the promotion and the post-promote one after it, with the promoted
//! node named; after the promoted host dies, the survivor is told before it is promoted. Copies
//! that start are announced to every running copy (post-start), and so is the copy lost with
//! its host (post-stop). The agent reads the status through the `crm_mon` and `cibadmin` shims
//! as it runs.

mod common;

use std::time::Duration;

use common::{Cluster, create, wait_until, zone};
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
    let _watchdogs: Vec<common::Watchdog> = (2..=3).map(|i| c.start_watched(i, &[])).collect();
    zone(&c, json!({}), &["h2", "h3"]);
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
    let other = if p == "h2" { "h3" } else { "h2" };
    // Both copies ran the pre-promote notification before the promotion, naming it.
    for node in ["h2", "h3"] {
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
            what.contains("active=[h2 h3]") || what.contains("active=[h3 h2]"),
            "{what}"
        );
    }
    // And the post-promote one after it, with the promoted node listed.
    for node in ["h2", "h3"] {
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
    for node in ["h2", "h3"] {
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
    for node in ["h2", "h3"] {
        assert!(
            started.iter().any(|l| l.split(' ').any(|n| n == node)),
            "{node}'s start never announced: {started:?}"
        );
    }
    // cibadmin (the shim) lists both online nodes' transient attributes, read with
    // rabbitmq-cluster's XPath and pipeline.
    assert!(
        post.2.contains("cib=[h2 h3]") || post.2.contains("cib=[h3 h2]"),
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
    assert!(
        pre.2.contains(&format!("promote=[{other}]"))
            && pre.2.contains(&format!("active=[{other}]"))
            // The dead host's copy does not look promoted to crm_mon.
            && pre.2.contains("mon=[]")
            // Nor is the dead host online in the CIB.
            && pre.2.contains(&format!("cib=[{other}]")),
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
}
