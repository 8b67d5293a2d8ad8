//! Failure accounting (issue 16): an instance that cannot start anywhere tries each host once,
//! is then blocked with each host's reason, its recovery record ends `failed`, and nothing
//! moves until `buoy instance reset`. (Before, it moved between hosts every ~200 ms forever,
//! with a new record at every move, each left `running`.)
//!
//! `/bin/false` runs for an instant, long enough to be seen running: a record may finish when
//! a copy is seen running and a new one open when it fails, so the bound is one per host.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, get, json, post, wait_until};
use serde_json::{Value, json};

/// The instance's one placement.
fn placement(c: &Cluster) -> Option<Value> {
    let (_, body) = get(c.http(1), "/v1/placements")?;
    json(&body)["placements"].as_array()?.first().cloned()
}

fn failures(p: &Value) -> usize {
    p["failures"].as_array().map_or(0, Vec::len)
}

/// The VM-type recovery records (one per failed copy's recovery).
fn records(c: &Cluster) -> Vec<Value> {
    get(c.http(1), "/v1/notifications")
        .and_then(|(_, b)| json(&b)["notifications"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["type"] == "VM")
        .collect()
}

#[test]
fn an_instance_that_fails_everywhere_is_blocked_once_and_reset_tries_again() {
    let mut c = Cluster::new(78);
    for i in 1..=3 {
        c.start_agent(i, None, &[]);
    }
    common::zone(&c, json!({}), &["h1", "h2", "h3"]);
    common::create(
        &c,
        "/v1/instances",
        json!({"name": "broken", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/false"}, "max_restarts": 0}),
    );
    // It fails on each host once, then stays where it last failed.
    let blocked = |c: &Cluster| placement(c).filter(|p| failures(p) == 3);
    let mut p = None;
    wait_until(Duration::from_secs(60), || {
        p = blocked(&c);
        p.is_some()
    })
    .unwrap_or_else(|| panic!("never blocked: {:?}\n{}", placement(&c), c.log(1)));
    let p = p.unwrap();
    for f in p["failures"].as_array().unwrap() {
        assert_eq!(f["count"], 1, "{p}");
        assert!(f["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    }
    let first = wait_until_blocked_record(&c, 3);

    // Where operators look: the instance says blocked, why, and where it failed.
    let (_, body) = get(c.http(1), "/v1/instances/broken").unwrap();
    let i = json(&body);
    assert_eq!(i["status"], "blocked", "{i}");
    assert!(i["reason"].as_str().is_some_and(|r| r.contains("failed on every usable host") && r.contains("exit code 1")), "{i}");
    assert_eq!(
        i["copies"][0]["failures"].as_array().map(Vec::len),
        Some(3),
        "{i}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["instance", "list", "--http", &c.http(1).to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("STATUS") && table.contains("blocked") && table.contains("failed on every"),
        "{table}"
    );
    // `placement list` and `members` name things; members' columns line up.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
            .args(args)
            .args(["--http", &c.http(1).to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let placements = cli(&["placement", "list"]);
    assert!(
        placements.contains("broken") && placements.contains(" h"),
        "{placements}"
    );
    let members = cli(&["members"]);
    let lines: Vec<&str> = members.lines().take(4).collect();
    let at = |l: &str| l.find("STATE").or_else(|| l.find("alive"));
    assert!(
        lines.len() == 4 && lines.iter().all(|l| at(l) == at(lines[0])),
        "{members}"
    );
    // `notification show` reads as text: the steps with their times, and the copies moved.
    let newest = records(&c)
        .into_iter()
        .max_by_key(|r| r["serial"].as_u64())
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["notification", "show", newest["id"].as_str().unwrap()])
        .args(["--http", &c.http(1).to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed")
            && text.contains("steps")
            && text.contains("blocked")
            && text.contains(" s "),
        "{text}"
    );
    // `/bin/false` writes nothing: `instance logs` says so, and why, instead of nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "instance",
            "logs",
            "broken",
            "--http",
            &c.http(1).to_string(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("has written nothing") && err.contains("blocked"),
        "{out:?}"
    );

    // Quiet: nothing moves, no new record.
    std::thread::sleep(Duration::from_secs(3));
    let still = placement(&c).unwrap();
    assert_eq!((&still["epoch"], &still["host"]), (&p["epoch"], &p["host"]));
    assert_eq!(records(&c).len(), first, "{:?}", records(&c));

    // Reset: the failures are forgotten and the copy starts again where it is (a new
    // epoch); it fails again on every host and is blocked again, with one more record.
    let (status, body) = post(c.http(1), "/v1/instances/broken/reset", "{}").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["copies_restarted"], 1, "{body}");
    let started = Instant::now();
    wait_until(Duration::from_secs(60), || {
        blocked(&c).is_some_and(|q| q["epoch"].as_u64() > p["epoch"].as_u64())
    })
    .unwrap_or_else(|| panic!("not retried after the reset: {:?}", placement(&c)));
    let total = wait_until_blocked_record(&c, first + 3);
    assert!(total > first, "the retry is recorded");
    eprintln!("blocked again {:?} after the reset", started.elapsed());

    // An instance no host has room for is pending with the planner's own reason.
    common::create(
        &c,
        "/v1/instances",
        json!({"name": "huge", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/true"}, "memory_mb": 4096}),
    );
    let mut i = Value::Null;
    wait_until(Duration::from_secs(10), || {
        i = get(c.http(1), "/v1/instances/huge").map_or(Value::Null, |(_, b)| json(&b));
        i["reason"].as_str().is_some_and(|r| r.contains("MB free"))
    })
    .unwrap_or_else(|| panic!("no planner reason: {i}"));
    assert_eq!(i["status"], "pending", "{i}");
}

/// Waits until every VM record has ended and the newest ended `failed`, blocked, with the
/// fix in its message; at most `max` records. Returns how many there are.
fn wait_until_blocked_record(c: &Cluster, max: usize) -> usize {
    let mut recs = Vec::new();
    let newest_blocked = |recs: &[Value]| {
        recs.iter()
            .max_by_key(|r| r["serial"].as_u64())
            .is_some_and(|r| {
                r["status"] == "failed"
                    && r.to_string().contains("is blocked")
                    && r.to_string().contains("buoy instance reset broken")
            })
    };
    wait_until(Duration::from_secs(20), || {
        recs = records(c);
        recs.iter()
            .all(|r| r["status"] == "failed" || r["status"] == "finished")
            && newest_blocked(&recs)
    })
    .unwrap_or_else(|| panic!("no blocked record: {recs:#?}"));
    assert!(recs.len() <= max, "{} records: {recs:#?}", recs.len());
    recs.len()
}
