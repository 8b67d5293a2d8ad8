//! `buoy sim cluster` as a test: the whole system under faults keeps rules S1, S3 and L1 over
//! many seeds, and the checker is shown to catch S1 broken on purpose (negative controls).

use std::time::Duration;

use sim::cluster::{Broken, ClusterReport, ClusterScenario, LeaderBroken};

/// The scenario: 50 hosts, 200 instances, 600 simulated seconds.
fn scenario(seed: u64) -> ClusterScenario {
    ClusterScenario::new(50, 200, Duration::from_secs(600), seed)
}

/// Runs `seeds` on every core.
fn run_all(seeds: std::ops::Range<u64>) -> Vec<ClusterReport> {
    sim::cluster::run_many(seeds, scenario, |_| {})
}

#[test]
fn every_rule_holds_under_faults_over_many_seeds() {
    // CI runs 200 seeds (release build, about a minute on 2 cores); a debug build a few.
    let seeds = if cfg!(debug_assertions) {
        3
    } else if std::env::var("CI").is_ok() {
        200
    } else {
        40
    };
    let reports = run_all(0..seeds);
    assert_eq!(reports.len() as u64, seeds);
    let mut broken = Vec::new();
    for r in &reports {
        // A run that could not have broken a rule proves nothing: each one moved copies after
        // failures and went through faults of every side (hosts, network, control plane).
        assert!(
            r.hosts_failed > 0 && r.moves > r.instances as u64,
            "seed {}: {r:?}",
            r.seed
        );
        assert!(r.faults.len() >= 8, "seed {}: {:?}", r.seed, r.faults);
        if !r.ok() {
            broken.push(format!(
                "seed {}: {:?}\n  replay: buoy sim cluster --seed {}",
                r.seed,
                r.violations(),
                r.seed
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    // With the sleep hook (the default) nothing is reported apart: every overlap is S1.
    assert!(reports.iter().all(|r| r.suspend_overlaps == 0));
    eprintln!("{seeds} seeds: 0 violations");
}

/// Suspends only, with and without the sleep hook. Without it, a host that slept past its
/// lease runs its copies again on waking while they run elsewhere (the window the hook
/// closes); with it, they stay frozen and die, or thaw under an unbroken lease: no overlap.
#[test]
fn a_suspend_overlaps_without_the_sleep_hook_and_never_with_it() {
    let run = |hook: bool| {
        let mut sc = scenario(1);
        sc.faults.kinds = vec!["suspend"];
        sc.sleep_hook = hook;
        sc.run()
    };
    let without = run(false);
    assert!(
        without.suspend_overlaps > 0 && without.suspend_overlap_max_ms > 0,
        "the model must show the window: {without:?}"
    );
    let with = run(true);
    assert!(with.ok() && with.suspend_overlaps == 0, "{with:?}");
    assert!(
        with.faults.get("suspend").is_some_and(|n| *n > 10),
        "{with:?}"
    );
}

/// Runs `seed` with a fault that breaks rule S1 on purpose: the checker must report it.
fn assert_caught(seed: u64, host: Broken, leader: LeaderBroken) {
    let mut sc = scenario(seed);
    sc.broken_host = host;
    sc.broken_leader = leader;
    let r = sc.run();
    assert!(
        !r.s1.is_empty() && !r.ok(),
        "the S1 checker missed the injected fault: {r:?}"
    );
}

#[test]
fn a_host_that_runs_on_after_its_lease_is_caught() {
    let host = Broken {
        keep_without_lease: true,
    };
    assert_caught(1, host, LeaderBroken::default());
}

#[test]
fn a_leader_that_skips_handoffs_is_caught() {
    let leader = LeaderBroken {
        skip_handoffs: true,
        ..LeaderBroken::default()
    };
    assert_caught(1, Broken::default(), leader);
}

/// Hole 10's negative control: a new leader that grants from an old state (a server restored
/// from its last snapshot, without the read barrier) starts old copies on hosts that no
/// longer hold them, as `buoy chaos` saw once (an epoch 18 moves old came back).
#[test]
fn a_leader_that_grants_from_a_stale_state_is_caught() {
    let leader = LeaderBroken {
        stale_grants: true,
        ..LeaderBroken::default()
    };
    assert_caught(3, Broken::default(), leader);
}

#[test]
fn a_seed_replays_exactly() {
    let sc = ClusterScenario::new(20, 60, Duration::from_secs(200), 7);
    let (a, b) = (sc.run(), sc.run());
    assert_eq!(
        (
            a.starts,
            a.moves,
            a.events,
            a.hosts_failed,
            &a.faults,
            a.down_periods
        ),
        (
            b.starts,
            b.moves,
            b.events,
            b.hosts_failed,
            &b.faults,
            b.down_periods
        )
    );
    assert!(a.events > 10_000, "{a:?}");
}

#[test]
fn without_faults_every_instance_starts_once_and_stays_up() {
    let mut sc = ClusterScenario::new(10, 40, Duration::from_secs(120), 3);
    sc.faults.kinds.clear();
    let r = sc.run();
    assert!(r.ok(), "{:?}", r.violations());
    assert_eq!(r.hosts_failed, 0);
    // Each instance is placed once; only processes that crash by themselves start again.
    assert!(r.starts >= 40 && r.starts < 50, "{r:?}");
    assert!(r.down.max < 5_000.0, "{r:?}");
}
