//! Promotable instances end to end, with the real `ocf:heartbeat:Stateful` agent from
//! Debian's resource-agents, unmodified: it publishes its promotion score through Buoy's
//! `crm_attribute` shim, Buoy promotes the best-scored copy under a promotion grant, and
//! after the promoted copy's host dies another copy is promoted, never while the old one may
//! still act as promoted (rule S1 for the promoted role). Stateful keeps its role in a file
//! (`HA_RSCTMP/Stateful-RESOURCE.state`): a sampler reads the three files throughout.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, create, get, json, wait_until, zone};
use serde_json::json;

const STATEFUL: &str = "/usr/lib/ocf/resource.d/heartbeat/Stateful";

fn state_file(c: &Cluster, i: u8) -> PathBuf {
    c.dir.join(format!("d{i}/run/Stateful-db.state"))
}

/// Which of hosts 2..=4 say "master" now.
fn promoted(c: &Cluster) -> Vec<u8> {
    (2..=4)
        .filter(|i| std::fs::read_to_string(state_file(c, *i)).is_ok_and(|s| s.trim() == "master"))
        .collect()
}

/// A sample where several copies said promoted: when, and which hosts.
type Overlap = (Duration, Vec<u8>);

/// The host (number) where the `vip` instance runs, when exactly one runs it (a killed
/// host's last report is left out).
fn vip_on(c: &Cluster) -> Option<u8> {
    let (_, body) = get(c.http(1), "/v1/observed?instance=vip")?;
    let running: Vec<u8> = json(&body)["hosts"]
        .as_object()?
        .iter()
        .filter(|(_, r)| {
            r["instances"]
                .as_array()
                .is_some_and(|a| a.iter().any(|o| o["phase"] == "running"))
        })
        .filter_map(|(h, _)| h.strip_prefix('h')?.parse().ok())
        .filter(|i| c.agents.iter().any(|(n, _)| *n == format!("h{i}")))
        .collect();
    (running.len() == 1).then(|| running[0])
}

/// Reads the state files every 10 ms until stopped; every sample where more than one copy
/// says promoted, with its time.
struct Sampler {
    stop: Arc<AtomicBool>,
    overlaps: Arc<Mutex<Vec<Overlap>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(files: Vec<(u8, PathBuf)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let (s, o) = (stop.clone(), overlaps.clone());
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let now: Vec<u8> = files
                    .iter()
                    .filter(|(_, f)| std::fs::read_to_string(f).is_ok_and(|s| s.trim() == "master"))
                    .map(|(i, _)| *i)
                    .collect();
                if now.len() > 1 {
                    o.lock().unwrap().push((t0.elapsed(), now));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler {
            stop,
            overlaps,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Overlap> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.overlaps.lock().unwrap().clone()
    }
}

/// Three hosts run a promotable Stateful of 3; the promoted copy's host is killed (its agent
/// with SIGKILL; its watchdog stays unless `kill_watchdog`). Returns the sampler's overlaps
/// and how long until another copy was promoted.
fn kill_the_promoted_host(net: u8, kill_watchdog: bool) -> (Vec<Overlap>, Duration) {
    let mut c = Cluster::new(net);
    c.start_agent(1, None, &[]);
    let mut watchdogs: Vec<Option<common::Watchdog>> =
        (2..=4).map(|i| Some(c.start_watched(i, &[]))).collect();
    zone(&c, json!({}), &["h2", "h3", "h4"]);
    create(
        &c,
        "/v1/instances",
        json!({"name": "db", "segment": "zone", "driver": "ocf", "mode": "promotable",
               "replicas": 3,
               "params": {"agent": "ocf:heartbeat:Stateful", "monitor_interval": "300ms",
                          "timeout": "5s"}}),
    );
    wait_until(Duration::from_secs(30), || promoted(&c).len() == 1).unwrap_or_else(|| {
        panic!(
            "never exactly one promoted: {:?}\n{}\n{}",
            promoted(&c),
            get(c.http(1), "/v1/observed?instance=db").map_or(String::new(), |r| r.1),
            c.log(1)
        )
    });
    // Every copy runs, the two others unpromoted.
    wait_until(Duration::from_secs(20), || {
        (2..=4)
            .all(|i| std::fs::read_to_string(state_file(&c, i)).is_ok_and(|s| !s.trim().is_empty()))
    })
    .expect("three copies run");
    // The scores came through the shim: Stateful sets 10 on the promoted copy, 5 elsewhere.
    let (_, body) = get(c.http(1), "/v1/attributes?name=master-db").expect("attributes");
    let scores = json(&body)["attributes"].as_array().cloned().unwrap();
    assert_eq!(scores.len(), 3, "{body}");
    let first = promoted(&c)[0];
    // The address clients use follows the promoted copy, and starts after its promotion.
    create(
        &c,
        "/v1/instances",
        json!({"name": "vip", "segment": "zone", "driver": "process",
               "params": {"command": "/bin/sleep", "args": ["600"]},
               "colocated_with": {"instance": "db", "promoted": true},
               "start_after": [{"instance": "db", "promoted": true}]}),
    );
    wait_until(Duration::from_secs(20), || vip_on(&c) == Some(first))
        .unwrap_or_else(|| panic!("vip not on h{first}: {:?}\n{}", vip_on(&c), c.log(1)));
    std::thread::sleep(Duration::from_millis(500)); // the watchdog learns the stop command

    let sampler = Sampler::start((2..=4).map(|i| (i, state_file(&c, i))).collect());
    let killed = Instant::now();
    c.kill(&format!("h{first}"));
    if kill_watchdog {
        watchdogs[usize::from(first - 2)] = None;
    }
    let others: Vec<u8> = (2..=4).filter(|i| *i != first).collect();
    let took = wait_until(Duration::from_secs(30), || {
        promoted(&c).iter().any(|i| others.contains(i))
    })
    .unwrap_or_else(|| panic!("no other copy promoted: {:?}\n{}", promoted(&c), c.log(1)));
    std::thread::sleep(Duration::from_millis(500));
    let now = promoted(&c);
    if !kill_watchdog {
        assert_eq!(
            now.len(),
            1,
            "exactly one promoted after the failover: {now:?}"
        );
        wait_until(Duration::from_secs(20), || vip_on(&c) == Some(now[0]))
            .unwrap_or_else(|| panic!("vip did not follow to h{}: {:?}", now[0], vip_on(&c)));
        // The dead host's transient attributes went with it (its score among them).
        let dead = format!("h{first}");
        let scores = |c: &Cluster| {
            let (_, body) = get(c.http(1), "/v1/attributes?name=master-db").expect("attributes");
            json(&body)["attributes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        wait_until(Duration::from_secs(10), || {
            scores(&c).iter().all(|a| a["key"]["node"] != dead.as_str())
        })
        .unwrap_or_else(|| panic!("the dead host's score stays: {:?}", scores(&c)));
        // A switchover on purpose to the other live copy: demoted, then promoted there.
        let target = *others.iter().find(|i| !now.contains(i)).unwrap();
        let host = format!("h{target}");
        let (ok, out, err) =
            common::buoy(c.http(1), &["instance", "promote", "db", "--host", &host]);
        assert!(ok, "{out}{err}");
        wait_until(Duration::from_secs(15), || promoted(&c) == [target]).unwrap_or_else(|| {
            panic!(
                "never switched over to {host}: {:?}\n{}",
                promoted(&c),
                get(c.http(1), "/v1/instances/db").map_or(String::new(), |r| r.1)
            )
        });
        // The API shows the roles the monitors report (the dead host's copy shows none).
        let roles = |c: &Cluster| -> Vec<(String, serde_json::Value)> {
            let (_, body) = get(c.http(1), "/v1/instances/db").expect("db");
            let mut r: Vec<_> = json(&body)["copies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["host"].as_str().unwrap_or("").to_string(),
                        c["role"].clone(),
                    )
                })
                .collect();
            r.sort_by(|a, b| a.0.cmp(&b.0));
            r
        };
        let want: Vec<(String, serde_json::Value)> = (2..=4)
            .map(|i| {
                let role = match i {
                    i if i == target => json!("promoted"),
                    i if i == first => serde_json::Value::Null,
                    _ => json!("unpromoted"),
                };
                (format!("h{i}"), role)
            })
            .collect();
        wait_until(Duration::from_secs(5), || roles(&c) == want)
            .unwrap_or_else(|| panic!("roles {:?}, expected {want:?}", roles(&c)));
        wait_until(Duration::from_secs(20), || vip_on(&c) == Some(target))
            .unwrap_or_else(|| panic!("vip did not follow to {host}: {:?}", vip_on(&c)));
    }
    let overlaps = sampler.finish();
    eprintln!(
        "h{first} killed: another copy promoted after {took:?} ({:?} in all)",
        killed.elapsed()
    );
    drop(watchdogs);
    (overlaps, took)
}

fn stateful_installed() -> bool {
    if std::path::Path::new(STATEFUL).is_file() {
        return true;
    }
    eprintln!(
        "SKIPPED (loudly): {STATEFUL} missing (scripts/setup-test-deps.sh installs resource-agents)"
    );
    false
}

#[test]
fn a_promotable_stateful_fails_over_with_never_two_promoted() {
    if !stateful_installed() {
        return;
    }
    let (overlaps, took) = kill_the_promoted_host(96, false);
    assert!(
        overlaps.is_empty(),
        "two copies promoted at once: {overlaps:?}"
    );
    assert!(took < Duration::from_secs(15), "promotion took {took:?}");
}

/// Negative control: the same failover where nothing fences the dead host (its watchdog dies
/// with it, so its promoted copy stays promoted, as a database would keep running): the
/// sampler must see two promoted copies, or it could not catch the fault it checks for.
#[test]
fn the_sampler_sees_two_promoted_when_the_dead_host_is_not_fenced() {
    if !stateful_installed() {
        return;
    }
    let (overlaps, _) = kill_the_promoted_host(97, true);
    assert!(!overlaps.is_empty(), "the checker saw no double promotion");
}
