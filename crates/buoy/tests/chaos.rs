//! The chaos suite, short version (the long one, `--duration 600`, is for release checks): a
//! seeded schedule of kills, hangs, partitions, isolations, restarts and leader kills against
//! real agents with 3 servers, while demo instances write heartbeats and a writer keeps
//! writing. The checker must find no violation of S1 (one copy at a time), S2 (no
//! acknowledged write lost), S3 (an isolated host keeps its work) or availability.

use std::process::Command;

#[test]
fn a_seeded_chaos_run_breaks_no_safety_rule() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "chaos",
            "--hosts",
            "5",
            "--servers",
            "3",
            "--duration",
            "25",
        ])
        .args(["--seed", "11", "--net", "64", "--json"])
        .output()
        .expect("buoy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(v["violations"], serde_json::json!([]), "{v}\n{stderr}");
    assert!(out.status.success(), "{stderr}");
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
