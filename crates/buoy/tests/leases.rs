//! Leases with real agents: a host keeps its lease while it reaches the control plane; cut
//! from the servers by the fault filter it loses it, and no later than the leader's view of
//! it ends (rule S1); healed, it gets it back.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, get, request, wait_until};
use model::timestamp::Timestamp;
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Agent `i`'s own lease.
fn own_lease(c: &Cluster, i: u8) -> Value {
    let (status, body) = c.host_get(i, "/v1/lease").expect("agent answers");
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// The leader's view of `host`'s lease, read through agent `i`.
fn leader_view(c: &Cluster, i: u8, host: &str) -> Option<Value> {
    let (status, body) = get(c.http(i), "/v1/leases")?;
    if status != 200 {
        return None;
    }
    json(&body)["leases"]
        .as_array()?
        .iter()
        .find(|l| l["host"] == host)
        .cloned()
}

fn time(v: &Value) -> Timestamp {
    Timestamp::parse(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a timestamp: {v}: {e}"))
}

#[test]
fn a_host_cut_from_the_servers_loses_its_lease_before_the_leader_counts_it_gone() {
    let mut c = Cluster::new(46);
    let data = c.dir.join("data-h1").display().to_string();
    c.start(1, &["--server".into(), "--data-dir".into(), data]);
    c.start(2, &[]);

    // Both hold leases: the server from itself, the other agent through the server.
    wait_until(Duration::from_secs(15), || {
        own_lease(&c, 1)["held"] == true && own_lease(&c, 2)["held"] == true
    })
    .unwrap_or_else(|| {
        panic!(
            "no leases: {} / {}\n{}",
            own_lease(&c, 1),
            own_lease(&c, 2),
            c.log(2)
        )
    });
    let lease = own_lease(&c, 2);
    assert_eq!(lease["ttl_ms"], 1000, "the local profile's TTL: {lease}");
    assert!(
        leader_view(&c, 2, "h2").is_some(),
        "the leader knows h2's lease"
    );

    // Cut h2 from the server, both ways, on both sides.
    let t_cut = Instant::now();
    c.cut(2, 1);
    let lost_after = wait_until(Duration::from_secs(5), || own_lease(&c, 2)["held"] == false)
        .expect("a host cut from the servers must lose its lease");
    assert!(
        lost_after <= Duration::from_millis(1000 + 500),
        "lease lost {lost_after:?} after the cut, TTL 1 s"
    );
    let host_until = time(&own_lease(&c, 2)["until"]);
    let view = leader_view(&c, 1, "h2").expect("the leader still lists h2");
    let (ends_at, fenced_at) = (time(&view["ends_at"]), time(&view["fenced_at"]));
    eprintln!(
        "lease lost {lost_after:?} after the cut; host until {host_until}, leader: ends {ends_at}, fenced {fenced_at}"
    );
    // The host counts from its sending, the leader from its receiving (clock conversion to
    // wall time rounds to the millisecond on each side: 5 ms of slack).
    assert!(
        host_until <= ends_at.plus(Duration::from_millis(5)),
        "host lease until {host_until}, leader's view ends {ends_at}"
    );
    assert!(
        host_until < fenced_at,
        "the host must stop before the leader may move its instances: {host_until} vs {fenced_at}"
    );
    // The leader, too, sees it expire (once its drift margin has passed).
    wait_until(Duration::from_secs(3), || {
        leader_view(&c, 1, "h2").is_some_and(|v| v["expired"] == true)
    })
    .expect("the leader sees h2's lease expire");
    assert!(t_cut.elapsed() < Duration::from_secs(5));
    // The server's own lease is unaffected.
    assert_eq!(own_lease(&c, 1)["held"], true);

    // Healed, h2 gets its lease back.
    c.heal(&[1, 2]);
    wait_until(Duration::from_secs(5), || own_lease(&c, 2)["held"] == true)
        .expect("a healed host renews its lease");
}

/// Issue 15, hole 9: the lease timing is the cluster's, not each server's. Three servers run
/// the local profile (1 s leases); the operator sets 6 s, then lowers it to 2 s. A new leader
/// elected after the old one is killed must still count every lease as running 6 s past its
/// election: a host may hold a 6 s lease granted before the change. (Before the fix each leader
/// used its own --lease-ttl, and the floor was the election plus 1 s.)
#[test]
fn a_new_leader_waits_out_the_longest_lease_the_cluster_ever_granted() {
    let mut c = Cluster::new(72);
    c.start_three_servers();
    let settings = |c: &Cluster| -> Value {
        get(c.http(1), "/v1/settings")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| json(&b))
            .unwrap_or(Value::Null)
    };
    wait_until(Duration::from_secs(20), || !settings(&c)["lease"].is_null())
        .expect("the first leader writes the cluster's lease timing");
    assert_eq!(settings(&c)["lease"]["ttl_ms"], 1000, "{}", settings(&c));
    for (ttl, ceiling) in [("6s", 6000), ("2s", 6000)] {
        let (status, body) = request(
            c.http(1),
            "PUT",
            "/v1/settings/lease",
            &format!(r#"{{"ttl": "{ttl}"}}"#),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["lease"]["ceiling_ms"], ceiling, "{body}");
    }
    let (status, body) =
        request(c.http(1), "PUT", "/v1/settings/lease", r#"{"ttl": "50ms"}"#).unwrap();
    assert!(
        status == 422 && body.contains("ttl"),
        "a TTL below the minimum is refused, naming the field: {status} {body}"
    );
    // Kill whoever leads.
    let leader_of = |c: &Cluster, i: u8| -> Option<String> {
        let (s, b) = get(c.http(i), "/v1/status")?;
        (s == 200).then(|| json(&b)["leader"]["name"].as_str().map(String::from))?
    };
    let old = leader_of(&c, 1).expect("a leader");
    let t_kill = Timestamp::now();
    c.kill(&old);
    let survivors: Vec<u8> = (1..=3).filter(|i| format!("h{i}") != old).collect();
    let mut floor = None;
    wait_until(Duration::from_secs(20), || {
        floor = survivors.iter().find_map(|&i| {
            let (s, b) = get(c.http(i), "/v1/leases")?;
            let v = json(&b);
            (s == 200 && !v["term"].is_null() && v["floor"].is_string())
                .then(|| time(&v["floor"]))
                .filter(|f| *f > t_kill)
        });
        floor.is_some()
    })
    .expect("a new leader starts its lease table");
    let floor = floor.unwrap();
    assert!(
        floor >= t_kill.plus(Duration::from_secs(6)),
        "the new leader's floor {floor} is less than 6 s after the old leader died ({t_kill})"
    );
}
