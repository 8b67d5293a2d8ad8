//! The chaos suite, short version (the long one, `--duration 600`, is for release checks): a
//! seeded schedule of kills, hangs, partitions, isolations, restarts and leader kills against
//! real agents with 3 servers, while demo instances write heartbeats and a writer keeps
//! writing. The checker must find no violation of S1 (one copy at a time), S2 (no
//! acknowledged write lost), S3 (an isolated host keeps its work) or availability.

mod common;

use std::process::{Command, Stdio};

/// Runs `buoy chaos ARGS --json`; returns its report (with no violation and exit 0 asserted)
/// and the PID it ran as.
fn run_clean(args: &[&str]) -> (serde_json::Value, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .arg("chaos")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("buoy runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(v["violations"], serde_json::json!([]), "{v}\n{stderr}");
    assert!(out.status.success(), "{stderr}");
    (v, pid)
}

#[test]
fn a_seeded_chaos_run_breaks_no_safety_rule() {
    let (v, _) = run_clean(&[
        "--hosts",
        "5",
        "--servers",
        "3",
        "--duration",
        "25",
        "--seed",
        "11",
        "--net",
        "64",
    ]);
    let faults = v["faults"].as_array().unwrap();
    assert!(faults.len() >= 4, "{v}");
    assert!(
        faults.iter().any(|f| f["disrupted"] == true),
        "some fault stopped instances, and they came back: {v}"
    );
    assert!(v["acknowledged_writes"].as_u64().unwrap() > 50, "{v}");
    assert!(v["heartbeat_copies"].as_u64().unwrap() >= 10, "{v}");
    assert_eq!(v["seed"], 11);
    assert!(v["replay"].as_str().unwrap().contains("--seed 11"));
}

#[test]
fn the_checker_reports_a_planted_double_run() {
    // The checker itself must be able to fail: two epochs of one instance overlapping in a
    // heartbeat file are reported as an S1 violation.
    let text = "app-1 3 h2 1000\napp-1 3 h2 1500\napp-1 4 h3 1400\napp-1 4 h3 2000\n";
    let spans = sim::heartbeats::spans(text);
    let overlaps = sim::heartbeats::overlaps(&spans);
    assert_eq!(overlaps.len(), 1);
    assert_eq!(overlaps[0].overlap_ms, 100);
}

#[test]
fn a_chaos_run_with_hosts_in_network_namespaces_breaks_no_safety_rule() {
    if !common::netns_available() {
        eprintln!("SKIPPED: needs root and `ip netns` (iproute2)");
        return;
    }
    let (v, pid) = run_clean(&[
        "--netns",
        "--hosts",
        "4",
        "--servers",
        "3",
        "--duration",
        "15",
        "--seed",
        "5",
    ]);
    let tag = format!("buoy{pid}-");
    assert!(v["faults"].as_array().unwrap().len() >= 2, "{v}");
    assert!(v["acknowledged_writes"].as_u64().unwrap() > 10, "{v}");
    // Its namespaces are gone.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!left.contains(&tag), "namespaces left behind: {left}");
}

/// Issue 15, the negative control end to end: with every host but the first keeping its
/// instances after losing its lease (and its watchdog disarmed), a schedule of hangs must end
/// in an S1 violation and a non-zero exit, naming the double run.
#[test]
fn chaos_catches_a_host_that_keeps_running_without_its_lease() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "chaos",
            "--hosts",
            "3",
            "--servers",
            "1",
            "--duration",
            "15",
        ])
        .args([
            "--seed",
            "9",
            "--net",
            "80",
            "--only",
            "hang",
            "--inject-double-run",
            "--json",
        ])
        .output()
        .expect("buoy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let violations = v["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.starts_with("S1:"))),
        "{v}"
    );
}

#[test]
fn without_network_namespaces_chaos_offers_no_partitions() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["chaos", "--only", "partition", "--net", "81"])
        .output()
        .expect("buoy runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--netns"), "{stderr}");
}
