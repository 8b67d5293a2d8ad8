//! Recovery end to end: a host dies (kill -9 of its agent; its watchdog stays, as hardware
//! would), gossip declares it dead, its lease runs out, and the leader moves its instance to
//! another host, which runs it under a new epoch, after the old copy is gone.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Watchdog, alive, create, get, json, place_sleeper, wait_until, zone};
use serde_json::json;

fn running(c: &Cluster, i: u8, name: &str) -> Option<(i32, u64)> {
    let (_, body) = c.host_get(i, "/v1/supervisor")?;
    json(&body)["instances"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == name && o["phase"] == "running")
        .and_then(|o| Some((o["pid"].as_i64()? as i32, o["epoch"].as_u64()?)))
}

#[test]
fn a_dead_hosts_instance_comes_back_elsewhere_after_its_lease() {
    let mut c = Cluster::new(53);
    c.start_agent(1, None, &[]);
    let watchdogs = [c.start_watched(2, &[]), c.start_watched(3, &[])];
    zone(&c, json!({}), &["h2", "h3"]);
    place_sleeper(&c, "app", "h2");
    let mut on_h2 = None;
    wait_until(Duration::from_secs(10), || {
        on_h2 = running(&c, 2, "app");
        on_h2.is_some()
    })
    .expect("runs on h2");
    let (old_pid, epoch) = on_h2.unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the watchdog learns of it

    // h2 dies. Its instance must be dead before the copy on h3 starts.
    let killed = Instant::now();
    c.kill("h2");
    let mut old_dead_at = None;
    let mut on_h3 = None;
    wait_until(Duration::from_secs(20), || {
        if old_dead_at.is_none() && !alive(old_pid) {
            old_dead_at = Some(killed.elapsed());
        }
        on_h3 = running(&c, 3, "app");
        on_h3.is_some()
    })
    .unwrap_or_else(|| panic!("never recovered on h3:\n{}", c.log(1)));
    let recovered = killed.elapsed();
    let (_, new_epoch) = on_h3.unwrap();
    assert!(new_epoch > epoch, "a move gives a new epoch");
    let old_dead_at = old_dead_at.expect("the old copy died before the new one ran");
    assert!(old_dead_at <= recovered);
    eprintln!("recovered in {recovered:?} (old copy dead after {old_dead_at:?})");
    assert!(
        recovered < Duration::from_secs(10),
        "recovery took {recovered:?}"
    );

    // The host is marked failed, and the recovery is recorded with its steps and vmove.
    let host = |c: &Cluster| json(&get(c.http(1), "/v1/hosts/h2").expect("h2").1);
    assert_eq!(host(&c)["failed"], true, "{}", host(&c));
    let mut record = None;
    wait_until(Duration::from_secs(10), || {
        let (_, body) = get(c.http(1), "/v1/notifications").expect("notifications");
        record = json(&body)["notifications"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["hostname"] == "h2").cloned())
            .filter(|n| n["status"] == "finished");
        record.is_some()
    })
    .unwrap_or_else(|| panic!("no finished record:\n{}", c.log(1)));
    let record = record.unwrap();
    assert_eq!(record["type"], "COMPUTE_HOST", "{record}");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "last_renewal",
            "detected",
            "lease_expired",
            "planned",
            "started",
            "healthy"
        ],
        "{record}"
    );
    let vmoves = record["vmoves"].as_array().unwrap();
    assert_eq!(vmoves.len(), 1, "{record}");
    assert_eq!(
        (
            &vmoves[0]["instance_name"],
            &vmoves[0]["source_host"],
            &vmoves[0]["dest_host"],
            &vmoves[0]["status"]
        ),
        (
            &json!("app"),
            &json!("h2"),
            &json!("h3"),
            &json!("succeeded")
        ),
        "{record}"
    );

    // An operator cannot return a host that is not back.
    let (ok, _, err) = common::buoy(c.http(1), &["host", "enable", "h2"]);
    assert!(!ok && err.contains("is not back"), "{err}");

    // With failback set, the instance returns to h2 once h2 is back and enabled; the copy on
    // h3 stops before the one on h2 starts.
    let (ok, out, err) = common::buoy(
        c.http(1),
        &["segment", "update", "zone", "--set", "failback=true"],
    );
    assert!(ok, "{out}{err}");
    let socket = c.dir.join("wd-h2.sock");
    c.start_agent(2, Some(&socket), &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        running(&c, 2, "app").is_none(),
        "a failed host takes no work before it is enabled"
    );
    assert_eq!(host(&c)["failed"], true);
    wait_until(Duration::from_secs(10), || {
        common::buoy(c.http(1), &["host", "enable", "h2"]).0
    })
    .unwrap_or_else(|| panic!("h2 could not be enabled:\n{}", c.log(1)));
    let (h3_pid, _) = running(&c, 3, "app").expect("still on h3 until failback");
    let mut back = None;
    wait_until(Duration::from_secs(15), || {
        back = running(&c, 2, "app");
        back.is_some()
    })
    .unwrap_or_else(|| panic!("no failback to h2:\n{}", c.log(1)));
    assert!(
        !alive(h3_pid),
        "the h3 copy stopped before h2 started its own"
    );
    assert!(back.unwrap().1 > new_epoch);
    let (_, body) = get(c.http(1), "/v1/placements").expect("placements");
    let placements = json(&body);
    assert_eq!(
        placements["placements"][0]["home"],
        serde_json::Value::Null,
        "{placements}"
    );
    drop(watchdogs);
}

#[test]
fn an_isolated_host_keeps_its_instances_nothing_moves() {
    let mut c = Cluster::new(54);
    for i in 1..=3 {
        c.start_agent(i, None, &[]);
    }
    zone(&c, json!({}), &["h2", "h3"]);
    place_sleeper(&c, "app", "h2");
    let mut before = None;
    wait_until(Duration::from_secs(10), || {
        before = running(&c, 2, "app");
        before.is_some()
    })
    .expect("runs on h2");

    // One path cut: gossip between h2 and everyone, both ways. Its lease renewals (HTTP to
    // the leader) still pass.
    let gossip_cut = |peers: &[&str]| {
        let rules: Vec<_> = peers
            .iter()
            .map(|p| json!({"peer": p, "direction": "both", "scope": "gossip"}))
            .collect();
        json!({"drop": rules}).to_string()
    };
    c.faults(2, &gossip_cut(&["h1", "h3"]));
    c.faults(1, &gossip_cut(&["h2"]));
    c.faults(3, &gossip_cut(&["h2"]));
    let host = |c: &Cluster| json(&get(c.http(1), "/v1/hosts/h2").expect("h2").1);
    wait_until(Duration::from_secs(20), || {
        host(&c)["membership"]["state"] == "dead"
    })
    .unwrap_or_else(|| panic!("gossip never declared h2 dead: {}", host(&c)));
    assert_eq!(host(&c)["status"], "isolated", "{}", host(&c));

    // Several lease lengths later nothing moved: same copy, same epoch, no recovery.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        running(&c, 2, "app"),
        before,
        "the isolated host keeps running it"
    );
    assert!(running(&c, 3, "app").is_none(), "no second copy");
    let h = host(&c);
    assert_eq!(
        (&h["failed"], &h["status"]),
        (&json!(false), &json!("isolated")),
        "{h}"
    );
    let (_, body) = get(c.http(1), "/v1/notifications").expect("notifications");
    assert_eq!(json(&body)["notifications"], json!([]), "{body}");

    // Healed: alive again, still the same copy.
    c.heal(&[1, 2, 3]);
    wait_until(Duration::from_secs(20), || host(&c)["status"] == "alive")
        .unwrap_or_else(|| panic!("h2 never came back alive: {}", host(&c)));
    assert_eq!(running(&c, 2, "app"), before);
}

#[test]
fn admission_control_refuses_what_a_host_loss_could_not_absorb() {
    let mut c = Cluster::new(58);
    c.start_agent(1, None, &[]);
    zone(&c, json!({"tolerate_host_failures": 1}), &[]);
    // Registered hosts (no agents needed for the arithmetic): 8 + 4 cores, 16 + 8 GB.
    create(
        &c,
        "/v1/hosts",
        json!({"name": "big", "segment": "zone", "capacity": {"cpu": 8, "memory_mb": 16384}}),
    );
    create(
        &c,
        "/v1/hosts",
        json!({"name": "small", "segment": "zone", "capacity": {"cpu": 4, "memory_mb": 8192}}),
    );
    let app = |name: &str, cpu: u32| {
        json!({"name": name, "segment": "zone", "driver": "process", "cpu": cpu, "memory_mb": 1024,
               "params": {"command": "/bin/true"}})
    };
    create(&c, "/v1/instances", app("a", 3));
    // Losing `big` leaves 4 cores: a second 3-core instance cannot be absorbed.
    let (status, body) =
        common::post(c.http(1), "/v1/instances", &app("b", 3).to_string()).unwrap();
    assert_eq!(status, 409, "{body}");
    let e = json(&body);
    assert!(
        e["error"]["message"].as_str().is_some_and(
            |m| m.contains("admission control") && m.contains("buoy segment capacity zone")
        ),
        "{e}"
    );
    let (ok, out, err) = common::buoy(c.http(1), &["segment", "capacity", "zone"]);
    assert!(ok, "{err}");
    assert!(out.contains("tolerates 1 host failure"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("headroom") && l.contains("1 cpu")),
        "{out}"
    );
    let (ok, out, _) = common::buoy(c.http(1), &["segment", "capacity", "zone", "--json"]);
    assert!(ok);
    let v = json(&out);
    assert_eq!(v["headroom"]["cpu_millis"], 1000, "{v}");
    assert_eq!(v["reserve"]["cpu_millis"], 8000, "{v}");
    // One core fits.
    create(&c, "/v1/instances", app("b", 1));

    // Started instances are placed by themselves: a clone's copies on distinct hosts; scaled
    // down, its surplus copy's placement goes.
    create(
        &c,
        "/v1/instances",
        json!({"name": "web", "segment": "zone", "driver": "process", "mode": "clone",
               "replicas": 2, "params": {"command": "/bin/true"}}),
    );
    let copies = |c: &Cluster| -> Vec<(u64, String)> {
        let (_, body) = get(c.http(1), "/v1/placements").unwrap();
        let (_, inst) = get(c.http(1), "/v1/instances/web").unwrap();
        let id = json(&inst)["id"].clone();
        let mut v: Vec<(u64, String)> = json(&body)["placements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["instance"] == id)
            .map(|p| {
                (
                    p["replica"].as_u64().unwrap(),
                    p["host"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    wait_until(Duration::from_secs(10), || copies(&c).len() == 2)
        .unwrap_or_else(|| panic!("web not placed: {:?}", copies(&c)));
    let placed = copies(&c);
    assert_ne!(placed[0].1, placed[1].1, "clone copies on distinct hosts");
    let (status, body) = common::request(
        c.http(1),
        "PATCH",
        "/v1/instances/web",
        r#"{"replicas": 1}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(10), || copies(&c).len() == 1)
        .unwrap_or_else(|| panic!("surplus copy kept: {:?}", copies(&c)));
    assert_eq!(copies(&c)[0].0, 0);
}

#[test]
fn a_reserved_host_takes_the_work_of_a_failed_host_and_stops_being_reserved() {
    let mut c = Cluster::new(65);
    c.start_agent(1, None, &[]);
    let watchdogs: Vec<Watchdog> = (2..=4).map(|i| c.start_watched(i, &[])).collect();
    zone(
        &c,
        json!({"recovery_method": "reserved_host"}),
        &["h2", "h3"],
    );
    create(
        &c,
        "/v1/hosts",
        json!({"name": "h4", "segment": "zone", "reserved": true}),
    );
    place_sleeper(&c, "app", "h2");
    wait_until(Duration::from_secs(10), || running(&c, 2, "app").is_some()).expect("on h2");
    std::thread::sleep(Duration::from_millis(300));
    c.kill("h2");
    // reserved_host: the reserved h4 takes it, not h3.
    wait_until(Duration::from_secs(20), || running(&c, 4, "app").is_some())
        .unwrap_or_else(|| panic!("not recovered on the reserved host:\n{}", c.log(1)));
    assert!(running(&c, 3, "app").is_none());
    wait_until(Duration::from_secs(5), || {
        get(c.http(1), "/v1/hosts/h4").is_some_and(|(_, b)| json(&b)["reserved"] == false)
    })
    .expect("a reserved host taken into service stops being reserved");
    drop(watchdogs);
}

/// The COMPUTE_HOST recovery records of `host`, oldest first.
fn host_records(c: &Cluster, host: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = get(c.http(1), "/v1/notifications")
        .and_then(|(_, b)| json(&b)["notifications"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["type"] == "COMPUTE_HOST" && n["hostname"] == host)
        .collect();
    v.sort_by_key(|n| n["serial"].as_u64());
    v
}

/// Issue 16: a recovery always ends. The dead host's copy finds no host with room: after 20
/// lease TTLs its record ends `failed`, saying why; once there is room the copy is placed under
/// a record of its own, which finishes. (Before, the record stayed `running` forever.)
#[test]
fn a_recovery_with_no_room_ends_failed_and_the_copy_is_placed_once_there_is_room() {
    let mut c = Cluster::new(80);
    c.start_agent(1, None, &[]);
    let _watchdogs = [c.start_watched(2, &[]), c.start_watched(3, &[])];
    create(&c, "/v1/segments", json!({"name": "zone"}));
    for (h, mem) in [("h2", 2048), ("h3", 100)] {
        create(
            &c,
            "/v1/hosts",
            json!({"name": h, "segment": "zone", "capacity": {"cpu": 4, "memory_mb": mem}}),
        );
    }
    common::create_placed(
        &c,
        json!({"name": "big", "segment": "zone", "driver": "process", "memory_mb": 1000,
               "params": {"command": "/bin/sleep", "args": ["600"]}}),
        "h2",
    );
    wait_until(Duration::from_secs(10), || running(&c, 2, "big").is_some())
        .unwrap_or_else(|| panic!("big never ran on h2:\n{}", c.log(2)));
    c.kill("h2");
    // The local profile's lease is 1 s: the record gives up after about 20 s.
    let mut records = Vec::new();
    wait_until(Duration::from_secs(45), || {
        records = host_records(&c, "h2");
        records.first().is_some_and(|r| r["status"] == "failed")
    })
    .unwrap_or_else(|| panic!("the record never ended: {records:#?}\n{}", c.log(1)));
    let text = records[0].to_string();
    assert!(
        text.contains("no host for 1 cop") && text.contains("MB free"),
        "{text}"
    );
    // Room appears: the copy is placed and runs, under a new record that finishes.
    let (status, body) = common::request(
        c.http(1),
        "PATCH",
        "/v1/hosts/h3",
        r#"{"capacity": {"cpu": 4, "memory_mb": 4096}}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(20), || running(&c, 3, "big").is_some())
        .unwrap_or_else(|| panic!("big never ran on h3:\n{}", c.log(1)));
    wait_until(Duration::from_secs(10), || {
        records = host_records(&c, "h2");
        records.len() == 2 && records[1]["status"] == "finished"
    })
    .unwrap_or_else(|| panic!("no finished record for the late placement: {records:#?}"));
}
