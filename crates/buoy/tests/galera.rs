//! MariaDB with Galera under the unmodified `ocf:heartbeat:galera`, three copies all promoted
//! (`lab::galera_lab`: every host in network and mount namespaces of its own). The cluster
//! bootstraps from the node the agents choose; a client writes to one node and records each
//! acknowledged commit; another node's host crashes and the two left keep serving; every
//! acknowledged row is on both. Then all three stop (desired state `stopped`) and start
//! again: the agents bootstrap from the node with the most recent state and the cluster
//! re-forms with every row. A negative control deletes an acknowledged row and shows the check
//! catches it.
//!
//! Needs root, `ip netns`, `unshare`, MariaDB, Galera and resource-agents (installed by
//! scripts/setup-test-deps.sh); skips loudly otherwise. `BUOY_TEST_KEEP=1` keeps its
//! directory.

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_until;
use lab::galera_lab::{DB, GaleraLab, WRITTEN};

const BUOY: &str = env!("CARGO_BIN_EXE_buoy");

#[test]
fn galera_bootstraps_keeps_serving_through_a_node_kill_and_after_a_full_stop() {
    if let Some(why) = GaleraLab::missing() {
        eprintln!("SKIPPED (loudly): {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("buoy-galera-{}", std::process::id()));
    let mut lab = GaleraLab::create(Path::new(BUOY), dir).unwrap_or_else(|e| panic!("{e:#}"));
    if std::env::var_os("BUOY_TEST_KEEP").is_some() {
        lab.ns.keep_files();
    }
    lab.start().unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_cluster(&DB, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("a Galera cluster of 3 formed");
    lab.prepare_schema(WRITTEN).unwrap();
    lab.start_client().unwrap();
    wait_until(Duration::from_secs(30), || lab.acked().len() >= 20)
        .unwrap_or_else(|| panic!("the client never wrote:\n{}", lab.logs()));

    // A node the client does not write to crashes: the two left keep serving.
    let victim = DB[0];
    let crashed_ms = lab.ns.crash(victim);
    let before = lab.acked().len();
    wait_until(Duration::from_secs(60), || lab.acked().len() > before + 20)
        .unwrap_or_else(|| panic!("writes stopped after the crash:\n{}", lab.logs()));
    let gap = lab::acks::write_pause(&lab.acked(), crashed_ms).map_or(0, |p| p.ms);
    eprintln!(
        "{} crashed: the longest wait between two acknowledged writes after it was {gap} ms",
        GaleraLab::name(victim)
    );
    lab.stop_client();
    let survivors = [DB[1], DB[2]];
    lab.wait_cluster(&survivors, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    for &i in &survivors {
        let lost = lab.lost_on(i).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            lost.is_empty(),
            "acknowledged commits missing on {}: {lost:?}",
            GaleraLab::name(i)
        );
    }
    let total = lab.acked().len();
    eprintln!("{total} acknowledged commits, none lost on the two survivors");

    // The crashed host comes back (rebooted): its copy joins the running cluster.
    lab.ns.revive(victim).unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_cluster(&DB, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{} rejoined", GaleraLab::name(victim));

    // A full stop of all three, then a start: the agents bootstrap from the most recent state.
    lab.set_desired("stopped").unwrap();
    wait_until(Duration::from_secs(120), || {
        DB.iter().all(|&i| lab.cluster_size(i) == 0)
    })
    .unwrap_or_else(|| panic!("the servers did not stop:\n{}", lab.logs()));
    lab.set_desired("started").unwrap();
    lab.wait_cluster(&DB, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("the cluster re-formed after a full stop");
    for &i in &DB {
        let lost = lab.lost_on(i).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            lost.is_empty(),
            "acknowledged commits missing on {} after the full stop: {lost:?}",
            GaleraLab::name(i)
        );
    }
    // Negative control: one acknowledged row removed is caught.
    let first = lab.acked()[0].id;
    lab.sql_on(WRITTEN, &format!("delete from t.acked where i = {first}"))
        .unwrap();
    assert_eq!(
        lab.lost_on(WRITTEN).unwrap(),
        [first],
        "the check missed a removed row"
    );
}
