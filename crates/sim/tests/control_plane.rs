//! The control plane under crashes, restarts, partitions and loss: acknowledged writes survive
//! (S2), at most one leader per term, and a full restart brings every server back to the same
//! state.

use std::time::Duration;

use sim::control_plane::ControlPlaneScenario;

fn scenario(seed: u64, servers: usize) -> ControlPlaneScenario {
    ControlPlaneScenario {
        servers,
        clients: 4,
        duration: Duration::from_secs(20),
        seed,
        loss: 0.01,
        dir: std::env::temp_dir().join(format!(
            "buoy-cp-sim-{}-{seed}-{servers}",
            std::process::id()
        )),
    }
}

#[test]
fn acknowledged_writes_survive_crashes_and_partitions_over_many_seeds() {
    let seeds: u64 = if std::env::var_os("CI").is_some() {
        12
    } else {
        4
    };
    let mut total_acked = 0;
    let mut total_crashes = 0;
    for seed in 1..=seeds {
        let servers = if seed % 3 == 0 { 5 } else { 3 };
        let report = scenario(seed, servers)
            .run()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            report.ok(),
            "seed {seed} broke a rule (replay: ControlPlaneScenario seed {seed}, {servers} servers): {report:?}"
        );
        assert!(
            report.acked_writes > 0,
            "seed {seed}: no write was acknowledged: {report:?}"
        );
        eprintln!("{report:?}");
        total_acked += report.acked_writes;
        total_crashes += report.crashes;
    }
    // The schedule must really have hurt: leaders were crashed and writes still went through.
    assert!(
        total_crashes >= seeds as usize,
        "only {total_crashes} crashes over {seeds} seeds"
    );
    assert!(total_acked > 100, "only {total_acked} acknowledged writes");
}
