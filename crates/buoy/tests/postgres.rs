//! PostgreSQL 15 under the unmodified `ocf:heartbeat:pgsql`, as a promotable instance of two
//! copies with synchronous streaming replication, and an `ocf:heartbeat:IPaddr2` virtual IP
//! colocated with the promoted copy and started after its promotion (`lab::postgres_lab`:
//! every host in network and mount namespaces of its own). A client writes through the virtual
//! IP and records each commit acknowledged to it; the primary's host crashes (every process in
//! it killed, its link cut); a replica is promoted, the address follows, the client resumes,
//! and every acknowledged row is there. A negative control deletes one acknowledged row and
//! shows the check catches it.
//!
//! Needs root, `ip netns`, `unshare`, PostgreSQL 15 and resource-agents (installed by
//! scripts/setup-test-deps.sh); skips loudly otherwise. `BUOY_TEST_KEEP=1` keeps its directory
//! (logs, data) for a look afterwards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_until;
use lab::postgres_lab::PgLab;
use serde_json::Value;

const BUOY: &str = env!("CARGO_BIN_EXE_buoy");

#[test]
fn postgres_fails_over_with_its_virtual_ip_and_loses_no_acknowledged_commit() {
    if let Some(why) = PgLab::missing() {
        eprintln!("SKIPPED (loudly): {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("buoy-pg-{}", std::process::id()));
    let mut lab = PgLab::create(Path::new(BUOY), dir).unwrap_or_else(|e| panic!("{e:#}"));
    if std::env::var_os("BUOY_TEST_KEEP").is_some() {
        lab.ns.keep_files();
    }
    lab.start().unwrap_or_else(|e| panic!("{e:#}"));
    let primary = lab
        .wait_replicated(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("primary on {}", PgLab::name(primary));

    lab.start_client().unwrap();
    wait_until(Duration::from_secs(30), || lab.acked().len() >= 20)
        .unwrap_or_else(|| panic!("the client never wrote:\n{}", lab.logs()));

    // The primary's host crashes.
    let before = lab.acked().len();
    let crashed_ms = lab.ns.crash(primary);
    wait_until(Duration::from_secs(120), || lab.acked().len() > before + 5)
        .unwrap_or_else(|| panic!("writes never resumed:\n{}", lab.logs()));
    let resumed_ms = lab
        .acked()
        .iter()
        .filter(|a| a.sent_ms >= crashed_ms)
        .map(|a| a.acked_ms)
        .min()
        .unwrap();
    let new_primary = lab.vip_holder(&[primary]);
    eprintln!(
        "{} crashed: the first write sent after the crash was acknowledged {} ms later (VIP on {:?})",
        PgLab::name(primary),
        resumed_ms - crashed_ms,
        new_primary.map(PgLab::name)
    );
    assert!(
        new_primary.is_some_and(|n| n != primary),
        "the VIP did not move"
    );
    lab.stop_client();

    // Every acknowledged commit is there.
    let acks = lab.acked();
    let lost = lab.lost().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    eprintln!("{} acknowledged commits, none lost", acks.len());
    // Negative control: one acknowledged row removed is caught.
    lab.sql(&format!("delete from acked where i = {}", acks[0].id))
        .unwrap();
    assert_eq!(
        lab.lost().unwrap(),
        [acks[0].id],
        "the check missed a removed row"
    );

    // The old primary's host comes back. pgsql left its lock file there (it never stopped
    // cleanly): its copy refuses to start and says why, for the operator to act on; the new
    // primary keeps serving.
    lab.ns.revive(primary).unwrap_or_else(|e| panic!("{e:#}"));
    let old = PgLab::name(primary);
    let reason = wait_until(Duration::from_secs(90), || {
        let (ok, out) = lab.ns.cli(&["instance", "show", "pg", "--json"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| {
            v["copies"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["host"] == old.as_str()
                        && c["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("PGSQL.lock"))
                })
            })
        })
    });
    let (_, shown) = lab.ns.cli(&["instance", "show", "pg", "--json"]);
    assert!(
        reason.is_some(),
        "the old primary's copy does not say why it stays down:\n{shown}\n{}",
        lab.logs()
    );
    eprintln!("the old primary's copy stays down, saying why: {shown}");
    assert_eq!(lab.sql("select pg_is_in_recovery()").as_deref(), Ok("f"));
}
