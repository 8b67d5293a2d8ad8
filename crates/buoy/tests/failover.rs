//! End to end with 5 agents: `buoy bench failover` kills -9 hosts (agent and instances; the
//! watchdogs stay) while demo instances write heartbeats, and every instance of a killed host
//! must come back elsewhere, never two copies at once (judged from the heartbeats), nothing
//! lost. The benchmark itself is the harness: this test runs a short version of it.

mod common;

use std::process::Command;

#[test]
fn killed_hosts_instances_come_back_elsewhere_with_no_double_run_and_none_lost() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["bench", "failover", "--hosts", "5", "--instances", "12"])
        .args(["--runs", "2", "--seed", "7", "--net", "55", "--json"])
        .output()
        .expect("buoy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(v["lost_instances"], 0, "{v}");
    assert_eq!(v["double_runs"], 0, "{v}");
    let moved: u64 = v["moved_per_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .sum();
    assert!(moved >= 2, "each run killed a host that ran instances: {v}");
    // Every instance started once, plus one new copy per move: the heartbeats saw them all.
    assert_eq!(v["heartbeat_copies"].as_u64(), Some(12 + moved), "{v}");
    let p99 = v["recovery_ms"]["p99"].as_u64().unwrap();
    assert!(p99 > 0 && p99 < 10_000, "recovery took {p99} ms: {v}");
    // The breakdown comes from the recovery records: detection, then the lease.
    assert!(v["detect_ms"].as_u64().unwrap() > 0, "{v}");
    assert!(v["fence_ms"].as_u64().is_some(), "{v}");
}

/// Runs `buoy bench failover ARGS --json`: (exit ok, report, stderr).
fn bench(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["bench", "failover"])
        .args(args)
        .arg("--json")
        .output()
        .expect("buoy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (out.status.success(), v, stderr)
}

/// Runs the benchmark with `args`, then again with `--inject-double-run`: the first run must
/// be clean, the second must fail naming the double run. Returns the clean run's report.
fn clean_then_caught(args: &str) -> serde_json::Value {
    let args: Vec<&str> = args.split(' ').collect();
    let (ok, clean, stderr) = bench(&args);
    assert!(ok, "{clean}\n{stderr}");
    assert_eq!(
        (
            clean["double_runs"].as_u64(),
            clean["lost_instances"].as_u64()
        ),
        (Some(0), Some(0)),
        "{clean}"
    );
    let injected: Vec<&str> = args.into_iter().chain(["--inject-double-run"]).collect();
    let (ok, v, stderr) = bench(&injected);
    assert!(
        !ok,
        "the injected double run must fail the run: {v}\n{stderr}"
    );
    assert!(v["double_runs"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(stderr.contains("DOUBLE RUN"), "{stderr}");
    clean
}

/// Issue 15: a frozen agent (SIGSTOP) leaves its instances to its watchdog; they run elsewhere
/// only once they stopped. With the negative control (the host keeps its instances without a
/// lease and disarms its watchdog) the same run must report the double run and exit non-zero:
/// the checker can fail.
#[test]
fn a_hung_agent_causes_no_double_run_and_the_injected_fault_is_caught() {
    let v = clean_then_caught("--hosts 3 --instances 4 --runs 1 --seed 3 --net 77 --fault hang");
    assert_eq!(v["fault"], "hang", "{v}");
}

/// Issue 15: the same with `--fault isolate` (every host in its own network namespace; the
/// struck host's link goes down): no double run, and the injected fault is named and fails the
/// run.
#[test]
fn an_isolated_host_causes_no_double_run_and_the_injected_fault_is_caught() {
    if !common::netns_available() {
        if std::env::var_os("CI").is_some() {
            panic!("CI runs as root with iproute2: network namespaces must be available");
        }
        eprintln!("SKIPPED: --fault isolate needs root and `ip netns` (iproute2)");
        return;
    }
    clean_then_caught("--hosts 3 --instances 4 --runs 1 --seed 4 --fault isolate");
}
