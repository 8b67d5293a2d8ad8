//! A whole zone dies and the customer sees no failed request (issue 19; `lab::zone_lab`):
//! three zones of two hosts in network namespaces, the clock app (4 copies spread over the
//! zones) behind a real HAProxy run as a Buoy clone of 2 copies (one per zone, its backend kept
//! equal to the running copies) and an IPaddr2 virtual IP colocated with one of them. Each
//! clock copy answers with the time it read from a replicated PostgreSQL (the unmodified
//! `ocf:heartbeat:pgsql`, promotable, its primary in zone `b` behind a virtual IP of its own)
//! every 5 s. A client requests through the VIP every 50 ms throughout. Zone `b`, which holds
//! the database's primary and no HAProxy, is crashed (every process killed, links cut):
//! HAProxy retries the requests its dead servers drop on the others, so no request fails; the
//! copies come back in the surviving zones, HAProxy's backends following them; the database
//! fails over to zone `a`, the copies answering with their last read meanwhile, and then read
//! from the new primary.
//!
//! Negative control: the VIP holder's host crashes next; requests fail until the VIP has
//! moved, and the client's record shows it (the check can fail).
//!
//! Needs root, `ip netns`, `unshare`, HAProxy, PostgreSQL 15 and resource-agents (installed by
//! scripts/setup-test-deps.sh); skips loudly otherwise. `BUOY_TEST_KEEP=1` keeps its
//! directory.

use std::path::Path;
use std::time::Duration;

use lab::ns_lab::wait_for;
use lab::zone_lab::{DB_ZONE, Request, ZoneLab, db_time};

const BUOY: &str = env!("CARGO_BIN_EXE_buoy");
const COPIES: usize = 4;

fn failed(reqs: &[Request], after_ms: u64) -> Vec<&Request> {
    reqs.iter()
        .filter(|r| r.sent_ms >= after_ms && r.answer.is_err())
        .collect()
}

#[test]
fn a_whole_zone_dies_and_no_request_through_the_vip_fails() {
    if !ZoneLab::can_run_with_db() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("buoy-zones-{}", std::process::id()));
    let mut lab = ZoneLab::create(Path::new(BUOY), dir, 3, 2).unwrap_or_else(|e| panic!("{e:#}"));
    if std::env::var_os("BUOY_TEST_KEEP").is_some() {
        lab.ns.keep_files();
    }
    lab.start(COPIES as u32, true)
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_ready(COPIES, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let vip = lab.vip_holder().expect("the VIP is up");
    // The first primary is in zone b (ZoneLab::start checks it).
    let primary = lab.db_primary(&[]).expect("the database's VIP is up");
    assert_eq!(lab.zone_of(primary), DB_ZONE, "{}", lab.logs());
    eprintln!(
        "ready: clock on {:?}, HAProxy on {:?}, VIP on h{}, database primary on h{}",
        lab.running("clock"),
        lab.running("lb"),
        vip + 1,
        primary + 1
    );
    assert_ne!(lab.zone_of(vip), DB_ZONE, "HAProxy runs outside zone b");

    let client = lab.start_client().unwrap();
    client
        .wait_answered(20, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let first = client.requests();
    assert!(
        first
            .iter()
            .filter_map(|r| r.answer.as_ref().ok())
            .all(|a| db_time(a).is_some()),
        "an answer without the database's time: {:?}",
        first.last()
    );

    // Zone b dies, with its copies and (preferred there) the database's primary.
    let zone = DB_ZONE;
    let dead: Vec<String> = lab
        .zone_hosts(zone)
        .iter()
        .map(|&i| format!("h{}", i + 1))
        .collect();
    let killed_at = lab.kill_zone(zone);
    let recovered = wait_for(Duration::from_secs(60), || {
        let now = lab.running("clock");
        now.len() == COPIES && now.iter().all(|(_, h)| !dead.contains(h)) && lab.backends_match()
    });
    let recovery_ms = lab::ns_lab::unix_ms() - killed_at;
    assert!(
        recovered,
        "zone {} died: the copies did not come back in the others within 60 s: {:?}\n{}",
        ZoneLab::zone_name(zone),
        lab.running("clock"),
        lab.logs()
    );
    eprintln!(
        "zone {} ({dead:?}) died: {COPIES} copies running again and HAProxy's backends in sync after {recovery_ms} ms: {:?}",
        ZoneLab::zone_name(zone),
        lab.wanted_servers()
    );
    // The database fails over to zone a; the copies read from the new primary (a time read
    // after the crash can only come from a live server).
    let fresh = wait_for(Duration::from_secs(90), || {
        client
            .requests()
            .iter()
            .filter_map(|r| r.answer.as_ref().ok())
            .filter_map(|a| db_time(a))
            .any(|t| t > killed_at)
    });
    assert!(
        fresh,
        "no copy answered with a time read from the database after the crash (primary now {:?}):\n{}",
        lab.db_primary(&lab.zone_hosts(zone)),
        lab.logs()
    );
    let reqs = client.requests();
    let after: Vec<(u64, u64)> = reqs
        .iter()
        .filter(|r| r.sent_ms >= killed_at)
        .filter_map(|r| Some((r.sent_ms, db_time(r.answer.as_ref().ok()?)?)))
        .collect();
    let oldest = after
        .iter()
        .map(|(s, t)| s.saturating_sub(*t))
        .max()
        .unwrap_or(0);
    let back = after
        .iter()
        .find(|(_, t)| *t > killed_at)
        .map(|(s, _)| s - killed_at);
    eprintln!(
        "database: primary was on h{}, now on {:?}; the answers' database time was at most {oldest} ms old; the first read from the new primary reached the client {back:?} ms after the crash",
        primary + 1,
        lab.db_primary(&lab.zone_hosts(zone))
            .map(|h| format!("h{}", h + 1))
    );
    let reqs = client.requests();
    let during = reqs.iter().filter(|r| r.sent_ms >= killed_at).count();
    let bad = failed(&reqs, 0);
    let slowest = reqs
        .iter()
        .filter(|r| r.sent_ms >= killed_at)
        .map(|r| r.took_ms)
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} requests, {during} after the zone died (slowest {slowest} ms), {} failed",
        reqs.len(),
        bad.len()
    );
    assert!(during >= 20, "too few requests after the kill: {during}");
    assert!(bad.is_empty(), "failed requests: {bad:?}");

    // Negative control: the VIP holder's host crashes; requests fail until the VIP moves,
    // and the record shows them.
    let crashed_at = lab.ns.crash(vip);
    let moved = wait_for(Duration::from_secs(60), || {
        lab.vip_holder_except(&[vip]).is_some()
            && client
                .requests()
                .iter()
                .any(|r| r.sent_ms > crashed_at && r.answer.is_ok())
    });
    let reqs = client.stop();
    let bad = failed(&reqs, crashed_at);
    eprintln!(
        "the VIP's host h{} crashed: {} requests failed until the VIP moved to {:?}",
        vip + 1,
        bad.len(),
        lab.vip_holder_except(&[vip]).map(|h| format!("h{}", h + 1))
    );
    assert!(moved, "the VIP did not move:\n{}", lab.logs());
    assert!(
        !bad.is_empty(),
        "the client saw no failure while the VIP was on a dead host: the check cannot fail"
    );
}
