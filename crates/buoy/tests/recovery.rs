//! Recovery end to end: a host dies (kill -9 of its agent; its watchdog stays, as hardware
//! would), gossip declares it dead, its lease runs out, and the leader moves its instance to
//! another host, which runs it under a new epoch, after the old copy is gone.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Watchdog, alive, create, get, json, place_sleeper, wait_until};
use serde_json::json;

fn running(c: &Cluster, i: u8, name: &str) -> Option<(i32, u64)> {
    let (_, body) = get(c.http(i), "/v1/supervisor")?;
    json(&body)["instances"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == name && o["phase"] == "running")
        .and_then(|o| Some((o["pid"].as_i64()? as i32, o["epoch"].as_u64()?)))
}

#[test]
fn a_dead_hosts_instance_comes_back_elsewhere_after_its_lease() {
    let mut c = Cluster::new(53);
    let dir = c.dir.clone();
    let mut watchdogs = Vec::new();
    c.start(
        1,
        &[
            "--server".into(),
            "--data-dir".into(),
            dir.join("d1").display().to_string(),
        ],
    );
    for i in 2..=3u8 {
        let socket = dir.join(format!("wd-h{i}.sock"));
        watchdogs.push(Watchdog::start(&socket));
        c.start(
            i,
            &[
                "--data-dir".into(),
                dir.join(format!("d{i}")).display().to_string(),
                "--watchdog".into(),
                socket.display().to_string(),
            ],
        );
    }
    create(&c, "/v1/segments", json!({"name": "zone"}));
    for h in ["h2", "h3"] {
        create(&c, "/v1/hosts", json!({"name": h, "segment": "zone"}));
    }
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
    drop(watchdogs);
}
